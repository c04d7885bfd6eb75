"""A full disk and a broken environment: one line, exit 2, no traceback, nothing half written.

The full disk is real: a 256 kB tmpfs (needs the right to mount, as root in a container has;
skipped elsewhere). What does not fit is refused before the work when its size is known
(``generate --n``), else said in one line when the write fails, with no temp file left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def rprim(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rprim", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def one_line(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rprim: error:"), r.stderr[-2000:]
    assert needle in lines[0] and "Traceback" not in r.stderr


@pytest.fixture
def disk(tmp_path: Path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def everything(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_generate_more_than_the_disk_holds_is_refused_before_writing(disk):
    r = rprim("generate", "--task", "varassign-code-d2", "--n", "1000000000000", "--out", str(disk / "x.jsonl"))
    one_line(r, "needs about")
    assert "free there" in r.stderr and everything(disk) == []


def test_a_write_that_fills_the_disk_is_one_line_and_leaves_nothing(disk):
    (disk / "keep.txt").write_text("an earlier result")
    r = rprim("suite", "--out", str(disk / "suite"), "--n", "1000")
    one_line(r, "No space left on device")
    assert everything(disk) == ["keep.txt"] and (disk / "keep.txt").read_text() == "an earlier result"


def test_the_training_cache_on_a_full_disk_is_one_line(disk, tmp_path):
    r = rprim("train", "--corpus", "stdlib-python", "--out", str(tmp_path / "run"), "--cache-dir",
              str(disk / "cache"), "--set", "max_corpus_bytes=2000000", "--set", "steps=2", "--quiet")
    one_line(r, "cannot write")
    assert not [p for p in everything(disk) if ".tmp" in p]


def test_a_cache_folder_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    r = rprim("train", "--corpus", "stdlib-python", "--out", str(tmp_path / "run"), "--set", "steps=2",
              "--set", "max_corpus_bytes=20000", "--quiet", env={"RPRIM_CACHE": str(blocker)})
    one_line(r, "cache")
    assert blocker.read_text() == "not a folder"
