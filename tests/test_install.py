"""rprim installed from its wheel (not editable) works from the repository root and elsewhere.

Issue 9: after ``pip install .`` (no -e), ``import rprim`` and ``python -m rprim`` in the
repository root failed with a misleading circular import, since the source folders there shadow
the wheel. And install hints said ``pip install 'rprim[torch]'``, which fails: rprim is not on
the package index.

Offline and quick: the wheel is built without build isolation (setuptools of this environment),
installed with ``--no-deps`` into a bare venv, which then sees this environment's packages
(numpy, jinja2, click) through a ``.pth`` file added *after* the install, so pip never sees (or
touches) another rprim.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest


def _setuptools_version() -> tuple[int, ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return tuple(int(x) for x in version("setuptools").split(".")[:2] if x.isdigit())
    except PackageNotFoundError:
        return (0,)


# The wheel is built offline without build isolation, so this environment's setuptools must be
# the one pyproject.toml asks for (`pip install -e ".[test]"` brings it).
pytestmark = pytest.mark.skipif(_setuptools_version() < (77,),
                                reason="building the wheel offline needs setuptools>=77 here")

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__",
                              ".pytest_cache", "tests", "benchmarks", "scripts")
PROBE = ("import sys, rprim, rprim.primitives as P, rprim.core as C; "
         "assert P.get('varassign-code-d2').generate(2)[0]['task'] == 'varassign-code-d2'; "
         "assert len(P.load_suite(['psm'])['psm']) == 1000; "
         "print(P.__file__); print(C.install_hint('torch'))")


def _env() -> dict[str, str]:
    """This environment without the PYTHONPATH that points tests at the checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH", "PYTHONHOME")}


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True)
    if check:
        assert r.returncode == 0, f"{args}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """A copy of the checkout, its wheel, and a venv with only that wheel installed."""
    base = tmp_path_factory.mktemp("install")
    src = base / "rprim-src"
    shutil.copytree(ROOT, src, ignore=SKIP)  # building in place would leave build/ in the checkout
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(base / "dist"),
          str(src)], base)
    wheel = next((base / "dist").glob("rprim-*.whl"))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base)
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)], base)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base)
    deps = {str(Path(m.__file__).resolve().parent.parent) for m in _light_dependencies()}
    (Path(purelib.stdout.strip()) / "rprim-test-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return {"src": src, "wheel": wheel, "python": python, "venv": venv, "elsewhere": elsewhere}


def _light_dependencies() -> list:
    import click
    import jinja2
    import markupsafe
    import numpy

    return [click, jinja2, markupsafe, numpy]


def test_import_and_cli_from_the_repository_root(installed):
    """Python started in the checkout imports the checkout's code, whole, not half the wheel."""
    r = _run([str(installed["python"]), "-c", PROBE], installed["src"])
    module, hint = r.stdout.splitlines()
    assert Path(module).resolve().is_relative_to(installed["src"])
    assert hint == f"pip install -e '{installed['src']}[torch]'"
    r = _run([str(installed["python"]), "-m", "rprim", "tasks"], installed["src"])
    assert "varassign-code-d2" in r.stdout
    r = _run([str(installed["venv"] / "bin" / "rprim"), "generate", "--task", "psm", "--n", "2"], installed["src"])
    assert len(r.stdout.splitlines()) == 2


def test_import_and_cli_from_another_folder(installed):
    """Elsewhere the wheel is used, data files included."""
    r = _run([str(installed["python"]), "-c", PROBE], installed["elsewhere"])
    module, hint = r.stdout.splitlines()
    assert Path(module).resolve().is_relative_to(installed["venv"].resolve())
    assert hint == f"pip install '{installed['wheel']}[torch]'"
    r = _run([str(installed["python"]), "-m", "rprim", "tasks"], installed["elsewhere"])
    assert "varassign-code-d2" in r.stdout and r.stderr == ""
    r = _run([str(installed["venv"] / "bin" / "rprim"), "suite", "--out", "s", "--n", "2"], installed["elsewhere"])
    assert (installed["elsewhere"] / "s" / "manifest.json").is_file()


def test_install_hints_are_commands_pip_accepts(installed):
    """Both hints name something pip can install with the extra (checked with --dry-run,
    offline: --no-deps, so pip resolves the requirement itself without fetching torch)."""
    dry = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
           "--ignore-installed", "--no-build-isolation", "-q"]
    for cwd, kind in ((installed["src"], "checkout"), (installed["elsewhere"], "wheel")):
        hint = _run([str(installed["python"]), "-c", PROBE], cwd).stdout.splitlines()[1]
        words = hint.split()
        assert words[:2] == ["pip", "install"] and "'rprim[" not in hint, hint
        spec = [w.strip("'") for w in words[2:]]
        r = _run([*dry, *spec], cwd, check=False)
        assert r.returncode == 0, f"{kind}: {hint}\n{r.stderr}"
    # a missing optional package names the extra with the same hint, in one line
    code = ("import sys; sys.modules['pandas'] = None; from rprim.cli import main; "
            "main(['generate', '--task', 'psm', '--n', '1', '--out', 'x.parquet'])")
    r = _run([str(installed["python"]), "-c", code], installed["elsewhere"], check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"pip install '{installed['wheel']}[parquet]'" in r.stderr
    assert not (installed["elsewhere"] / "x.parquet").exists()


def test_hint_without_a_recorded_source():
    """Neither a checkout nor a known wheel: say what to install from, never `rprim[x]`."""
    code = ("import importlib.metadata as m, rprim.core.paths as p\n"
            "def gone(name): raise m.PackageNotFoundError(name)\n"
            "p._is_checkout = lambda root: False; m.distribution = gone; print(p.install_hint('gguf'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "'rprim[" not in r.stdout and "[gguf]" in r.stdout, r.stdout + r.stderr


def test_site_is_untouched():
    """The fixture never installs into the running environment."""
    assert all(not Path(p, "rprim-test-deps.pth").exists() for p in site.getsitepackages())


ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"rprim": "rprim", "rprim.primitives": "primitives", "rprim.evaluators": "evaluators",
           "rprim.model_zoo": "model_zoo", "rprim.data": "data"}


def _package_folders() -> dict[str, Path]:
    """Every folder of the source tree that is a package, by its dotted name."""
    out = {}
    for name, folder in SOURCES.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder).parts
            out[".".join([name, *rel])] = init.parent
    return out


def test_every_package_folder_is_installed_and_in_the_readme_layout():
    """A subpackage missing from pyproject's list would be absent from the wheel (imports fail
    only after ``pip install .``); one missing from the README's Layout is a room nobody finds."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setup = project["tool"]["setuptools"]
    layout = (ROOT / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1]
    for name, folder in _package_folders().items():
        assert name in setup["packages"], f"{name} is not in pyproject's packages"
        assert Path(setup["package-dir"][name]) == folder.relative_to(ROOT), name
        shown = folder.relative_to(ROOT).as_posix() + "/"
        assert shown in layout or f" {folder.name}/ " in layout, \
            f"the README's Layout does not name {shown}"
