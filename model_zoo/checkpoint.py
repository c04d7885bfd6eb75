"""Atomic checkpoints (``rprim.core.atomic_folder``): a temp folder, renamed into place.

Layout: ``<out>/checkpoints/step-00000120/{state.pt,meta.json}`` plus ``LATEST`` (a text file
naming the newest complete folder, itself replaced atomically). A crash at any moment leaves
either the previous checkpoint or the new one, never a half-written one. Older checkpoints
beyond ``keep`` are pruned after the new one is in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from rprim.core import atomic_folder, check_free_space, write_json, write_text


def save(root: Path, step: int, payload: dict[str, Any], meta: dict[str, Any], keep: int = 2) -> Path:
    """Save ``payload`` (torch-serializable) as the checkpoint of ``step``; return its folder."""
    import torch

    final = root / f"step-{step:08d}"
    check_free_space(root, _tensor_bytes(payload) + (1 << 20), f"the checkpoint of step {step}",
                     "free some space (the previous checkpoint is intact; --resume continues from it) "
                     "or lower keep_checkpoints")
    with atomic_folder(final) as tmp:  # the same step saved twice (a resumed run) is replaced
        with open(tmp / "state.pt", "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        write_json(tmp / "meta.json", dict(meta, step=step))
    write_text(root / "LATEST", final.name + "\n")
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for p in steps[:-keep] if keep > 0 else []:
        if p != final:
            shutil.rmtree(p, ignore_errors=True)
    return final


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested payload (what torch.save writes, give or take)."""
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    marker = root / "LATEST"
    if marker.exists():
        folder = root / marker.read_text().strip()
        if (folder / "state.pt").exists():
            return folder
    steps = sorted(p for p in root.glob("step-*") if (p / "state.pt").exists())
    return steps[-1] if steps else None


def load(folder: Path, map_location: str = "cpu") -> dict[str, Any]:
    import torch

    with open(folder / "state.pt", "rb") as fh:
        return torch.load(fh, map_location=map_location, weights_only=True)
