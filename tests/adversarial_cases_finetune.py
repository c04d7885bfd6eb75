"""Bad input to `rprim finetune`: each is one line, exit 2, before any training, nothing written.

Run by tests/test_adversarial.py. ``setup`` builds a tiny saved model (context 256), a copy
with truncated weights, a file, and the folder of an interrupted run (results of seed 0 of 3).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TINY = "{fixtures}/tiny"
FT = ["finetune", "--model", TINY]

CASES = [
    # settings, checked before anything loads
    ("finetune-batch-size-abc", [*FT, "--batch-size", "abc"],
     "--batch-size must be 'auto' or a positive integer"),
    ("finetune-batch-size-0", [*FT, "--batch-size", "0"], "--batch-size must be"),
    ("finetune-batch-size-2.5", [*FT, "--batch-size", "2.5"], "--batch-size must be"),
    ("finetune-batch-size-neg", [*FT, "--batch-size", "-3"], "--batch-size must be"),
    ("finetune-micro-batch-abc", [*FT, "--micro-batch-size", "abc"], "--micro-batch-size must be"),
    ("finetune-window-past-steps", [*FT, "--steps", "60", "--eval-start", "50", "--eval-end", "70"],
     "evaluation window 50..70 must lie within 0..60"),
    ("finetune-window-end-before-default-start", [*FT, "--eval-end", "100"],
     "defaults to the last third of --steps, 200"),
    ("finetune-lr-nan", [*FT, "--lr", "nan"], "--lr must be a positive number"),
    ("finetune-seeds-0", [*FT, "--seeds", "0"], "--seeds must be at least 1"),
    ("finetune-optimizer-sgd", [*FT, "--optimizer", "sgd"], "unknown optimizer 'sgd'"),
    ("finetune-device-tpu", [*FT, "--device", "tpu"], "unknown --device 'tpu'"),
    ("finetune-threads-0", [*FT, "--threads", "0"], "--threads must be a positive integer"),
    # data the splits cannot provide
    ("finetune-examples-beyond-split", [*FT, "--tasks", "arithmetic-c0-v0_1", "--examples", "500"],
     "too few distinct queries for 500"),
    ("finetune-eval-n-beyond-suite", [*FT, "--eval-n", "5000"], "use a smaller --eval-n"),
    # output folders, checked before loading (they used to fail after all the training)
    ("finetune-out-root", [*FT, "--out", "/"], "non-empty folder"),
    ("finetune-out-is-file", [*FT, "--out", "{fixtures}/file.txt"], "is a file"),
    ("finetune-save-unwritable", [*FT, "--save", "/proc/rprim-finetune"], "not writable"),
    ("finetune-save-is-out", [*FT, "--out", "{tmp}/run", "--save", "{tmp}/run"], "same folder"),
    # resume
    ("finetune-resume-without-out", [*FT, "--resume"], "--resume needs --out"),
    ("finetune-resume-nothing", [*FT, "--resume", "--out", "{tmp}/run"], "nothing to resume"),
    ("finetune-interrupted-run-without-resume", [*FT, "--out", "{fixtures}/partial"],
     "holds an interrupted run (1 of 3 seeds done); pass --resume"),
    ("finetune-resume-other-lr", [*FT, "--out", "{fixtures}/partial", "--resume", "--lr", "0.002"],
     "--lr: 0.001 -> 0.002"),
    ("finetune-complete-run-without-resume", [*FT, "--out", "{fixtures}/complete"],
     "holds a complete fine-tuning run (3 seed(s)); pass --resume"),
    ("finetune-resume-no-config-seeds", [*FT, "--out", "{fixtures}/noseeds", "--resume"],
     "config.seeds is None"),
    ("finetune-resume-runs-without-seed", [*FT, "--out", "{fixtures}/noseedrun", "--resume"], "runs[0] has no seed"),
    ("finetune-resume-not-json", [*FT, "--out", "{fixtures}/notjson", "--resume"],
     "not an rprim finetune results file"),
    ("finetune-examples-beyond-memory", [*FT, "--examples", "1000000000"], "GiB of host memory"),
    # the model: its context, its weights
    ("finetune-shots-beyond-context", [*FT, "--shots", "50", "--seeds", "1"],
     "context is 256; use fewer --shots"),
    ("finetune-corrupt-weights", ["finetune", "--model", "{fixtures}/corrupt"], "weights"),
]


def setup(fixtures: Path) -> None:
    import test_eval_helpers as H
    from rprim.evaluators.finetune import FinetuneConfig, FinetuneResults
    from rprim.evaluators.finetune.results import SeedRun, results_of

    def save_results(results: dict, out: Path) -> None:
        FinetuneResults.from_dict(results).save(out)

    tok = H.tokenizer("bpe")
    model = H.tiny_model(tok, train_steps=0, max_positions=256)
    model.save_pretrained(fixtures / "tiny")
    tok.save_pretrained(fixtures / "tiny")
    shutil.copytree(fixtures / "tiny", fixtures / "corrupt")
    weights = fixtures / "corrupt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (fixtures / "file.txt").write_text("a user's file\n")
    cfg = FinetuneConfig().resolved()  # the command's defaults
    window = {t: 0.5 for t in cfg.tasks}
    results = results_of(cfg, {"weights": "0" * 16}, {0: SeedRun(0, [], window=window)}, 1.0, 64)
    results.save(fixtures / "partial")
    done = results_of(cfg, {"weights": "0" * 16}, {s: SeedRun(s, [], window=window) for s in cfg.seeds}, 1.0, 64)
    done.save(fixtures / "complete")
    broken = json.loads(json.dumps(results.to_dict()))
    del broken["config"]["seeds"]
    save_results(broken, fixtures / "noseeds")
    no_seed = json.loads(json.dumps(results.to_dict()))
    no_seed["runs"] = [{"x": 1}]
    save_results(no_seed, fixtures / "noseedrun")
    (fixtures / "notjson").mkdir()
    (fixtures / "notjson" / "results.json").write_text("{")
