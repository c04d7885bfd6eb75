"""`rprim export`: lm-eval builds exactly rprim's prompts; Parquet reads back as the records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rprim.primitives as P
from rprim.evaluators.export import export_lm_eval, export_parquet, lm_eval_name

TASKS = ["psm-calc", "arithmetic", "varassign-code-d1", "copying-words"]


def rprim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rprim", *args], capture_output=True, text=True, cwd=cwd)


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def data_files(yaml_path: Path) -> dict[str, str]:
    line = next(x for x in yaml_path.read_text().splitlines() if x.startswith("dataset_kwargs:"))
    return json.loads(line.split(":", 1)[1])["data_files"]


def load_like_lm_eval(yaml_path: Path) -> dict[str, list[dict]]:
    """What lm-eval's custom_dataset hook returns: the loader named by the YAML's ``!function``,
    imported from beside the YAML, called with the YAML's dataset_kwargs (rows per split)."""
    import importlib.util

    line = next(x for x in yaml_path.read_text().splitlines() if x.startswith("custom_dataset:"))
    module, func = line.split("!function", 1)[1].strip().rsplit(".", 1)
    spec = importlib.util.spec_from_file_location(module, yaml_path.parent / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dataset = getattr(mod, func)(data_files=data_files(yaml_path), version=1.0)
    return {split: list(dataset[split]) for split in dataset}


def test_lm_eval_folder_layout(tmp_path):
    out = tmp_path / "lm"
    names = export_lm_eval(out, tasks=",".join(TASKS), shots=3, n=25)
    assert names == [lm_eval_name(t) for t in TASKS]
    group = (out / "_rprim.yaml").read_text()
    assert "group: \"rprim\"" in group
    for t in TASKS:
        yaml = (out / t / f"{t}.yaml").read_text()
        for field in ("doc_to_text: \"query\"", "fewshot_delimiter: \"\\n\\n\"", "num_fewshot: 3",
                      "\"sampler\": \"first_n\"", "\"metric\": \"exact_match\""):
            assert field in yaml, (t, field)
        task = P.get(t)
        assert f"target_delimiter: {json.dumps(task.target_delimiter)}" in yaml
        assert json.dumps(list(task.until)) in yaml
        files = {split: out / t / name for split, name in data_files(out / t / f"{t}.yaml").items()}
        test = [json.loads(x) for x in files["test"].read_text().splitlines()]
        assert [r["query"] for r in test] == [r["query"] for r in task.generate(25)]
        fewshot = [json.loads(x) for x in files["fewshot"].read_text().splitlines()]
        assert [(e["query"], e["target"]) for e in fewshot] == task.exemplars(0, 10)


def test_lm_eval_names_keep_the_canonical_name():
    """lm-eval has its own `arithmetic` group, so rprim's tasks carry a prefix, and nothing else."""
    assert [lm_eval_name(t) for t in TASKS] == ["rprim-" + t for t in TASKS]


def test_lm_eval_export_can_move(tmp_path, monkeypatch):
    """No absolute path anywhere; after the folder moves, each task's loader reads the same
    rows from any working directory (it resolves the files beside itself)."""
    pytest.importorskip("datasets")
    export_lm_eval(tmp_path / "a" / "lm", tasks="psm,arithmetic", shots=2, n=10)
    before = tree(tmp_path / "a" / "lm")
    assert not any(str(tmp_path) in (v or b"").decode("utf-8", "replace") for v in before.values())
    rows = {t: load_like_lm_eval(tmp_path / "a" / "lm" / t / f"{t}.yaml") for t in ("psm", "arithmetic")}
    (tmp_path / "b").mkdir()
    shutil.move(tmp_path / "a" / "lm", tmp_path / "b" / "lm")
    shutil.rmtree(tmp_path / "a")
    assert tree(tmp_path / "b" / "lm") == before
    for cwd in (tmp_path, tmp_path / "b", tmp_path / "b" / "lm" / "psm", Path("/")):
        monkeypatch.chdir(cwd)
        for t in ("psm", "arithmetic"):
            assert load_like_lm_eval(tmp_path / "b" / "lm" / t / f"{t}.yaml") == rows[t]
    assert [r["query"] for r in rows["psm"]["test"]] == [r["query"] for r in P.get("psm").generate(10)]


def test_lm_eval_builds_rprims_prompts(tmp_path, monkeypatch):
    """lm-eval's own prompt builder, on the export, gives rprim's k-shot prompts exactly."""
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager, get_task_dict

    export_lm_eval(tmp_path / "a" / "lm", tasks=",".join(TASKS), shots=4, n=30)
    shutil.move(tmp_path / "a", tmp_path / "b")  # the export moves
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # lm-eval starts in an unrelated folder
    tasks = get_task_dict([lm_eval_name(t) for t in TASKS], TaskManager(include_path=str(tmp_path / "b" / "lm")))
    for t in TASKS:
        lm_task = tasks[lm_eval_name(t)]
        ours = P.get(t).generate(30, shots=4)
        docs = list(lm_task.test_docs())
        assert [lm_task.fewshot_context(d, 4) for d in docs] == [r["prompt"] for r in ours]
        assert lm_task.config.generation_kwargs["until"] == list(P.get(t).until)


def test_parquet_export_reads_back(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = tmp_path / "pq"
    names = export_parquet(out, tasks="psm,varassign-math-d2", n=40)
    assert names == ["psm", "varassign-math-d2"]
    frame = pd.read_parquet(out / "varassign-math-d2" / "test.parquet")
    recs = P.load_suite(["varassign-math-d2"])["varassign-math-d2"][:40]
    assert frame["query"].tolist() == [r["query"] for r in recs]
    assert [json.loads(m) for m in frame["metadata"]] == [r["metadata"] for r in recs]
    assert "config_name: varassign-math-d2" in (out / "README.md").read_text()


def test_export_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    for args, needle in [(["lm-eval", "--out", str(tmp_path / "file")], "is a file"),
                         (["parquet", "--out", str(tmp_path / "x"), "--tasks", "nope"], "unknown task"),
                         (["lm-eval", "--out", "/proc/rprim-export"], "not writable")]:
        r = subprocess.run([sys.executable, "-m", "rprim", "export", *args], capture_output=True, text=True)
        assert r.returncode == 2 and needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing half-written


def test_lm_eval_scores_like_rprim(tmp_path, monkeypatch):
    """lm-eval (HF backend) on the export gives rprim's per-example predictions and verdicts."""
    pytest.importorskip("lm_eval")
    pytest.importorskip("torch")
    import lm_eval
    from lm_eval.tasks import TaskManager

    from rprim.evaluators import evaluate

    import test_eval_helpers as H

    tok = H.tokenizer("bpe")
    model = H.tiny_model(tok, train_steps=150)
    path = tmp_path / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    tasks = ["varassign-code-d0", "psm-calc", "arithmetic"]
    export_lm_eval(tmp_path / "lm", tasks=",".join(tasks), shots=3, n=20)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # lm-eval may start in any folder
    out = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={path},dtype=float32", device="cpu", batch_size=1,
        tasks=[lm_eval_name(t) for t in tasks], task_manager=TaskManager(include_path=str(tmp_path / "lm")),
        log_samples=True)
    ours = evaluate(str(path), tasks=tasks, shots=3, n=20, max_new_tokens=32)  # lm-eval's budget
    agree = 0
    for t in tasks:
        theirs = sorted(out["samples"][lm_eval_name(t)], key=lambda s: s["doc_id"])
        assert len(theirs) == 20
        for s, o in zip(theirs, ours.samples[t]):
            assert s["doc"]["id"] == o["id"]
            assert s["filtered_resps"][0].strip() == o["prediction"], (t, o["id"])
            assert bool(s["exact_match"]) == o["correct"], (t, o["id"])
            agree += o["correct"]
        assert out["results"][lm_eval_name(t)]["exact_match,none"] == pytest.approx(ours.accuracy(t))
    assert agree > 0  # the model is right sometimes, so verdicts of both kinds were compared


@pytest.mark.parametrize("kind", ["lm-eval", "parquet"])
def test_export_never_touches_a_users_files(kind, tmp_path):
    """A folder holding a user's file is refused; a previous export is updated in place,
    keeping a file the user put beside it; `--out .` never empties the working directory."""
    if kind == "parquet":
        pytest.importorskip("pyarrow")
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("mine")
    r = rprim("export", kind, "--out", str(user), "--tasks", "psm", "--n", "5")
    assert r.returncode == 2 and "holds no rprim" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert tree(user) == {"chapter1.tex": b"mine"}
    r = rprim("export", kind, "--out", ".", "--tasks", "psm", "--n", "5", cwd=user)
    assert r.returncode == 2 and tree(user) == {"chapter1.tex": b"mine"}, r.stderr

    out = tmp_path / "exp"
    assert rprim("export", kind, "--out", str(out), "--tasks", "psm,arithmetic", "--n", "5").returncode == 0
    (out / "notes.md").write_text("keep me")
    r = rprim("export", kind, "--out", str(out), "--tasks", "varassign-code-d0", "--n", "5")
    assert r.returncode == 0, r.stderr
    entries = sorted(p.name for p in out.iterdir())
    assert "notes.md" in entries and "varassign-code-d0" in entries
    assert "psm" not in entries and "arithmetic" not in entries  # the old export's tasks went
    assert (out / "notes.md").read_text() == "keep me"

    here = tmp_path / "here"
    here.mkdir()
    assert rprim("export", kind, "--out", ".", "--tasks", "psm", "--n", "5", cwd=here).returncode == 0
    (here / "mine.txt").write_text("x")
    assert rprim("export", kind, "--out", ".", "--tasks", "arithmetic", "--n", "5", cwd=here).returncode == 0
    assert (here / "mine.txt").read_text() == "x" and (here / "arithmetic").is_dir()
    assert not (here / "psm").exists()


def test_export_folders_get_normal_permissions(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    out = tmp_path / "lm"
    export_lm_eval(out, tasks="psm", shots=1, n=5)
    for p in [out, out / "psm", *out.rglob("*")]:
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert p.stat().st_mode & 0o777 == want, p


def test_negative_shots_are_refused(tmp_path):
    r = rprim("export", "lm-eval", "--out", str(tmp_path / "x"), "--shots", "-3")
    assert r.returncode == 2 and "--shots" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    with pytest.raises(P.RprimError, match="--shots"):
        export_lm_eval(tmp_path / "x", tasks="psm", shots=-3)
    assert list(tmp_path.iterdir()) == []
