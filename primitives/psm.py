"""Pre-school math (PSM, paper section 5): substitute two constants into a signed expression.

The target is a short chain of thought, the substituted expression and its value
(``-1+8=7``). ``psm-calc`` shows the same problems and exemplars but scores only the
substituted part (``-1+8``), as if a calculator did the arithmetic: its prediction stops at "=".
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .base import FORMAT_SUFFIX, Primitive, check_range, format_suffix
from .render import Raw, Skeleton, Slot
from .rng import Draws

SIGNS = np.array(["+", "-"], dtype=object)


@dataclass(frozen=True)
class PSMConfig:
    calc: bool = False      # score only the substituted expression (psm-calc)
    low: int = 0            # constants are digits in [low, high]
    high: int = 9
    format: str = "blank"


# psm[-calc][-v<low>_<high>][-f<format>], the inverse of `name`
_NAME = re.compile(r"psm(-calc)?(?:-v(\d+)_(\d+))?" + FORMAT_SUFFIX)


class PSM(Primitive):
    family = "psm"
    Config = PSMConfig
    presentation = ("format", "calc")

    def validate(self) -> None:
        check_range("psm", self.config.low, self.config.high, least=0)

    @property
    def name(self) -> str:
        c = self.config
        s = "psm-calc" if c.calc else "psm"
        s = s if (c.low, c.high) == (0, 9) else f"{s}-v{c.low}_{c.high}"
        return s + format_suffix(c.format, "blank")

    @classmethod
    def parse_name(cls, name: str) -> dict[str, Any] | None:
        m = _NAME.fullmatch(name)
        if m is None:
            return None
        calc, low, high, fmt = m.groups()
        return {**({"calc": True} if calc else {}), **({"low": int(low), "high": int(high)} if low else {}),
                **({"format": fmt} if fmt else {})}

    def space(self) -> tuple[int, int]:
        """Heads: three distinct letters (two constants, the result), two values, two signs and
        which constant comes first. No rest."""
        r = self.config.high - self.config.low + 1
        return 26 * 25 * 24 * r * r * 4 * 2, 1

    @property
    def until(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("=", "\n") if self.config.calc else ("\n",)

    @cached_property
    def _values(self) -> np.ndarray:
        return np.array([str(v) for v in range(self.config.low, self.config.high + 1)], dtype=object)

    def context(self) -> dict[str, Any]:
        return {"constants": [{"name": Slot("k0"), "value": Slot("v0")},
                              {"name": Slot("k1"), "value": Slot("v1")}],
                "result": Slot("r"),
                "expression": Slot("s0") + Slot("x0") + Slot("s1") + Slot("x1")}

    def target_layout(self) -> tuple[Skeleton, Skeleton]:
        full = Skeleton("%s%s%s%s=%s", ("s0", "y0", "s1", "y1", "answer"))
        calc = Skeleton("%s%s%s%s", ("s0", "y0", "s1", "y1"))
        return (calc if self.config.calc else full), full

    def metadata_layout(self) -> Any:
        return {"constants": {Slot("k0"): Raw("v0"), Slot("k1"): Raw("v1")},
                "variable": Slot("r"),
                "expression": Slot("s0") + Slot("x0") + Slot("s1") + Slot("x1"),
                "substituted": Slot("s0") + Slot("y0") + Slot("s1") + Slot("y1"),
                "value": Raw("answer")}

    def sample(self, draws: Draws) -> tuple[dict[str, np.ndarray], np.ndarray]:
        names, ok = draws.distinct(3, 26)
        vals = draws.integers(len(self._values), 2)
        signs = draws.integers(2, 2)
        first = draws.integers(2)[:, 0]            # which constant the expression uses first
        rows = np.arange(len(first))
        codes = {"k0": names[:, 0], "k1": names[:, 1], "r": names[:, 2],
                 "v0": vals[:, 0], "v1": vals[:, 1],
                 "s0": signs[:, 0], "s1": signs[:, 1],
                 "x0": names[rows, first], "x1": names[rows, 1 - first],
                 "y0": vals[rows, first], "y1": vals[rows, 1 - first]}
        lo = self.config.low
        sgn = 1 - 2 * signs
        codes["answer"] = sgn[:, 0] * (codes["y0"] + lo) + sgn[:, 1] * (codes["y1"] + lo)
        return codes, ok

    def decode(self, codes: dict[str, np.ndarray]) -> dict[str, list[str]]:
        letters = np.array(list(string.ascii_lowercase), dtype=object)
        table = {"k": letters, "r": letters, "x": letters, "v": self._values, "y": self._values,
                 "s": SIGNS}
        return {k: (list(map(str, v.tolist())) if k == "answer" else table[k[0]][v].tolist())
                for k, v in codes.items()}
