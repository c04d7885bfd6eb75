"""rprim: reasoning primitives for language models (Saunshi et al., NeurIPS 2024).

Generate deterministic task data (``rprim.primitives``), score any Hugging Face causal LM on
it (``rprim.evaluators``), and train Baseline / GradStack / MIDAS models (``rprim.model_zoo``).
``rprim.core`` holds what they share (errors, atomic files, option parsing).

Attributes load on first use, so ``import rprim`` costs nothing until you ask for a part.
"""

from __future__ import annotations

import os as _os
from typing import Any


# In a checkout, the sub-packages live beside this folder (primitives/, evaluators/, ...), and
# pyproject maps them into the ``rprim`` namespace when installing. Python started in the
# checkout finds this folder first (the working directory shadows site-packages), so make the
# same mapping here: then ``import rprim`` and ``python -m rprim`` work from the repository
# root whether rprim is installed editable, installed from a wheel, or not at all.
_here = _os.path.dirname(_os.path.abspath(__file__))
_root = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "primitives")) and \
        _os.path.isfile(_os.path.join(_root, "primitives", "__init__.py")):
    __path__.append(_root)  # type: ignore[name-defined]  # rprim.primitives -> <root>/primitives

_LAZY = {"primitives": "rprim.primitives", "evaluators": "rprim.evaluators",
         "model_zoo": "rprim.model_zoo", "core": "rprim.core"}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    if name == "evaluate":
        from rprim.evaluators import evaluate

        return evaluate
    if name == "__version__":
        from rprim.core.paths import package_version

        return package_version()
    if name == "RprimError":
        from rprim.core import RprimError

        return RprimError
    raise AttributeError(f"module 'rprim' has no attribute {name!r}")


__all__ = ["RprimError", "__version__", "core", "evaluate", "evaluators", "model_zoo", "primitives"]
