"""``rprim study``: Baseline vs GradStack vs MIDAS, end to end, as the paper compares them.

One call trains the methods on the same data order and token budget (same seed, same sampler,
same steps; GradStack and MIDAS with the same schedule and block size), evaluates snapshots at
several token counts and the final models on the 5-shot suite, runs the fine-tuning protocol
on each final model, runs both layer analyses, and writes the report. Layout of ``--out``:

    study.json                          the settings (a rerun with other settings is refused)
    timings.json                        wall seconds of each finished part
    runs/<method>/                      the trainer's run folder (HF model, snapshots/, checkpoints/)
    results/<method>/                   eval of the final model: results.json, samples/,
        training_summary.json           a copy of the run's summary
        checkpoints/step-NNNNNNNN/      eval of each periodic snapshot (+ its snapshot.json)
        finetune/results.json           the fine-tuning protocol
        analysis/similarity/, analysis/linearity/
    report/                             report.md, report.html, PNGs, report.json

Every part's output folder is its done-marker, written atomically: a rerun skips finished parts
and an interrupted study resumes (training from its latest checkpoint). This module is the top
layer: it may import every package.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rprim.core import RprimError, atomic_folder, check_output_folder, folder_lock, write_json
from rprim.core.progress import Rates

STUDY_KIND = "study"
STUDY_FILE = "study.json"
TIMINGS_FILE = "timings.json"   # seconds per finished part, kept across reruns
METHODS = ("baseline", "gradstack", "midas")
# Scored beside the suite, never in a mix (the mixes draw depths 0-2): depth 3 is extrapolation.
HELD_OUT = ("varassign-basic-d3", "varassign-math-d3", "varassign-code-d3")
ANALYSIS_KINDS = {"similarity": "similarity", "linearity": "linearity"}
DEFAULT_MIX = "varassign:0.3,copying:0.05,psm:0.05,arithmetic:0.05"
SMALL_MIX = ",".join([*(f"varassign-{f}-d0:0.06" for f in ("basic", "math", "code")),
                      *(f"varassign-{f}-d{d}:0.02" for d in (1, 2) for f in ("basic", "math", "code")),
                      "copying:0.05", "psm:0.05", "arithmetic:0.05"])


REGIMES = {
    "paper": "the paper's: a natural-text corpus with the primitives' train split mixed in.",
    "synthetic": "synthetic: primitives-dominant training tokens (like looped-transformer studies).",
}


@dataclass(frozen=True)
class StudyPreset:
    """What a study trains and measures. ``train``: TrainConfig overrides on ``train_preset``."""

    name: str
    train_preset: str
    train: dict[str, Any]
    mix: str | None = DEFAULT_MIX
    snapshots: int = 4                  # periodic snapshots per run (every steps // snapshots)
    eval_n: int = 100                   # examples per task for the final models
    snapshot_eval_n: int = 50           # examples per task for the snapshots
    shots: int = 5
    finetune: dict[str, Any] = field(default_factory=dict)   # FinetuneConfig fields
    linearity_tokens: int | None = None
    regime: str = "paper"               # paper: natural-text corpus plus a primitives mix | synthetic
    rates: dict[str, float] = field(default_factory=dict)    # prior seconds per unit (ETA)
    note: str = ""


PRESETS: dict[str, StudyPreset] = {
    # CPU, minutes: the tiny trainer preset at half its width (d 64: 3x faster at context 1024),
    # with a context that holds the 5-shot suite (5-shot varassign-code-d2 is ~870 tokens with
    # the tiny BPE) and the same tokens per step (2 x 1024 = 8 x 256).
    "tiny": StudyPreset(
        "tiny", "tiny", {"d_model": 64, "n_heads": 2, "d_mlp": 192, "seq_len": 1024, "batch_size": 2,
                         "steps": 160, "ckpt_every": 40, "eval_every": 40},
        eval_n=60, snapshot_eval_n=30,
        finetune={"examples": 16, "seeds": (0,), "steps": 16, "eval_start": 8, "eval_end": 16,
                  "eval_every": 8, "eval_n": 100, "lr": 1e-3, "optimizer": "adamw"},
        rates={"train": 1 / 4000, "eval": 1 / 120, "finetune": 0.3, "analysis": 5.0, "report": 8.0},
        note="The tiny study's fine-tuning protocol is reduced to fit a CPU: 1 seed, 16 examples, "
             "16 full-batch steps of AdamW at 1e-3, accuracy averaged over steps 8 and 16 on 100 "
             "held-out examples per depth (the paper: 3 seeds, 64 examples, 300 steps of Adafactor, "
             "every step from 200 to 300, 1000 examples)."),
    # One GPU, about 11 minutes on an H100 (measured): the small trainer preset (12 layers, d 768) at
    # context 1024; the mix weights depth 0 up (the easiest binding, the one a model this size
    # can show within 39M tokens), keeping the 45% total of the default mix.
    "small": StudyPreset(
        "small", "small", {"seq_len": 1024, "batch_size": 32, "steps": 1200, "warmup_steps": 100,
                           "eval_every": 200, "ckpt_every": 400},
        mix=SMALL_MIX,
        eval_n=400, snapshot_eval_n=150,
        finetune={"examples": 64, "seeds": (0, 1, 2), "steps": 300, "eval_start": 200,
                  "eval_end": 300, "eval_every": 50, "eval_n": 400},
        rates={"train": 1 / 330_000, "eval": 1 / 600, "finetune": 0.085, "analysis": 15.0, "report": 8.0},
        note="The small study's fine-tuning protocol evaluates at steps 200, 250 and 300 on 400 "
             "held-out examples per depth (the paper: every step from 200 to 300, 1000 examples)."),
}


# ----------------------------------------------------------------------------- settings
@dataclass
class StudySettings:
    """A resolved study: the preset plus the user's choices; ``study.json`` holds it."""

    preset: StudyPreset
    out: Path
    methods: tuple[str, ...]
    mix: str | None
    corpus: tuple[str, ...] = ()
    sets: dict[str, Any] = field(default_factory=dict)     # extra TrainConfig overrides
    threads: int | None = None
    seeds: int = 1                                          # pretraining seeds per method

    def runs(self) -> list[tuple[str, int]]:
        """(method, seed) of every run, seed by seed: a study stopped early has whole seeds."""
        return [(m, seed) for seed in range(self.seeds) for m in self.methods]

    def train_overrides(self, method: str, seed: int = 0) -> dict[str, Any]:
        """TrainConfig overrides of one run (all but ``method`` and ``seed`` shared by every run;
        seed 0 keeps the preset's or the user's seed)."""
        values = {**self.preset.train, **self.sets, "method": method}
        if seed:
            values["seed"] = seed
        if self.corpus:
            values["corpus"] = list(self.corpus)
        if self.mix:
            values["mix"] = self.mix
        steps = values.get("steps") if values.get("tokens") is None else None
        if steps:
            every = max(1, int(steps) // self.preset.snapshots)
            values.setdefault("snapshot_every", every)
        values.setdefault("snapshot_growth", True)
        if self.threads:
            values["threads"] = self.threads
        return values

    def record(self) -> dict[str, Any]:
        """What must match for a rerun to continue this study (methods may be added)."""
        from rprim.model_zoo.presets import RESUMABLE_CHANGES  # runtime settings: free to change

        p = self.preset
        free = (RESUMABLE_CHANGES | {"method", "threads"}) - {"snapshot_every", "snapshot_growth"}
        return {"preset": p.name, "train_preset": p.train_preset,
                "train": {k: v for k, v in self.train_overrides("baseline").items() if k not in free},
                "mix": self.mix, "snapshots": p.snapshots, "eval_n": p.eval_n,
                "snapshot_eval_n": p.snapshot_eval_n, "shots": p.shots,
                "finetune": {k: list(v) if isinstance(v, tuple) else v for k, v in p.finetune.items()}}


def parse_methods(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    bad = [n for n in names if n not in METHODS]
    if not names or bad:
        raise RprimError(f"--methods {text!r}: use a comma-separated subset of {', '.join(METHODS)}")
    return names


def resolve(preset: str | StudyPreset, out: str | Path, methods: str | tuple[str, ...] = METHODS,
            mix: str | None = "default", corpus: tuple[str, ...] = (), sets: dict[str, Any] | None = None,
            steps: int | None = None, threads: int | None = None, seeds: int = 1) -> StudySettings:
    """Check every argument (before any work) and return the study's settings.

    ``mix``: ``"default"`` = the preset's, ``None``/``"none"`` = no mix, else a mix spec.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise RprimError(f"unknown study preset {preset!r}; use --preset one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    names = parse_methods(methods) if isinstance(methods, str) else tuple(methods)
    if mix == "default":
        mix = preset.mix
    elif mix is not None and mix.strip().lower() in ("none", ""):
        mix = None
    if threads is not None and threads < 1:
        raise RprimError(f"--threads must be a positive integer (got {threads})")
    extra = dict(sets or {})
    if seeds < 1:
        raise RprimError(f"--seeds must be a positive integer (got {seeds})")
    if seeds > 1 and "seed" in extra:
        raise RprimError("--seeds trains seeds 0, 1, ...; drop --set seed=... (or pass --seeds 1)")
    if steps is not None:
        if steps < preset.snapshots:
            raise RprimError(f"--steps {steps} is too few for {preset.snapshots} snapshots; pass at "
                             f"least {preset.snapshots}")
        extra.update(steps=steps, tokens=None)
    s = StudySettings(preset, Path(out).expanduser(), names, mix, tuple(corpus), extra, threads, seeds)
    from rprim.model_zoo.train import preflight

    for m, seed in s.runs():  # every run's checks now, before the study folder exists
        preflight(train_config(s, m, seed))
    _check_out(s)
    return s


def train_config(s: StudySettings, method: str, seed: int = 0) -> Any:
    """The validated TrainConfig of ``method``'s run with pretraining seed ``seed``."""
    from rprim.model_zoo.presets import TrainConfig, resolve_config

    values = s.train_overrides(method, seed)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    missing = [k for k in ("mix", "snapshot_every", "snapshot_growth") if k in values and k not in known]
    if "mix" in missing:
        raise RprimError("this rprim's trainer has no pretraining mix; pass --mix none")
    for k in missing:
        values.pop(k)
    return resolve_config(s.preset.train_preset, None, values)


def _check_out(s: StudySettings) -> None:
    check_output_folder(s.out, STUDY_KIND, flag="--out", legacy=(STUDY_FILE,))
    path = s.out / STUDY_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        new = json.loads(json.dumps(s.record()))
        if (not isinstance(old, dict) or old.get("settings") != new) and _started(s.out):
            diffs = _diff(old.get("settings") if isinstance(old, dict) else None, new)
            raise RprimError(f"{s.out} holds a study with other settings ({diffs}); rerun with the same "
                             "settings to continue it, or pass a new --out")


def _started(out: Path) -> bool:
    """Whether any part of the study in ``out`` wrote something (a study that never started,
    say after a failed check, holds nothing to protect: other settings may replace it)."""
    return any(p.is_file() for sub in ("runs", "results") for p in (out / sub).rglob("*"))


def _diff(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "unreadable study.json"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)[:300]


# ----------------------------------------------------------------------------- parts
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
    return s.out / "runs" / run_name(method, seed)


def results_dir(s: StudySettings, method: str, seed: int = 0) -> Path:
    return s.out / "results" / run_name(method, seed)


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
                lambda: (folder / "training_summary.json").is_file(), run)


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
    extra = {"training_summary.json": run / "training_summary.json"}

    def done() -> bool:
        ok = (out / "results.json").is_file()
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
    for p in sorted((run_dir(s, method, seed) / "snapshots").glob("step-*")):
        try:
            step = int(json.loads((p / "snapshot.json").read_text(encoding="utf-8"))["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if every and step % every == 0 and step < total:  # the final model is scored apart
            snaps.append(p)
    return snaps


def eval_snapshots_part(s: StudySettings, method: str, seed: int = 0) -> Part:
    n = s.preset.snapshot_eval_n
    base = results_dir(s, method, seed) / "checkpoints"
    count = max(0, s.preset.snapshots - 1)

    def todo() -> list[Path]:
        return [p for p in periodic_snapshots(s, method, seed) if not (base / p.name / "results.json").is_file()]

    def run() -> None:
        for p in todo():
            _log(f"  snapshot {p.name}")
            _evaluate(p, base / p.name, n, s.preset.shots, {"snapshot.json": p / "snapshot.json"})

    return Part(f"evaluate {run_name(method, seed)} snapshots ({n} per task each)", "eval", _n_tasks() * n * count,
                lambda: not todo(), run)


def finetune_part(s: StudySettings, method: str, seed: int = 0) -> Part:
    from rprim.evaluators import finetune as F

    cfg = F.FinetuneConfig(**s.preset.finetune)
    cfg.check()
    out = results_dir(s, method, seed) / "finetune"
    units = len(cfg.seeds) * (cfg.steps + len(cfg.eval_steps) * len(cfg.tasks) * cfg.eval_n / 50)

    def done() -> bool:
        try:
            return bool(json.loads((out / "results.json").read_text(encoding="utf-8")).get("complete", True))
        except (OSError, ValueError, AttributeError):
            return False

    def run() -> None:
        # into its folder seed by seed: an interrupted study keeps the seeds it finished
        F.finetune(str(run_dir(s, method, seed).resolve()), cfg, log=lambda m: _log("  " + m),
                   out=out, resume=(out / "results.json").is_file())

    return Part(f"fine-tune {run_name(method, seed)} ({len(cfg.seeds)} seed(s) x {cfg.steps} steps)", "finetune", units,
                done, run)


def check_analysis_out(out: str | Path, kind: str) -> Path:
    """RprimError unless ``out`` can hold an analysis of ``kind`` (similarity, linearity)."""
    from rprim.evaluators import figures

    figures.require()
    return check_output_folder(out, kind, legacy=(f"{kind}.json",))


def write_similarity(result: dict[str, Any], out: str | Path) -> Path:
    """``similarity.json`` and ``similarity.png`` (one heat map per snapshot) into ``out``."""
    from rprim.evaluators import figures

    out = check_analysis_out(out, ANALYSIS_KINDS["similarity"])
    with atomic_folder(out, kind=ANALYSIS_KINDS["similarity"]) as tmp:
        write_json(tmp / "similarity.json", result)
        maps = [(sn["label"], sn["similarity"]) for sn in result["snapshots"]]
        figures.save(figures.heatmaps(maps, f"block similarity, block size {result['block_size']}: "
                                            f"{result['model']}"), tmp / "similarity.png")
    return out


def write_linearity(result: dict[str, Any], out: str | Path) -> Path:
    """``linearity.json`` and ``linearity.png`` into ``out``."""
    from rprim.evaluators import figures

    out = check_analysis_out(out, ANALYSIS_KINDS["linearity"])
    with atomic_folder(out, kind=ANALYSIS_KINDS["linearity"]) as tmp:
        write_json(tmp / "linearity.json", result)
        figures.save(figures.linearity({Path(result["model"]).name: result["layers"]}), tmp / "linearity.png")
    return out


def primitives_documents(per_task: int = 6) -> list[str]:
    """Solved problems of every suite task from the ``test`` split, ``per_task`` to a document
    (separated by blank lines, like the pretraining mix): text no training run has seen."""
    import rprim.primitives as P

    docs = []
    for name in P.suite_names():
        recs = P.get(name).generate(per_task * 4, seed=0, split="test")
        for i in range(0, len(recs), per_task):
            docs.append("\n\n".join(r["query"] + r["target_delimiter"] + r["target"]
                                    for r in recs[i:i + per_task]))
    return docs



LINEARITY_FALLBACK = ("solved primitives problems (test split)", primitives_documents)


def analysis_part(s: StudySettings, method: str, seed: int = 0) -> Part:
    base = results_dir(s, method, seed) / "analysis"

    def done() -> bool:
        return (base / "similarity" / "similarity.json").is_file() and \
            (base / "linearity" / "linearity.json").is_file()

    def run() -> None:
        from rprim.model_zoo import analysis as A

        folder = run_dir(s, method, seed)
        if not (base / "similarity" / "similarity.json").is_file():
            write_similarity(A.similarity(folder), base / "similarity")
        if not (base / "linearity" / "linearity.json").is_file():
            write_linearity(A.linearity(folder, tokens=s.preset.linearity_tokens, fallback=LINEARITY_FALLBACK),
                            base / "linearity")

    return Part(f"analyze {run_name(method, seed)} (block similarity, linearity)", "analysis", 1.0, done, run)


def report_part(s: StudySettings, timings: dict[str, float]) -> Part:
    def run() -> None:
        from rprim.evaluators import report as R

        folders = [results_dir(s, m, seed) for m, seed in s.runs()
                   if (results_dir(s, m, seed) / "results.json").is_file()]
        rep = R.load(folders, "baseline" if "baseline" in s.methods else None)
        rep.write(s.out / "report", notes=study_notes(s, timings),
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


# ----------------------------------------------------------------------------- the run
def plan_parts(s: StudySettings, timings: dict[str, float]) -> list[Part]:
    """Every part in order: training first (the bulk), then scoring, fine-tuning, analyses."""
    runs = s.runs()
    parts = [train_part(s, m, seed) for m, seed in runs]
    for m, seed in runs:
        parts += [eval_final_part(s, m, seed), eval_snapshots_part(s, m, seed)]
    parts += [finetune_part(s, m, seed) for m, seed in runs]
    parts += [analysis_part(s, m, seed) for m, seed in runs]
    parts.append(report_part(s, timings))
    return parts


class Progress:
    """Part headers with elapsed time and an ETA: each kind of part has a rate (seconds per
    unit), a prior from the preset until a part of that kind has been timed here (1 s per
    unit for a kind the preset has no prior for)."""

    def __init__(self, parts: list[Part], rates: dict[str, float], log: Callable[[str], None]):
        self.parts, self.log = parts, log
        self.rates = Rates(rates)
        self.start = time.perf_counter()

    def left(self, index: int) -> float:
        return self.rates.left(((p.kind, p.units) for p in self.parts[index:]), unknown=1.0)

    def begin(self, index: int, part: Part) -> None:
        elapsed = time.perf_counter() - self.start
        self.log(f"[study {index + 1}/{len(self.parts)}] {part.label} -- {_clock(elapsed)} elapsed, "
                 f"about {_clock(self.left(index))} left")

    def end(self, part: Part, seconds: float) -> None:
        self.rates.add(part.kind, seconds, part.units)


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run(s: StudySettings, log: Callable[[str], None] = _log) -> Path:
    """Run (or continue) the study; returns the report folder. Ctrl-C keeps finished parts."""
    from rprim.core.files import clean_stale_temps

    with folder_lock(s.out, "study"):
        _check_out(s)
        if not (s.out / STUDY_FILE).is_file() or not _started(s.out):
            write_json(s.out / STUDY_FILE, {"settings": s.record(), "methods": list(s.methods),
                                            "seeds": s.seeds, "regime": s.preset.regime})
        _set_threads(s.threads)
        for folder in [s.out, s.out / "runs", s.out / "results", *(results_dir(s, m, seed) for m, seed in s.runs())]:
            clean_stale_temps(folder)
        timings = _read_timings(s.out)
        parts = plan_parts(s, timings)
        progress = Progress(parts, s.preset.rates, log)
        for i, part in enumerate(parts):
            if part.done():
                log(f"[study {i + 1}/{len(parts)}] {part.label}: done before, skipped")
                continue
            progress.begin(i, part)
            t0 = time.perf_counter()
            part.run()
            took = time.perf_counter() - t0
            progress.end(part, took)
            timings[part.label.split(" (")[0]] = took
            write_json(s.out / TIMINGS_FILE, timings)
        log(f"study done in {_clock(time.perf_counter() - progress.start)}: {s.out / 'report' / 'report.md'}")
    return s.out / "report"


def _read_timings(out: Path) -> dict[str, float]:
    try:
        data = json.loads((out / TIMINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def _set_threads(threads: int | None) -> None:
    """CPU threads for evaluation and fine-tuning (training takes them from its config)."""
    import torch

    from rprim.core import default_threads

    from rprim.core.torch_util import auto_device

    if auto_device() == "cpu":
        torch.set_num_threads(threads or default_threads())
