"""Export the suite for other tools: an lm-evaluation-harness task folder, and Parquet.

The lm-eval export uses lm-eval's own fields, so ``lm_eval --include_path DIR`` runs it
unmodified and builds *exactly* rprim's prompts: the fewshot file holds rprim's fixed
exemplar set in order (sampler ``first_n``), lm-eval joins each exemplar as
query + target_delimiter + target + "\\n\\n" and then appends the query, as rprim does.
Predictions are cut at the task's ``until`` strings and compared after stripping
surrounding whitespace, rprim's exact-match metric.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import rprim.primitives as P
from rprim.core import atomic_folder, check_output_folder
from rprim.primitives.io import write_jsonl, write_parquet

from .evaluate import task_names, task_records

ANSWER_TOKENS = 32  # max_gen_toks: far above any target of the suite
STRIP = ["^\\s+", "\\s+$"]  # rprim's prediction is stripped of surrounding whitespace


def lm_eval_name(task: str) -> str:
    return "rprim_" + task.replace("-", "_")


@contextlib.contextmanager
def _staged(out: str | Path, kind: str) -> Iterator[tuple[Path, Path]]:
    """(final folder, temp folder beside it): the temp folder is published at ``out`` only
    when the block completes; an earlier export there is updated, a user's files are kept."""
    out = check_output_folder(out, kind).absolute()
    with atomic_folder(out, kind=kind) as tmp:
        yield out, tmp


def _lines(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]]


def _yaml(config: dict[str, Any]) -> str:
    """YAML for lm-eval; every value is written as JSON, which is valid YAML."""
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items())


def export_lm_eval(out: str | Path, tasks: str | Sequence[str] | None = "suite", shots: int = 5,
                   n: int | None = None, seed: int = 0) -> list[str]:
    """Write one lm-eval task per rprim task (data + YAML) and a group ``rprim``.

    Data paths in the YAML are absolute, so the folder must be re-exported if it moves.
    Returns the lm-eval task names.
    """
    names = task_names(tasks)
    with _staged(out, "lm-eval-export") as (dest, tmp):
        exported = []
        for name in names:
            task, records = task_records(name, 0, n, seed)
            folder = tmp / task.name
            folder.mkdir()
            write_jsonl(_lines(records), folder / "test.jsonl")
            # first_n takes exemplars in order, so any --num_fewshot up to 10 matches rprim too
            exemplars = [{"query": q, "target": t} for q, t in task.exemplars(seed, max(shots, 10))]
            write_jsonl(_lines(exemplars), folder / "fewshot.jsonl")
            final = dest / task.name
            config = {
                "task": lm_eval_name(task.name),
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(final / "test.jsonl"),
                                                  "fewshot": str(final / "fewshot.jsonl")}},
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
            (folder / f"{task.name}.yaml").write_text(_yaml(config), encoding="utf-8")
            exported.append(config["task"])
        group = {"group": "rprim", "task": exported,
                 "aggregate_metric_list": [{"metric": "exact_match", "aggregation": "mean",
                                            "weight_by_size": False}],
                 "metadata": {"version": float(P.GENERATOR_VERSION)}}
        (tmp / "_rprim.yaml").write_text(_yaml(group), encoding="utf-8")
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
        (tmp / "README.md").write_text("\n".join(card), encoding="utf-8")
    return configs
