"""Files and folders that are never half written, output checks made before any work, locks.

Every rprim output goes through here:

- :func:`atomic_file`: a temp file beside the target, renamed over it only when the block
  succeeds (Ctrl-C, SIGTERM, a full disk or an exception leave the old file or nothing).
- :func:`atomic_folder`: the same for a folder. The finished folder is *published* into place
  by :func:`publish_folder`, which replaces only the entries rprim wrote there before (listed
  in the folder's ``.rprim.json``) and keeps anything else a user put beside them.
- :func:`check_output_file` / :func:`check_output_folder`: the checks a command makes before
  loading a model or training, so that a bad ``--out`` fails in a second, not after an hour.
- :func:`folder_lock`: one writer per folder (two ``rprim train`` into one ``--out`` must not
  interleave).
- :func:`sigterm_as_interrupt`: SIGTERM unwinds like Ctrl-C, so the cleanup above runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import RprimError

MARKER = ".rprim.json"   # in every output folder rprim publishes: its kind and its entries
LOCK = ".rprim.lock"     # held by the process writing a folder (see folder_lock)
HIDDEN = (MARKER, LOCK)  # never count as a user's file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(".")


def _probe(folder: Path, target: Path, flag: str) -> None:
    """RprimError unless a file can really be created in ``folder`` (root ignores modes)."""
    if not folder.is_dir():
        raise RprimError(f"cannot write {target}: {folder} is a file, not a folder; choose another {flag}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".rprim-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RprimError(f"cannot write {target}: {folder} is not writable "
                         f"({e.strerror or e}); choose another {flag}") from None


def check_free_space(path: str | Path, needed: int, what: str, fix: str = "free some space or choose another place") -> None:
    """RprimError unless the file system that will hold ``path`` has ``needed`` bytes free
    (checked before the work that writes them, so a full disk is said first, not met half-way)."""
    folder = _nearest_existing(Path(path).expanduser().absolute())
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the write itself will say
    if needed > free:
        raise RprimError(f"{what} needs about {_size(needed)} at {path}, but only {_size(free)} is free there; {fix}")


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """Fail early, before any work, unless ``path`` can be written as a file."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise RprimError(f"{flag} {path} is a folder; give a file name such as {path}/data.jsonl")
    # /dev/stdout, /dev/null, a fifo: renaming the finished temp file over it would replace
    # the device link itself (root may write in /dev), never write through it
    if (path.exists() and not path.is_file()) or os.path.abspath(path).startswith("/dev/"):
        raise RprimError(f"{flag} {path} is not a regular file; give a file name, or leave "
                         f"{flag} out where the command can write to stdout")
    parent = path.parent
    if not parent.is_dir():
        raise RprimError(f"cannot write {path}: folder {parent} does not exist; create it first")
    _probe(parent, path, flag)
    return path


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The ``.rprim.json`` of an output folder, or None."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def user_entries(folder: Path) -> list[str]:
    """Entries of ``folder`` other than rprim's own bookkeeping files."""
    return sorted(p.name for p in folder.iterdir() if p.name not in HIDDEN)


def is_output_of(folder: Path, kind: str, legacy: tuple[str, ...] = ()) -> bool:
    """Whether ``folder`` holds a previous rprim output of ``kind`` (its marker says so, or a
    file only that output writes, from versions before markers, is there)."""
    marker = read_marker(folder)
    if marker is not None:
        return marker.get("kind") == kind
    return any((folder / name).exists() for name in legacy)


def check_output_folder(path: str | Path, kind: str, flag: str = "--out",
                        legacy: tuple[str, ...] = ()) -> Path:
    """Fail early unless ``path`` can become an output folder of ``kind``.

    Accepted: a missing folder (its parents are created when it is written), an empty one, or
    a previous output of the same kind, which is then updated in place (only what rprim wrote
    is replaced). Refused: a file, a folder holding other files, an unwritable place.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise RprimError(f"{flag} {path} is a file; pass a folder path")
    if path.is_dir() and user_entries(path) and not is_output_of(path, kind, legacy):
        raise RprimError(f"{flag} {path} is a non-empty folder that holds no rprim {kind} output; "
                         "pass a new or empty folder (rprim never replaces files it did not write)")
    parent = path.parent if not path.is_dir() else path
    _probe(_nearest_existing(parent), path, flag)
    return path


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and missing ancestors; return the ones created, deepest first."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for p in folders:  # deepest first
        with contextlib.suppress(OSError):
            p.rmdir()


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", fsync: bool = True) -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise RprimError(f"cannot write {path}: {e.strerror or e}; choose another place") from None
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else "utf-8",
                       newline=None if binary else "\n") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal rights
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _name_the_place(e, path, tmp)
        raise


def _name_the_place(e: BaseException, path: Path, tmp: str | Path) -> None:
    """A write that failed without naming its file (``f.write`` on a full disk), or naming a
    temp file the user never sees, names the output it was for: the one-line error then says
    where (and how much is free there)."""
    if isinstance(e, OSError) and (e.filename is None or str(e.filename).startswith(str(tmp))):
        e.filename = str(path)


def write_text(path: str | Path, text: str, fsync: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path, fsync=fsync) as f:
        f.write(text)
    return Path(path)


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None, so the JSON is valid everywhere
    (Python writes ``NaN``, which strict parsers, jq and browsers reject)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (non-finite numbers become null) atomically."""
    text = json.dumps(json_safe(obj), indent=indent, ensure_ascii=False, allow_nan=False)
    return write_text(path, text + "\n")


def _swap_in(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst`` (file or folder); an old folder at ``dst`` is removed after."""
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def normal_rights(folder: Path) -> None:
    """The folder and everything in it get the rights of a normally created file (0644 and
    0755 under the usual umask): mkdtemp makes 0700, and libraries that write through a temp
    file (safetensors' weights) leave 0600, which another user of a shared machine cannot
    read. Links are left alone."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                os.chmod(p, 0o777 & ~mask)
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                executable = os.stat(p).st_mode & 0o100
                os.chmod(p, (0o777 if executable else 0o666) & ~mask)


def _carry_over(old: Path, new: Path) -> None:
    """Entries of ``old`` that ``new`` lacks (a user's notes in ``samples/``, say) into
    ``new``, recursively, before ``new`` replaces ``old``: rprim never deletes what it did not
    write. Links are copied as links (never followed); files are hard-linked where possible."""
    for p in old.iterdir():
        q = new / p.name
        if p.is_symlink():
            if not q.exists() and not q.is_symlink():
                os.symlink(os.readlink(p), q)
        elif p.is_dir():
            if q.is_dir() and not q.is_symlink():
                _carry_over(p, q)
            elif not q.exists() and not q.is_symlink():
                shutil.copytree(p, q, symlinks=True)
        elif not q.exists() and not q.is_symlink():
            try:
                os.link(p, q)
            except OSError:
                shutil.copy2(p, q, follow_symlinks=False)


def publish_folder(tmp: Path, out: Path, kind: str | None) -> None:
    """Put the finished folder ``tmp`` at ``out``.

    With a ``kind``, ``tmp`` gets a marker listing its entries. A missing ``out`` is renamed
    into place at once (atomic). An existing one is updated entry by entry: each new entry
    replaces its namesake atomically, entries the previous output listed and this one does not
    are removed, and everything else (a user's notes, say) stays, inside replaced folders too.
    An entry that is a symbolic link is refused before anything changes. Without a ``kind`` an
    existing ``out`` is replaced whole.
    """
    entries = sorted(p.name for p in tmp.iterdir())
    if kind is not None:
        (tmp / MARKER).write_text(json.dumps({"kind": kind, "entries": entries}, indent=1) + "\n",
                                  encoding="utf-8")
    if not out.exists():
        os.rename(tmp, out)
        return
    if kind is None:
        _swap_in(tmp, out)
        return
    links = [name for name in entries if (out / name).is_symlink()]
    if links:  # checked before anything changes: an update never writes through a link
        raise RprimError(f"{out / links[0]} is a symbolic link; rprim does not write through links "
                         "inside its output folders: remove the link, or pass another folder")
    for name in entries:  # a user's files inside a folder rprim replaces go along with it
        if (out / name).is_dir() and (tmp / name).is_dir():
            _carry_over(out / name, tmp / name)
    old = read_marker(out) or {}
    for name in entries:
        _swap_in(tmp / name, out / name)
    for name in old.get("entries", []):
        if name not in entries and name not in HIDDEN and "/" not in name and name not in ("", ".", ".."):
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
    os.replace(tmp / MARKER, out / MARKER)
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(out: str | Path, kind: str | None = None, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``out``; publish it at ``out`` when the block succeeds.

    On failure (an exception, Ctrl-C, SIGTERM) the temp folder and any parent folders this
    call created are removed, so nothing is left half written. ``keep_existing``: if ``out``
    appeared meanwhile (another process built the same cache entry), keep that one.
    """
    out = Path(os.path.abspath(Path(out).expanduser()))  # "." and ".." name real folders
    created = _make_parents(out.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        _remove_empty(created)
        raise RprimError(f"cannot write {out}: {e.strerror or e}; choose another place") from None
    try:
        yield tmp
        normal_rights(tmp)
        if keep_existing and out.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            publish_folder(tmp, out, kind)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        _name_the_place(e, out, tmp)
        raise


def clean_stale_temps(folder: Path) -> None:
    """Remove temp files and folders (``.NAME.tmp-*``, ``.NAME.*.tmp``) a killed process left."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(".") and (".tmp-" in p.name or p.name.endswith(".tmp")):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "run", flag: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the block.

    A second process asking for the same folder gets a one-line RprimError at once. A folder
    (and parents) that the lock created and that is still empty afterwards is removed, so a
    command that fails its later checks leaves nothing behind.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise RprimError(f"{flag} {folder} is a file; pass a folder path")
    try:
        created = _make_parents(folder)
    except OSError as e:
        raise RprimError(f"cannot create {folder} ({e.strerror or e}); choose another {flag}") from None
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError as e:
        _remove_empty(created)
        raise RprimError(f"cannot write {folder} ({e.strerror or e}); choose another {flag}") from None
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: proceed unlocked
        fcntl = None  # type: ignore[assignment]
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise RprimError(f"{folder} is in use by another rprim {what} (pid {holder}); wait for "
                                 f"it to finish or choose another {flag}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield folder
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)
        if created and folder.is_dir() and not any(folder.iterdir()):
            _remove_empty(created)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def sigterm_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread, so a terminated command cleans
    up exactly as after Ctrl-C (temp files removed, finished work kept)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
