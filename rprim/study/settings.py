"""A resolved study (:class:`StudySettings`), every check before the folder exists, and the
refusal to continue a started study with other settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rprim.core import RprimError, check_output_folder
from rprim.core.compat import check_same_settings
from rprim.core.layout import RESULTS_DIR, RUNS, STUDY_FILE, STUDY_KIND

from .presets import METHODS, PRESETS, StudyPreset


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
    from rprim.model_zoo.presets import resolve_config

    return resolve_config(s.preset.train_preset, None, s.train_overrides(method, seed))


def _check_out(s: StudySettings) -> None:
    check_output_folder(s.out, STUDY_KIND, flag="--out", legacy=(STUDY_FILE,))
    path = s.out / STUDY_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        saved = old.get("settings") if isinstance(old, dict) else None
        if not _started(s.out):
            return
        problem, fix = (f"{s.out} holds a study with other settings",
                        "rerun with the same settings to continue it, or pass a new --out")
        if not isinstance(saved, dict):
            raise RprimError(f"{problem} (unreadable study.json); {fix}")
        check_same_settings(saved, s.record(), problem=problem, fix=fix)


def _started(out: Path) -> bool:
    """Whether any part of the study in ``out`` wrote something (a study that never started,
    say after a failed check, holds nothing to protect: other settings may replace it)."""
    return any(p.is_file() for sub in (RUNS, RESULTS_DIR) for p in (out / sub).rglob("*"))
