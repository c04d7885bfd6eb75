"""The registry: family names, canonical suite names, and plugins from entry points.

``get("varassign", depth=2, format="code")`` and ``get("varassign-code-d2")`` name the same
task. Each family owns its names in both directions (``name`` and ``parse_name``); the registry
only asks the families in turn, built-ins first. Another package registers its own family under
the entry-point group ``rprim.primitives`` (the entry point loads a ``Primitive`` subclass); it
then appears in ``names()``, ``rprim tasks`` and ``rprim generate``, and its task names resolve.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Any

from .arithmetic import Arithmetic
from .base import Primitive
from .copying import Copying
from rprim.core import RprimError
from .psm import PSM
from .render import TemplateSources, add_template, formats_of
from .varassign import VarAssign

ENTRY_POINT_GROUP = "rprim.primitives"

_FAMILIES: dict[str, type[Primitive]] = {}
_BUILT_IN = ("copying", "varassign", "psm", "arithmetic")  # asked first when parsing names
_plugins_loaded = False

# The canonical evaluation suite: name -> (family, params). Order is the reporting order.
SUITE: dict[str, tuple[str, dict[str, Any]]] = {
    "copying-random": ("copying", {"vocab": "random"}),
    "copying-words": ("copying", {"vocab": "words"}),
    **{f"varassign-{f}-d{d}": ("varassign", {"format": f, "depth": d})
       for f in ("basic", "math", "code") for d in (0, 1, 2)},
    "psm": ("psm", {}),
    "psm-calc": ("psm", {"calc": True}),
    "arithmetic": ("arithmetic", {}),
}

def register(cls: type[Primitive]) -> type[Primitive]:
    """Register a family class under ``cls.family`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Primitive)):
        raise TypeError(f"{cls!r} is not a Primitive subclass")
    _FAMILIES[cls.family] = cls
    return cls


for _cls in (Copying, VarAssign, PSM, Arithmetic):
    register(_cls)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        register(ep.load())


def families() -> dict[str, type[Primitive]]:
    """Registered families (built-in and plugins), by name."""
    _load_plugins()
    return dict(sorted(_FAMILIES.items()))


def _sources(family: str) -> TemplateSources:
    """The shipped templates of a registered family (none for an unknown one)."""
    cls = families().get(family)
    return cls.template_sources() if cls is not None else TemplateSources(None, {})


def formats(family: str) -> list[str]:
    """Formats available for a family: shipped templates plus registered ones, sorted."""
    return formats_of(family, _sources(family))


def register_template(family: str, fmt: str, source: Any) -> None:
    """Add a surface format for a family from jinja2 source text or a ``.j2`` file (a
    ``pathlib.Path``); see :func:`rprim.primitives.render.add_template`."""
    add_template(family, fmt, source, _sources(family))


def suite_names() -> list[str]:
    """The canonical suite, in reporting order."""
    return list(SUITE)


def names() -> list[str]:
    """Every name ``get`` accepts without parameters: families and the canonical suite."""
    return sorted(set(families()) | set(SUITE))


def resolve(name: str) -> tuple[str, dict[str, Any]]:
    """(family, params) for a family or task name; RprimError with suggestions otherwise."""
    fams = families()
    if name in fams:
        return name, {}
    if name in SUITE:
        return SUITE[name]
    order = [f for f in _BUILT_IN if f in fams] + [f for f in fams if f not in _BUILT_IN]
    for family in order:
        params = fams[family].parse_name(name)
        if params is not None:
            return family, params
    near = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(near)}?" if near else "run `rprim tasks` to list them"
    raise RprimError(f"unknown task {name!r}; {hint}")


def get(name: str, **params: Any) -> Primitive:
    """A task by family or task name, with knobs overriding the name's own params.

    (The CLI refuses a knob that contradicts a task name; from Python, ``get(name, **knobs)``
    with explicit knobs is taken to mean exactly those knobs.)
    """
    family, base = resolve(name)
    return families()[family](**{**base, **params})
