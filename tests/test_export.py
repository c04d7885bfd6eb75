"""`rprim export`: lm-eval builds exactly rprim's prompts; Parquet reads back as the records."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import rprim.primitives as P
from rprim.evaluators.export import export_lm_eval, export_parquet, lm_eval_name

TASKS = ["psm-calc", "arithmetic", "varassign-code-d1", "copying-words"]


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
        test = [json.loads(x) for x in (out / t / "test.jsonl").read_text().splitlines()]
        assert [r["query"] for r in test] == [r["query"] for r in task.generate(25)]
        fewshot = [json.loads(x) for x in (out / t / "fewshot.jsonl").read_text().splitlines()]
        assert [(e["query"], e["target"]) for e in fewshot] == task.exemplars(0, 10)


def test_lm_eval_builds_rprims_prompts(tmp_path):
    """lm-eval's own prompt builder, on the export, gives rprim's k-shot prompts exactly."""
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager, get_task_dict

    out = tmp_path / "lm"
    export_lm_eval(out, tasks=",".join(TASKS), shots=4, n=30)
    tasks = get_task_dict([lm_eval_name(t) for t in TASKS], TaskManager(include_path=str(out)))
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


def test_lm_eval_scores_like_rprim(tmp_path):
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
