"""The ``rprim`` command line. The only module that knows click.

Every user error (bad task, bad knob, unwritable output, ...) ends as one line on stderr,
``rprim: error: <what and how to fix it>``, with exit status 2 and no traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

import rprim
from rprim import primitives as P
from rprim.primitives.io import check_writable, write_records


def _parse_value(text: str) -> Any:
    """Knob values from the command line: int, float, bool, else the string itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise P.RprimError(f"--param {item!r} is not KEY=VALUE; write e.g. -p width=7")
        params[key.strip()] = _parse_value(value.strip())
    return params


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(rprim.__version__, prog_name="rprim")
def cli() -> None:
    """Reasoning primitives: generate task data, evaluate models, train stacked models."""


@cli.command()
@click.option("--task", "task_name", required=True, help="Family (varassign) or task name (varassign-code-d2).")
@click.option("--depth", type=int, default=None, help="varassign: hops from the query to its constant.")
@click.option("--format", "fmt", default=None, help="Surface format (varassign: basic, math, code).")
@click.option("--width", type=int, default=None, help="varassign: chains per problem.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Any other knob, e.g. -p n=12 -p m=4.")
@click.option("--n", "n", type=int, default=1000, show_default=True, help="Number of examples.")
@click.option("--split", default="test", show_default=True, help="test, fewshot or train (disjoint).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shots", type=int, default=0, show_default=True, help="Few-shot exemplars in each prompt.")
@click.option("--per-query-shots", is_flag=True, help="Sample exemplars per query instead of one fixed set.")
@click.option("--allow-duplicates", is_flag=True, help="Keep repeated queries (they are counted on stderr).")
@click.option("--template", type=click.Path(dir_okay=False), default=None, help="A .j2 file: a new format named after the file.")
@click.option("--out", type=click.Path(dir_okay=True), default=None, help="FILE.jsonl or FILE.parquet (default: JSONL on stdout).")
def generate(task_name: str, depth: int | None, fmt: str | None, width: int | None,
             params: tuple[str, ...], n: int, split: str, seed: int, shots: int,
             per_query_shots: bool, allow_duplicates: bool, template: str | None,
             out: str | None) -> None:
    """Generate deterministic examples of one task (JSONL records)."""
    from pathlib import Path

    knobs = _parse_params(params)
    for key, value in (("depth", depth), ("format", fmt), ("width", width)):
        if value is not None:
            knobs[key] = value
    family, _ = P.resolve(task_name)
    if template:
        path = Path(template)
        if not path.is_file():
            raise P.RprimError(f"template {template} does not exist; give a .j2 file")
        P.register_template(family, path.stem, path)
        knobs.setdefault("format", path.stem)
    task = P.get(task_name, **knobs)
    if split not in P.SPLITS:
        raise P.RprimError(f"unknown split {split!r}; use one of {', '.join(P.SPLITS)}")
    if out:
        check_writable(out)
    stats = P.GenerationStats()
    chunks = task.iter_chunks(n, seed=seed, split=split, shots=shots, unique=not allow_duplicates,
                            per_query_shots=per_query_shots, stats=stats)
    if out:
        count = write_records(chunks, out)
        click.echo(f"wrote {count} {task.name} examples to {out}", err=True)
    else:
        for chunk in chunks:
            sys.stdout.write("\n".join(chunk) + "\n")
    if stats.duplicates:
        verb = "kept" if allow_duplicates else "skipped"
        click.echo(f"{verb} {stats.duplicates} repeated queries out of {stats.scanned} drawn", err=True)


@cli.command()
def tasks() -> None:
    """List task families, their formats and knobs (with defaults), and the canonical suite."""
    import dataclasses

    for name, cls in P.families().items():
        knobs = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Config))
        fmts = ", ".join(P.formats(name)) or "-"
        click.echo(f"{name}\n  formats: {fmts}\n  knobs:   {knobs}")
    click.echo("\nsuite (canonical task names):")
    for name in P.suite_names():
        task = P.get(name)
        chance = f"  chance {task.chance:.0%}" if task.chance else ""
        click.echo(f"  {name:<22} {P.resolve(name)[1]}{chance}")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for <task>.jsonl and manifest.json.")
@click.option("--n", "n", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--show", type=int, default=0, help="Print this many examples of each task.")
def suite(out: str, n: int, seed: int, show: int) -> None:
    """Write the canonical suite (test split, 0-shot) with a manifest of sha256 hashes."""
    import time

    t0 = time.perf_counter()
    manifest = P.write_suite(out, n=n, seed=seed)
    took = time.perf_counter() - t0
    for entry in manifest["tasks"]:
        click.echo(f"{entry['task']:<22} {entry['n']:>6}  sha256 {entry['sha256'][:12]}")
        if show:
            task = P.get(entry["task"])
            for rec in task.generate(show, seed=seed):
                body = rec["query"] + task.target_delimiter + rec["target"]
                click.echo("    " + body.replace("\n", "\n    ") + "\n")
    total = sum(e["n"] for e in manifest["tasks"])
    click.echo(f"wrote {total} examples of {len(manifest['tasks'])} tasks to {out} in {took:.2f}s")


@cli.group()
def export() -> None:
    """Export the suite for other tools (lm-evaluation-harness, Parquet / datasets)."""


@export.command("lm-eval")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for the task files.")
@click.option("--tasks", default="suite", show_default=True, help="suite, or task names separated by commas.")
@click.option("--shots", type=int, default=5, show_default=True, help="num_fewshot written into the YAML.")
@click.option("--n", "n", type=int, default=None, help="Examples per task (default: all 1000 of the suite).")
@click.option("--seed", type=int, default=0, show_default=True)
def export_lm_eval(out: str, tasks: str, shots: int, n: int | None, seed: int) -> None:
    """Write an lm-eval 0.4 task folder: run it with `lm_eval --include_path OUT --tasks rprim`."""
    from rprim.evaluators.export import export_lm_eval as run

    names = run(out, tasks=tasks, shots=shots, n=n, seed=seed)
    click.echo(f"wrote {len(names)} lm-eval tasks (group rprim) to {out}:\n  " + " ".join(names))
    click.echo(f"run: lm_eval --model hf --model_args pretrained=MODEL --include_path {out} --tasks rprim")


@export.command("parquet")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for <task>/test.parquet and a dataset card.")
@click.option("--tasks", default="suite", show_default=True)
@click.option("--n", "n", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
def export_parquet(out: str, tasks: str, n: int | None, seed: int) -> None:
    """Write the suite as Parquet, loadable with datasets.load_dataset(OUT, TASK)."""
    from rprim.evaluators.export import export_parquet as run

    names = run(out, tasks=tasks, n=n, seed=seed)
    click.echo(f"wrote {len(names)} tasks to {out} (datasets.load_dataset({out!r}, {names[0]!r}))")


@cli.command()
@click.option("--model", required=True, help="HF causal-LM folder, .gguf file, reference name or hub id.")
@click.option("--tasks", default="varassign-code-d1,varassign-code-d2", show_default=True,
              help="Training/evaluation tasks, separated by commas (examples split evenly).")
@click.option("--examples", type=int, default=64, show_default=True, help="Training examples per seed.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Runs (seeds 0..N-1), each with its own data.")
@click.option("--steps", type=int, default=300, show_default=True)
@click.option("--eval-start", type=int, default=200, show_default=True, help="First step of the evaluation window.")
@click.option("--eval-end", type=int, default=300, show_default=True, help="Last step of the window (inclusive).")
@click.option("--eval-every", type=int, default=1, show_default=True, help="Evaluate every k-th step of the window.")
@click.option("--eval-n", type=int, default=1000, show_default=True, help="Held-out test examples per task.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Constant learning rate.")
@click.option("--optimizer", default="adafactor", show_default=True, help="adafactor or adamw.")
@click.option("--shots", type=int, default=0, show_default=True)
@click.option("--batch-size", default="auto", show_default=True, help="Evaluation batch size: auto or N.")
@click.option("--save", type=click.Path(file_okay=False), default=None, help="Save each seed's fine-tuned model here.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for results.json.")
@click.option("--trust-remote-code", is_flag=True)
def finetune(model: str, tasks: str, examples: int, seeds: int, steps: int, eval_start: int,
             eval_end: int, eval_every: int, eval_n: int, lr: float, optimizer: str, shots: int,
             batch_size: str, save: str | None, out: str | None, trust_remote_code: bool) -> None:
    """The paper's fine-tuning protocol: mean ± std of held-out accuracy over seeds."""
    from rprim.evaluators import finetune as F

    if seeds < 1:
        raise P.RprimError(f"--seeds must be at least 1 (got {seeds})")
    bs: int | str = batch_size if batch_size == "auto" else _parse_value(batch_size)
    cfg = F.FinetuneConfig(tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
                           examples=examples, seeds=tuple(range(seeds)), steps=steps,
                           eval_start=eval_start, eval_end=eval_end, eval_every=eval_every,
                           eval_n=eval_n, lr=lr, optimizer=optimizer, shots=shots, batch_size=bs)
    cfg.check()
    if out:
        _check_out_folder(out)
    results = F.finetune(model, cfg, log=lambda s: click.echo(s, err=True), save=save,
                         trust_remote_code=trust_remote_code)
    click.echo(F.table(results))
    click.echo(f"train {results['train_time_s']:.1f}s, evaluation {results['eval_time_s']:.1f}s, "
               f"wall {results['wall_time_s']:.1f}s")
    if out:
        click.echo(f"wrote {F.save_results(results, out)}")


def _check_out_folder(folder: str) -> None:
    """Fail before any work when an --out folder cannot be made: it may not exist yet, but
    its parent must, and it must not be a file."""
    from pathlib import Path

    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise P.RprimError(f"--out {folder} is a file; give a folder")
    if not path.parent.is_dir():
        raise P.RprimError(f"cannot write {folder}: folder {path.parent} does not exist; create it first")


from rprim.cli_eval import COMMANDS as _EVAL_COMMANDS  # noqa: E402  (light: click only)
from rprim.cli_zoo import COMMANDS as _ZOO_COMMANDS  # noqa: E402  (light: click only)

for _command in _EVAL_COMMANDS + _ZOO_COMMANDS:
    cli.add_command(_command)


# Optional dependencies and the extra that installs each (torch: pin torch==2.13.0 for the CPU build).
EXTRA_FOR = {"torch": "torch", "transformers": "torch", "tokenizers": "torch", "safetensors": "torch",
             "tqdm": "torch", "pandas": "parquet", "pyarrow": "parquet", "gguf": "gguf",
             "accelerate": "gguf", "vllm": "vllm", "lm_eval": "lm-eval"}


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [P.RprimError]
    try:
        from rprim.model_zoo.errors import ZooError
        errors.append(ZooError)
    except ImportError:  # the trainer's modules are absent from a data-only install
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="rprim", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("rprim: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"rprim: error: {e.format_message()}", err=True)
        sys.exit(2)
    except _user_errors() as e:
        click.echo(f"rprim: error: {e}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as e:  # an optional dependency of this command is missing
        top = (e.name or "").split(".")[0]
        if top not in EXTRA_FOR:
            raise
        click.echo(f"rprim: error: this command needs the {top} package, which is not installed; "
                   f"pip install 'rprim[{EXTRA_FOR[top]}]'", err=True)
        sys.exit(2)
    except BrokenPipeError:  # `rprim generate ... | head`
        sys.stderr.close()
        sys.exit(0)
