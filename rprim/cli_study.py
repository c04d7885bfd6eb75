"""``rprim report``, ``rprim analyze similarity|linearity`` and ``rprim study``.

Kept light to import: matplotlib, torch and transformers load inside the commands, after the
arguments and output folders have been checked.
"""

from __future__ import annotations


import click

from rprim.core import RprimError


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Folder for report.md, report.html and the PNGs.")
@click.option("--baseline", default=None,
              help="Name (folder name) of the model the others are compared with; default: 'baseline' "
                   "if present, else the first.")
@click.option("--title", default="rprim report", show_default=True, help="Title of the report.")
def report(results: tuple[str, ...], out: str, baseline: str | None, title: str) -> None:
    """Compare models from their evaluation results folders (rprim eval --out).

    Beside results.json a folder may hold training_summary.json, finetune/, checkpoints/ and
    analysis/ (rprim study writes them); the report uses what it finds.
    """
    from rprim.evaluators.report import figures
    from rprim.evaluators import report as R

    figures.require()
    target = R.check_report_folder(out)
    from rprim.evaluators.report.render import text_table

    rep = R.load(results, baseline)
    data = rep.data()
    path = rep.write(target, title=title, data=data)
    click.echo(text_table(data))
    for w in data["warnings"]:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"report: {path / 'report.md'} and {path / 'report.html'}", err=True)


@click.group()
def analyze() -> None:
    """The paper's layer analyses: block similarity (Figure 3), linearity (Figure 6)."""


@analyze.command("similarity")
@click.option("--model", "model", required=True, type=click.Path(),
              help="HF model folder, or a run folder of rprim train (then also its growth snapshots).")
@click.option("--block-size", type=int, default=None,
              help="Layers per block (default: the run's block size, else 1 = per layer).")
@click.option("--out", default=None, type=click.Path(), help="Write similarity.json and similarity.png here.")
def similarity_command(model: str, block_size: int | None, out: str | None) -> None:
    """Cosine similarity between every pair of blocks' first feed-forward weights."""
    from rprim.model_zoo import analysis as A
    from rprim.study import check_analysis_out, write_similarity

    if block_size is not None and block_size < 1:
        raise RprimError(f"--block-size must be a positive number of layers (got {block_size})")
    A.check_model_folder(model)
    if out is not None:
        check_analysis_out(out, "similarity")
    result = A.similarity(model, block_size)
    for snap in result["snapshots"]:
        click.echo(f"{snap['label']}: {snap['blocks']} blocks of {result['block_size']} layer(s)")
        for row in snap["similarity"]:
            click.echo("  " + " ".join(f"{v:6.3f}" for v in row))
    if out is not None:
        click.echo(f"wrote {write_similarity(result, out)}", err=True)


@analyze.command("linearity")
@click.option("--model", "model", required=True, type=click.Path(), help="HF model folder or run folder.")
@click.option("--text", "text", default=None, type=click.Path(),
              help="UTF-8 text to run the model on (default: the run's validation windows, else "
                   "solved primitives problems).")
@click.option("--tokens", type=int, default=None, help="Tokens to use, half to fit and half to score.")
@click.option("--out", default=None, type=click.Path(), help="Write linearity.json and linearity.png here.")
def linearity_command(model: str, text: str | None, tokens: int | None, out: str | None) -> None:
    """Per layer: R^2 and cosine of the best linear map from input to residual update."""
    from rprim.model_zoo import analysis as A
    from rprim.study import LINEARITY_FALLBACK, check_analysis_out, write_linearity

    if tokens is not None and tokens < 16:
        raise RprimError(f"--tokens must be at least 16 (got {tokens})")
    A.check_model_folder(model)
    if text is not None:
        A.read_text(text)
    if out is not None:
        check_analysis_out(out, "linearity")
    result = A.linearity(model, text, tokens, fallback=LINEARITY_FALLBACK)
    click.echo(f"text: {result['text']}; fit on {result['tokens_fit']} tokens, scored on "
               f"{result['tokens_score']}")
    click.echo(f"{'layer':>5} {'R^2':>8} {'cosine':>8}")
    for row in result["layers"]:
        click.echo(f"{row['layer'] + 1:>5} {row['r2']:>8.4f} {row['cosine']:>8.4f}")
    if out is not None:
        click.echo(f"wrote {write_linearity(result, out)}", err=True)


@click.command()
@click.option("--preset", default="tiny", show_default=True, help="tiny (CPU, minutes) or small (one GPU).")
@click.option("--out", required=True, type=click.Path(), help="Study folder (runs, results, report).")
@click.option("--corpus", multiple=True, help="stdlib-python | shakespeare | PATH; repeatable (default: the preset's).")
@click.option("--mix", default="default", show_default=True,
              help="Primitives mixed into pretraining, e.g. varassign:0.05,copying:0.02; 'none' for "
                   "the corpus only; 'default' for the preset's.")
@click.option("--methods", default="baseline,gradstack,midas", show_default=True,
              help="Methods to train and compare (comma-separated).")
@click.option("--steps", type=int, default=None, help="Optimizer steps per run (default: the preset's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a trainer setting for every run, e.g. --set lr=1e-3.")
@click.option("--threads", type=int, default=None, help="CPU threads (default: the free cores).")
@click.option("--seeds", type=int, default=1, show_default=True,
              help="Pretraining seeds per method; the report adds mean, spread and a test across seeds.")
def study(preset: str, out: str, corpus: tuple[str, ...], mix: str, methods: str, steps: int | None,
          sets: tuple[str, ...], threads: int | None, seeds: int) -> None:
    """Train Baseline, GradStack and MIDAS on the same data, score, fine-tune, analyze, report.

    Reruns skip finished parts; an interrupted study continues where it stopped.
    """
    from rprim import study as S
    from rprim.evaluators.report import figures
    from rprim.model_zoo.presets import parse_sets

    figures.require()
    settings = S.resolve(preset, out, methods, mix, corpus, parse_sets(sets), steps, threads, seeds)
    from rprim.cli_eval import _quiet_transformers

    _quiet_transformers()  # no "Loading weights" / "Writing model shards" bars between ours
    S.run(settings, log=lambda m: click.echo(m, err=True))


COMMANDS = [report, analyze, study]
