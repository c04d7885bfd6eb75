"""Templates compiled once into format strings, so rendering never dominates generation.

A format's wording lives in a jinja2 template. The template is rendered once per task
configuration with *slot sentinels* in place of the per-example values (names, numbers,
words); the output is cut at the sentinels into a ``%``-format string plus the ordered list of
slots it reads. Every example is then one C-level ``fmt % values`` call. The same trick turns a
record's JSON layout into a format string, so JSON encoding costs one format call too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from rprim.core import RprimError

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use code points: never in task text
_SENTINEL = re.compile(f"{_OPEN}([^{_CLOSE}]+){_CLOSE}")
_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
    autoescape=False,
)
# User-registered templates: (family, format) -> jinja2 source. Checked before packaged ones.
_USER_TEMPLATES: dict[tuple[str, str], str] = {}


class Slot(str):
    """A placeholder for a per-example string value; renders as a sentinel."""

    def __new__(cls, name: str) -> "Slot":
        return super().__new__(cls, f"{_OPEN}{name}{_CLOSE}")


class Raw(str):
    """A placeholder for a value written into JSON without quotes (ints, pre-encoded JSON)."""

    def __new__(cls, name: str) -> "Raw":
        return super().__new__(cls, f"{_OPEN}raw:{name}{_CLOSE}")


@dataclass(frozen=True)
class Skeleton:
    """A compiled layout: ``fmt % tuple(columns[s][i] for s in slots)`` gives example i."""

    fmt: str
    slots: tuple[str, ...]

    def fill(self, columns: dict[str, list[str]]) -> list[str]:
        if not self.slots:
            n = len(next(iter(columns.values())))
            return [self.fmt % ()] * n
        return list(map(self.fmt.__mod__, zip(*(columns[s] for s in self.slots))))


def _compile(text: str) -> Skeleton:
    pieces = _SENTINEL.split(text)
    fmt = "".join(p.replace("%", "%%") if i % 2 == 0 else "%s" for i, p in enumerate(pieces))
    slots = tuple(s.removeprefix("raw:") for s in pieces[1::2])
    if _OPEN in fmt or _CLOSE in fmt:
        raise RprimError("a template altered a value placeholder (filters on values are not "
                         "supported); print values as they are")
    return Skeleton(fmt, slots)


def template_source(family: str, fmt: str) -> str:
    if (family, fmt) in _USER_TEMPLATES:
        return _USER_TEMPLATES[(family, fmt)]
    path = resources.files(__package__) / "templates" / family / f"{fmt}.j2"
    if not path.is_file():
        raise RprimError(f"unknown format {fmt!r} for {family}; choose one of "
                         f"{', '.join(formats(family))} or register a template")
    return path.read_text(encoding="utf-8")


def formats(family: str) -> list[str]:
    """Formats available for a family: packaged templates plus registered ones, sorted."""
    found = {f for fam, f in _USER_TEMPLATES if fam == family}
    folder = resources.files(__package__) / "templates" / family
    if folder.is_dir():
        found |= {p.name[:-3] for p in folder.iterdir() if p.name.endswith(".j2")}
    return sorted(found)


def register_template(family: str, fmt: str, source: str | Path) -> None:
    """Add a surface format for a family from jinja2 source text or a ``.j2`` file.

    The template sees the same context as the packaged ones (see templates/<family>/).
    """
    text = Path(source).read_text(encoding="utf-8") if isinstance(source, Path) else source
    try:
        _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as e:
        raise RprimError(f"template for {family}/{fmt} does not parse: {e.message} "
                         f"(line {e.lineno}); fix the jinja2 syntax") from None
    _USER_TEMPLATES[(family, fmt)] = text


def compile_template(family: str, fmt: str, context: dict[str, Any]) -> Skeleton:
    """Render the format's template once with slot placeholders and compile it."""
    try:
        text = _ENV.from_string(template_source(family, fmt)).render(**context)
    except jinja2.UndefinedError as e:
        raise RprimError(f"template {family}/{fmt} uses an unknown variable ({e.message}); "
                         f"use only the variables of the packaged {family} templates") from None
    return _compile(text)


def compile_json(layout: Any) -> Skeleton:
    """Compile a JSON layout (dicts/lists holding Slot and Raw placeholders) to a Skeleton."""
    text = json.dumps(layout, ensure_ascii=False, separators=(",", ":"))
    text = re.sub(f'"({_OPEN}raw:[^{_CLOSE}]+{_CLOSE})"', r"\1", text)
    return _compile(text)
