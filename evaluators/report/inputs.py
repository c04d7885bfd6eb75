"""What ``rprim report`` reads: one model's evaluation results and what lies beside them.

Input: one evaluation results folder per model (``rprim eval --out DIR``: ``results.json`` and
``samples/``). Beside its results a folder may hold, and the report then uses:

- ``training_summary.json`` (the trainer's; else the one in the evaluated model's folder, as
  named in results.json): the model's final validation loss;
- ``finetune/results.json`` (``rprim finetune --out DIR/finetune``): fine-tuned accuracy;
- ``checkpoints/<name>/results.json``: evaluations of training snapshots, each with its
  ``snapshot.json`` (step, tokens, val_loss; else the one in the evaluated snapshot folder):
  the points of the accuracy-against-validation-loss figure;
- ``analysis/similarity/similarity.json`` and ``analysis/linearity/linearity.json``
  (``rprim analyze ... --out``): drawn as figures.

``rprim study`` writes exactly this layout; :func:`load_model` reads it.

Task groups pool the correct counts of their tasks (copying; variable assignment by depth, and
by format; PSM; PSM-calc; arithmetic) with a Wilson 95% interval on the pooled counts.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rprim.core import RprimError
from rprim.core.layout import (CHECKPOINTS, RESULTS_FILE, SAMPLES, SNAPSHOT_FILE, SUMMARY_FILE, analysis_file,
                               finetune_results)
from rprim.evaluators.data import sample_file

from . import stats

RESULTS, SUMMARY, SNAPSHOT = RESULTS_FILE, SUMMARY_FILE, SNAPSHOT_FILE
GROUP_ORDER = ["copying", "varassign d0", "varassign d1", "varassign d2", "varassign d3", "varassign basic",
               "varassign math", "varassign code", "psm", "psm-calc", "arithmetic"]


@functools.lru_cache(maxsize=None)
def task_groups(task: str) -> tuple[str, ...]:
    """The groups a task counts in: ``varassign-code-d2`` -> (``varassign d2``,
    ``varassign code``); unknown tasks form a group of their own."""
    import rprim.primitives as P

    try:
        t = P.get(task)
    except Exception:  # noqa: BLE001 - a plugin task not installed here: its own group
        return (task,)
    if t.family == "varassign":
        return (f"varassign d{t.params['depth']}", f"varassign {t.params['format']}")
    if t.family == "psm":
        return ("psm-calc" if t.params.get("calc") else "psm",)
    return (t.family,)


def group_key(group: str) -> tuple[int, str]:
    """Sort key: the paper's order of task groups, then others by name."""
    return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER), group)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RprimError(f"cannot read {what} {path} ({type(e).__name__}); "
                         "pass folders written by rprim eval / rprim study") from None
    if not isinstance(data, dict):
        raise RprimError(f"{what} {path} is not a JSON object; pass folders written by rprim eval")
    return data


def _optional_json(*paths: Path | None, check: Any = None) -> dict[str, Any] | None:
    """The first of ``paths`` that exists, read and (``check(data) -> problem or None``)
    validated; a file that is there but damaged is one line naming it and the field."""
    for p in paths:
        if p is not None and p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise RprimError(f"{p} is damaged ({type(e).__name__}); delete it or write it again "
                                 "with the command that made it") from None
            problem = "not a JSON object" if not isinstance(data, dict) else check(data) if check else None
            if problem:
                raise RprimError(f"{p} is damaged: {problem}; delete it or write it again with the "
                                 "command that made it")
            return data
    return None


def _number(x: Any, lo: float = -math.inf, hi: float = math.inf) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and lo <= x <= hi


def _optional_number(d: dict[str, Any], key: str) -> str | None:
    return None if d.get(key) is None or _number(d[key]) else f"{key} is {d[key]!r}, not a number"


def _check_summary(d: dict[str, Any]) -> str | None:
    return _optional_number(d, "final_val_loss") or (
        None if d.get("tokens") is None or (isinstance(d["tokens"], int) and d["tokens"] >= 0)
        else f"tokens is {d['tokens']!r}")


def _check_snapshot(d: dict[str, Any]) -> str | None:
    for key in ("step", "tokens"):
        if d.get(key) is not None and not (isinstance(d[key], int) and d[key] >= 0):
            return f"{key} is {d[key]!r}, not a count"
    return _optional_number(d, "val_loss")


def _check_finetune(d: dict[str, Any]) -> str | None:
    agg = d.get("aggregate")
    if not isinstance(agg, dict) or not isinstance(agg.get("per_task"), dict):
        return "aggregate.per_task is missing"
    for task, v in [*agg["per_task"].items(), *([("overall", agg["overall"])] if "overall" in agg else [])]:
        if not isinstance(v, dict) or not _number(v.get("mean"), 0, 1) or not _number(v.get("std"), 0):
            return f"aggregate {task}: mean in [0, 1] and std >= 0 expected, got {v!r}"[:200]
    if not isinstance(d.get("runs"), list) or not isinstance((d.get("config") or {}).get("seeds"), list):
        return "runs or config.seeds is missing"
    return None


def _check_similarity(d: dict[str, Any]) -> str | None:
    snaps = d.get("snapshots")
    if not isinstance(snaps, list) or not snaps:
        return "snapshots is missing"
    for sn in snaps:
        m = sn.get("similarity") if isinstance(sn, dict) else None
        if not isinstance(m, list) or not all(isinstance(r, list) and len(r) == len(m) and
                                              all(_number(x, -1.0001, 1.0001) for x in r) for r in m):
            return "a similarity matrix is not square with values in [-1, 1]"
    return None


def _check_linearity(d: dict[str, Any]) -> str | None:
    layers = d.get("layers")
    if not isinstance(layers, list) or not all(isinstance(r, dict) and _number(r.get("r2"), hi=1.0001)
                                               and _number(r.get("cosine"), -1.0001, 1.0001) for r in layers):
        return "layers must list r2 <= 1 and cosine in [-1, 1] per layer"
    return None


def _model_folder(meta: dict[str, Any], base: Path) -> Path | None:
    """The evaluated model's folder from results.json (relative paths: to the working
    directory, then to the results folder)."""
    model = meta.get("model")
    if not isinstance(model, str) or not model:
        return None
    p = Path(model).expanduser()
    for cand in ((p,) if p.is_absolute() else (Path.cwd() / p, base / p)):
        if cand.is_dir():
            return cand
    return None


def _tasks(data: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise RprimError(f"{path} holds no task scores; pass folders written by rprim eval --out")
    for name, t in tasks.items():
        problem = _check_task(t)
        if problem:
            raise RprimError(f"{path}: task {name}: {problem}; the file is damaged, rerun rprim eval --out")
    return tasks


def _check_task(t: Any) -> str | None:
    if not isinstance(t, dict):
        return "not a JSON object"
    if not isinstance(t.get("n"), int) or isinstance(t.get("n"), bool) or t["n"] <= 0:
        return f"n is {t.get('n')!r}, not a positive count"
    if not _number(t.get("accuracy"), 0, 1):
        return f"accuracy is {t.get('accuracy')!r}, not a number in [0, 1]"
    ci = t.get("ci95")
    if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(_number(x, 0, 1) for x in ci)):
        return f"ci95 is {ci!r}, not two numbers in [0, 1]"
    if t.get("chance") is not None and not _number(t["chance"], 0, 1):
        return f"chance is {t['chance']!r}, not a number in [0, 1]"
    return None


def correct_count(t: dict[str, Any]) -> int:
    """The correct count behind an accuracy (accuracy = k / n exactly, so rounding recovers k)."""
    return int(round(float(t["accuracy"]) * int(t["n"])))


@dataclass
class Checkpoint:
    """Evaluation of one training snapshot: where it was taken and its scores."""

    name: str
    step: int | None
    tokens: int | None
    val_loss: float | None
    tasks: dict[str, dict[str, Any]]
    path: Path | None = None   # its results folder (per-example samples)


def read_samples(folder: Path, task: str) -> list[dict[str, Any]]:
    """The rows of ``folder/samples/<task>.jsonl`` (none when absent; damaged lines skipped)."""
    path = folder / SAMPLES / sample_file(task)
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


@dataclass
class ModelResults:
    """Everything the report knows about one model."""

    name: str
    path: Path
    meta: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    summary: dict[str, Any] | None = None
    finetune: dict[str, Any] | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    similarity: dict[str, Any] | None = None
    linearity: dict[str, Any] | None = None

    @property
    def val_loss(self) -> float | None:
        v = (self.summary or {}).get("final_val_loss")
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    def points(self) -> list[Checkpoint]:
        """The evaluated snapshots, then the final model as a last point named ``final``."""
        final = Checkpoint("final", None, (self.summary or {}).get("tokens"), self.val_loss, self.tasks, self.path)
        return [*self.checkpoints, final]

    def correct(self, task: str) -> dict[str, bool]:
        """Example id -> correct, from ``samples/<task>.jsonl`` (empty when absent)."""
        out: dict[str, bool] = {}
        for row in read_samples(self.path, task):
            try:
                out[str(row["id"])] = bool(row["correct"])
            except (KeyError, TypeError):
                continue
        return out

    def binding(self) -> list[dict[str, Any]]:
        """Where the variable-assignment answers come from (:mod:`.probe`), per depth group,
        for each checkpoint and the final model: rows of counts per class."""
        from . import probe

        out = []
        for c in self.points():
            by_group: dict[str, list[dict[str, Any]]] = {}
            for task in c.tasks:
                groups = [g for g in task_groups(task) if g.startswith("varassign d")]
                if groups and c.path is not None:
                    by_group.setdefault(groups[0], []).extend(read_samples(c.path, task))
            for g in sorted(by_group, key=group_key):
                counts = probe.profile(by_group[g])
                if sum(counts.values()):
                    out.append({"model": self.name, "checkpoint": c.name, "step": c.step, "tokens": c.tokens,
                                "group": g, "n": sum(counts.values()), **counts})
        return out

    def group_counts(self, tasks: dict[str, dict[str, Any]] | None = None) -> dict[str, stats.Pooled]:
        """Pooled (k, n) per task group."""
        acc: dict[str, list[tuple[int, int]]] = {}
        for name, t in (self.tasks if tasks is None else tasks).items():
            for g in task_groups(name):
                acc.setdefault(g, []).append((correct_count(t), int(t["n"])))
        return {g: stats.pooled(v) for g, v in acc.items()}

    def finetune_scores(self) -> dict[str, tuple[float, float, int]]:
        """``finetune <task>`` -> (mean, std over seeds, seeds), plus ``finetune mean``."""
        if not self.finetune:
            return {}
        agg = self.finetune.get("aggregate") or {}
        seeds = len(self.finetune.get("runs") or []) or 1
        out = {f"finetune {t}": (s["mean"], s["std"], seeds)
               for t, s in (agg.get("per_task") or {}).items()}
        if "overall" in agg:
            out["finetune mean"] = (agg["overall"]["mean"], agg["overall"]["std"], seeds)
        return out


def load_model(path: str | Path, name: str | None = None) -> ModelResults:
    """Read one results folder and what lies beside it (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise RprimError(f"results folder {path} does not exist; pass folders written by "
                         "rprim eval --out or rprim study")
    if not (path / RESULTS).is_file():
        raise RprimError(f"{path} has no {RESULTS}; pass a folder written by rprim eval --out")
    data = _read_json(path / RESULTS, "results file")
    tasks = _tasks(data, path / RESULTS)
    meta = {k: v for k, v in data.items() if k != "tasks"}
    model_dir = _model_folder(meta, path)
    m = ModelResults(name or path.name, path, meta, tasks)
    m.summary = _optional_json(path / SUMMARY, model_dir / SUMMARY if model_dir else None, check=_check_summary)
    m.finetune = _optional_json(finetune_results(path), check=_check_finetune)
    m.similarity = _optional_json(analysis_file(path, "similarity"), check=_check_similarity)
    m.linearity = _optional_json(analysis_file(path, "linearity"), check=_check_linearity)
    m.checkpoints = _checkpoints(path / CHECKPOINTS)
    return m


def _checkpoints(folder: Path) -> list[Checkpoint]:
    out = []
    if not folder.is_dir():
        return out
    for sub in sorted(p for p in folder.iterdir() if (p / RESULTS).is_file()):
        data = _optional_json(sub / RESULTS)
        if not data or not isinstance(data.get("tasks"), dict):
            continue
        snap = _optional_json(sub / SNAPSHOT, (_model_folder(data, sub) or sub) / SNAPSHOT, check=_check_snapshot) or {}
        loss = snap.get("val_loss")
        out.append(Checkpoint(sub.name, snap.get("step"), snap.get("tokens"),
                              float(loss) if isinstance(loss, (int, float)) else None,
                              _tasks(data, sub / RESULTS), sub))
    return sorted(out, key=lambda c: (c.step is None, c.step or 0, c.name))
