"""Arithmetic control task (paper section 5): signed single-digit sums, in context.

Each query shows ``context`` solved sums, one per line, then a new sum ending in "=". The
target follows "=" with no space (``target_delimiter`` is "").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .base import FORMAT_SUFFIX, Primitive, check_range, format_suffix
from rprim.core import RprimError
from .render import Raw, Slot
from .rng import Draws


@dataclass(frozen=True)
class ArithmeticConfig:
    context: int = 5        # solved sums before the question
    low: int = 0            # operands are digits in [low, high], each with an explicit sign
    high: int = 9
    format: str = "plain"


MAX_CONTEXT = 10_000   # solved sums in one query
MAX_OPERANDS = 100     # operand values: the table of signed pairs holds 4 * 100**2 entries
# arithmetic[-c<context>][-v<low>_<high>][-f<format>], the inverse of `name`
_NAME = re.compile(r"arithmetic(?:-c(\d+))?(?:-v(\d+)_(\d+))?" + FORMAT_SUFFIX)


class Arithmetic(Primitive):
    family = "arithmetic"
    Config = ArithmeticConfig
    target_delimiter = ""

    def validate(self) -> None:
        c = self.config
        if not 0 <= c.context <= MAX_CONTEXT:
            raise RprimError(f"context must be 0..{MAX_CONTEXT:,} solved sums (got {c.context})")
        check_range("arithmetic", c.low, c.high, most=MAX_OPERANDS, least=0)

    @property
    def name(self) -> str:
        c = self.config
        s = "arithmetic" if c.context == 5 else f"arithmetic-c{c.context}"
        s = s if (c.low, c.high) == (0, 9) else f"{s}-v{c.low}_{c.high}"
        return s + format_suffix(c.format, "plain")

    @classmethod
    def parse_name(cls, name: str) -> dict[str, Any] | None:
        m = _NAME.fullmatch(name)
        if m is None:
            return None
        context, low, high, fmt = m.groups()
        return {**({"context": int(context)} if context else {}),
                **({"low": int(low), "high": int(high)} if low else {}),
                **({"format": fmt} if fmt else {})}

    def space(self) -> tuple[int, int]:
        """Heads: one signed pair per line, context + 1 lines, repeats allowed. No rest."""
        r = self.config.high - self.config.low + 1
        return (4 * r * r) ** (self.config.context + 1), 1

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Expression strings and their values, indexed by one code per signed pair."""
        digits = range(self.config.low, self.config.high + 1)
        ops = [(s, d) for s in "+-" for d in digits]
        expr = [f"{s0}{d0}{s1}{d1}" for s0, d0 in ops for s1, d1 in ops]
        vals = [(d0 if s0 == "+" else -d0) + (d1 if s1 == "+" else -d1)
                for s0, d0 in ops for s1, d1 in ops]
        return np.array(expr, dtype=object), np.array([str(v) for v in vals], dtype=object)

    def context(self) -> dict[str, Any]:
        n = self.config.context
        return {"solved": [{"expression": Slot(f"e{i}"), "value": Slot(f"r{i}")} for i in range(n)],
                "question": Slot(f"e{n}")}

    def metadata_layout(self) -> Any:
        n = self.config.context
        return {"solved": [[Slot(f"e{i}"), Raw(f"r{i}")] for i in range(n)],
                "question": Slot(f"e{n}"), "answer": Raw("answer")}

    def sample(self, draws: Draws) -> tuple[dict[str, np.ndarray], np.ndarray]:
        n = self.config.context
        e = draws.integers(len(self._tables[0]), n + 1)
        codes = {f"e{i}": e[:, i] for i in range(n + 1)}
        codes.update({f"r{i}": e[:, i] for i in range(n)})
        codes["answer"] = e[:, n]
        return codes, np.ones(len(e), dtype=bool)

    def decode(self, codes: dict[str, np.ndarray]) -> dict[str, list[str]]:
        expr, vals = self._tables
        return {k: (expr if k[0] == "e" else vals)[v].tolist() for k, v in codes.items()}
