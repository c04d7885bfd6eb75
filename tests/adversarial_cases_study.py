"""Bad input to `rprim report`, `rprim analyze` and `rprim study`: one line, exit 2, nothing written.

Run by tests/test_adversarial.py: each case runs ``python -m rprim *argv`` in a fresh empty
folder ``{tmp}``; ``{fixtures}`` is filled once by :func:`setup` (a results folder, a 2-layer
model, damaged inputs).
"""

from __future__ import annotations

import json
from pathlib import Path

F = "{fixtures}"
OK = f"{F}/results/baseline"

CASES = [
    # report
    ("report-missing-folder", ["report", f"{F}/nope", "--out", "{tmp}/r"], "does not exist"),
    ("report-no-results-json", ["report", f"{F}/user", "--out", "{tmp}/r"], "has no results.json"),
    ("report-bad-json", ["report", f"{F}/badjson", "--out", "{tmp}/r"], "cannot read results file"),
    ("report-damaged-task", ["report", f"{F}/damaged", "--out", "{tmp}/r"], "damaged"),
    ("report-no-tasks", ["report", f"{F}/notasks", "--out", "{tmp}/r"], "holds no task scores"),
    ("report-unknown-baseline", ["report", OK, "--out", "{tmp}/r", "--baseline", "midas"],
     "is not one of the models"),
    ("report-same-folder-twice", ["report", OK, OK, "--out", "{tmp}/r"], "given twice"),
    ("report-json-not-object", ["report", f"{F}/listjson", "--out", "{tmp}/r"], "not a JSON object"),
    ("report-out-user-folder", ["report", OK, "--out", f"{F}/user"], "holds no rprim report output"),
    ("report-out-is-file", ["report", OK, "--out", f"{F}/afile.txt"], "is a file"),
    ("report-out-is-results", ["report", OK, "--out", OK], "holds no rprim report output"),
    ("report-accuracy-nan", ["report", f"{F}/acc-nan", "--out", "{tmp}/r"], "accuracy is nan"),
    ("report-accuracy-above-one", ["report", f"{F}/acc-big", "--out", "{tmp}/r"], "accuracy is 3.5"),
    ("report-n-negative", ["report", f"{F}/n-neg", "--out", "{tmp}/r"], "n is -5"),
    ("report-n-zero", ["report", f"{F}/n-zero", "--out", "{tmp}/r"], "n is 0"),
    ("report-ci-damaged", ["report", f"{F}/ci-bad", "--out", "{tmp}/r"], "ci95 is"),
    ("report-finetune-damaged", ["report", f"{F}/ft-bad", "--out", "{tmp}/r"], "finetune/results.json is damaged"),
    ("report-finetune-no-seeds", ["report", f"{F}/ft-noseeds", "--out", "{tmp}/r"], "config.seeds"),
    ("report-similarity-damaged", ["report", f"{F}/sim-bad", "--out", "{tmp}/r"], "similarity.json is damaged"),
    ("report-similarity-not-square", ["report", f"{F}/sim-shape", "--out", "{tmp}/r"], "not square"),
    ("report-linearity-damaged", ["report", f"{F}/lin-bad", "--out", "{tmp}/r"], "linearity.json is damaged"),
    ("report-summary-loss-text", ["report", f"{F}/sum-bad", "--out", "{tmp}/r"], "final_val_loss"),
    ("report-snapshot-damaged", ["report", f"{F}/snap-bad", "--out", "{tmp}/r"], "snapshot.json is damaged"),
    ("report-n-bool", ["report", f"{F}/n-bool", "--out", "{tmp}/r"], "n is True"),
    ("report-accuracy-text", ["report", f"{F}/acc-text", "--out", "{tmp}/r"], "accuracy is 'high'"),
    ("report-chance-above-one", ["report", f"{F}/chance-big", "--out", "{tmp}/r"], "chance is 7"),
    ("report-checkpoint-results-damaged", ["report", f"{F}/ckpt-bad", "--out", "{tmp}/r"],
     "results.json is damaged"),
    ("report-finetune-mean-above-one", ["report", f"{F}/ft-mean", "--out", "{tmp}/r"], "mean in [0, 1]"),
    ("report-similarity-no-snapshots", ["report", f"{F}/sim-empty", "--out", "{tmp}/r"], "snapshots is missing"),
    ("report-linearity-cosine-out-of-range", ["report", f"{F}/lin-cos", "--out", "{tmp}/r"], "cosine in [-1, 1]"),
    ("report-summary-tokens-negative", ["report", f"{F}/sum-tokens", "--out", "{tmp}/r"], "tokens is -3"),
    # analyze
    ("similarity-missing-model", ["analyze", "similarity", "--model", f"{F}/nope"], "does not exist"),
    ("similarity-model-is-file", ["analyze", "similarity", "--model", f"{F}/afile.txt"], "is a file"),
    ("similarity-no-config", ["analyze", "similarity", "--model", f"{F}/user"], "no config.json"),
    ("similarity-no-weights", ["analyze", "similarity", "--model", f"{F}/noweights"], "no .safetensors"),
    ("similarity-block-zero", ["analyze", "similarity", "--model", f"{F}/model", "--block-size", "0"],
     "--block-size must be"),
    ("similarity-block-not-divisor", ["analyze", "similarity", "--model", f"{F}/model", "--block-size", "3"],
     "does not divide"),
    ("similarity-out-user-folder", ["analyze", "similarity", "--model", f"{F}/model", "--out", f"{F}/user"],
     "holds no rprim similarity output"),
    ("linearity-text-missing", ["analyze", "linearity", "--model", f"{F}/model", "--text", f"{F}/nope.txt"],
     "cannot read --text"),
    ("linearity-text-empty", ["analyze", "linearity", "--model", f"{F}/model", "--text", f"{F}/empty.txt"],
     "is empty"),
    ("linearity-tokens-tiny", ["analyze", "linearity", "--model", f"{F}/model", "--tokens", "3"],
     "--tokens must be"),
    # study (all refused before any training)
    ("study-unknown-preset", ["study", "--preset", "huge", "--out", "{tmp}/s"], "unknown study preset"),
    ("study-bad-methods", ["study", "--out", "{tmp}/s", "--methods", "baseline,stack"], "--methods"),
    ("study-empty-methods", ["study", "--out", "{tmp}/s", "--methods", ","], "--methods"),
    ("study-bad-mix-fraction", ["study", "--out", "{tmp}/s", "--mix", "varassign:2"], "fraction"),
    ("study-bad-mix-name", ["study", "--out", "{tmp}/s", "--mix", "varasign:0.1"], "--mix"),
    ("study-too-few-steps", ["study", "--out", "{tmp}/s", "--steps", "2"], "too few"),
    ("study-bad-block-size", ["study", "--out", "{tmp}/s", "--set", "block_size=3"], "block size"),
    ("study-bad-set", ["study", "--out", "{tmp}/s", "--set", "lr=fast"], "lr takes a number"),
    ("study-zero-threads", ["study", "--out", "{tmp}/s", "--threads", "0"], "--threads"),
    ("study-device-not-here", ["study", "--out", "{tmp}/s", "--set", "device=cuda:7"], "--set device=cuda:7"),
    ("study-corpus-missing", ["study", "--out", "{tmp}/s", "--corpus", "{tmp}/nope"], "--corpus"),
    ("study-steps-empty-stage", ["study", "--out", "{tmp}/s", "--steps", "11"], "--steps 16 or more"),
    ("study-cache-is-file", ["study", "--out", "{tmp}/s", "--set", f"cache_dir={F}/afile.txt"],
     "is a file, not a folder"),
    ("study-seeds-zero", ["study", "--out", "{tmp}/s", "--seeds", "0"], "--seeds must be a positive integer"),
    ("study-seeds-with-a-seed", ["study", "--out", "{tmp}/s", "--seeds", "2", "--set", "seed=3"],
     "--seeds trains seeds 0, 1"),
    ("study-mix-loss-unknown", ["study", "--out", "{tmp}/s", "--set", "mix_loss=some"], "unknown mix_loss"),
    ("study-out-is-file", ["study", "--out", f"{F}/afile.txt"], "is a file"),
    ("study-out-user-folder", ["study", "--out", f"{F}/user"], "holds no rprim study output"),
]


def setup(fixtures: Path) -> None:
    """A results folder, a 2-layer random Llama (no training), and damaged inputs."""
    from rprim.evaluators.results import Results

    for name in ("results/baseline",):
        Results({"varassign-code-d0": {"accuracy": 0.5, "n": 2, "ci95": [0.1, 0.9], "chance": 0.2}},
                {"varassign-code-d0": [{"id": "a", "correct": True}, {"id": "b", "correct": False}]},
                {"model": "m", "shots": 5}).save(fixtures / name)
    (fixtures / "user").mkdir()
    (fixtures / "user" / "notes.txt").write_text("mine\n")
    (fixtures / "afile.txt").write_text("x\n")
    (fixtures / "empty.txt").write_text("")
    for name, content in (("badjson", "{"), ("damaged", json.dumps({"tasks": {"x": {"n": "two"}}})),
                          ("notasks", json.dumps({"model": "m"})), ("listjson", "[]")):
        (fixtures / name).mkdir()
        (fixtures / name / "results.json").write_text(content)
    good = {"accuracy": 0.5, "n": 2, "ci95": [0.1, 0.9], "chance": 0.2}
    for name, task in (("acc-nan", {**good, "accuracy": float("nan")}), ("acc-big", {**good, "accuracy": 3.5}),
                       ("n-neg", {**good, "n": -5}), ("n-zero", {**good, "n": 0}),
                       ("ci-bad", {**good, "ci95": [0.1]}), ("n-bool", {**good, "n": True}),
                       ("acc-text", {**good, "accuracy": "high"}), ("chance-big", {**good, "chance": 7})):
        (fixtures / name).mkdir()
        (fixtures / name / "results.json").write_text(json.dumps({"tasks": {"varassign-code-d0": task}}))
    beside = {"ft-bad": ("finetune/results.json", "{"),
              "ft-noseeds": ("finetune/results.json", json.dumps(
                  {"aggregate": {"per_task": {"t": {"mean": 0.5, "std": 0.1}}}, "runs": [], "config": {}})),
              "sim-bad": ("analysis/similarity/similarity.json", "[1, 2"),
              "sim-shape": ("analysis/similarity/similarity.json", json.dumps(
                  {"snapshots": [{"similarity": [[1.0, 0.5], [0.5]]}]})),
              "lin-bad": ("analysis/linearity/linearity.json", json.dumps({"layers": [{"r2": "high"}]})),
              "sum-bad": ("training_summary.json", json.dumps({"final_val_loss": "low"})),
              "snap-bad": ("checkpoints/step-00000001/snapshot.json", json.dumps({"step": -1})),
              "ckpt-bad": ("checkpoints/step-00000001/results.json", "{not json"),
              "ft-mean": ("finetune/results.json", json.dumps(
                  {"aggregate": {"per_task": {"t": {"mean": 2.0, "std": 0.1}}}, "runs": [], "config": {"seeds": [0]}})),
              "sim-empty": ("analysis/similarity/similarity.json", json.dumps({"snapshots": []})),
              "lin-cos": ("analysis/linearity/linearity.json", json.dumps({"layers": [{"r2": 0.5, "cosine": 3}]})),
              "sum-tokens": ("training_summary.json", json.dumps({"tokens": -3}))}
    for name, (rel, content) in beside.items():
        import shutil

        shutil.copytree(fixtures / "results" / "baseline", fixtures / name)
        if rel.startswith("checkpoints/"):
            shutil.copytree(fixtures / "results" / "baseline", fixtures / name / "checkpoints" / "step-00000001")
        (fixtures / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (fixtures / name / rel).write_text(content)
    (fixtures / "noweights").mkdir()
    (fixtures / "noweights" / "config.json").write_text("{}")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(cfg).save_pretrained(fixtures / "model")
