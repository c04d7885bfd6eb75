"""Values from the command line, parsed once for every command.

``-p KEY=VALUE`` (task knobs) and ``--set KEY=VALUE`` (trainer settings) are typed by the
annotations of the dataclass they configure, so ``n=abc`` or ``width=2.0`` is a one-line error
naming the knob and its type, never a TypeError deep inside a generator. dtype, device, batch
size and thread count have one spelling each (with common aliases) across commands.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from typing import Any, Iterable

from .errors import RprimError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_INT = re.compile(r"[-+]?\d+\Z")
_SCI_INT = re.compile(r"[-+]?\d+(\.\d*)?[eE]\+?\d+\Z")  # 100e9, 1.5e6: whole numbers in e-notation


def parse_pairs(items: Iterable[str], flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; RprimError for an item without ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RprimError(f"{flag} {item!r} is not KEY=VALUE; write e.g. {flag} {key or 'name'}=VALUE")
        out[key] = value.strip()
    return out


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(the type inside ``X | None``, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return tuple(args), optional
    return tp, False


def _type_name(tp: Any) -> str:
    if isinstance(tp, tuple):
        return " or ".join(_type_name(t) for t in tp)
    if typing.get_origin(tp) in (list, tuple):
        return "a comma-separated list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(tp, str(tp))


def parse_int(text: str) -> int:
    """An integer from ``12``, ``-3`` or e-notation that is whole (``100e9``, ``1.5e6``)."""
    t = text.strip().replace("_", "")
    if _INT.match(t):
        return int(t)
    if _SCI_INT.match(t):
        value = float(t)
        if math.isfinite(value) and value == int(value):
            return int(value)
    raise ValueError(text)


def _from_text(tp: Any, text: str) -> Any:
    if isinstance(tp, tuple):  # int | str and the like: first that parses
        for t in tp:
            try:
                return _from_text(t, text)
            except ValueError:
                continue
        raise ValueError(text)
    if tp is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(text)
    if tp is int:
        return parse_int(text)
    if tp is float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    if typing.get_origin(tp) in (list, tuple):
        return [s.strip() for s in text.split(",") if s.strip()]
    if tp is str or tp is Any:
        return text
    raise ValueError(text)


def _check_type(tp: Any, value: Any) -> Any:
    """A value that is already typed (JSON config, Python API): exactly the field's type."""
    if isinstance(tp, tuple):
        for t in tp:
            try:
                return _check_type(t, value)
            except ValueError:
                continue
        raise ValueError(value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is int and isinstance(value, float) and math.isfinite(value) and value == int(value) and value >= 1e6:
        return int(value)  # 1e9 in JSON is a float; a whole token count is still an integer
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(value)
        return float(value)
    if tp in (str, Any) and isinstance(value, str):
        return value
    if typing.get_origin(tp) in (list, tuple) and isinstance(value, (list, tuple)) \
            and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(value)


def field_types(cls: type) -> dict[str, Any]:
    """The annotated types of a dataclass's fields, by name."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def typed_value(cls: type, key: str, value: Any, flag: str = "--set") -> Any:
    """``value`` (text from the command line, or an already typed value) as the type of field
    ``key`` of dataclass ``cls``; RprimError naming the knob, its type and the valid keys."""
    kinds = field_types(cls)
    if key not in kinds:
        raise RprimError(f"unknown {flag} key {key!r}; known: {', '.join(sorted(kinds))}")
    tp, optional = _unwrap(kinds[key])
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise RprimError(f"{flag} {key} cannot be empty; it takes {_type_name(tp)}")
    try:
        return _from_text(tp, value) if isinstance(value, str) else _check_type(tp, value)
    except ValueError:
        shown = f"{key}={value}" if isinstance(value, str) else f"{key}={value!r}"
        raise RprimError(f"{flag} {shown}: {key} takes {_type_name(tp)}"
                         f"{' (or none)' if optional else ''}") from None


def typed_values(cls: type, values: dict[str, Any], flag: str = "--set") -> dict[str, Any]:
    """:func:`typed_value` for every item of ``values``."""
    return {k: typed_value(cls, k, v, flag) for k, v in values.items()}


# ------------------------------------------------------------------ dtype, device, batch, threads
DTYPES = {"auto": "auto", "fp32": "float32", "float32": "float32", "float": "float32",
          "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "half": "float16"}


def parse_dtype(text: str, flag: str = "--dtype", allowed: tuple[str, ...] | None = None) -> str:
    """Canonical dtype name (``auto``, ``float32``, ``bfloat16``, ``float16``) for any spelling
    rprim accepts (``fp32``/``float32``, ``bf16``/``bfloat16``, ``fp16``/``float16``)."""
    name = DTYPES.get(str(text).strip().lower())
    if name is None or (allowed is not None and name not in allowed):
        ok = allowed or ("auto", "float32", "bfloat16", "float16")
        raise RprimError(f"unknown {flag} {text!r}; use one of {', '.join(ok)} "
                         "(fp32, bf16 and fp16 are accepted too)")
    return name


_DEVICE = re.compile(r"(auto|cpu|cuda|cuda:\d+|mps)\Z")


def flag_value(flag: str, value: str) -> str:
    """``--device cuda`` or, for a flag like ``--set device=``, ``--set device=cuda``."""
    return f"{flag}{value}" if flag.endswith("=") else f"{flag} {value}"


def parse_device(text: str, flag: str = "--device") -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; availability is checked when torch
    loads (:func:`rprim.core.torch_util.resolve_device`)."""
    t = str(text).strip().lower()
    if not _DEVICE.match(t):
        raise RprimError(f"unknown {flag_value(flag, repr(text))}; use auto, cpu, cuda or cuda:N")
    return t


def parse_batch_size(value: Any, flag: str = "--batch-size") -> int | str:
    """``auto`` or a positive integer (text or int)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = value if isinstance(value, int) and not isinstance(value, bool) else parse_int(str(value))
    except ValueError:
        n = 0
    if n < 1:
        raise RprimError(f"{flag} must be 'auto' or a positive integer (got {value!r})")
    return n


def parse_threads(value: Any, flag: str = "--threads") -> int | None:
    """None (choose) or a positive integer."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RprimError(f"{flag} must be a positive integer (got {value!r})")
    return value


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(interval: float = 0.2) -> float | None:
    """How many cores other processes keep busy right now: the machine's non-idle share over
    ``interval`` seconds (``/proc/stat``) times its core count; None where that cannot be read.

    Sampled now rather than taken from the load average, which still counts work that ended
    up to a minute ago (the command that ran just before this one, say)."""
    import time

    def snapshot() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + (values[4] if len(values) > 4 else 0)  # all, idle+iowait

    try:
        total0, idle0 = snapshot()
        time.sleep(interval)
        total1, idle1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def default_threads() -> int:
    """Threads for torch on CPU: the cores free to this process right now.

    The cores of the affinity mask minus those other processes keep busy (sampled for 0.2 s;
    the 1-minute load average where that cannot be read), at least one. On a busy shared
    machine, more threads than free cores make every matmul wait on the slowest thread
    (measured: 1 thread twice as fast as 2 on a loaded 2-core box).
    """
    cores = available_cores()
    busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            return cores
    return max(1, min(cores, cores - int(busy + 0.5)))
