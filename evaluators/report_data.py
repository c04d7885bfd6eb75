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

from . import stats

RESULTS = "results.json"
SUMMARY = "training_summary.json"
SNAPSHOT = "snapshot.json"
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


def _optional_json(*paths: Path | None) -> dict[str, Any] | None:
    for p in paths:
        if p is not None and p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                return data
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
        if not isinstance(t, dict) or not isinstance(t.get("n"), int) or \
                not isinstance(t.get("accuracy"), (int, float)):
            raise RprimError(f"{path}: task {name} has no accuracy and n; the file is damaged, "
                             "rerun rprim eval --out")
    return tasks


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
    path = folder / "samples" / f"{task.replace('/', '_')}.jsonl"
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
        points = [*self.checkpoints, Checkpoint("final", None, (self.summary or {}).get("tokens"),
                                                self.val_loss, self.tasks, self.path)]
        for c in points:
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
    m.summary = _optional_json(path / SUMMARY, model_dir / SUMMARY if model_dir else None)
    m.finetune = _optional_json(path / "finetune" / RESULTS)
    m.similarity = _optional_json(path / "analysis" / "similarity" / "similarity.json")
    m.linearity = _optional_json(path / "analysis" / "linearity" / "linearity.json")
    m.checkpoints = _checkpoints(path / "checkpoints")
    return m


def _checkpoints(folder: Path) -> list[Checkpoint]:
    out = []
    if not folder.is_dir():
        return out
    for sub in sorted(p for p in folder.iterdir() if (p / RESULTS).is_file()):
        data = _optional_json(sub / RESULTS)
        if not data or not isinstance(data.get("tasks"), dict):
            continue
        snap = _optional_json(sub / SNAPSHOT, (_model_folder(data, sub) or sub) / SNAPSHOT) or {}
        loss = snap.get("val_loss")
        out.append(Checkpoint(sub.name, snap.get("step"), snap.get("tokens"),
                              float(loss) if isinstance(loss, (int, float)) else None,
                              _tasks(data, sub / RESULTS), sub))
    return sorted(out, key=lambda c: (c.step is None, c.step or 0, c.name))
