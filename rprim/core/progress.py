"""The time left of long work, from rates measured while it runs.

A long run mixes kinds of work that cost differently (training tokens and evaluated examples
in fine-tuning; training, scoring and analysis parts in a study). One rate for all of them is
wrong for as long as the mix changes, so each kind keeps its own: seconds per unit, measured
as soon as some of it has run, a prior (if given) until then. The displays that show the
estimate (a tqdm bar, a line in a log) stay with their commands; this holds only the arithmetic,
so it imports nothing.
"""

from __future__ import annotations

from typing import Iterable, Mapping


class Rates:
    """Seconds per unit of work, measured separately for each kind of work.

    ``priors``: seconds per unit assumed for a kind until some of it has been measured.
    """

    def __init__(self, priors: Mapping[str, float] | None = None) -> None:
        self.priors = dict(priors or {})
        self.seconds: dict[str, float] = {}
        self.units: dict[str, float] = {}

    def add(self, kind: str, seconds: float, units: float) -> None:
        """Record that ``units`` of ``kind`` took ``seconds``."""
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
        self.units[kind] = self.units.get(kind, 0.0) + units

    def rate(self, kind: str) -> float | None:
        """The measured seconds per unit of ``kind``, else its prior, else None."""
        if self.units.get(kind, 0.0) > 0:
            return self.seconds[kind] / self.units[kind]
        return self.priors.get(kind)

    def fastest(self) -> float | None:
        """The lowest rate known (measured or prior) of any kind; None when none is known."""
        known = [r for r in (self.rate(k) for k in {**self.priors, **self.units}) if r is not None]
        return min(known) if known else None

    def left(self, work: Iterable[tuple[str, float]], unknown: float) -> float:
        """Seconds for ``work``, ``(kind, units)`` pairs, each kind at its :meth:`rate`, a kind
        without one at ``unknown`` seconds per unit (e.g. :meth:`fastest`: a guess that the
        estimate corrects once that kind has run)."""
        total = 0.0
        for kind, units in work:
            rate = self.rate(kind)
            total += units * (unknown if rate is None else rate)
        return total
