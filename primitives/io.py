"""Writing records: atomically (temp file, then rename), as JSONL or Parquet."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from .errors import RprimError


def check_writable(path: str | Path) -> Path:
    """Fail early, before any work, when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise RprimError(f"--out {path} is a folder; give a file name such as {path}/data.jsonl")
    if not parent.is_dir():
        raise RprimError(f"cannot write {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise RprimError(f"cannot write {path}: folder {parent} is not writable; choose another --out")
    return path


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise RprimError(f"cannot write {path}: {e.strerror}; choose another --out") from None
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8",
                       newline=None if "b" in mode else "\n") as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal rights
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_jsonl(chunks: Iterable[list[str]], path: str | Path) -> int:
    """Write chunks of JSON lines atomically; returns the number of lines."""
    count = 0
    with atomic_write(path) as f:
        for chunk in chunks:
            if chunk:
                f.write("\n".join(chunk) + "\n")
                count += len(chunk)
    return count


def write_parquet(chunks: Iterable[list[str]], path: str | Path) -> int:
    """Write records as Parquet; nested fields (params, metadata) are stored as JSON text."""
    try:
        import pandas as pd
    except ImportError:
        raise RprimError("writing Parquet needs pandas and pyarrow; run "
                         "pip install 'rprim[parquet]' or write .jsonl") from None
    rows = [json.loads(line) for chunk in chunks for line in chunk]
    for r in rows:
        r["params"] = json.dumps(r["params"], sort_keys=True)
        r["metadata"] = json.dumps(r["metadata"])
    frame = pd.DataFrame(rows)
    with atomic_write(path, "wb") as f:
        try:
            frame.to_parquet(f, index=False)
        except ImportError:
            raise RprimError("writing Parquet needs pyarrow; run pip install 'rprim[parquet]'") from None
    return len(rows)


def write_records(chunks: Iterable[list[str]], path: str | Path) -> int:
    """JSONL or Parquet by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return write_parquet(chunks, path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return write_jsonl(chunks, path)
    raise RprimError(f"unknown output type {suffix or '(none)'!r} for {path}; use a .jsonl or .parquet file name")
