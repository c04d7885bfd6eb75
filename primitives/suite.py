"""The canonical evaluation suite, frozen as files in ``data/suite`` with a manifest.

Every suite task, 1000 test examples, seed 0. The files are what ``rprim eval`` scores by
default; a test regenerates them and demands byte equality, so a change that alters data must
bump ``GENERATOR_VERSION`` (and rewrite the files with ``rprim suite --out data/suite``).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from .base import GENERATOR_VERSION
from rprim.core import RprimError
from rprim.core import atomic_folder, check_output_folder, write_json

from .io import write_jsonl
from .registry import SUITE, get, resolve

SUITE_N = 1000
SUITE_SEED = 0
MANIFEST = "manifest.json"


def suite_dir() -> Path:
    """Where the frozen suite ships inside the installed package."""
    return Path(str(resources.files("rprim.data") / "suite"))


def check_suite_folder(out: str | Path) -> Path:
    """The checks made before writing a suite: a new, empty or earlier suite folder."""
    return check_output_folder(out, "suite", legacy=(MANIFEST,))


def write_suite(out: str | Path, n: int = SUITE_N, seed: int = SUITE_SEED,
                tasks: list[str] | None = None) -> dict[str, Any]:
    """Write ``<task>.jsonl`` per task (test split, 0-shot) and ``manifest.json``; return it.

    All files are written into a temp folder first and published together, so an interrupted
    call leaves the previous suite (or nothing), never some tasks without a manifest.
    """
    out = check_suite_folder(out)
    # every task's request is checked (n > 0, no more than its test split holds) before any work
    jobs = [(name, get(name)) for name in tasks or list(SUITE)]
    chunks = [task.iter_chunks(n, seed=seed, split="test") for _, task in jobs]
    entries = []
    with atomic_folder(out, kind="suite") as tmp:
        for (name, task), lines in zip(jobs, chunks):
            path = tmp / f"{task.name}.jsonl"
            write_jsonl(lines, path)
            family, _ = resolve(name)
            entries.append({"task": task.name, "family": family, "params": task.params, "n": n,
                            "seed": seed, "split": "test", "generator_version": GENERATOR_VERSION,
                            "file": path.name, "sha256": _sha256(path)})
        manifest = {"generator_version": GENERATOR_VERSION, "n": n, "seed": seed, "tasks": entries}
        write_json(tmp / MANIFEST, manifest)
    return manifest


def read_manifest(folder: str | Path | None = None) -> dict[str, Any]:
    folder = Path(folder) if folder else suite_dir()
    path = folder / MANIFEST
    if not path.is_file():
        raise RprimError(f"no suite manifest at {path}; write one with `rprim suite --out {folder}`")
    return json.loads(path.read_text(encoding="utf-8"))


def load_suite(tasks: list[str] | None = None, folder: str | Path | None = None,
               verify: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Records of the frozen suite, by task name (all suite tasks by default).

    With ``verify``, each file's sha256 must match the manifest, so a scored suite is
    exactly the published one.
    """
    folder = Path(folder) if folder else suite_dir()
    manifest = read_manifest(folder)
    by_name = {e["task"]: e for e in manifest["tasks"]}
    wanted = tasks or list(by_name)
    out = {}
    for name in wanted:
        if name not in by_name:
            raise RprimError(f"{name!r} is not in the frozen suite ({', '.join(by_name)}); "
                             "generate it instead")
        path = folder / by_name[name]["file"]
        data = path.read_bytes()
        if verify and hashlib.sha256(data).hexdigest() != by_name[name]["sha256"]:
            raise RprimError(f"{path} does not match its manifest sha256; restore it or "
                             "regenerate the suite")
        out[name] = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
