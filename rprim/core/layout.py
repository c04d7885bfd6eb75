"""Where rprim's results live on disk: one place for the names the writers and readers share.

A results folder (``rprim eval --out``; in a study, ``results/<run>/``)::

    results.json, samples/<task>.jsonl      scores and per-example rows
    training_summary.json                   the trainer's summary (beside a trained model)
    checkpoints/<snapshot>/                 a results folder per training snapshot, + snapshot.json
    finetune/results.json                   the fine-tuning protocol
    analysis/similarity/similarity.json, analysis/linearity/linearity.json

A study folder (``rprim study --out``)::

    study.json, timings.json, runs/<run>/, results/<run>/, report/
"""

from __future__ import annotations

from pathlib import Path

RESULTS_FILE = "results.json"
SAMPLES = "samples"
SUMMARY_FILE = "training_summary.json"
SNAPSHOT_FILE = "snapshot.json"
CHECKPOINTS = "checkpoints"   # in a results folder: evaluations of snapshots
SNAPSHOTS = "snapshots"       # in a run folder: the snapshots themselves
FINETUNE = "finetune"

STUDY_KIND = "study"
STUDY_FILE = "study.json"
TIMINGS_FILE = "timings.json"   # seconds per finished part, kept across reruns
RUNS = "runs"
RESULTS_DIR = "results"
REPORT = "report"


def finetune_results(results: Path) -> Path:
    """The fine-tuning protocol's results file beside an evaluation."""
    return results / FINETUNE / RESULTS_FILE


def analysis_dir(results: Path, kind: str) -> Path:
    """The folder of one layer analysis (``similarity``, ``linearity``) beside an evaluation."""
    return results / "analysis" / kind


def analysis_file(results: Path, kind: str) -> Path:
    return analysis_dir(results, kind) / f"{kind}.json"
