"""The one check that a saved run may continue with the settings given now.

Three kinds of work pick up where an earlier run stopped: the trainer (from its checkpoint),
fine-tuning (its missing seeds) and a study (its missing parts). Each saves its settings and,
on a rerun, refuses settings that would change what is computed, naming every one that
differs, in one line. Which settings are free to change (thread counts, batch sizes, logging)
is each caller's own list; how they are compared and worded is here, once.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Collection, Mapping

from .errors import RprimError

SHOWN_CHARS = 300  # a message names the differences, not whole configs


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``a.b`` keys, values in their JSON form (a tuple equals its list)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.loads(json.dumps(v, default=str))
    return out


def changed_settings(saved: Mapping[str, Any], now: Mapping[str, Any],
                     free: Collection[str] = (), name: Callable[[str], str] = str) -> list[str]:
    """``key: saved -> now`` for every setting outside ``free`` that differs, keys sorted."""
    a, b = _flat(saved), _flat(now)
    return [f"{name(k)}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in free and k.split(".")[0] not in free and a.get(k) != b.get(k)]


def check_same_settings(saved: Mapping[str, Any], now: Mapping[str, Any], *, problem: str,
                        fix: str, free: Collection[str] = (), name: Callable[[str], str] = str) -> None:
    """RprimError ``problem (what differs); fix`` unless the settings agree outside ``free``."""
    diffs = changed_settings(saved, now, free, name)
    if diffs:
        shown = "; ".join(diffs)
        if len(shown) > SHOWN_CHARS:
            shown = shown[:SHOWN_CHARS - 3] + "..."
        raise RprimError(f"{problem} ({shown}); {fix}")
