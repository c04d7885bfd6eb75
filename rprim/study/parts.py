"""The study's parts: one resumable piece each (train, score, fine-tune, analyze, report), whose
output folder is its done-marker."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rprim.core.layout import (CHECKPOINTS, REPORT, RESULTS_DIR, RESULTS_FILE, RUNS, SNAPSHOT_FILE, SNAPSHOTS,
                               SUMMARY_FILE, analysis_dir, analysis_file, finetune_results)

from .analyses import ANALYSIS_KINDS, LINEARITY_FALLBACK, write_linearity, write_similarity
from .presets import HELD_OUT, REGIMES
from .settings import StudySettings, train_config


@dataclass
class Part:
    """One resumable piece of the study: its output folder is its done-marker."""

    label: str
    kind: str                   # train | eval | finetune | analysis | report (ETA rate)
    units: float                # work in the kind's unit (tokens x FLOP ratio, examples, steps)
    done: Callable[[], bool]
    run: Callable[[], None]


def run_name(method: str, seed: int = 0) -> str:
    """``midas`` for the first seed, ``midas-seed1`` ... (the names the report groups by)."""
    return method if seed == 0 else f"{method}-seed{seed}"


def run_dir(s: StudySettings, method: str, seed: int = 0) -> Path:
    return s.out / RUNS / run_name(method, seed)


def results_dir(s: StudySettings, method: str, seed: int = 0) -> Path:
    return s.out / RESULTS_DIR / run_name(method, seed)


def _log(msg: str) -> None:
    print(msg, flush=True)


def _bars() -> bool:
    """Progress bars inside parts only on a terminal: a captured log (a file, CI) keeps the
    study's own lines, one per part with its ETA, instead of every redraw of every bar."""
    import sys

    return sys.stderr.isatty()


def train_part(s: StudySettings, method: str, seed: int = 0) -> Part:
    from rprim.model_zoo.train import plan

    cfg = train_config(s, method, seed)
    p = plan(cfg)
    folder = run_dir(s, method, seed)

    def run() -> None:
        from rprim.model_zoo.runfolder import RunFolder
        from rprim.model_zoo.train import train

        # a run folder there (an interrupted run): the trainer continues it from its latest
        # checkpoint, or starts it afresh when it had none
        train(cfg, folder, resume=RunFolder(folder).is_run(), progress=_bars(), quiet=False)

    return Part(f"train {run_name(method, seed)} ({p['steps']} steps, {p['tokens']:,} tokens, FLOP ratio "
                f"{p['flop_ratio']:.3f})", "train", p["tokens"] * p["flop_ratio"],
                lambda: (folder / SUMMARY_FILE).is_file(), run)


def _evaluate(model: Path, out: Path, n: int, shots: int, extra: dict[str, Path]) -> None:
    """Score ``model`` on the suite into results folder ``out``; copy ``extra`` files beside."""
    from rprim.evaluators import evaluate

    res = evaluate(str(model.resolve()), tasks=["suite", *HELD_OUT], shots=shots, n=n, progress=_bars())
    res.save(out)
    _copy_beside(out, extra)


def _copy_beside(out: Path, extra: dict[str, Path]) -> None:
    for name, src in extra.items():
        if src.is_file() and not (out / name).is_file():
            shutil.copyfile(src, out / f".{name}.tmp")
            (out / f".{name}.tmp").replace(out / name)


def _n_tasks() -> int:
    import rprim.primitives as P

    return len(P.suite_names()) + len(HELD_OUT)


def eval_final_part(s: StudySettings, method: str, seed: int = 0) -> Part:
    out, run = results_dir(s, method, seed), run_dir(s, method, seed)
    n = s.preset.eval_n
    extra = {SUMMARY_FILE: run / SUMMARY_FILE}

    def done() -> bool:
        ok = (out / RESULTS_FILE).is_file()
        if ok:
            _copy_beside(out, extra)
        return ok

    return Part(f"evaluate {run_name(method, seed)} final model (5-shot suite and depth 3, {n} per task)", "eval",
                _n_tasks() * n, done,
                lambda: _evaluate(run, out, n, s.preset.shots, extra))


def periodic_snapshots(s: StudySettings, method: str, seed: int = 0) -> list[Path]:
    """The run's snapshots taken every ``snapshot_every`` steps (growth snapshots left out)."""
    config = train_config(s, method, seed)
    every, total = config.to_dict().get("snapshot_every") or 0, config.total_steps
    snaps = []
    for p in sorted((run_dir(s, method, seed) / SNAPSHOTS).glob("step-*")):
        try:
            step = int(json.loads((p / SNAPSHOT_FILE).read_text(encoding="utf-8"))["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if every and step % every == 0 and step < total:  # the final model is scored apart
            snaps.append(p)
    return snaps


def eval_snapshots_part(s: StudySettings, method: str, seed: int = 0) -> Part:
    n = s.preset.snapshot_eval_n
    base = results_dir(s, method, seed) / CHECKPOINTS
    count = max(0, s.preset.snapshots - 1)

    def todo() -> list[Path]:
        return [p for p in periodic_snapshots(s, method, seed) if not (base / p.name / RESULTS_FILE).is_file()]

    def run() -> None:
        for p in todo():
            _log(f"  snapshot {p.name}")
            _evaluate(p, base / p.name, n, s.preset.shots, {SNAPSHOT_FILE: p / SNAPSHOT_FILE})

    return Part(f"evaluate {run_name(method, seed)} snapshots ({n} per task each)", "eval", _n_tasks() * n * count,
                lambda: not todo(), run)


def finetune_part(s: StudySettings, method: str, seed: int = 0) -> Part:
    from rprim.evaluators import finetune as F

    cfg = F.FinetuneConfig(**s.preset.finetune)
    cfg.check()
    out = finetune_results(results_dir(s, method, seed)).parent
    units = len(cfg.seeds) * (cfg.steps + len(cfg.eval_steps) * len(cfg.tasks) * cfg.eval_n / 50)

    def done() -> bool:
        try:
            return bool(json.loads((out / RESULTS_FILE).read_text(encoding="utf-8")).get("complete", True))
        except (OSError, ValueError, AttributeError):
            return False

    def run() -> None:
        # into its folder seed by seed: an interrupted study keeps the seeds it finished
        F.finetune(str(run_dir(s, method, seed).resolve()), cfg, log=lambda m: _log("  " + m),
                   out=out, resume=(out / RESULTS_FILE).is_file())

    return Part(f"fine-tune {run_name(method, seed)} ({len(cfg.seeds)} seed(s) x {cfg.steps} steps)", "finetune", units,
                done, run)


def analysis_part(s: StudySettings, method: str, seed: int = 0) -> Part:
    base = results_dir(s, method, seed)

    def done() -> bool:
        return all(analysis_file(base, k).is_file() for k in ANALYSIS_KINDS)

    def run() -> None:
        from rprim.model_zoo import analysis as A

        folder = run_dir(s, method, seed)
        if not analysis_file(base, "similarity").is_file():
            write_similarity(A.similarity(folder), analysis_dir(base, "similarity"))
        if not analysis_file(base, "linearity").is_file():
            write_linearity(A.linearity(folder, tokens=s.preset.linearity_tokens, fallback=LINEARITY_FALLBACK),
                            analysis_dir(base, "linearity"))

    return Part(f"analyze {run_name(method, seed)} (block similarity, linearity)", "analysis", 1.0, done, run)


def report_part(s: StudySettings, timings: dict[str, float]) -> Part:
    def run() -> None:
        from rprim.evaluators import report as R

        folders = [results_dir(s, m, seed) for m, seed in s.runs()
                   if (results_dir(s, m, seed) / RESULTS_FILE).is_file()]
        rep = R.load(folders, "baseline" if "baseline" in s.methods else None)
        rep.write(s.out / REPORT, notes=study_notes(s, timings),
                  title=f"rprim study ({s.preset.name} preset)")

    return Part("write the report", "report", 1.0, lambda: False, run)


def study_notes(s: StudySettings, timings: dict[str, float]) -> list[str]:
    cfg = train_config(s, s.methods[0])
    notes = [f"Study preset `{s.preset.name}` (trainer preset `{s.preset.train_preset}`): "
             f"{cfg.n_layers} layers, d_model {cfg.d_model}, context {cfg.seq_len}, "
             f"{cfg.total_steps} steps of {cfg.tokens_per_step:,} tokens, the same seed and data order "
             f"for every method; GradStack and MIDAS: block size {cfg.block_size}, schedule {cfg.schedule}.",
             f"Evaluation: {s.preset.shots}-shot, the first {s.preset.eval_n} suite examples per task for "
             f"the final models, {s.preset.snapshot_eval_n} for snapshots.",
             f"Regime: {REGIMES.get(s.preset.regime, s.preset.regime)}"]
    if s.seeds > 1:
        notes.append(f"Pretraining seeds: {s.seeds} per method (seeds 0 to {s.seeds - 1}; each seed "
                     "sets initialization and data order, the same for every method).")
    notes.append(f"Pretraining mix: {s.mix}." if s.mix else "Pretraining mix: none (corpus only).")
    notes.append("Variable assignment at depth 3 (`varassign d3`) is held out: no mix holds it, so its "
                 "row measures extrapolation in depth.")
    if s.preset.note:
        notes.append(s.preset.note)
    timings = {k: v for k, v in timings.items() if k != "write the report"}
    if timings:
        notes.append("Wall time per part (of the run that did it; a study resumed after an "
                     "interruption also redid the unfinished part's lost work): "
                     + "; ".join(f"{k} {v:.0f} s" for k, v in timings.items())
                     + f"; {sum(timings.values()) / 60:.1f} min in all.")
    return notes
