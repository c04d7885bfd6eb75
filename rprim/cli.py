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
    except BrokenPipeError:  # `rprim generate ... | head`
        sys.stderr.close()
        sys.exit(0)
