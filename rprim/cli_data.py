"""``rprim generate``, ``tasks``, ``suite`` and ``export``: the data commands.

Light to import (numpy, jinja2); the exports load their extras inside the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from rprim import primitives as P
from rprim.core import RprimError, parse_pairs, typed_values
from rprim.primitives.io import check_records_path, write_records


def _knobs(family: str, items: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """``-p KEY=VALUE`` pairs typed by the family's config fields (``n=abc`` is an error), and
    where each came from (for messages about contradictions)."""
    import dataclasses

    cls = P.families()[family].Config
    raw: dict[str, str] = {}
    for item in items:
        pair = parse_pairs([item], "-p")
        for key, value in pair.items():
            if key in raw and raw[key] != value:
                raise RprimError(f"-p {key}={raw[key]} and -p {key}={value} contradict each other; "
                                 f"give {key} once")
            raw[key] = value
    known = [f.name for f in dataclasses.fields(cls)]
    bad = sorted(set(raw) - set(known))
    if bad:
        raise RprimError(f"{family} has no knob {', '.join(bad)}; its knobs are {', '.join(known)}")
    return typed_values(cls, raw, "-p"), {k: f"-p {k}={v}" for k, v in raw.items()}


def _set(knobs: dict[str, Any], sources: dict[str, str], key: str, value: Any, source: str) -> None:
    """Set a knob from an option, refusing one that another option already set otherwise."""
    if key in knobs and knobs[key] != value:
        raise RprimError(f"{source} contradicts {sources[key]}; give {key} once")
    knobs[key], sources[key] = value, source


def _user_template(family: str, template: str) -> str:
    """Register ``--template FILE`` as a format named after the file; return the name."""
    from pathlib import Path

    path = Path(template)
    if not path.is_file():
        raise RprimError(f"template {template} does not exist; give a .j2 file")
    P.register_template(family, path.stem, path)  # refuses a built-in format's name
    return path.stem


def _task(task_name: str, flags: dict[str, Any], params: tuple[str, ...],
          template: str | None) -> P.Primitive:
    """The task the options describe. What a task name spells out (``varassign-code-d2``: code,
    depth 2) is fixed: an option asking for another value is an error, never silently
    preferred. Knobs the name leaves at their defaults may be set (``copying-words -p n=12``)."""
    family, named = P.resolve(task_name)
    knobs, sources = _knobs(family, params)
    for key, value in flags.items():
        if value is not None:
            _set(knobs, sources, key, value, f"--{key} {value}")
    if template:
        _set(knobs, sources, "format", _user_template(family, template), f"--template {template}")
    for key, value in knobs.items():
        if key in named and named[key] != value:
            try:
                other = f" (or --task {P.get(family, **{**named, **knobs}).name})"
            except RprimError:
                other = ""
            raise RprimError(f"--task {task_name} already fixes {key}={named[key]}, so "
                             f"{sources[key]} contradicts it; pass --task {family} with the "
                             f"options{other}")
    return P.get(task_name, **knobs)


@click.command()
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
    task = _task(task_name, {"depth": depth, "format": fmt, "width": width}, params, template)
    if split not in P.SPLITS:
        raise RprimError(f"unknown split {split!r}; use one of {', '.join(P.SPLITS)}")
    if out:
        check_records_path(out)
        _check_room(task, n, split, seed, shots, out)
    stats = P.GenerationStats()
    chunks = task.iter_chunks(n, seed=seed, split=split, shots=shots, unique=not allow_duplicates,
                              per_query_shots=per_query_shots, stats=stats)  # checks n, shots
    if out:
        count = write_records(chunks, out)
        click.echo(f"wrote {count} {task.name} examples to {out}", err=True)
    else:
        for chunk in chunks:
            sys.stdout.write("\n".join(chunk) + "\n")
    if stats.duplicates:
        verb = "kept" if allow_duplicates else "skipped"
        click.echo(f"{verb} {stats.duplicates} repeated queries out of {stats.scanned} drawn", err=True)


def _check_room(task, n: int, split: str, seed: int, shots: int, out: str) -> None:
    """Refuse, before writing, an --n whose records cannot fit on the output's disk (the size
    of a JSONL record is measured on the first few; Parquet is smaller, so this is safe)."""
    from rprim.core import check_free_space

    if n <= 0:
        return
    sample = task.generate(min(n, 50), seed=seed, split=split, shots=shots, unique=False)
    per = sum(len(json.dumps(r, ensure_ascii=False)) + 1 for r in sample) / max(1, len(sample))
    check_free_space(out, int(per * n * 1.05), f"--n {n:,} of {task.name}",
                     "free some space, lower --n, or write to another disk")


@click.command()
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


@click.command()
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for <task>.jsonl and manifest.json.")
@click.option("--n", "n", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--show", type=click.IntRange(min=0), default=0, help="Print this many examples of each task.")
def suite(out: str, n: int, seed: int, show: int) -> None:
    """Write the canonical suite (test split, 0-shot) with a manifest of sha256 hashes."""
    import time

    from rprim.primitives.suite import check_suite_folder

    check_suite_folder(out)
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


@click.group()
def export() -> None:
    """Export the suite for other tools (lm-evaluation-harness, Parquet / datasets)."""


@export.command("lm-eval")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for the task files.")
@click.option("--tasks", default="suite", show_default=True, help="suite, or task names separated by commas.")
@click.option("--shots", type=click.IntRange(min=0), default=5, show_default=True, help="num_fewshot written into the YAML.")
@click.option("--n", "n", type=int, default=None, help="Examples per task (default: all 1000 of the suite).")
@click.option("--seed", type=int, default=0, show_default=True)
def export_lm_eval(out: str, tasks: str, shots: int, n: int | None, seed: int) -> None:
    """Write an lm-eval 0.4 task folder: run it with `lm_eval --include_path OUT --tasks rprim`."""
    from rprim.evaluators.export import export_lm_eval as run

    names = run(out, tasks=tasks, shots=shots, n=n, seed=seed)
    click.echo(f"wrote {len(names)} lm-eval tasks (group rprim) to {out}:\n  " + " ".join(names))
    click.echo(f"run it from any folder: lm_eval --model hf --model_args pretrained=MODEL "
               f"--include_path {Path(out).expanduser().resolve()} --tasks rprim\n(each task reads its data "
               "beside its YAML: the folder may move; lm-eval 0.4.9 or later)")


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


COMMANDS = [generate, tasks, suite, export]
