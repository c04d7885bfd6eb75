"""Atomic checkpoints: write into a temporary folder, then ``os.replace`` it into place.

Layout: ``<out>/checkpoints/step-00000120/{state.pt,meta.json}`` plus ``LATEST`` (a text file
naming the newest complete folder, itself replaced atomically). A crash at any moment leaves
either the previous checkpoint or the new one, never a half-written one. Older checkpoints
beyond ``keep`` are pruned after the new one is in place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(root: Path, step: int, payload: dict[str, Any], meta: dict[str, Any], keep: int = 2) -> Path:
    """Save ``payload`` (torch-serializable) as the checkpoint of ``step``; return its folder."""
    import torch

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / "state.pt", "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    (tmp / "meta.json").write_text(json.dumps(dict(meta, step=step), indent=1))
    if final.exists():  # same step saved twice (e.g. resumed run): swap the old one out
        old = root / f".old-step-{step:08d}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    latest_tmp = root / f".LATEST.tmp{os.getpid()}"
    latest_tmp.write_text(final.name + "\n")
    os.replace(latest_tmp, root / "LATEST")
    _fsync_dir(root)
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for p in steps[:-keep] if keep > 0 else []:
        if p != final:
            shutil.rmtree(p, ignore_errors=True)
    return final


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
