"""Export the suite for other tools: an lm-evaluation-harness task folder, and Parquet.

The lm-eval export uses lm-eval's own fields, so ``lm_eval --include_path DIR`` runs it
unmodified and builds *exactly* rprim's prompts: the fewshot file holds rprim's fixed
exemplar set in order (sampler ``first_n``), lm-eval joins each exemplar as
query + target_delimiter + target + "\\n\\n" and then appends the query, as rprim does.
Predictions are cut at the task's ``until`` strings and compared after stripping
surrounding whitespace, rprim's exact-match metric.

The folder can move, and lm-eval can start in any folder. lm-eval hands ``dataset_kwargs`` to
``datasets.load_dataset``, which resolves relative ``data_files`` against the working directory,
not the YAML; only ``include:`` and ``!function`` are resolved beside the YAML. So each task
loads its data through lm-eval's ``custom_dataset`` hook (lm-eval 0.4.9 and later): a small
loader, ``_rprim_data.py`` beside the YAML, reads the JSONL files named in ``data_files``
relative to its own location. The file names carry a hash of their bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import rprim.primitives as P
from rprim.core import RprimError, atomic_folder, check_output_folder, write_text
from rprim.primitives.io import write_parquet

from .data import task_names, task_records

DOC_FIELDS = ("id", "task", "index", "query", "target", "hash")  # the lm-eval docs' fields
ANSWER_TOKENS = 32  # max_gen_toks: far above any target of the suite
STRIP = ["^\\s+", "\\s+$"]  # rprim's prediction is stripped of surrounding whitespace


YAML_NOTE = ("# Written by `rprim export lm-eval`. The data files are read by _rprim_data.py beside\n"
             "# this file, relative to it: run lm_eval from any folder (--include_path EXPORT).\n")
LOADER = "_rprim_data"
LOADER_SOURCE = '''"""Loads this task's data for lm-eval (the YAML's custom_dataset, written by rprim): the
files named in data_files, relative to this file, so lm_eval can start in any folder."""

import json
import os


def load(data_files=None, **_):
    import datasets

    here = os.path.dirname(os.path.abspath(__file__))
    splits = {}
    for split, name in (data_files or {}).items():
        with open(os.path.join(here, name), encoding="utf-8") as f:
            splits[split] = datasets.Dataset.from_list([json.loads(x) for x in f if x.strip()])
    return datasets.DatasetDict(splits)
'''


def lm_eval_name(task: str) -> str:
    """lm-eval's name for an rprim task: the canonical name behind ``rprim-``, which keeps it
    apart from lm-eval's own tasks (lm-eval ships an ``arithmetic`` group of its own)."""
    return "rprim-" + task


@contextlib.contextmanager
def _staged(out: str | Path, kind: str) -> Iterator[tuple[Path, Path]]:
    """(final folder, temp folder): the temp folder is published at ``out`` only when the
    block completes; an earlier export there is updated, a user's files are kept."""
    out = Path(os.path.abspath(check_output_folder(out, kind)))
    with atomic_folder(out, kind=kind) as tmp:
        yield out, tmp


def _jsonl(records: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)


def _lines(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]]


def _yaml(config: dict[str, Any], raw: dict[str, str] | None = None) -> str:
    """YAML for lm-eval; every value is written as JSON, which is valid YAML (``raw`` values,
    such as a ``!function`` tag, as they are)."""
    return YAML_NOTE + "".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()) + \
        "".join(f"{k}: {v}\n" for k, v in (raw or {}).items())


def _write_data(folder: Path, split: str, records: Sequence[dict[str, Any]]) -> str:
    """Write ``<split>-<hash>.jsonl`` (the hash of its bytes) into ``folder``; return its name."""
    text = _jsonl(records)
    name = f"{split}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.jsonl"
    write_text(folder / name, text, fsync=False)
    return name


def export_lm_eval(out: str | Path, tasks: str | Sequence[str] | None = "suite", shots: int = 5,
                   n: int | None = None, seed: int = 0) -> list[str]:
    """Write one lm-eval task per rprim task (data + YAML) and a group ``rprim``.

    Each task reads its data through a loader beside its YAML (see the module docstring), so
    the folder can move and lm-eval can start anywhere. Returns the lm-eval task names.
    """
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
        raise RprimError(f"--shots must be 0 or more exemplars (got {shots!r})")
    names = task_names(tasks)
    with _staged(out, "lm-eval-export") as (_, tmp):
        exported = []
        for name in names:
            task, records = task_records(name, 0, n, seed)
            folder = tmp / task.name
            folder.mkdir()
            # first_n takes exemplars in order, so any --num_fewshot up to 10 matches rprim too
            exemplars = [{"query": q, "target": t} for q, t in task.exemplars(seed, max(shots, 10))]
            # only what lm-eval reads: nested metadata of mixed types (arithmetic's solved sums)
            # is not representable in Arrow, which `datasets` loads JSON into
            docs = [{k: r[k] for k in DOC_FIELDS} for r in records]
            files = {"test": _write_data(folder, "test", docs),
                     "fewshot": _write_data(folder, "fewshot", exemplars)}
            config = {
                "task": lm_eval_name(task.name),
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": files},
                "test_split": "test",
                "fewshot_split": "fewshot",
                "fewshot_config": {"sampler": "first_n"},
                "output_type": "generate_until",
                "doc_to_text": "query",
                "doc_to_target": "target",
                "target_delimiter": task.target_delimiter,
                "fewshot_delimiter": P.FEWSHOT_DELIMITER,
                "num_fewshot": shots,
                "generation_kwargs": {"until": list(task.until), "do_sample": False,
                                      "temperature": 0.0, "max_gen_toks": ANSWER_TOKENS},
                "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                                 "higher_is_better": True, "ignore_case": False,
                                 "ignore_punctuation": False, "regexes_to_ignore": STRIP}],
                "metadata": {"version": float(P.GENERATOR_VERSION), "rprim_task": task.name,
                             "seed": seed},
            }
            write_text(folder / f"{LOADER}.py", LOADER_SOURCE, fsync=False)
            write_text(folder / f"{task.name}.yaml", _yaml(config, {"custom_dataset": f"!function {LOADER}.load"}),
                       fsync=False)
            exported.append(config["task"])
        group = {"group": "rprim", "task": exported,
                 "aggregate_metric_list": [{"metric": "exact_match", "aggregation": "mean",
                                            "weight_by_size": False}],
                 "metadata": {"version": float(P.GENERATOR_VERSION)}}
        write_text(tmp / "_rprim.yaml", _yaml(group), fsync=False)
    return exported


def export_parquet(out: str | Path, tasks: str | Sequence[str] | None = "suite",
                   n: int | None = None, seed: int = 0) -> list[str]:
    """Write ``<task>/test.parquet`` per task and a dataset card, so that
    ``datasets.load_dataset(DIR, "<task>")`` (or pandas) reads it."""
    names = task_names(tasks)
    with _staged(out, "parquet-export") as (dest, tmp):
        configs = []
        for name in names:
            task, records = task_records(name, 0, n, seed)
            (tmp / task.name).mkdir()
            write_parquet(_lines(records), tmp / task.name / "test.parquet")
            configs.append(task.name)
        card = ["---", "configs:"]
        for i, name in enumerate(configs):
            card += [f"- config_name: {name}", *(["  default: true"] if i == 0 else []),
                     "  data_files:", "  - split: test", f"    path: {name}/test.parquet"]
        card += ["---", "", "# rprim reasoning primitives",
                 "", f"Generated by rprim (generator version {P.GENERATOR_VERSION}), seed {seed}. "
                 "Fields `params` and `metadata` are JSON text.", ""]
        write_text(tmp / "README.md", "\n".join(card), fsync=False)
    return configs
