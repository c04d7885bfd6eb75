"""Induction copying (paper section 5): find a copied span in a sequence, say the next word.

A sequence of n distinct words, then a contiguous span of m of them copied again; the target
is the word that followed the span in the sequence. The span's start is uniform over the
positions that leave a next word.
"""

from __future__ import annotations

import itertools
import math
import re
import string
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import Any

import numpy as np

from .base import FORMAT_SUFFIX, Primitive, format_suffix
from rprim.core import RprimError
from .render import Raw, Slot
from .rng import Draws

VOCABS = ("random", "words")


@dataclass(frozen=True)
class CopyingConfig:
    vocab: str = "random"   # random: 3 random lowercase letters; words: real 3-letter words
    n: int = 10             # words in the sequence
    m: int = 5              # words in the copied span
    format: str = "blank"


@cache
def vocabulary(vocab: str) -> tuple[str, ...]:
    """The word list of a vocabulary, sorted (the shipped list for ``words``)."""
    if vocab == "random":
        return tuple("".join(t) for t in itertools.product(string.ascii_lowercase, repeat=3))
    text = (resources.files("rprim.data") / "words3.txt").read_text(encoding="utf-8")
    return tuple(sorted({w for w in text.split() if w}))


# copying-<vocab>[-n<n>-m<m>][-f<format>], the inverse of `name`
_NAME = re.compile(r"copying-(random|words)(?:-n(\d+)-m(\d+))?" + FORMAT_SUFFIX)


class Copying(Primitive):
    family = "copying"
    Config = CopyingConfig

    def validate(self) -> None:
        c = self.config
        if c.vocab not in VOCABS:
            raise RprimError(f"unknown vocab {c.vocab!r}; use one of {', '.join(VOCABS)}")
        if not 1 <= c.m < c.n:
            raise RprimError(f"copying needs 1 <= m < n (got n={c.n}, m={c.m}) so that a word "
                             "follows the span")
        if c.n > len(vocabulary(c.vocab)):
            raise RprimError(f"n={c.n} exceeds the {c.vocab} vocabulary; lower n")

    @property
    def name(self) -> str:
        c = self.config
        s = f"copying-{c.vocab}"
        s = s if (c.n, c.m) == (10, 5) else f"{s}-n{c.n}-m{c.m}"
        return s + format_suffix(c.format, "blank")

    @classmethod
    def parse_name(cls, name: str) -> dict[str, Any] | None:
        m = _NAME.fullmatch(name)
        if m is None:
            return {} if name == cls.family else None
        vocab, n, m_, fmt = m.groups()
        return {"vocab": vocab, **({"n": int(n), "m": int(m_)} if n else {}),
                **({"format": fmt} if fmt else {})}

    def space(self) -> tuple[int, int]:
        """Heads: an ordered sequence of n distinct words and the span's start. No rest."""
        c = self.config
        return math.perm(len(vocabulary(c.vocab)), c.n) * (c.n - c.m), 1

    @cached_property
    def _words(self) -> np.ndarray:
        return np.array(vocabulary(self.config.vocab), dtype=object)

    def context(self) -> dict[str, Any]:
        c = self.config
        return {"sequence": [Slot(f"w{i}") for i in range(c.n)],
                "span": [Slot(f"s{i}") for i in range(c.m)]}

    def metadata_layout(self) -> Any:
        return {"sequence": [Slot(f"w{i}") for i in range(self.config.n)],
                "start": Raw("start"), "span": self.config.m}

    def sample(self, draws: Draws) -> tuple[dict[str, np.ndarray], np.ndarray]:
        c = self.config
        seq, ok = draws.distinct(c.n, len(self._words))
        start = draws.integers(c.n - c.m)[:, 0]
        rows = np.arange(len(start))
        codes = {f"w{i}": seq[:, i] for i in range(c.n)}
        codes.update({f"s{i}": seq[rows, start + i] for i in range(c.m)})
        codes["answer"] = seq[rows, start + c.m]
        codes["start"] = start
        return codes, ok

    def decode(self, codes: dict[str, np.ndarray]) -> dict[str, list[str]]:
        return {k: (list(map(str, v.tolist())) if k == "start" else self._words[v].tolist())
                for k, v in codes.items()}
