"""``rprim finetune``: the paper's fine-tuning protocol (torch loads inside the command).

Every setting, the output folders and the run to resume are checked before the model loads;
the model's context and the memory a step needs before any training. A bar with an ETA covers
every seed's steps and evaluations; with ``--out`` each finished seed is written at once, so
Ctrl-C or SIGTERM keeps them and ``--resume`` runs only the missing seeds.
"""

from __future__ import annotations

import click

from rprim.core import RprimError, default_threads, parse_batch_size, parse_device, parse_threads


@click.command()
@click.option("--model", required=True,
              help="HF causal-LM folder, .gguf file, reference name or hub id.")
@click.option("--tasks", default="varassign-code-d1,varassign-code-d2", show_default=True,
              help="Training/evaluation tasks, separated by commas (examples split evenly).")
@click.option("--examples", type=int, default=64, show_default=True,
              help="Training examples per seed.")
@click.option("--seeds", type=int, default=3, show_default=True,
              help="Runs (seeds 0..N-1), each with its own data.")
@click.option("--steps", type=int, default=300, show_default=True, help="Full-batch training steps.")
@click.option("--eval-start", type=int, default=None,
              help="First step of the evaluation window [default: the last third of --steps, 200 of 300].")
@click.option("--eval-end", type=int, default=None,
              help="Last step of the window, inclusive [default: --steps].")
@click.option("--eval-every", type=int, default=1, show_default=True,
              help="Evaluate every k-th step of the window.")
@click.option("--eval-n", type=int, default=1000, show_default=True,
              help="Held-out test examples per task.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Constant learning rate.")
@click.option("--optimizer", default="adafactor", show_default=True, help="adafactor or adamw.")
@click.option("--shots", type=int, default=0, show_default=True,
              help="Exemplars in every training and evaluation prompt.")
@click.option("--batch-size", default="auto", show_default=True, help="Evaluation batch size: auto or N.")
@click.option("--micro-batch-size", default="auto", show_default=True,
              help="Training rows per forward pass (auto: what fits in memory); the step stays full-batch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--threads", type=int, default=None,
              help="CPU threads for torch [default: the cores not busy with other work].")
@click.option("--save", type=click.Path(file_okay=False), default=None,
              help="Save each seed's fine-tuned model here (DIR/seed-N).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for results.json, written after every finished seed.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out (its missing seeds).")
@click.option("--quiet", is_flag=True, help="No progress bar or per-step lines; only the table.")
@click.option("--trust-remote-code", is_flag=True)
def finetune(model: str, tasks: str, examples: int, seeds: int, steps: int, eval_start: int | None,
             eval_end: int | None, eval_every: int, eval_n: int, lr: float, optimizer: str, shots: int,
             batch_size: str, micro_batch_size: str, device: str, threads: int | None,
             save: str | None, out: str | None, resume: bool, quiet: bool,
             trust_remote_code: bool) -> None:
    """The paper's fine-tuning protocol: mean ± std of held-out accuracy over seeds."""
    if seeds < 1:
        raise RprimError(f"--seeds must be at least 1 (got {seeds})")
    bs = parse_batch_size(batch_size)
    micro = parse_batch_size(micro_batch_size, "--micro-batch-size")
    device = parse_device(device)
    threads = parse_threads(threads)
    from rprim.evaluators import finetune as F

    cfg = F.FinetuneConfig(tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
                           examples=examples, seeds=tuple(range(seeds)), steps=steps,
                           eval_start=eval_start, eval_end=eval_end, eval_every=eval_every,
                           eval_n=eval_n, lr=lr, optimizer=optimizer, shots=shots, batch_size=bs,
                           micro_batch_size=micro)
    cfg.check()
    log = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    results = F.finetune(model, cfg, log=log, save=save, trust_remote_code=trust_remote_code,
                         out=out, resume=resume, progress=not quiet, device=device,
                         before_load=lambda: _before_load(threads))
    click.echo(results.table())
    t = results.meta
    click.echo(f"train {t['train_time_s']:.1f}s, evaluation {t['eval_time_s']:.1f}s, "
               f"wall {t['wall_time_s']:.1f}s", err=True)
    if out:
        click.echo(f"results: {out}/results.json", err=True)


def _before_load(threads: int | None) -> None:
    """After every check: torch's thread count, and no library output but ours."""
    from rprim.cli_eval import _quiet_transformers

    _quiet_transformers()
    import torch

    torch.set_num_threads(threads or default_threads())


COMMANDS = [finetune]
