"""What the fine-tuning protocol keeps: per-seed runs, the results file, and resuming from it.

A run of many seeds is long, so every finished seed is written at once to ``out/results.json``
(atomically, ``complete: false`` until the last seed) and an interrupted run is continued, not
redone. This module holds that file's contents (:class:`SeedRun`, :func:`aggregate`,
:class:`FinetuneResults`, :func:`results_of`), the checks made before any fine-tuning that
``--out`` and ``--save`` can take the outputs, the atomic write, and the checks that a run to resume is the same run: the
protocol settings (all but :data:`EXECUTION`), the task generator's version, and the model's
weights (:func:`weights_fingerprint`). An interrupted run is never silently replaced.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import rprim.primitives as P
from rprim.core import RprimError, atomic_folder, check_output_folder, write_json
from rprim.core.compat import check_same_settings
from rprim.core.files import read_marker
from rprim.core.layout import RESULTS_FILE

from .config import FinetuneConfig

RESULTS_KIND = "finetune"
SAVE_KIND = "finetune-model"
# settings that may differ between a run and its resume: which seeds, and batch sizes (these
# change only how the work is split, not what is computed)
EXECUTION = ("seeds", "batch_size", "micro_batch_size")


@dataclass
class SeedRun:
    seed: int
    train_ids: list[str]
    curve: list[dict[str, Any]] = field(default_factory=list)  # step, loss, accuracy per task
    before: dict[str, float] = field(default_factory=dict)      # accuracy before fine-tuning
    window: dict[str, float] = field(default_factory=dict)      # mean accuracy over the window
    train_time_s: float = 0.0
    eval_time_s: float = 0.0


def aggregate(runs: Sequence[SeedRun], tasks: Sequence[str]) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per task and over the tasks' mean."""
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    per_run_mean = [statistics.fmean(r.window[t] for t in tasks) for r in runs]
    return {"overall": stats(per_run_mean),
            "per_task": {t: stats([r.window[t] for r in runs]) for t in tasks}}


def weights_fingerprint(model: Any) -> str:
    """16 hex digits over every parameter's name, shape and 256 evenly spaced values (as
    float32): any training changes it; the device and dtype it is loaded in do not."""
    import torch

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        idx = torch.linspace(0, flat.numel() - 1, min(flat.numel(), 256), dtype=torch.float64).long()
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update(flat[idx.to(flat.device)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class FinetuneResults:
    """What :func:`finetune` returns and ``results.json`` holds, as evaluation's ``Results`` is
    for ``evaluate``: ``runs`` per seed (training ids, loss and accuracy curve, the window's
    mean), ``aggregate`` (mean and std over seeds, per task and overall; None before a seed is
    done) and ``meta`` (the settings, the model, versions, timings)."""

    runs: list[dict[str, Any]]
    aggregate: dict[str, Any] | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    @property
    def model(self) -> dict[str, Any]:
        return self.meta.get("model") or {}

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", True))

    @property
    def seeds_done(self) -> list[int]:
        return [r["seed"] for r in self.runs]

    def accuracy(self, task: str | None = None) -> float:
        """The mean over seeds of ``task``'s window accuracy (None: the tasks' mean)."""
        if self.aggregate is None:
            raise ValueError("no seed has finished yet")
        return (self.aggregate["overall"] if task is None else self.aggregate["per_task"][task])["mean"]

    def to_dict(self) -> dict[str, Any]:
        """The content of results.json."""
        return {**self.meta, "aggregate": self.aggregate, "runs": self.runs}

    def to_frame(self) -> Any:
        """One row per seed and task: seed, task, accuracy (the window's mean), before."""
        import pandas as pd

        return pd.DataFrame([{"seed": r["seed"], "task": t, "accuracy": acc,
                              "before": r.get("before", {}).get(t)}
                             for r in self.runs for t, acc in r["window"].items()])

    def table(self) -> str:
        """Mean ± std over seeds, per task and overall."""
        lines = [f"{'task':<22} {'accuracy (mean ± std over ' + str(len(self.runs)) + ' seeds)'}"]
        if self.aggregate is not None:
            for name, s in self.aggregate["per_task"].items():
                lines.append(f"{name:<22} {s['mean']:.3f} ± {s['std']:.3f}")
            o = self.aggregate["overall"]
            lines.append(f"{'overall':<22} {o['mean']:.3f} ± {o['std']:.3f}")
        if not self.complete:
            lines.append(f"(interrupted: {len(self.runs)} of {len(self.config['seeds'])} seeds; "
                         "continue with --resume)")
        return "\n".join(lines)

    def save(self, out: str | Path) -> Path:
        """``out/results.json``, written atomically (other files in ``out`` are kept)."""
        with atomic_folder(check_results_folder(out), kind=RESULTS_KIND) as tmp:
            write_json(tmp / RESULTS_FILE, self.to_dict())
        return Path(out) / RESULTS_FILE

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneResults":
        meta = {k: v for k, v in data.items() if k not in ("aggregate", "runs")}
        return cls(list(data.get("runs") or []), data.get("aggregate"), meta)

    @classmethod
    def load(cls, out: str | Path) -> "FinetuneResults":
        """A saved run (``out/results.json``), checked as a resume checks it."""
        data = _read_results(out)
        if data is None:
            raise RprimError(f"no fine-tuning results in {out} (no {RESULTS_FILE})")
        return cls.from_dict(data)


def results_of(cfg: FinetuneConfig, model: dict[str, Any], runs: dict[int, SeedRun],
               wall: float, micro: int | None) -> FinetuneResults:
    """The results over the finished seeds (in the order of ``cfg.seeds``)."""
    from rprim.core.paths import package_version

    done = [runs[s] for s in cfg.seeds if s in runs]
    meta = {"config": asdict(cfg), "model": model, "rprim_version": package_version(),
            "generator_version": P.GENERATOR_VERSION,
            "complete": len(done) == len(cfg.seeds), "seeds_done": [r.seed for r in done],
            "micro_batch_size": micro, "wall_time_s": round(wall, 3),
            "train_time_s": round(sum(r.train_time_s for r in done), 3),
            "eval_time_s": round(sum(r.eval_time_s for r in done), 3)}
    return FinetuneResults([asdict(r) for r in done], aggregate(done, cfg.tasks) if done else None, meta)


def check_results_folder(out: str | Path) -> Path:
    """The checks made before any fine-tuning: ``out`` can hold the results."""
    return check_output_folder(out, RESULTS_KIND, legacy=(RESULTS_FILE,))


def check_save_folder(save: str | Path, out: str | Path | None = None) -> Path:
    """The checks made before any fine-tuning: ``save`` can hold one model folder per seed."""
    path = Path(save).expanduser()
    if out is not None and path.absolute() == Path(out).expanduser().absolute():
        raise RprimError(f"--save and --out are the same folder ({save}); give the models their own "
                         f"folder, e.g. --save {path.name}-models")
    ours = tuple(p.name for p in path.glob("seed-*")
                 if p.is_dir() and (read_marker(p) or {}).get("kind") == SAVE_KIND) if path.is_dir() else ()
    return check_output_folder(path, "fine-tuned models", flag="--save", legacy=ours)


def _read_results(out: str | Path) -> dict[str, Any] | None:
    path = Path(out).expanduser() / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(old, dict) or not isinstance(old.get("config"), dict) \
                or not isinstance(old.get("runs"), list):
            raise ValueError
    except (OSError, ValueError):
        raise RprimError(f"{path} is not an rprim finetune results file; pass a new --out") from None
    seeds = old["config"].get("seeds")
    if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise RprimError(f"{path} is damaged: config.seeds is {seeds!r}, not a list of seeds; "
                         "delete it, or pass a new --out")
    for i, r in enumerate(old["runs"]):
        if not isinstance(r, dict) or not isinstance(r.get("seed"), int):
            raise RprimError(f"{path} is damaged: runs[{i}] has no seed; delete it, or pass a new --out")
    return old


def _check_same_settings(old: dict[str, Any], cfg: FinetuneConfig, out: str | Path) -> None:
    now = asdict(cfg)
    saved = {k: v for k, v in old["config"].items() if k in now}  # results-only fields aside
    check_same_settings(saved, now, free=EXECUTION, name=lambda k: "--" + k.replace("_", "-"),
                        problem=f"cannot resume the run in {out} with other settings",
                        fix="pass the same settings, or a new --out to start over")
    if old.get("generator_version") != P.GENERATOR_VERSION:
        raise RprimError(f"cannot resume the run in {out}: its data came from task generator version "
                         f"{old.get('generator_version')}, this rprim has {P.GENERATOR_VERSION}; "
                         "pass a new --out to start over")


def previous_run(out: str | Path | None, cfg: FinetuneConfig, resume: bool) -> dict[str, Any] | None:
    """The saved run in ``out`` to continue (``resume``), checked against ``cfg``; None to start.

    An interrupted run is never silently replaced: without ``resume`` it is an error.
    """
    if out is None:
        if resume:
            raise RprimError("--resume needs --out DIR, the folder of the run to continue")
        return None
    old = _read_results(out)
    if not resume:
        if old is not None and not old.get("complete", True):
            raise RprimError(f"{out} holds an interrupted run ({len(old['runs'])} of "
                             f"{len(old['config']['seeds'])} seeds done); pass "
                             "--resume to continue it, or a new --out to start over")
        if old is not None:
            raise RprimError(f"{out} holds a complete fine-tuning run ({len(old['runs'])} seed(s)); "
                             "pass --resume to keep it (or add seeds), or a new --out to run again")
        return None
    if old is None:
        raise RprimError(f"nothing to resume in {out} (no results.json); drop --resume to start a run")
    _check_same_settings(old, cfg, out)
    extra = sorted(set(r["seed"] for r in old["runs"]) - set(cfg.seeds))
    if extra:
        raise RprimError(f"the run in {out} has finished seeds {extra} that this run leaves out; "
                         f"pass --seeds {max(extra) + 1} or more")
    return old


def check_same_model(old: dict[str, Any], model: dict[str, Any], out: str | Path) -> None:
    """RprimError unless the run to resume was fine-tuned from these weights."""
    was = (old.get("model") or {}).get("weights")
    if was != model["weights"]:
        raise RprimError(f"cannot resume the run in {out}: its seeds were fine-tuned from another model "
                         f"(weights {was}, this one {model['weights']}); pass the same --model, or a "
                         "new --out to start over")


def finished_runs(old: dict[str, Any] | None) -> dict[int, SeedRun]:
    """The seeds a saved run (``previous_run``) has finished, by seed; none for a new run."""
    names = set(SeedRun.__dataclass_fields__)
    return {r["seed"]: SeedRun(**{k: v for k, v in r.items() if k in names})
            for r in (old or {}).get("runs", [])}
