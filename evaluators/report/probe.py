"""Why a model misses variable assignment: where its wrong answers come from.

Wu, Geiger & Millière (ICML 2025) describe models learning variable binding in phases: first an
answer from outside the program (a frequent number), then *a* value of the program (often the
first or the last line's, a positional shortcut), and only then the bound one. A model at
chance can be in any of the first two phases, and only its errors tell which. This module sorts
each scored example of a variable-assignment task into one class:

- ``correct``: the bound value;
- ``first line`` / ``last line``: the value of the program's first / last numeric assignment
  (not the answer);
- ``other value``: another value assigned in the program;
- ``outside``: anything else (a number not in the program, text, nothing).

It reads only the per-example samples ``rprim eval`` writes (prompt, target, prediction): the
program is the query block of the prompt (after the last blank line, which separates the
few-shot exemplars), its numeric assignments are its ``name=number`` lines. So it works on any
results folder, the study's snapshots included, without the model or the generator.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

CLASSES = ("correct", "first line", "last line", "other value", "outside")
_ASSIGNMENT = re.compile(r"^\s*[A-Za-z_]\w*\s*=\s*(-?\d+)\s*$", re.MULTILINE)


def program_values(prompt: str) -> list[str]:
    """The numeric values assigned in the prompt's last program, in line order."""
    return _ASSIGNMENT.findall(prompt.rsplit("\n\n", 1)[-1])


def error_class(prompt: str, target: str, prediction: str) -> str:
    """One of :data:`CLASSES` for a scored example (``prediction`` as scored: stripped)."""
    pred = prediction.strip()
    if pred == target.strip():
        return "correct"
    values = program_values(prompt)
    if not values or pred not in values:
        return "outside"
    if pred == values[0]:
        return "first line"
    if pred == values[-1]:
        return "last line"
    return "other value"


def profile(samples: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Counts per class (every class present, in :data:`CLASSES` order) over sample rows."""
    counts = dict.fromkeys(CLASSES, 0)
    for s in samples:
        counts[error_class(str(s.get("prompt", "")), str(s.get("target", "")), str(s.get("prediction", "")))] += 1
    return counts


__all__ = ["CLASSES", "error_class", "profile", "program_values"]
