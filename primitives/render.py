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
# User-registered templates: (family, format) -> jinja2 source. Checked before shipped ones.
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


_FORMAT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class TemplateSources:
    """The formats a family ships: ``<format>.j2`` files in ``folder`` and inline sources."""

    folder: Path | None
    inline: dict[str, str]

    def names(self) -> set[str]:
        found = set(self.inline)
        if self.folder is not None and self.folder.is_dir():
            found |= {p.name[:-3] for p in self.folder.iterdir() if p.name.endswith(".j2")}
        return found

    def get(self, fmt: str) -> str | None:
        if fmt in self.inline:
            return self.inline[fmt]
        path = self.folder / f"{fmt}.j2" if self.folder is not None and _FORMAT_NAME.match(fmt) else None
        return path.read_text(encoding="utf-8") if path is not None and path.is_file() else None


_NO_SOURCES = TemplateSources(None, {})


def template_source(family: str, fmt: str, sources: TemplateSources) -> str:
    """The jinja2 source of a format: a registered user template, else the shipped one
    (``sources``: the family's, from its class; the registry passes them)."""
    if (family, fmt) in _USER_TEMPLATES:
        return _USER_TEMPLATES[(family, fmt)]
    text = sources.get(fmt)
    if text is None:
        raise RprimError(f"unknown format {fmt!r} for {family}; choose one of "
                         f"{', '.join(formats_of(family, sources))} or register a template")
    return text


def formats_of(family: str, sources: TemplateSources = _NO_SOURCES) -> list[str]:
    """Formats available for a family: its shipped templates plus registered ones, sorted."""
    found = {f for fam, f in _USER_TEMPLATES if fam == family}
    return sorted(found | sources.names())


def add_template(family: str, fmt: str, source: str | Path, shipped: TemplateSources = _NO_SOURCES) -> None:
    """Add a surface format for a family from jinja2 source text or a ``.j2`` file
    (``rprim.primitives.register_template`` passes the family's ``shipped`` templates).

    The template sees the same context as the shipped ones (``template_variables``). A user
    format may not take the name of a shipped one: data in the user's wording must never be
    labelled as rprim's built-in format (``varassign-code-d0`` means rprim's code wording).
    """
    if not _FORMAT_NAME.match(fmt):
        raise RprimError(f"format name {fmt!r} must be letters, digits and _ (starting with a "
                         "letter), since it becomes part of task names; rename the template")
    try:
        text = Path(source).read_text(encoding="utf-8") if isinstance(source, Path) else source
    except (OSError, UnicodeDecodeError) as e:
        raise RprimError(f"cannot read template {source}: {getattr(e, 'strerror', None) or e}; "
                         "give a UTF-8 .j2 file") from None
    if fmt in shipped.names() and shipped.get(fmt) != text:
        raise RprimError(f"{fmt!r} is a built-in {family} format; name your template "
                         f"differently (e.g. {fmt}_mine.j2) so its data are not labelled as rprim's")
    try:
        _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as e:
        raise RprimError(f"template for {family}/{fmt} does not parse: {e.message} "
                         f"(line {e.lineno}); fix the jinja2 syntax") from None
    _USER_TEMPLATES[(family, fmt)] = text


def _slot_paths(value: Any, path: str, out: dict[str, str]) -> dict[str, str]:
    """{slot name: where the template finds it, e.g. ``lines[3].name``} over a context."""
    if isinstance(value, dict):
        for k, v in value.items():
            _slot_paths(v, f"{path}.{k}" if path else k, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _slot_paths(v, f"{path}[{i}]", out)
    elif isinstance(value, str):
        for m in _SENTINEL.finditer(value):
            out.setdefault(m.group(1).removeprefix("raw:"), path)
    return out


def template_variables(context: dict[str, Any]) -> str:
    """The variables a template of this context may use, in words (for errors and docs)."""
    parts = []
    for key, value in context.items():
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
            parts.append(f"{key} (a list; each item has {', '.join(value[0])})")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{key} (a list)")
        elif isinstance(value, dict):
            parts.append(f"{key} (with {', '.join(value)})")
        else:
            parts.append(key)
    return ", ".join(parts)


def compile_template(family: str, fmt: str, context: dict[str, Any],
                     sources: TemplateSources) -> Skeleton:
    """Render the format's template once with slot placeholders and compile it."""
    where = f"template {family}/{fmt}"
    source = template_source(family, fmt, sources)
    try:
        text = _ENV.from_string(source).render(**context)
    except jinja2.UndefinedError as e:
        raise RprimError(f"{where} uses an unknown variable ({e.message}); it can use "
                         f"{template_variables(context)}") from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as e:
        raise RprimError(f"{where} fails to render ({type(e).__name__}: {e}); it can use "
                         f"{template_variables(context)}, printed as they are") from None
    skeleton = _compile(text)
    missing = set(_slot_paths(context, "", {})) - set(skeleton.slots)
    if missing:
        paths = _slot_paths(context, "", {})
        left = sorted({paths[m] for m in missing})
        shown = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
        raise RprimError(f"{where} leaves out per-example values ({shown}); print every "
                         f"one of {template_variables(context)}, or the task cannot be solved")
    return skeleton


def compile_json(layout: Any) -> Skeleton:
    """Compile a JSON layout (dicts/lists holding Slot and Raw placeholders) to a Skeleton."""
    text = json.dumps(layout, ensure_ascii=False, separators=(",", ":"))
    text = re.sub(f'"({_OPEN}raw:[^{_CLOSE}]+{_CLOSE})"', r"\1", text)
    return _compile(text)
