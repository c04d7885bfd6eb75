"""The `rprim` CLI: generate, tasks, suite, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rprim.primitives as P


def rprim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rprim", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_generate_to_file_and_stdout(tmp_path):
    out = tmp_path / "d2.jsonl"
    r = rprim("generate", "--task", "varassign", "--depth", "2", "--format", "code", "--n", "50",
              "--out", str(out))
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 50 and recs[0]["task"] == "varassign-code-d2"
    stdout = rprim("generate", "--task", "varassign-code-d2", "--n", "50").stdout
    assert stdout == out.read_text()


def test_generate_parquet_matches_jsonl(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = tmp_path / "x.parquet"
    assert rprim("generate", "--task", "psm", "--n", "40", "--shots", "2", "--out", str(out)).returncode == 0
    frame = pd.read_parquet(out)
    recs = P.get("psm").generate(40, shots=2)
    assert frame["prompt"].tolist() == [r["prompt"] for r in recs]
    assert [json.loads(m) for m in frame["metadata"]] == [r["metadata"] for r in recs]


def test_params_and_knobs(tmp_path):
    r = rprim("generate", "--task", "copying-words", "-p", "n=12", "-p", "m=4", "--n", "3")
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert recs[0]["task"] == "copying-words-n12-m4" and recs[0]["params"]["n"] == 12
    r = rprim("generate", "--task", "varassign", "--depth", "5", "--width", "6", "-p", "name_length=2", "--n", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["task"] == "varassign-basic-d5-w6-l2"


def test_custom_template_adds_a_format(tmp_path):
    tpl = tmp_path / "terse.j2"
    tpl.write_text("{% for line in lines %}{{ line.name }}:={{ line.value }}; {% endfor %}{{ query }}?")
    r = rprim("generate", "--task", "varassign", "--depth", "1", "--template", str(tpl), "--n", "2")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec["task"] == "varassign-terse-d1" and rec["query"].endswith("?") and ":=" in rec["query"]
    same = P.get("varassign", depth=1).generate(2)[0]["metadata"]
    assert rec["metadata"] == same  # a format changes the surface, not the problem


def test_tasks_lists_families_formats_and_suite():
    r = rprim("tasks")
    assert r.returncode == 0
    for word in ("varassign", "basic, code, math", "depth=0", "copying-words", "psm-calc", "arithmetic"):
        assert word in r.stdout


def test_suite_command(tmp_path):
    r = rprim("suite", "--out", str(tmp_path / "s"), "--n", "5", "--show", "1")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert [e["task"] for e in manifest["tasks"]] == P.suite_names()
    assert "Fill in blank:" in r.stdout


BAD = [
    (["generate", "--task", "varasign"], "did you mean varassign"),
    (["generate", "--task", "varassign", "--format", "yaml"], "unknown format 'yaml'"),
    (["generate", "--task", "varassign", "--depth", "-1"], "depth must be >= 0"),
    (["generate", "--task", "varassign", "--depth", "5"], "name_length=2"),
    (["generate", "--task", "varassign", "--n", "0"], "n must be a positive"),
    (["generate", "--task", "varassign", "--split", "dev"], "unknown split 'dev'"),
    (["generate", "--task", "varassign", "-p", "colour=red"], "no knob colour"),
    (["generate", "--task", "varassign", "-p", "width"], "is not KEY=VALUE"),
    (["generate", "--task", "copying", "-p", "m=10"], "1 <= m < n"),
    (["generate", "--task", "psm", "--shots", "-2"], "shots must be >= 0"),
    (["generate", "--task", "psm", "--out", "/no/such/dir/x.jsonl"], "does not exist"),
    (["generate", "--task", "psm", "--out", "x.csv"], "use a .jsonl or .parquet"),
    (["generate", "--task", "psm", "--bogus"], "No such option"),
    (["generate", "--task", "varassign-code-d2", "--depth", "1"], "already fixes depth=2"),
    (["generate", "--task", "varassign-code-d2", "-p", "depth=1"], "already fixes depth=2"),
    (["generate", "--task", "varassign-code-d2", "--format", "math"], "varassign-math-d2"),
    (["generate", "--task", "psm-calc", "-p", "calc=false"], "already fixes calc=True"),
    (["generate", "--task", "varassign", "--depth", "1", "-p", "depth=2"], "contradicts -p depth=2"),
    (["generate", "--task", "copying", "-p", "n=4", "-p", "n=5"], "contradict each other"),
    (["generate", "--task", "copying", "-p", "n=abc"], "n takes an integer"),
    (["generate", "--task", "copying", "-p", "n=12.5"], "n takes an integer"),
    (["generate", "--task", "varassign", "-p", "width=2.0"], "width takes an integer"),
    (["generate", "--task", "varassign", "-p", "high=inf"], "high takes an integer"),
    (["generate", "--task", "arithmetic", "-p", "context=nan"], "context takes an integer"),
    (["generate", "--task", "varassign", "-p", "low=abc"], "low takes an integer"),
    (["generate", "--task", "psm", "-p", "high=true"], "high takes an integer"),
    (["generate", "--task", "psm", "-p", "calc=maybe"], "calc takes true or false"),
    (["generate", "--task", "psm", "--n", "1000000000000"], "holds at most 4,1"),
    (["generate", "--task", "psm", "--out", "/proc/rprim.jsonl"], "not writable"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    r = rprim(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("rprim: error: "), r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no partial or temp output file


def test_failed_generation_leaves_no_file_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "keep.jsonl"
    out.write_text("old\n")
    r = rprim("generate", "--task", "arithmetic", "-p", "context=0", "-p", "high=1", "--n", "500",
              "--out", str(out))
    assert r.returncode == 2 and "too few distinct queries" in r.stderr
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl"]


def test_out_folder_is_refused(tmp_path):
    r = rprim("generate", "--task", "psm", "--out", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr


def test_duplicates_are_reported(tmp_path):
    r = rprim("generate", "--task", "arithmetic", "-p", "context=0", "-p", "high=1", "--n", "40",
              "--allow-duplicates")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 40
    assert "kept" in r.stderr and "repeated queries" in r.stderr


@pytest.mark.parametrize("args,missing,extra", [
    (["train", "--out", "{tmp}/run"], "torch", "[torch]"),
    (["eval", "--model", "{tmp}/m", "--n", "1"], "transformers", "[torch]"),
])
def test_missing_optional_dependency_is_one_line(args, missing, extra, tmp_path, monkeypatch, capsys):
    """A data-only install (`pip install .`) running a model command: name the extra, exit 2."""
    from rprim.cli import main

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, missing, None)  # `import <missing>` now fails
    with pytest.raises(SystemExit) as e:
        main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert f"needs the {missing} package" in err and extra in err
    assert not (tmp_path / "run").exists()


def test_a_task_name_may_restate_its_knobs_and_set_the_others(tmp_path):
    same = rprim("generate", "--task", "varassign-code-d2", "--depth", "2", "-p", "format=code", "--n", "3")
    assert same.returncode == 0 and same.stdout == rprim("generate", "--task", "varassign-code-d2", "--n", "3").stdout
    wider = rprim("generate", "--task", "varassign-code-d2", "--width", "6", "--n", "1")
    assert json.loads(wider.stdout)["task"] == "varassign-code-d2-w6", wider.stderr


def test_template_errors_list_the_variables(tmp_path):
    tpl = tmp_path / "terse.j2"
    tpl.write_text("{% for line in lines %}{{ line.nme }}{% endfor %}{{ query }}")
    r = rprim("generate", "--task", "varassign", "--template", str(tpl), "--n", "1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "it can use lines (a list; each item has name, value, level), query, depth, width" in r.stderr


def test_a_user_template_never_masquerades_as_a_built_in_format(tmp_path):
    """Issue 10: `--template ./code.j2` labelled the user's wording `varassign-code-d0`."""
    (tmp_path / "code.j2").write_text("{% for l in lines %}{{ l.name }}:={{ l.value }};{% endfor %}{{ query }}?")
    r = rprim("generate", "--task", "varassign", "--template", "./code.j2", "--n", "1", cwd=tmp_path)
    assert r.returncode == 2 and "'code' is a built-in varassign format" in r.stderr, r.stderr
    (tmp_path / "blank.j2").write_text("{{ sequence | join(',') }} / {{ span | join(',') }} ->")
    r = rprim("generate", "--task", "copying", "--template", "blank.j2", "--n", "1", cwd=tmp_path)
    assert r.returncode == 2 and "built-in copying format" in r.stderr
    (tmp_path / "mine.j2").write_text("{{ sequence | join(',') }} / {{ span | join(',') }} ->")
    r = rprim("generate", "--task", "copying", "--template", "mine.j2", "--n", "1", cwd=tmp_path)
    assert json.loads(r.stdout)["task"] == "copying-random-fmine", r.stderr  # never copying-random
    r = rprim("generate", "--task", "copying-random-fmine", "--template", "mine.j2", "--n", "1", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["task"] == "copying-random-fmine", r.stderr


def _signal_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell may have ignored it


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rprim", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_signal_default)


def _wait_until(condition, proc: subprocess.Popen, limit: float = 120.0) -> None:
    """Poll until ``condition()`` holds (the command is mid-write); fail if it ended first."""
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never started writing"
        time.sleep(0.02)


def _has_data(folder: Path, pattern: str) -> bool:
    try:
        return any(p.is_file() and p.stat().st_size > 0 for p in folder.glob(pattern))
    except FileNotFoundError:  # a temp file vanished while we looked
        return False


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_generate_leaves_nothing(sig, tmp_path):
    """Issue 10: SIGTERM during `generate --out` left a 66 MB `.tmp` file behind."""
    proc = _start(["generate", "--task", "varassign-code-d2", "--n", "3000000", "--out", "big.jsonl"], tmp_path)
    _wait_until(lambda: _has_data(tmp_path, ".big.jsonl.*.tmp"), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_suite_leaves_nothing_and_keeps_the_old_suite(sig, tmp_path):
    """Issue 10: Ctrl-C during `suite --out` left an empty folder, or 2 of 14 files without a
    manifest. Now: nothing new, and an earlier suite in that folder stays exactly as it was."""
    proc = _start(["suite", "--out", "new/suite", "--n", "400000"], tmp_path)
    _wait_until(lambda: _has_data(tmp_path / "new", ".suite.tmp-*/*"), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # not even the parent folder it created

    assert rprim("suite", "--out", "old", "--n", "3", cwd=tmp_path).returncode == 0
    before = tree(tmp_path)
    proc = _start(["suite", "--out", "old", "--n", "400000"], tmp_path)
    _wait_until(lambda: _has_data(tmp_path, ".old.tmp-*/*"), proc)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode == 130 and tree(tmp_path) == before


@pytest.mark.parametrize("args,needle", [
    (["suite", "--out", "a/b/c", "--n", "0"], "n must be a positive"),
    (["suite", "--out", "a/b/c", "--n", "10000000"], "holds at most"),
    (["suite", "--out", "a/b/c", "--show", "-1"], "--show"),
    (["suite", "--out", "/proc/rprim-suite"], "not writable"),
    (["suite", "--out", "f"], "is a file"),
])
def test_failed_suite_calls_leave_no_folder(args, needle, tmp_path):
    (tmp_path / "f").write_text("x")
    r = rprim(*args, cwd=tmp_path)
    assert r.returncode == 2 and needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
