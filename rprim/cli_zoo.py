"""``rprim train`` and ``rprim plan``: the Baseline / GradStack / MIDAS trainer's commands.

Registered by ``rprim/cli.py`` (``for c in COMMANDS: cli.add_command(c)``). Torch is imported
only inside the commands, so ``rprim --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from rprim.core import RprimError
from rprim.core.options import parse_int


def _common(f: Callable) -> Callable:
    """Options shared by train and plan (plan takes the same arguments and trains nothing)."""
    opts = [
        click.option("--preset", default="tiny", show_default=True,
                     help="tiny | small | paper-1b | paper-2b | paper-8b."),
        click.option("--method", default="baseline", show_default=True, help="baseline | gradstack | midas."),
        click.option("--block-size", type=int, default=None, help="Layers per block b (must divide n_layers)."),
        click.option("--schedule", default=None, help="prop-ALPHA (alpha in 0..3) or k stage fractions 'f1,...,fk'."),
        click.option("--corpus", multiple=True, help="stdlib-python | shakespeare | PATH (file or folder); repeatable."),
        click.option("--mix", default=None, metavar="NAME:FRACTION,...",
                     help="Mix rprim's train split into the training tokens, e.g. varassign:0.05,copying:0.02 "
                          "(families or task names; fractions of the training tokens)."),
        click.option("--tokenizer", default=None, help="Existing HF tokenizer folder instead of training a BPE."),
        click.option("--steps", type=int, default=None, help="Optimizer steps."),
        click.option("--tokens", default=None, help="Training tokens (sets steps); 100e9 and 1_000_000 work."),
        click.option("--seed", type=int, default=None),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="JSON object of settings (applied after the preset)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any setting, e.g. --set lr=1e-3 --set n_layers=12."),
        click.option("--reset-optimizer-on-growth", is_flag=True, default=None,
                     help="New layers start with empty optimizer state instead of a copy."),
        click.option("--cache-dir", default=None, help="Tokenizer/token-file cache (default ~/.cache/rprim)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _config(preset: str, method: str, block_size: int | None, schedule: str | None,
            corpus: tuple[str, ...], mix: str | None, tokenizer: str | None, steps: int | None, tokens: str | None,
            seed: int | None, config_file: str | None, sets: tuple[str, ...],
            reset_optimizer_on_growth: bool | None, cache_dir: str | None):
    from rprim.model_zoo.presets import parse_sets, resolve_config

    if steps is not None and tokens is not None:
        raise RprimError("pass --steps or --tokens, not both")
    flags: dict[str, Any] = {"method": method}
    for key, value in (("block_size", block_size), ("schedule", schedule), ("tokenizer", tokenizer), ("mix", mix),
                       ("seed", seed), ("cache_dir", cache_dir),
                       ("reset_optimizer_on_growth", reset_optimizer_on_growth)):
        if value is not None:
            flags[key] = value
    if corpus:
        flags["corpus"] = list(corpus)
    if steps is not None:
        flags.update(steps=steps, tokens=None)
    if tokens is not None:
        try:
            flags["tokens"] = parse_int(tokens)
        except ValueError:
            raise RprimError(f"--tokens {tokens}: give a whole number such as 2000000 or 100e9") from None
    flags.update(parse_sets(sets))
    return resolve_config(preset, config_file, flags)


@click.command()
@_common
@click.option("--out", required=True, type=click.Path(file_okay=True), help="Output folder (HF model + logs).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete --out and start afresh.")
@click.option("--quiet", is_flag=True, help="No progress bar or messages.")
@click.option("--threads", type=int, default=None,
              help="CPU threads for torch [default: the cores not busy with other work].")
def train(out: str, resume: bool, overwrite: bool, quiet: bool, threads: int | None, **kw: Any) -> None:
    """Train a Llama model with the baseline, GradStack or MIDAS schedule.

    Under torchrun (``torchrun --nproc-per-node N -m rprim train ...``) it runs data-parallel.
    """
    from rprim.core import parse_threads

    threads = parse_threads(threads)
    if threads is not None:
        kw["sets"] = (*kw["sets"], f"threads={threads}")
    cfg = _config(**kw)
    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" bars on every save
    from rprim.model_zoo.train import train as run

    run(cfg, out, resume=resume, overwrite=overwrite, progress=not quiet, quiet=quiet)


@click.command()
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(as_json: bool, **kw: Any) -> None:
    """Stage boundaries, depths and FLOPs of a run (same arguments as train); trains nothing."""
    import dataclasses

    cfg = _config(**kw)
    if cfg.tokenizer:
        from rprim.model_zoo.tokenizer import load_tokenizer

        cfg = dataclasses.replace(cfg, vocab_size=len(load_tokenizer(cfg.tokenizer)))
    from rprim.model_zoo.train import plan as make_plan

    p = make_plan(cfg)
    if as_json:
        click.echo(json.dumps(p, indent=1))
        return
    click.echo(f"{p['method']}  schedule {p['schedule'] or '-'}  block size {p['block_size']}  "
               f"{p['n_layers']} layers  {p['steps']:,} steps x {p['tokens_per_step']:,} tokens = "
               f"{human(p['tokens'])} tokens" + (f"  mix {p['mix']}" if p["mix"] else ""))
    click.echo(f"{'stage':>5} {'depth':>5} {'steps':>19} {'from token':>10} {'tokens':>8} {'FLOPs':>9} {'share':>6}")
    for s in p["stages"]:
        steps = f"{s['start_step']:,}-{s['end_step']:,}"
        click.echo(f"{s['stage']:>5} {s['depth']:>5} {steps:>19} {human(s['start_tokens']):>10} "
                   f"{human(s['tokens']):>8} {s['flops']:>9.3g} {s['flops'] / p['flops']:>6.1%}")
    click.echo(f"total FLOPs {p['flops']:.4g}; baseline {p['baseline_flops']:.4g}; ratio R = {p['flop_ratio']:.4f} "
               f"(speedup {1 / p['flop_ratio']:.3f}x) with LM head (rho = {p['rho_head']:.3f}); "
               f"R = {p['flop_ratio_no_head']:.4f} (speedup {1 / p['flop_ratio_no_head']:.3f}x) without")


def human(n: float) -> str:
    """A count with 3 significant digits and a unit: 0, 950, 12.3k, 33.0B, 1.10B, 2.50T."""
    units = (("", 1), ("k", 1e3), ("M", 1e6), ("B", 1e9), ("T", 1e12))
    i = max((j for j, (_, size) in enumerate(units) if abs(n) >= size), default=0)
    while True:
        unit, size = units[i]
        v = n / size
        text = f"{v:.0f}" if abs(v) >= 99.95 or not unit else f"{v:.1f}" if abs(v) >= 9.995 else f"{v:.2f}"
        if abs(float(text)) < 1000 or i == len(units) - 1:
            return text + unit
        i += 1


COMMANDS = [train, plan]
