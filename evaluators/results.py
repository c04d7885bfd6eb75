"""Results of an evaluation: per-task scores, per-example samples, run metadata.

``save(dir)`` writes ``results.json`` and ``samples/<task>.jsonl`` into a temporary sibling
folder and publishes it (``rprim.core.atomic_folder``), so a crash or a full disk never leaves
a half-written results folder behind; an earlier result in ``dir`` is replaced only at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rprim.core import atomic_folder, check_output_folder, write_json
from rprim.core.layout import RESULTS_FILE, SAMPLES

from .data import sample_file

RESULTS = RESULTS_FILE
RESULTS_KIND = "eval"


@dataclass
class Results:
    """What ``evaluate`` returns. ``tasks``: name -> scores; ``samples``: name -> examples."""

    tasks: dict[str, dict[str, Any]]
    samples: dict[str, list[dict[str, Any]]]
    meta: dict[str, Any] = field(default_factory=dict)

    def accuracy(self, task: str) -> float:
        return self.tasks[task]["accuracy"]

    def to_dict(self) -> dict[str, Any]:
        """The content of results.json."""
        return {**self.meta, "tasks": self.tasks}

    def to_frame(self) -> Any:
        """One row per task: task, accuracy, ci95_lo, ci95_hi, n, flexible_accuracy, ..."""
        import pandas as pd

        rows = []
        for name, t in self.tasks.items():
            rows.append({"task": name, "accuracy": t["accuracy"], "ci95_lo": t["ci95"][0],
                         "ci95_hi": t["ci95"][1], "n": t["n"],
                         "flexible_accuracy": t["flexible_accuracy"],
                         "unparsable": t["unparsable"], "chance": t.get("chance")})
        return pd.DataFrame(rows)

    def table(self) -> str:
        """A plain-text table: task, accuracy, 95% CI, n (and chance where defined)."""
        head = ("task", "accuracy", "95% CI", "n", "chance")
        rows = [head]
        for name, t in self.tasks.items():
            lo, hi = t["ci95"]
            chance = t.get("chance")
            rows.append((name, f"{t['accuracy']:.3f}", f"[{lo:.3f}, {hi:.3f}]", str(t["n"]),
                         "" if chance is None else f"{chance:.3f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def save(self, out: str | Path) -> Path:
        """Write results.json and samples/*.jsonl into folder ``out``, all or nothing."""
        out = check_results_folder(out)
        with atomic_folder(out, kind=RESULTS_KIND) as tmp:
            (tmp / SAMPLES).mkdir()
            for name, rows in self.samples.items():
                with open(tmp / SAMPLES / sample_file(name), "w", encoding="utf-8") as f:
                    for r in rows:
                        f.write(json.dumps(r, ensure_ascii=False) + "\n")
            write_json(tmp / RESULTS, self.to_dict())
        return out

    @classmethod
    def load(cls, out: str | Path) -> "Results":
        """Read a saved results folder back."""
        out = Path(out)
        data = json.loads((out / RESULTS).read_text(encoding="utf-8"))
        tasks = data.pop("tasks")
        samples = {}
        for name in tasks:
            path = out / SAMPLES / sample_file(name)
            samples[name] = ([json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
                             if path.is_file() else [])
        return cls(tasks, samples, data)


def check_results_folder(out: str | Path) -> Path:
    """RprimError unless ``out`` can become a results folder (checked before any scoring)."""
    return check_output_folder(out, RESULTS_KIND, legacy=(RESULTS,))
