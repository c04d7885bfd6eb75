"""Writing records as JSONL or Parquet, atomically (see ``rprim.core.files``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from rprim.core import RprimError, atomic_file, check_output_file, install_hint


def write_jsonl(chunks: Iterable[list[str]], path: str | Path) -> int:
    """Write chunks of JSON lines atomically; returns the number of lines."""
    count = 0
    with atomic_file(path) as f:
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
        raise RprimError(f"writing Parquet needs pandas and pyarrow; {install_hint('parquet')}, "
                         "or write .jsonl") from None
    rows = [json.loads(line) for chunk in chunks for line in chunk]
    for r in rows:
        r["params"] = json.dumps(r["params"], sort_keys=True)
        r["metadata"] = json.dumps(r["metadata"])
    frame = pd.DataFrame(rows)
    with atomic_file(path, "wb") as f:
        try:
            frame.to_parquet(f, index=False)
        except ImportError:
            raise RprimError(f"writing Parquet needs pyarrow; {install_hint('parquet')}") from None
    return len(rows)


SUFFIXES = {".parquet": write_parquet, ".jsonl": write_jsonl, ".json": write_jsonl, ".ndjson": write_jsonl}


def check_records_path(path: str | Path) -> Path:
    """The checks made before generating: a writable file with a known suffix."""
    path = check_output_file(path)
    if path.suffix.lower() not in SUFFIXES:
        raise RprimError(f"unknown output type {path.suffix or '(none)'!r} for {path}; "
                         "use a .jsonl or .parquet file name")
    return path


def write_records(chunks: Iterable[list[str]], path: str | Path) -> int:
    """JSONL or Parquet by the file's suffix."""
    return SUFFIXES[check_records_path(path).suffix.lower()](chunks, path)
