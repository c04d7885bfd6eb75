"""The report's tables: models x task groups, gains over a baseline, paired tests, computed once.

What each number is:

- accuracy of a task group: pooled correct / pooled examples over its tasks, Wilson 95%
  interval on the pooled counts (:mod:`.stats`); fine-tuning: mean ± standard deviation over
  the protocol's seeds (each seed's score is itself a mean over evaluation steps);
- gain over the baseline: the difference of accuracies, with Newcombe's 95% interval;
- paired test: McNemar on the examples both models were scored on, matched by id (exact
  binomial when the discordant pairs are fewer than 25, else chi-square with continuity);
- equal validation loss: each model's accuracy interpolated linearly between its checkpoints
  at the baseline's final validation loss, since stacking may reach a loss at other times.

Inputs and their layout: :mod:`.inputs`. Rendering: :mod:`.render`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from rprim.core import RprimError, atomic_folder, check_output_folder

from rprim.evaluators.scoring import wilson

from . import stats
from .inputs import (ModelResults, group_key, correct_count, load_model,
                          task_groups)

REPORT_KIND = "report"


SEED_NAME = re.compile(r"^(?P<family>.+)-seed(?P<seed>\d+)$")
THRESHOLDS = (0.5, 0.9)   # accuracies whose first crossing a report dates in training tokens


class Report:
    """The comparison of ``models`` against the one named ``baseline``."""

    def __init__(self, models: list[ModelResults], baseline: str):
        self.models = models
        self.baseline = baseline
        self._by_name = {m.name: m for m in models}
        self._paired: dict[tuple[str, str], list[dict[str, Any]]] = {}
        if baseline not in self._by_name:
            raise RprimError(f"baseline {baseline!r} is not one of the models "
                             f"({', '.join(self._by_name)})")

    # ------------------------------------------------------------------ lookups
    def model(self, name: str) -> ModelResults:
        return self._by_name[name]

    @property
    def base(self) -> ModelResults:
        return self._by_name[self.baseline]

    @property
    def others(self) -> list[ModelResults]:
        return [m for m in self.models if m.name != self.baseline]

    def groups(self) -> list[str]:
        """Pretraining task groups present in any model, in the paper's order."""
        found = {g for m in self.models for t in m.tasks for g in task_groups(t)}
        return sorted(found, key=group_key)

    def finetune_groups(self) -> list[str]:
        found: list[str] = []
        for m in self.models:
            found += [g for g in m.finetune_scores() if g not in found]
        return found

    # ------------------------------------------------------------------ the table
    def rows(self) -> list[dict[str, Any]]:
        """One row per (model, group): the table behind ``frame()``, the markdown and the plot."""
        base_pre = self.base.group_counts()
        base_ft = self.base.finetune_scores()
        out = []
        for m in self.models:
            counts = m.group_counts()
            for g in self.groups():
                if g in counts:
                    out.append(self._pre_row(m, g, counts[g], base_pre.get(g)))
            for g, (mean, std, seeds) in m.finetune_scores().items():
                b = base_ft.get(g)
                out.append({"model": m.name, "group": g, "kind": "finetune", "accuracy": mean,
                            "ci95_lo": None, "ci95_hi": None, "k": None, "n": None, "std": std,
                            "seeds": seeds, "gain": (mean - b[0]) if b else None,
                            "gain_lo": None, "gain_hi": None, "val_loss": m.val_loss})
        return out

    def _pre_row(self, m: ModelResults, g: str, p: stats.Pooled, b: stats.Pooled | None) -> dict[str, Any]:
        lo, hi = p.ci95
        gain = glo = ghi = None
        if b is not None and b.n and p.n:
            gain = p.accuracy - b.accuracy
            glo, ghi = stats.difference_interval(p.k, p.n, b.k, b.n)
        return {"model": m.name, "group": g, "kind": "pretrain", "accuracy": p.accuracy,
                "ci95_lo": lo, "ci95_hi": hi, "k": p.k, "n": p.n, "std": None, "seeds": None,
                "gain": gain, "gain_lo": glo, "gain_hi": ghi, "val_loss": m.val_loss}

    def frame(self) -> Any:
        """The table as a pandas DataFrame (one row per model and task group)."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def task_rows(self) -> list[dict[str, Any]]:
        """Per-task accuracy of every model (the evaluator's own numbers)."""
        out = []
        for m in self.models:
            for name, t in m.tasks.items():
                lo, hi = t.get("ci95") or wilson(correct_count(t), t["n"])
                out.append({"model": m.name, "task": name, "accuracy": t["accuracy"],
                            "ci95_lo": lo, "ci95_hi": hi, "n": t["n"], "chance": t.get("chance")})
        return out

    def gains(self) -> tuple[list[str], dict[str, list[float | None]], dict[str, list[tuple]]]:
        """(groups, gain per model, 95% interval per model) for the gain plot: the same numbers
        as the ``gain`` columns of :meth:`rows` (pretraining and fine-tuning groups)."""
        groups = self.groups() + self.finetune_groups()
        by = {(r["model"], r["group"]): r for r in self.rows()}
        gains: dict[str, list[float | None]] = {}
        errors: dict[str, list[tuple]] = {}
        for m in self.others:
            rows = [by.get((m.name, g)) for g in groups]
            gains[m.name] = [r["gain"] if r else None for r in rows]
            errors[m.name] = [(r["gain_lo"], r["gain_hi"]) if r and r["gain_lo"] is not None
                              else (None, None) for r in rows]
        return groups, gains, errors

    # ------------------------------------------------------------------ seeds
    def families(self) -> dict[str, dict[int, ModelResults]]:
        """Method -> seed -> model, from the names ``rprim study --seeds`` gives its runs
        (``midas`` for the first seed, ``midas-seed1`` ...)."""
        out: dict[str, dict[int, ModelResults]] = {}
        for m in self.models:
            family, seed = split_seed(m.name)
            out.setdefault(family, {})[seed] = m
        return out

    def paired_base(self, name: str) -> str | None:
        """The baseline run a model is paired with: the baseline of its own seed when there is
        one, else the baseline; None for a baseline run itself."""
        family, seed = split_seed(name)
        base_family = split_seed(self.baseline)[0]
        if family == base_family:
            return None
        same = self.families().get(base_family, {}).get(seed)
        return same.name if same is not None else self.baseline

    def seed_rows(self) -> list[dict[str, Any]]:
        """Per method with several seeds and task group: mean, spread, min and max of the
        seeds' accuracies (empty when no method has two seeds)."""
        fams = self.families()
        if not any(len(v) > 1 for v in fams.values()):
            return []
        out = []
        for family, runs in fams.items():
            counts = {seed: m.group_counts() for seed, m in sorted(runs.items())}
            for g in self.groups():
                accs = [c[g].accuracy for c in counts.values() if g in c and c[g].n]
                if not accs:
                    continue
                mean = sum(accs) / len(accs)
                std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else None
                out.append({"method": family, "group": g, "seeds": len(accs), "mean": mean, "std": std,
                            "min": min(accs), "max": max(accs), "accuracies": accs})
        return out

    def seed_tests(self) -> list[dict[str, Any]]:
        """Per method and group: a paired t-test across seeds of (method - baseline) accuracy,
        each difference taken between the runs of one seed (same data order)."""
        fams = self.families()
        base_family = split_seed(self.baseline)[0]
        base = fams.get(base_family, {})
        out = []
        for family, runs in fams.items():
            seeds = sorted(runs.keys() & base.keys())
            if family == base_family or len(seeds) < 2:
                continue
            for g in self.groups():
                diffs = []
                for seed in seeds:
                    a, b = runs[seed].group_counts().get(g), base[seed].group_counts().get(g)
                    if a is not None and b is not None and a.n and b.n:
                        diffs.append(a.accuracy - b.accuracy)
                if len(diffs) >= 2:
                    out.append({"method": family, "baseline": base_family, "group": g, **stats.paired_t(diffs)})
        return out

    def paired_rows(self) -> list[dict[str, Any]]:
        """McNemar of every model against its :meth:`paired_base`."""
        return [r for m in self.models if (b := self.paired_base(m.name)) is not None
                for r in self.paired(m.name, b)]

    # ------------------------------------------------------------------ paired tests
    def paired(self, a: str, b: str) -> list[dict[str, Any]]:
        """McNemar per task group (and over all tasks) between models ``a`` and ``b``, on the
        examples both were scored on (matched by id)."""
        if (a, b) not in self._paired:
            self._paired[(a, b)] = self._paired_tests(a, b)
        return self._paired[(a, b)]

    def _paired_tests(self, a: str, b: str) -> list[dict[str, Any]]:
        ma, mb = self.model(a), self.model(b)
        per_group: dict[str, list[int]] = {}
        for task in sorted(ma.tasks.keys() & mb.tasks.keys()):
            both, only_a, only_b, neither, unmatched = stats.paired_counts(ma.correct(task), mb.correct(task))
            for g in (*task_groups(task), "all tasks"):
                acc = per_group.setdefault(g, [0, 0, 0, 0, 0])
                for i, v in enumerate((both, only_a, only_b, neither, unmatched)):
                    acc[i] += v
        out = []
        for g in sorted(per_group, key=lambda x: (x == "all tasks", group_key(x))):
            both, only_a, only_b, neither, unmatched = per_group[g]
            test = stats.mcnemar(only_a, only_b, both, neither)
            out.append({"a": a, "b": b, "group": g, **test.to_dict(), "unmatched": unmatched})
        return out

    # ------------------------------------------------------------------ checkpoints, equal loss
    def curve(self, m: ModelResults, group: str) -> list[tuple[float, float]]:
        """(validation loss, accuracy on ``group``) at each checkpoint and at the end."""
        pts = []
        for c in m.points():
            p = m.group_counts(c.tasks).get(group)
            if c.val_loss is not None and p is not None and p.n:
                pts.append((c.val_loss, p.accuracy))
        return pts

    def checkpoint_rows(self) -> list[dict[str, Any]]:
        out = []
        for m in self.models:
            for c in m.points():
                for g, p in sorted(m.group_counts(c.tasks).items(), key=lambda x: group_key(x[0])):
                    out.append({"model": m.name, "checkpoint": c.name, "step": c.step,
                                "tokens": c.tokens, "val_loss": c.val_loss, "group": g,
                                "accuracy": p.accuracy, "n": p.n})
        return out

    def binding_rows(self) -> list[dict[str, Any]]:
        """Where each model's variable-assignment answers come from, per checkpoint and depth
        (:mod:`.probe`: correct, first line, last line, other value, outside)."""
        return [r for m in self.models for r in m.binding()]

    def thresholds(self, levels: tuple[float, ...] = THRESHOLDS) -> list[dict[str, Any]]:
        """Per model and group: the training tokens of the first checkpoint (or the final model)
        whose accuracy reaches each level; None when none does."""
        out = []
        by: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in self.checkpoint_rows():
            by.setdefault((r["model"], r["group"]), []).append(r)
        for (model, group), rows in by.items():
            row: dict[str, Any] = {"model": model, "group": group}
            for level in levels:
                hit = next((r for r in rows if r["accuracy"] >= level), None)
                row[f"tokens_to_{level:g}"] = None if hit is None else hit["tokens"]
            out.append(row)
        return out

    def equal_loss(self) -> list[dict[str, Any]]:
        """Each model's accuracy at the baseline's final validation loss, per group."""
        target = self.base.val_loss
        out = []
        if target is None:
            return out
        for m in self.others:
            for g in self.groups():
                base_pts, pts = self.curve(self.base, g), self.curve(m, g)
                acc = stats.interpolate([p[0] for p in pts], [p[1] for p in pts], target)
                base_acc = stats.interpolate([p[0] for p in base_pts], [p[1] for p in base_pts], target)
                span = (min(p[0] for p in pts), max(p[0] for p in pts)) if pts else None
                out.append({"model": m.name, "group": g, "val_loss": target, "accuracy": acc,
                            "baseline_accuracy": base_acc,
                            "difference": None if acc is None or base_acc is None else acc - base_acc,
                            "loss_span": span})
        return out

    # ------------------------------------------------------------------ the report as data
    def chance(self, group: str) -> float | None:
        """The chance level of a group when all its tasks share one (else None)."""
        values = {t.get("chance") for m in self.models for name, t in m.tasks.items()
                  if group in task_groups(name)}
        return values.pop() if len(values) == 1 else None

    def data(self, notes: Iterable[str] = ()) -> dict[str, Any]:
        """Every table and figure series of the report, computed once, as plain data: what
        ``render`` draws and writes, and what ``report.json`` holds."""
        groups = self.groups()
        g_all, gains, errors = self.gains()
        ft = next((m.finetune for m in self.models if m.finetune), None)
        return {
            "baseline": self.baseline, "models": [_model_info(m) for m in self.models],
            "others": [m.name for m in self.others], "groups": groups,
            "finetune_groups": self.finetune_groups(), "chance": {g: self.chance(g) for g in groups},
            "rows": self.rows(), "tasks": self.task_rows(),
            "gains": {"groups": g_all, "gains": gains, "errors": errors},
            "paired": self.paired_rows(), "seeds": self.seed_rows(), "seed_tests": self.seed_tests(),
            "curves": {g: {m.name: self.curve(m, g) for m in self.models} for g in groups},
            "equal_loss": self.equal_loss(), "checkpoints": self.checkpoint_rows(),
            "thresholds": self.thresholds(), "binding": self.binding_rows(),
            "finetune_config": (ft or {}).get("config") if ft else None,
            "similarity": {m.name: m.similarity for m in self.models if m.similarity},
            "linearity": {m.name: m.linearity for m in self.models if m.linearity},
            "warnings": self.warnings(), "notes": list(notes),
        }

    def warnings(self) -> list[str]:
        """What makes the comparison unfair, said in the report and on the terminal."""
        out = []
        shots = sorted({str(m.meta.get("shots")) for m in self.models})
        if len(shots) > 1:
            out.append(f"The models were scored with different numbers of shots ({', '.join(shots)}): "
                       "their accuracies and gains are not comparable; score them alike.")
        seeds = sorted({str(m.meta.get("seed", 0)) for m in self.models})
        if len(seeds) > 1:
            out.append(f"The models were scored on different example seeds ({', '.join(seeds)}): paired "
                       "tests match few or no examples.")
        return out

    # ------------------------------------------------------------------ output
    def write(self, out: str | Path, notes: Iterable[str] = (), title: str = "rprim report",
              data: dict[str, Any] | None = None) -> Path:
        """Write ``report.md``, the PNG figures, ``report.html`` and ``report.json`` into
        ``out`` (atomically; a previous report there is updated, other files are kept).
        ``data``: this report's :meth:`data` when the caller already has it."""
        from . import render

        out = check_report_folder(out)
        data = self.data(notes) if data is None else data
        with atomic_folder(out, kind=REPORT_KIND) as tmp:
            render.write(data, tmp, title)
        return out


def _model_info(m: ModelResults) -> dict[str, Any]:
    """What the report says of a model besides its scores."""
    s = m.summary or {}
    ns = sorted({int(t["n"]) for t in m.tasks.values()})
    return {"name": m.name, "method": s.get("method"), "val_loss": m.val_loss,
            "tokens": s.get("tokens") if isinstance(s.get("tokens"), int) else None,
            "flop_ratio": s.get("flop_ratio"), "mix": s.get("mix", (s.get("config") or {}).get("mix")),
            "shots": m.meta.get("shots"), "n": ns, "checkpoints": len(m.checkpoints),
            "finetune": bool(m.finetune)}


def split_seed(name: str) -> tuple[str, int]:
    """``midas-seed2`` -> (``midas``, 2); a name without the suffix is seed 0 of itself."""
    m = SEED_NAME.match(name)
    return (m["family"], int(m["seed"])) if m else (name, 0)


def check_report_folder(out: str | Path) -> Path:
    """RprimError unless ``out`` can hold a report (checked before reading any results)."""
    return check_output_folder(out, REPORT_KIND, legacy=("report.md",))


def load(paths: Iterable[str | Path], baseline: str | None = None) -> Report:
    """A :class:`Report` over the results folders ``paths``; ``baseline`` is a model name
    (default: a model named ``baseline``, else the first)."""
    paths = [Path(p).expanduser() for p in paths]
    if not paths:
        raise RprimError("no results folders given; pass one or more folders written by rprim eval --out")
    if len({p.resolve() for p in paths}) < len(paths):
        raise RprimError("a results folder is given twice; pass each model once")
    names = _names(paths)
    if len(set(names)) < len(names):
        raise RprimError(f"two results folders have the same name ({', '.join(names)}); "
                         "give the models folders with distinct names")
    if baseline is not None and baseline not in names:
        raise RprimError(f"--baseline {baseline!r} is not one of the models ({', '.join(names)}); "
                         "name one of the results folders")
    models = [load_model(p, n) for p, n in zip(paths, names)]
    return Report(models, baseline or ("baseline" if "baseline" in names else names[0]))


def _names(paths: list[Path]) -> list[str]:
    """Folder names, made unique with their parent's name where two are the same."""
    base = [p.resolve().name for p in paths]
    return [f"{p.resolve().parent.name}/{b}" if base.count(b) > 1 else b for p, b in zip(paths, base)]


__all__ = ["Report", "check_report_folder", "load", "load_model"]
