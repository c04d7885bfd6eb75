"""The `rprim` CLI: generate, tasks, suite, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
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
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a[1:4]) for a, _ in BAD])
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
