"""Running a study: its parts in order, progress with an ETA, timings kept across reruns."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from rprim.core import folder_lock, write_json
from rprim.core.layout import REPORT, RESULTS_DIR, RUNS, STUDY_FILE, TIMINGS_FILE
from rprim.core.progress import Rates

from .parts import (Part, _log, analysis_part, eval_final_part, eval_snapshots_part, finetune_part,
                    report_part, results_dir, train_part)
from .settings import StudySettings, _check_out, _started


def study_parts(s: StudySettings, timings: dict[str, float]) -> list[Part]:
    """Every part in order: training first (the bulk), then scoring, fine-tuning, analyses."""
    runs = s.runs()
    parts = [train_part(s, m, seed) for m, seed in runs]
    for m, seed in runs:
        parts += [eval_final_part(s, m, seed), eval_snapshots_part(s, m, seed)]
    parts += [finetune_part(s, m, seed) for m, seed in runs]
    parts += [analysis_part(s, m, seed) for m, seed in runs]
    parts.append(report_part(s, timings))
    return parts


class PartClock:
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
        for folder in [s.out, s.out / RUNS, s.out / RESULTS_DIR, *(results_dir(s, m, seed) for m, seed in s.runs())]:
            clean_stale_temps(folder)
        timings = _read_timings(s.out)
        parts = study_parts(s, timings)
        progress = PartClock(parts, s.preset.rates, log)
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
    return s.out / REPORT


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
