"""Scores of one example and of a task: exact match, flexible match, Wilson interval.

* exact: the greedy continuation, cut before the first ``until`` string and stripped of
  surrounding spaces, equals the target (the paper's metric; the cut is ours).
* flexible: the first integer (for integer targets) or the first word (otherwise) of that
  prediction equals the target; forgives "17." or "17 because ...".
* unparsable: the prediction holds no integer (integer targets) or no word (others).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

_INT = re.compile(r"[-+]?\d+")
_IS_INT = re.compile(r"[-+]?\d+\Z")
Z95 = 1.959963984540054


def cut(text: str, until: Sequence[str]) -> str:
    """``text`` before the first occurrence of any ``until`` string."""
    at = min((i for i in (text.find(u) for u in until if u) if i >= 0), default=len(text))
    return text[:at]


def prediction(text: str, until: Sequence[str]) -> str:
    """The scored prediction: continuation cut at ``until``, stripped of surrounding spaces."""
    return cut(text, until).strip()


def exact(pred: str, target: str) -> bool:
    return pred == target


def flexible_answer(pred: str, target: str) -> str | None:
    """The answer a lenient reader would take from ``pred``, or None when there is none."""
    if _IS_INT.match(target):
        m = _INT.search(pred)
        return str(int(m.group())) if m else None
    words = pred.split()
    return words[0].rstrip(".,;:!?") if words else None


def flexible(pred: str, target: str) -> bool:
    ans = flexible_answer(pred, target)
    if ans is None:
        return False
    return ans == (str(int(target)) if _IS_INT.match(target) else target)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% by default); (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k <= 0 else max(0.0, center - half)  # exact ends: no 1e-17 rounding
    hi = 1.0 if k >= n else min(1.0, center + half)
    return lo, hi


@dataclass(frozen=True)
class TaskScore:
    """Aggregate scores of one task."""

    accuracy: float
    n: int
    ci95: tuple[float, float]
    flexible_accuracy: float
    unparsable: float

    @classmethod
    def of(cls, preds: Sequence[str], targets: Sequence[str]) -> "TaskScore":
        n = len(preds)
        k = sum(exact(p, t) for p, t in zip(preds, targets))
        flex = sum(flexible(p, t) for p, t in zip(preds, targets))
        bad = sum(flexible_answer(p, t) is None for p, t in zip(preds, targets))
        return cls(k / n if n else 0.0, n, wilson(k, n), flex / n if n else 0.0, bad / n if n else 0.0)
