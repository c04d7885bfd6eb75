"""Results of an evaluation: per-task scores, per-example samples, run metadata.

``save(dir)`` writes ``results.json`` and ``samples/<task>.jsonl`` into a temporary sibling
folder and renames it into place, so a crash or a full disk never leaves a half-written
results folder behind (an older results folder at the same path is replaced only at the end).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rprim.primitives import RprimError

RESULTS = "results.json"


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
        """Write results.json and samples/*.jsonl atomically into folder ``out``."""
        out = Path(out).expanduser()
        check_writable(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            (tmp / "samples").mkdir()
            for name, rows in self.samples.items():
                with open(tmp / "samples" / f"{_file_name(name)}.jsonl", "w", encoding="utf-8") as f:
                    for r in rows:
                        f.write(json.dumps(r, ensure_ascii=False) + "\n")
            with open(tmp / RESULTS, "w", encoding="utf-8") as f:
                f.write(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o755)
            old = None
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.rename(out, old)
            os.rename(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    @classmethod
    def load(cls, out: str | Path) -> "Results":
        """Read a saved results folder back."""
        out = Path(out)
        data = json.loads((out / RESULTS).read_text(encoding="utf-8"))
        tasks = data.pop("tasks")
        samples = {}
        for name in tasks:
            path = out / "samples" / f"{_file_name(name)}.jsonl"
            samples[name] = ([json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
                             if path.is_file() else [])
        return cls(tasks, samples, data)


def _file_name(task: str) -> str:
    return task.replace("/", "_")


def check_writable(out: str | Path) -> None:
    """RprimError unless ``out`` can become a results folder (checked before any scoring)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise RprimError(f"--out {out} is a file; pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not (out / RESULTS).is_file():
        raise RprimError(f"--out {out} is a non-empty folder without results.json; pass a new "
                         "or empty folder (rprim replaces only its own results folders)")
    parent = out.parent
    for p in (parent, *parent.parents):
        if p.exists():
            if not p.is_dir():
                raise RprimError(f"cannot write results to {out}: {p} is a file; pass a writable "
                                 "--out folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent)
        os.rmdir(probe)
    except OSError as e:
        raise RprimError(f"cannot write results to {out} ({e.strerror or e}); pass a writable "
                         "--out folder") from None
