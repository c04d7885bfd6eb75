"""`rprim finetune`: the paper's protocol raises held-out accuracy, deterministically."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import rprim.primitives as P  # noqa: E402
from rprim.evaluators.finetune import FinetuneConfig, encode, finetune, training_set  # noqa: E402

import test_eval_helpers as H  # noqa: E402

EASY = FinetuneConfig(tasks=("varassign-basic-d0-w1",), examples=32, seeds=(0, 1), steps=40,
                      eval_start=0, eval_end=40, eval_every=40, eval_n=100, optimizer="adamw",
                      lr=3e-3)


@pytest.fixture(scope="module")
def base():
    tok = H.tokenizer("bpe")
    return H.tiny_model(tok, train_steps=60), tok


@pytest.fixture(scope="module")
def easy_run(base):
    model, tok = base
    return finetune(model, EASY, tokenizer=tok)


def test_finetuning_raises_held_out_accuracy(easy_run):
    for run in easy_run["runs"]:
        before = run["before"]["varassign-basic-d0-w1"]
        after = run["curve"][-1]["accuracy"]["varassign-basic-d0-w1"]
        assert after >= before + 0.2, (before, after)
        assert run["curve"][-1]["loss"] < run["curve"][0]["loss"] / 2
    agg = easy_run["aggregate"]
    window = [r["window"]["varassign-basic-d0-w1"] for r in easy_run["runs"]]
    assert agg["per_task"]["varassign-basic-d0-w1"]["mean"] == pytest.approx(sum(window) / 2)
    assert agg["overall"]["std"] >= 0


def test_seeds_differ_only_by_their_own_data(base, easy_run):
    """The same seed reproduces its run exactly on CPU; other seeds draw other train data."""
    a, b = easy_run["runs"]
    assert not set(a["train_ids"]) & set(b["train_ids"])
    assert all("/train/" in i for i in a["train_ids"])
    model, tok = base
    again = finetune(model, FinetuneConfig(**{**EASY.__dict__, "seeds": (1,)}), tokenizer=tok)
    assert again["runs"][0]["curve"] == b["curve"] and again["runs"][0]["train_ids"] == b["train_ids"]


def test_base_model_is_left_untouched(base):
    import torch

    model, tok = base
    before = [p.detach().clone() for p in model.parameters()]
    finetune(model, FinetuneConfig(**{**EASY.__dict__, "seeds": (0,), "steps": 3, "eval_start": 3,
                                      "eval_end": 3, "eval_n": 10}), tokenizer=tok)
    assert all(torch.equal(x, y) for x, y in zip(before, model.parameters()))


def test_loss_covers_only_the_answer_and_line_end(base):
    _, tok = base
    recs = training_set(FinetuneConfig(tasks=("varassign-code-d1", "arithmetic"), examples=6), 0)
    ids, mask, labels = encode(tok, recs)
    for row, lab, m, r in zip(ids.tolist(), labels.tolist(), mask.tolist(), recs):
        kept = [t for t in lab if t != -100]
        assert tok.decode(kept) == r["target_delimiter"] + r["target"] + "\n"
        first = next(i for i, t in enumerate(lab) if t != -100)
        assert tok.decode(row[:first]) == r["prompt"]
        assert all(t == -100 for t, k in zip(lab, m) if k == 0)


def test_training_sets_follow_the_mix():
    recs = training_set(FinetuneConfig(), 0)
    assert len(recs) == 64
    assert [r["task"] for r in recs].count("varassign-code-d1") == 32
    assert all(r["split"] == "train" and r["num_fewshot"] == 0 for r in recs)
    test = {r["query"] for r in P.load_suite(["varassign-code-d2"])["varassign-code-d2"]}
    assert not test & {r["query"] for r in recs}


def test_results_file_and_saved_weights(base, tmp_path):
    model, tok = base
    tok_dir, model_dir = tmp_path / "m", tmp_path / "m"
    model.save_pretrained(model_dir)
    tok.save_pretrained(tok_dir)
    out, save = tmp_path / "out", tmp_path / "ft"
    r = subprocess.run([sys.executable, "-m", "rprim", "finetune", "--model", str(model_dir),
                        "--tasks", "varassign-basic-d0-w1", "--examples", "8", "--seeds", "2",
                        "--steps", "4", "--eval-start", "2", "--eval-end", "4", "--eval-every", "2",
                        "--eval-n", "20", "--optimizer", "adafactor", "--out", str(out),
                        "--save", str(save)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "± " in r.stdout and "overall" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert [run["seed"] for run in res["runs"]] == [0, 1]
    assert [p["step"] for p in res["runs"][0]["curve"] if "accuracy" in p] == [2, 4]
    assert (save / "seed-1" / "config.json").is_file()


BAD = [
    (["--tasks", "varassign-code-d1,varassign-code-d2", "--examples", "63"], "does not split evenly"),
    (["--tasks", "varasign-code-d1"], "unknown task"),
    (["--optimizer", "sgd"], "unknown optimizer"),
    (["--eval-start", "250", "--steps", "200"], "evaluation window"),
    (["--tasks", "arithmetic", "-p"], "No such option"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_input(args, needle, tmp_path):
    r = subprocess.run([sys.executable, "-m", "rprim", "finetune", "--model", str(tmp_path), *args],
                       capture_output=True, text=True)
    assert r.returncode == 2 and needle in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_too_many_examples_for_the_split(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rprim", "finetune", "--model", str(tmp_path),
                        "--tasks", "arithmetic-c0-v0_1", "--examples", "500"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "too few distinct queries" in r.stderr, r.stderr
