"""Bad input from a hostile new user: every case is one clean line, and nothing changes on disk.

Each area keeps its cases in ``tests/adversarial_cases_<area>.py``:

    CASES = [
        # (case id, argv after `rprim`, substring the one-line error must contain)
        ("generate-n-abc", ["generate", "--task", "varassign", "-p", "n=abc"], "n takes an integer"),
    ]
    def setup(fixtures: Path) -> None:   # optional; runs once per test session
        ...

argv may use ``{tmp}`` (a fresh empty folder, the command's working directory) and
``{fixtures}`` (the folder that module's ``setup`` filled). Each case runs
``python -m rprim *argv`` in a subprocess (environment inherited) and must: exit with status 2,
print exactly one stderr line starting ``rprim: error:`` that contains the substring, print no
traceback, and leave both folders exactly as they were (names and bytes).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
LIMIT_S = 120  # a case still running by then is doing the work it should have refused


def _modules() -> list[ModuleType]:
    mods = []
    for path in sorted(HERE.glob("adversarial_cases_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        mods.append(module)
    return mods


MODULES = _modules()
CASES = [(m.__name__, *case) for m in MODULES for case in m.CASES]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under root (hidden ones too): file bytes, or None for a folder/link."""
    out: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            out[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return out


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    """Each case module's fixture folder, filled once by its ``setup``."""
    folders = {}
    for module in MODULES:
        folder = tmp_path_factory.mktemp(module.__name__.removeprefix("adversarial_cases_"))
        if hasattr(module, "setup"):
            module.setup(folder)
        folders[module.__name__] = folder
    return folders


def test_cases_are_well_formed():
    ids = [case_id for _, case_id, _, _ in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    for module, case_id, argv, needle in CASES:
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), case_id
        assert isinstance(needle, str) and needle and "\n" not in needle, case_id


@pytest.mark.parametrize("module,case_id,argv,needle", CASES, ids=[c[1] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(module, case_id, argv, needle, fixtures, tmp_path):
    fix = fixtures[module]
    args = [a.replace("{tmp}", str(tmp_path)).replace("{fixtures}", str(fix)) for a in argv]
    before_tmp, before_fix = snapshot(tmp_path), snapshot(fix)
    try:
        r = subprocess.run([sys.executable, "-m", "rprim", *args], cwd=tmp_path, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {LIMIT_S} s: bad input must be refused before the work")
    errors = [line for line in r.stderr.splitlines() if line.startswith("rprim: error:")]
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stderr}"
    assert len(errors) == 1, r.stderr
    assert needle in errors[0], errors[0]
    assert snapshot(tmp_path) == before_tmp, "the working folder changed"
    assert snapshot(fix) == before_fix, "the fixtures changed"
