"""rprim.core: the shared pieces every command relies on (atomic outputs, checks, locks, parsing)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rprim.core import (RprimError, atomic_file, atomic_folder, cache_dir, check_output_file,
                        check_output_folder, folder_lock, parse_batch_size, parse_dtype,
                        typed_value, write_json)
from rprim.core.files import MARKER


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_atomic_file_keeps_old_content_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with atomic_file(path) as f:
            f.write("new")
            1 / 0
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with atomic_file(path) as f:
        f.write("new")
    assert path.read_text() == "new"
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_folder_replaces_only_what_it_wrote(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with atomic_folder(out, kind="demo") as tmp:
        (tmp / "one.txt").write_text("1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x").write_text("x")
    assert json.loads((out / MARKER).read_text())["entries"] == ["one.txt", "sub"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())  # not mkdtemp's 0700
    (out / "notes.md").write_text("mine")  # a user's file beside rprim's output
    check_output_folder(out, "demo")  # a previous output of the same kind is accepted
    with atomic_folder(out, kind="demo") as tmp:
        (tmp / "two.txt").write_text("2")
    assert tree(out) == {MARKER: (out / MARKER).read_bytes(), "notes.md": b"mine", "two.txt": b"2"}


def test_failed_atomic_folder_leaves_nothing(tmp_path):
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(out, kind="demo") as tmp:
            (tmp / "half").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # not even the parents it created


def test_output_checks_refuse_user_folders_files_and_unwritable_places(tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "thesis.tex").write_text("x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RprimError, match="holds no rprim demo output"):
        check_output_folder(tmp_path / "user", "demo")
    with pytest.raises(RprimError, match="is a file"):
        check_output_folder(tmp_path / "file", "demo")
    with pytest.raises(RprimError, match="not writable"):
        check_output_folder("/proc/rprim-test", "demo")
    with pytest.raises(RprimError, match="is a folder"):
        check_output_file(tmp_path / "user")
    with pytest.raises(RprimError, match="does not exist"):
        check_output_file(tmp_path / "no" / "x.jsonl")
    assert check_output_folder(tmp_path / "new" / "x", "demo") == tmp_path / "new" / "x"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_folder_lock_is_exclusive_across_processes(tmp_path):
    out = tmp_path / "run"
    code = ("import sys; from rprim.core import folder_lock, RprimError\n"
            "try:\n    with folder_lock(sys.argv[1]): pass\n"
            "except RprimError as e:\n    print(e); sys.exit(2)\n")
    with folder_lock(out):
        r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
        assert r.returncode == 2 and f"pid {os.getpid()}" in r.stdout and "in use" in r.stdout
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not out.exists()  # created for the lock, empty afterwards: removed


@dataclasses.dataclass
class Knobs:
    n: int = 1
    rate: float = 0.5
    flag: bool = False
    name: str = "x"
    opt: int | None = None
    items: list[str] = dataclasses.field(default_factory=list)


@pytest.mark.parametrize("key,text,value", [
    ("n", "12", 12), ("n", "1e6", 1_000_000), ("n", "100e9", 100_000_000_000), ("rate", "1e-3", 1e-3),
    ("flag", "true", True), ("flag", "0", False), ("name", "abc", "abc"), ("opt", "none", None),
    ("opt", "3", 3), ("items", "a,b", ["a", "b"]),
])
def test_typed_values_follow_the_field_types(key, text, value):
    assert typed_value(Knobs, key, text, "-p") == value


@pytest.mark.parametrize("key,value", [
    ("n", "abc"), ("n", "12.5"), ("n", "2.0"), ("rate", "inf"), ("rate", "nan"), ("flag", "maybe"),
    ("n", True), ("n", 2.5), ("flag", 1), ("name", 3), ("nope", "1"),
])
def test_typed_values_reject_the_wrong_type_in_one_line(key, value):
    with pytest.raises(RprimError) as e:
        typed_value(Knobs, key, value, "-p")
    assert "\n" not in str(e.value) and key in str(e.value)


def test_dtype_and_batch_size_spellings():
    assert parse_dtype("bf16") == parse_dtype("bfloat16") == "bfloat16"
    assert parse_dtype("FP32") == "float32"
    with pytest.raises(RprimError):
        parse_dtype("int8")
    assert parse_batch_size("auto") == "auto" and parse_batch_size("16") == 16
    for bad in ("abc", "0", "2.5", "-3"):
        with pytest.raises(RprimError):
            parse_batch_size(bad)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RPRIM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rprim"
    monkeypatch.setenv("RPRIM_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_write_json_is_strict_json(tmp_path):
    write_json(tmp_path / "x.json", {"loss": float("nan"), "ok": [1.5, float("inf")]})
    assert json.loads((tmp_path / "x.json").read_text(), parse_constant=lambda c: 1 / 0) == \
        {"loss": None, "ok": [1.5, None]}


def test_device_errors_name_the_flag_as_written(monkeypatch):
    """``--device tpu`` and ``--set device=tpu`` both read as the user typed them."""
    from rprim.core import parse_device

    with pytest.raises(RprimError, match=r"unknown --set device='tpu'"):
        parse_device("tpu", "--set device=")
    with pytest.raises(RprimError, match=r"unknown --device 'tpu'"):
        parse_device("tpu")
    torch = pytest.importorskip("torch")
    from rprim.core.torch_util import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RprimError, match=r"^--set device=cuda: .* use --set device=cpu or auto$"):
        resolve_device("cuda", "--set device=")


def test_atomic_folder_takes_dot_and_dotdot_as_the_folders_they_name(tmp_path, monkeypatch):
    """`--out .` and `--out x/..` name real folders: publish there, create nothing else."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    with atomic_folder(".", kind="demo") as tmp:
        (tmp / "a.txt").write_text("a")
    (here / "mine.txt").write_text("mine")
    with atomic_folder("x/..", kind="demo") as tmp:  # x does not exist
        (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in here.iterdir()) == [MARKER, "b.txt", "mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]  # no stray x/ or temp folder


def test_output_file_check_refuses_devices_and_fifos(tmp_path):
    """As root, renaming a temp file over /dev/stdout would replace the device link itself."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in ("/dev/null", "/dev/stdout", "/dev/rprim-new.jsonl", fifo):
        with pytest.raises(RprimError, match="not a regular file"):
            check_output_file(path)
    assert os.path.exists("/dev/null") and not Path("/dev/null").is_file()


def test_rates_measure_each_kind_of_work_apart_and_fall_back_to_priors():
    """The ETA of fine-tuning and of a study: a kind's measured rate replaces its prior; a kind
    with neither costs what the caller says (the fastest known rate, or a fixed guess)."""
    from rprim.core.progress import Rates

    r = Rates()
    assert r.rate("train") is None and r.fastest() is None
    r.add("train", 15.0, 150.0)
    r.add("eval", 3.0, 0.0)  # time without work measures nothing
    assert r.rate("train") == pytest.approx(0.1) and r.rate("eval") is None
    assert r.fastest() == pytest.approx(0.1)
    assert r.left([("train", 150.0), ("eval", 100.0)], unknown=r.fastest()) == pytest.approx(25.0)
    r.add("eval", 7.0, 50.0)  # 10 s for 50 units: now measured, at its own rate
    assert r.left([("train", 150.0), ("eval", 50.0)], unknown=1.0) == pytest.approx(15.0 + 10.0)

    s = Rates({"train": 2.0, "report": 8.0})
    assert s.fastest() == 2.0 and s.left([("train", 3), ("analysis", 1)], unknown=1.0) == 7.0
    s.add("train", 1.0, 4)  # measured: the prior no longer counts
    assert s.rate("train") == 0.25 and s.rate("report") == 8.0 and s.fastest() == 0.25
    assert s.left([], unknown=1.0) == 0.0


def test_progress_core_imports_nothing_heavy():
    code = ("import sys, rprim.core.progress; "
            "print(sorted(m for m in ('torch', 'tqdm', 'transformers', 'numpy') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_rprim_device_sets_what_auto_means(monkeypatch):
    pytest.importorskip("torch")
    from rprim.core.torch_util import resolve_device

    monkeypatch.setenv("RPRIM_DEVICE", "cpu")
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    monkeypatch.setenv("RPRIM_DEVICE", "tpu")
    with pytest.raises(RprimError, match="RPRIM_DEVICE"):
        resolve_device("auto")
    monkeypatch.setenv("RPRIM_DEVICE", "auto")
    assert resolve_device("auto") in ("cpu", "cuda")


def test_an_update_keeps_user_files_inside_replaced_folders(tmp_path):
    from rprim.core import atomic_folder

    out = tmp_path / "out"
    with atomic_folder(out, kind="thing") as tmp:
        (tmp / "samples").mkdir()
        (tmp / "samples" / "a.jsonl").write_text("old a\n")
        (tmp / "results.json").write_text("{}\n")
    (out / "samples" / "my-notes.txt").write_text("mine")
    with atomic_folder(out, kind="thing") as tmp:
        (tmp / "samples").mkdir()
        (tmp / "samples" / "a.jsonl").write_text("new a\n")
        (tmp / "results.json").write_text('{"v": 2}\n')
    assert (out / "samples" / "a.jsonl").read_text() == "new a\n"
    assert (out / "samples" / "my-notes.txt").read_text() == "mine"


def test_an_update_never_writes_through_a_link(tmp_path):
    """A link where rprim would write (``samples`` pointing elsewhere) is refused before
    anything changes: results.json stays the earlier one and the link's target is untouched."""
    from rprim.core import RprimError, atomic_folder

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep")
    with atomic_folder(out, kind="thing") as tmp:
        (tmp / "samples").mkdir()
        (tmp / "results.json").write_text("old\n")
    import shutil

    shutil.rmtree(out / "samples")
    (out / "samples").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(RprimError, match="symbolic link"):
        with atomic_folder(out, kind="thing") as tmp:
            (tmp / "samples").mkdir()
            (tmp / "results.json").write_text("new\n")
    assert (out / "results.json").read_text() == "old\n"
    assert [p.name for p in elsewhere.iterdir()] == ["precious.txt"]
    assert not [p for p in tmp_path.rglob("*.tmp-*")]
