"""Reasoning primitives: deterministic task data in the formats of Saunshi et al. (2024).

    >>> import rprim.primitives as P
    >>> task = P.get("varassign", depth=2, format="code")
    >>> records = task.generate(100, seed=0, split="test", shots=5)

Families: ``copying``, ``varassign``, ``psm``, ``arithmetic`` (plus plugins registered under
the ``rprim.primitives`` entry-point group). The canonical suite is ``suite_names()``.
"""

from .base import (FEWSHOT_DELIMITER, GENERATOR_VERSION, SPLITS, GenerationStats, Primitive,
                   content_hash)
from rprim.core import RprimError
from .registry import SUITE, families, formats, get, names, register, register_template, resolve, suite_names
from .suite import load_suite, suite_dir, write_suite

__all__ = [
    "FEWSHOT_DELIMITER", "GENERATOR_VERSION", "SPLITS", "SUITE", "GenerationStats", "Primitive",
    "RprimError", "content_hash", "families", "formats", "get", "load_suite", "names",
    "register", "register_template", "resolve", "suite_dir", "suite_names", "write_suite",
]
