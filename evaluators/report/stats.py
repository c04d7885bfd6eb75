"""The statistics behind ``rprim report``: pooled accuracies, differences, paired tests.

Everything here is plain Python (no scipy), small enough to check by hand:

- :func:`pooled`: a task group's accuracy is its summed correct count over its summed example
  count, with a Wilson 95% interval on those pooled counts (the evaluator's own interval).
- :func:`difference_interval`: Newcombe's hybrid score interval (his method 10) for the
  difference of two accuracies, built from the two Wilson intervals. It treats the two
  models as independent samples; on the same examples (positively correlated) it is
  conservative. It is the error bar of the gain plot.
- :func:`mcnemar`: the paired test between two models scored on the same examples, matched by
  example id. With few discordant pairs (b + c < 25) it is the exact two-sided binomial test
  (b ~ Binomial(b + c, 1/2)); otherwise the chi-square test with continuity correction,
  (|b - c| - 1)^2 / (b + c) on one degree of freedom. The result says which one was used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from rprim.evaluators.scoring import wilson

EXACT_BELOW = 25  # McNemar: exact binomial when the discordant pairs b + c are fewer than this


@dataclass(frozen=True)
class Pooled:
    """Correct count, example count, accuracy and Wilson 95% interval of a task group."""

    k: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson(self.k, self.n)


def pooled(counts: Iterable[tuple[int, int]]) -> Pooled:
    """Sum ``(correct, n)`` pairs of the tasks of a group into one :class:`Pooled`."""
    k = n = 0
    for ki, ni in counts:
        k += int(ki)
        n += int(ni)
    return Pooled(k, n)


def difference_interval(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95% interval of p1 - p2 (Newcombe 1998, method 10: hybrid score from Wilson bounds)."""
    if not n1 or not n2:
        return float("nan"), float("nan")
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, lo), min(1.0, hi)


def binomial_two_sided(b: int, c: int) -> float:
    """Exact two-sided p-value of b successes in b + c fair coin flips (McNemar's exact test):
    twice the smaller tail, at most 1."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2.0 * tail)


def chi2_sf_1df(x: float) -> float:
    """P(X >= x) for a chi-square variable with one degree of freedom: erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(max(0.0, x) / 2.0))


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below the mean
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f


def t_two_sided(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def paired_t(diffs: list[float]) -> dict[str, Any]:
    """Paired t-test of per-seed differences (method - baseline, same seed): mean, standard
    deviation, t, two-sided p (None with fewer than two seeds; p 1 or 0 without spread)."""
    k = len(diffs)
    mean = sum(diffs) / k if k else float("nan")
    if k < 2:
        return {"seeds": k, "mean": mean, "std": None, "t": None, "p_value": None}
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (k - 1))
    if sd == 0.0:
        return {"seeds": k, "mean": mean, "std": 0.0, "t": None, "p_value": 1.0 if mean == 0 else 0.0}
    t = mean / (sd / math.sqrt(k))
    return {"seeds": k, "mean": mean, "std": sd, "t": t, "p_value": t_two_sided(t, k - 1)}


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on the discordant pairs: b (only the first model right), c (only the
    second right); ``method`` is ``exact-binomial`` or ``chi2-continuity``."""

    both: int
    only_a: int
    only_b: int
    neither: int
    method: str
    statistic: float | None
    p_value: float

    @property
    def n(self) -> int:
        return self.both + self.only_a + self.only_b + self.neither

    def to_dict(self) -> dict[str, Any]:
        return {"both": self.both, "only_a": self.only_a, "only_b": self.only_b,
                "neither": self.neither, "n": self.n, "method": self.method,
                "statistic": self.statistic, "p_value": self.p_value}


def mcnemar(b: int, c: int, both: int = 0, neither: int = 0,
            exact_below: int = EXACT_BELOW) -> McNemar:
    """McNemar's test for the discordant counts ``b`` and ``c`` (see the module docstring)."""
    if min(b, c, both, neither) < 0:
        raise ValueError("counts must be non-negative")
    if b + c < exact_below:
        return McNemar(both, b, c, neither, "exact-binomial", None, binomial_two_sided(b, c))
    stat = max(0, abs(b - c) - 1) ** 2 / (b + c)
    return McNemar(both, b, c, neither, "chi2-continuity", stat, chi2_sf_1df(stat))


def paired_counts(a: Mapping[str, bool], b: Mapping[str, bool]) -> tuple[int, int, int, int, int]:
    """(both right, only a right, only b right, neither, unmatched ids) over the ids both
    models were scored on; ``a`` and ``b`` map example id -> correct."""
    both = only_a = only_b = neither = 0
    for key in a.keys() & b.keys():
        x, y = bool(a[key]), bool(b[key])
        if x and y:
            both += 1
        elif x:
            only_a += 1
        elif y:
            only_b += 1
        else:
            neither += 1
    unmatched = len(a.keys() ^ b.keys())
    return both, only_a, only_b, neither, unmatched


def interpolate(xs: list[float], ys: list[float], x: float) -> float | None:
    """Piecewise-linear y at ``x`` through the points (xs, ys) (any order); None outside them.
    Used to compare accuracies of two models at the same validation loss."""
    pts = sorted((float(u), float(v)) for u, v in zip(xs, ys)
                 if u is not None and v is not None and math.isfinite(u) and math.isfinite(v))
    if not pts or not pts[0][0] <= x <= pts[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[0][1]  # a single point equal to x
