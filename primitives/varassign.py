"""Variable assignment at depth d (paper section 5): bind values to names, then follow chains.

Level 0 holds w constants ``x=<int>``; level j = 1..d holds w new variables, each assigned a
distinct variable of level j-1 (a random one-to-one map). The query is one level-d variable;
its value is the constant at the root of its chain, so the other w-1 chains are distractors
and chance is 1/w. Lines appear level by level, in random order inside a level.
"""

from __future__ import annotations

import itertools
import math
import re
import string
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .base import Primitive, check_range
from rprim.core import RprimError
from .render import Raw, Slot
from .rng import Draws

# Python keywords that are lowercase letters only: never used as variable names, so every
# code-format program is valid Python. Fixed here (not read from `keyword`) so that the data
# do not depend on the Python version.
_KEYWORDS = frozenset({"and", "as", "def", "del", "elif", "else", "for", "from", "if", "in",
                       "is", "not", "or", "pass", "try", "with", "while", "yield", "raise",
                       "class", "break", "await", "async", "global", "import", "lambda",
                       "return", "except", "assert", "finally", "continue", "nonlocal"})


@dataclass(frozen=True)
class VarAssignConfig:
    depth: int = 0          # hops from the queried variable to its constant
    width: int = 5          # chains per problem (w); chance is 1/w
    format: str = "basic"   # basic | math | code, or a registered template
    low: int = 0            # constants are distinct values in [low, high]
    high: int = 24
    name_length: int = 1    # letters per variable name; 1 gives 26 names, 2 gives 671


def name_pool(length: int) -> list[str]:
    """All lowercase names of the given length that are not Python keywords, sorted."""
    return [s for s in ("".join(t) for t in itertools.product(string.ascii_lowercase, repeat=length))
            if s not in _KEYWORDS]


# varassign-<format>-d<depth>[-w<width>][-v<low>_<high>][-l<name_length>], the inverse of `name`
_NAME = re.compile(r"varassign-([A-Za-z][A-Za-z0-9_]*?)-d(\d+)(?:-w(\d+))?(?:-v(-?\d+)_(-?\d+))?(?:-l(\d+))?")


class VarAssign(Primitive):
    family = "varassign"
    Config = VarAssignConfig

    def validate(self) -> None:
        c = self.config
        if c.depth < 0:
            raise RprimError(f"depth must be >= 0 (got {c.depth}); use --depth 0, 1, 2, ...")
        if c.width < 1:
            raise RprimError(f"width must be >= 1 (got {c.width})")
        if not 1 <= c.name_length <= 3:
            raise RprimError(f"name_length must be 1, 2 or 3 (got {c.name_length})")
        check_range("varassign", c.low, c.high)
        if c.high - c.low + 1 < c.width:
            raise RprimError(f"value range {c.low}..{c.high} has fewer than width={c.width} "
                             "distinct constants; widen low/high")
        pool = len(name_pool(c.name_length))
        if c.width * (c.depth + 1) > pool:
            raise RprimError(
                f"depth {c.depth} with width {c.width} needs {c.width * (c.depth + 1)} distinct "
                f"names but name_length={c.name_length} gives {pool}; lower the depth or width, "
                f"or pass -p name_length={c.name_length + 1}")

    @property
    def name(self) -> str:
        c = self.config
        s = f"varassign-{c.format}-d{c.depth}"
        if c.width != 5:
            s += f"-w{c.width}"
        if (c.low, c.high) != (0, 24):
            s += f"-v{c.low}_{c.high}"
        if c.name_length != 1:
            s += f"-l{c.name_length}"
        return s

    @classmethod
    def parse_name(cls, name: str) -> dict[str, Any] | None:
        m = _NAME.fullmatch(name)
        if m is None:
            return {} if name == cls.family else None
        fmt, d, w, low, high, length = m.groups()
        return {"format": fmt, "depth": int(d), **({"width": int(w)} if w else {}),
                **({"low": int(low), "high": int(high)} if low else {}),
                **({"name_length": int(length)} if length else {})}

    def space(self) -> tuple[int, int]:
        """Heads: the constants by line (and the names, when they are in the head). Rests: the
        names otherwise, one permutation per level and the queried chain."""
        c = self.config
        names = math.perm(len(self._names), self.n_lines)
        consts = math.perm(c.high - c.low + 1, c.width)
        rest = math.factorial(c.width) ** c.depth * c.width
        return (consts * names, rest) if self._names_in_head else (consts, names * rest)

    @property
    def chance(self) -> float:
        return 1.0 / self.config.width

    @property
    def n_lines(self) -> int:
        return self.config.width * (self.config.depth + 1)

    @cached_property
    def _names(self) -> np.ndarray:
        return np.array(name_pool(self.config.name_length), dtype=object)

    @cached_property
    def _values(self) -> np.ndarray:
        return np.array([str(v) for v in range(self.config.low, self.config.high + 1)], dtype=object)

    def context(self) -> dict[str, Any]:
        w = self.config.width
        lines = [{"name": Slot(f"n{k}"), "value": Slot(f"v{k}"), "level": k // w}
                 for k in range(self.n_lines)]
        return {"lines": lines, "query": Slot("c0"), "depth": self.config.depth, "width": w}

    def metadata_layout(self) -> Any:
        w = self.config.width
        return {
            "assignments": {Slot(f"n{k}"): (Raw(f"v{k}") if k < w else Slot(f"v{k}"))
                            for k in range(self.n_lines)},
            "query": Slot("c0"),
            "chain": [Slot(f"c{j}") for j in range(self.config.depth + 1)],
            "answer": Raw("answer"),
        }

    @cached_property
    def _names_in_head(self) -> bool:
        """Whether the head needs the names to have enough distinct values per split."""
        return math.perm(self.config.high - self.config.low + 1, self.config.width) < 100_000

    def _draw_names(self, draws: Draws) -> tuple[dict[str, np.ndarray], np.ndarray]:
        names, ok = draws.distinct(self.n_lines, len(self._names))
        return {f"n{k}": names[:, k] for k in range(self.n_lines)}, ok

    def sample(self, draws: Draws) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The head, which alone decides the example's split: the constants by line, plus the
        names when the constants alone have too few orderings to fill three splits.

        Line p of level j names variable ``names[j*w + p]``; a random one-to-one map per level
        (drawn in ``sample_rest``) then makes the order inside a level random.
        """
        w = self.config.width
        consts, ok = draws.distinct(w, len(self._values))
        codes = {f"v{p}": consts[:, p] for p in range(w)}
        if self._names_in_head:
            names, ok_names = self._draw_names(draws)
            codes.update(names)
            ok = ok & ok_names
        return codes, ok

    def sample_rest(self, draws: Draws, head: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The names (unless in the head), the level-to-level maps and the queried variable."""
        w, d = self.config.width, self.config.depth
        codes: dict[str, np.ndarray] = {}
        ok = np.ones(len(draws.keys), dtype=bool)
        if not self._names_in_head:
            codes, ok = self._draw_names(draws)
        maps = [draws.permutations(w) for _ in range(d)]  # line p of level j+1 -> line of level j
        q = draws.integers(w)[:, 0]
        names = np.stack([{**head, **codes}[f"n{k}"] for k in range(self.n_lines)], axis=1)
        for j in range(1, d + 1):
            val = np.take_along_axis(names[:, (j - 1) * w:j * w], maps[j - 1], axis=1)
            for p in range(w):
                codes[f"v{j * w + p}"] = val[:, p]
        rows = np.arange(len(q))
        line = q
        codes["c0"] = names[rows, d * w + line]
        for hop, j in enumerate(range(d, 0, -1), start=1):
            line = maps[j - 1][rows, line]
            codes[f"c{hop}"] = names[rows, (j - 1) * w + line]
        consts = np.stack([head[f"v{p}"] for p in range(w)], axis=1)
        codes["answer"] = consts[rows, line]
        return codes, ok

    def decode(self, codes: dict[str, np.ndarray]) -> dict[str, list[str]]:
        w = self.config.width
        cols = {}
        for k, v in codes.items():
            const = k == "answer" or (k.startswith("v") and int(k[1:]) < w)
            cols[k] = (self._values if const else self._names)[v].tolist()
        return cols
