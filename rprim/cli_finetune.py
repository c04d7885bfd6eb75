"""``rprim finetune``: the paper's fine-tuning protocol (torch loads inside the command)."""

from __future__ import annotations

import click

from rprim.core import RprimError, parse_batch_size


@click.command()
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
        raise RprimError(f"--seeds must be at least 1 (got {seeds})")
    bs = parse_batch_size(batch_size)
    cfg = F.FinetuneConfig(tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
                           examples=examples, seeds=tuple(range(seeds)), steps=steps,
                           eval_start=eval_start, eval_end=eval_end, eval_every=eval_every,
                           eval_n=eval_n, lr=lr, optimizer=optimizer, shots=shots, batch_size=bs)
    cfg.check()
    if out:
        F.check_results_folder(out)
    results = F.finetune(model, cfg, log=lambda s: click.echo(s, err=True), save=save,
                         trust_remote_code=trust_remote_code)
    click.echo(F.table(results))
    click.echo(f"train {results['train_time_s']:.1f}s, evaluation {results['eval_time_s']:.1f}s, "
               f"wall {results['wall_time_s']:.1f}s")
    if out:
        click.echo(f"wrote {F.save_results(results, out)}")


COMMANDS = [finetune]
