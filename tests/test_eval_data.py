"""What gets scored: a user's own records, the answer budget (a function of the task, not of
--n), the cap on --n, and progress reported per finished example."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import rprim.primitives as P  # noqa: E402
from rprim.core import RprimError  # noqa: E402
from rprim.evaluators import evaluate, exact, flexible, prediction, read_records, wilson  # noqa: E402
from rprim.evaluators.data import MAX_GENERATED_N, task_data  # noqa: E402
from rprim.evaluators.engine.hf import plain_greedy  # noqa: E402
from test_eval_helpers import tiny_model, tokenizer, trained  # noqa: E402


def test_scoring_helpers_are_public():
    assert prediction(" 17\nx", ["\n"]) == "17" and exact("17", "17") and flexible("17.", "17")
    assert wilson(5, 10)[0] < 0.5 < wilson(5, 10)[1]


@pytest.mark.parametrize("task,seed", [("varassign-code-d0", 0), ("psm", 1)])  # longest answer: 3 tokens in the first 100, 2 in the first 10
def test_prediction_does_not_depend_on_n(task, seed):
    """The same example gets the same budget and prediction at --n 10 and --n 100 (a model
    that never stops decodes to the budget, so a budget that moved with n would show)."""
    tok = tokenizer("bpe")
    model = tiny_model(tok, seed=3, train_steps=0)
    small = evaluate(model, tokenizer=tok, tasks=[task], shots=1, n=10, seed=seed, batch_size=16)
    large = evaluate(model, tokenizer=tok, tasks=[task], shots=1, n=100, seed=seed, batch_size=16)
    assert small.tasks[task]["max_new_tokens"] == large.tasks[task]["max_new_tokens"]
    assert small.samples[task] == large.samples[task][:10]


def test_budget_sample_is_fixed():
    a, b = task_data("psm", 0, 5, 1), task_data("psm", 0, 50, 1)
    assert a.sample == b.sample and len(a.records) == 5 and b.records[:5] == a.records
    assert {r["id"] for r in b.records} <= {r["id"] for r in b.sample}
    assert len(task_data("varassign-code-d0", 0, 3, 0).sample) == 1000  # the frozen suite
    small = P.get("varassign", depth=0, format="basic", width=1)  # few distinct queries
    assert len(task_data(small.name, 0, 20, 0).sample) == 1000


def test_n_is_capped_before_any_data_is_made():
    with pytest.raises(RprimError, match="more than rprim eval scores per task"):
        task_data("psm", 0, MAX_GENERATED_N + 1, 1)
    with pytest.raises(RprimError, match="frozen suite has 1000"):
        task_data("psm", 0, 1001, 0)


def test_own_records_in_python():
    model, tok = trained("bpe")
    recs = P.get("arithmetic").generate(6, seed=9, shots=2)
    mine = [{"prompt": r["prompt"], "target": r["target"], "target_delimiter": ""} for r in recs]
    res = evaluate(model, tokenizer=tok, tasks={"sums": mine, "arithmetic": recs}, batch_size=4)
    assert set(res.tasks) == {"sums", "arithmetic"}
    assert res.samples["sums"] == [{**row, "id": f"sums/{i}"} for i, row in
                                   enumerate(res.samples["arithmetic"])]
    assert res.tasks["arithmetic"]["chance"] == P.get("arithmetic").chance
    assert res.tasks["sums"]["chance"] is None and res.meta["shots"] is None
    budget = res.tasks["sums"]["max_new_tokens"]
    for row, r in zip(res.samples["sums"], mine):
        assert row["prediction"] == plain_greedy(model, tok, r["prompt"], ["\n"], budget).strip()


@pytest.mark.parametrize("bad,needle", [
    ({"x": []}, "non-empty list"),
    ({"x": [{"prompt": "a"}]}, "'target'"),
    ({"x": [{"prompt": 3, "target": "1"}]}, "'prompt'"),
    ({"x": [{"prompt": "a", "target": "1", "until": [""]}]}, "until"),
    ({}, "empty"),
])
def test_bad_own_records(bad, needle):
    model, tok = trained("bpe")
    with pytest.raises(RprimError, match=needle):
        evaluate(model, tokenizer=tok, tasks=bad)


def test_read_records_groups_by_task(tmp_path):
    f = tmp_path / "data.jsonl"
    rows = P.get("psm").generate(3, seed=1) + P.get("arithmetic").generate(2, seed=1)
    f.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    got = read_records(f)
    assert list(got) == ["psm", "arithmetic"] and len(got["psm"]) == 3
    (tmp_path / "mine.jsonl").write_text('{"prompt": "1+1=", "target": "2"}\n')
    assert list(read_records(tmp_path / "mine.jsonl")) == ["mine"]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "1+1=", "target": "2"}\nnot json\n')
    with pytest.raises(RprimError, match="line 2 is not JSON"):
        read_records(tmp_path / "bad.jsonl")
    with pytest.raises(RprimError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")


def test_progress_counts_each_example_as_it_finishes():
    """One batch of 12: the fast rows are reported after the forced pass, the rest as decoding
    finishes them, so the callback runs more than once per batch and adds up to the total."""
    model, tok = trained("bpe")
    calls = []
    res = evaluate(model, tokenizer=tok, tasks=["varassign-basic-d0"], shots=1, n=12,
                   batch_size=12, on_progress=calls.append)
    assert sum(calls) == 12 and len(calls) >= 2 and all(c > 0 for c in calls)
    assert res.meta["examples"] == 12
