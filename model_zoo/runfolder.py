"""The run folder (``--out``): what may be written there, by whom, and where a run starts.

- :meth:`RunFolder.check` runs before any work (no torch, no tokenizer): ``--resume`` needs a run
  there, ``--overwrite`` only ever replaces a folder that is an rprim run, a non-empty folder
  needs one of them, and the place must be writable.
- :meth:`RunFolder.lock` holds ``rprim.core.folder_lock`` on the folder (rank 0), so a second
  ``rprim train`` into the same folder refuses at once; under it, temp files a killed run left
  (``checkpoints/.step-*.tmp-*``, snapshot and export temps) are removed.
- The folder's ``.rprim.json`` marker (kind ``train``) lists the entries rprim writes there;
  ``--overwrite`` removes those and nothing else (a user's notes beside a run stay).
- :meth:`RunFolder.start` says how the run begins: fresh, from the latest checkpoint, or not at
  all because the run is already complete (then nothing is changed).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

from rprim.core import RprimError, folder_lock, write_json, write_text
from rprim.core.files import (MARKER, _nearest_existing, _probe, clean_stale_temps, normal_rights, read_marker,
                              user_entries)

KIND = "train"
# what a run writes; runs from before markers are recognised by these names
BASE_ENTRIES = ["checkpoints", "snapshots", "tokenizer", "metrics.jsonl", "training_summary.json"]
LEGACY = ("training_summary.json", "metrics.jsonl", "checkpoints")
LEGACY_EXPORT = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
                 "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


class RunFolder:
    """``--out`` of ``rprim train`` and the policy for it (see the module docstring)."""

    def __init__(self, out: str | Path, resume: bool = False, overwrite: bool = False):
        self.out = Path(out).expanduser()
        self.resume, self.overwrite = resume, overwrite

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def snapshots(self) -> Path:
        return self.out / "snapshots"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.jsonl"

    def is_run(self) -> bool:
        """Whether the folder holds an rprim training run (marker, or files only a run writes)."""
        marker = read_marker(self.out)
        if marker is not None:
            return marker.get("kind") == KIND
        return any((self.out / name).exists() for name in LEGACY)

    def check(self) -> None:
        """The checks made before any work; RprimError in one line."""
        out = self.out
        if self.resume and self.overwrite:
            raise RprimError("pass either --resume (continue the run in the output folder) or --overwrite "
                             "(replace it), not both")
        if out.exists() and not out.is_dir():
            raise RprimError(f"--out {out} is a file; pass a folder path")
        filled = out.is_dir() and bool(user_entries(out))
        if self.resume and not (filled and self.is_run()):
            what = "holds no rprim training run" if filled else "has no run to resume (it is missing or empty)"
            raise RprimError(f"--resume: {out} {what}; drop --resume to start a new run, or pass the run's folder")
        if self.overwrite and filled and not self.is_run():
            raise RprimError(f"--overwrite: {out} is not an rprim training run, and rprim only replaces its own "
                             "runs; choose another --out")
        if filled and not (self.resume or self.overwrite):
            raise RprimError(f"output folder {out} exists and is not empty; pass --resume to continue it, "
                             "--overwrite to replace it, or another --out")
        _probe(_nearest_existing(out if out.is_dir() else out.parent), out, "--out")

    @contextlib.contextmanager
    def lock(self, main: bool) -> Iterator[None]:
        """Rank 0 holds the folder's lock for the block; stale temps are cleaned under it."""
        if not main:
            yield
            return
        with folder_lock(self.out, "training run"):
            for folder in (self.out, self.checkpoints, self.snapshots):
                clean_stale_temps(folder)
            yield

    # ------------------------------------------------------------------ how the run starts
    def finished_summary(self) -> dict[str, Any] | None:
        """The summary of a run that ran to its end (summary and weights written), else None."""
        path = self.out / "training_summary.json"
        if not (self.resume and path.exists() and any(self.out.glob("*.safetensors"))):
            return None
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return summary if isinstance(summary, dict) and "config" in summary else None

    def begin_fresh(self) -> None:
        """Rank 0, before a fresh start: clear what an earlier run wrote (only that), mark the folder."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.is_run():
            self._remove_run_entries()
        self.add_entries(BASE_ENTRIES)
        write_text(self.metrics, "")

    def _remove_run_entries(self) -> None:
        marker = read_marker(self.out)
        names = marker.get("entries", []) if marker else BASE_ENTRIES + list(LEGACY_EXPORT) + \
            [p.name for p in self.out.glob("model-*.safetensors")]
        for name in names:
            if not name or "/" in name or name in (".", "..", MARKER):
                continue
            target = self.out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

    def add_entries(self, names: list[str]) -> None:
        """Record entries rprim wrote (for --overwrite), in the folder's marker."""
        marker = read_marker(self.out) or {}
        entries = sorted(set(marker.get("entries", [])) | set(names)) if marker.get("kind") == KIND else sorted(names)
        write_json(self.out / MARKER, {"kind": KIND, "entries": entries})

    def truncate_after(self, step: int) -> None:
        """A resumed run redoes everything after its checkpoint: metric rows and snapshots."""
        if self.metrics.exists():
            keep = []
            for line in self.metrics.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= step:
                        keep.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
            write_text(self.metrics, "".join(line + "\n" for line in keep))
        for p in self.snapshots.glob("step-*"):
            if p.is_dir() and p.name[5:].isdigit() and int(p.name[5:]) > step:
                shutil.rmtree(p, ignore_errors=True)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.out / "training_summary.json", summary)

    def publish_export(self, save: Any) -> None:
        """``save(folder)`` writes the final HF files into a temp folder inside the run; each is
        then moved into place and recorded in the marker."""
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=".export.tmp-", dir=self.out))
        try:
            save(tmp)
            normal_rights(tmp)
            names = sorted(p.name for p in tmp.iterdir())
            self.add_entries(names)
            for name in names:
                target = self.out / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                (tmp / name).replace(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
