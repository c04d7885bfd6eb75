"""Bad input to `rprim train` and `rprim plan`: each is one line `rprim: error: ...`, exit 2, no
traceback, and neither the working folder nor the fixtures change (run by tests/test_adversarial.py)."""

from __future__ import annotations

from pathlib import Path

OUT = ["--out", "{tmp}/o"]
RUN = ["n_layers=2", "d_model=32", "n_heads=1", "d_mlp=64", "vocab_size=300", "seq_len=16", "batch_size=2",
       "steps=2", "block_size=1", "max_corpus_bytes=20000", "eval_batches=1", "threads=1"]

CASES = [
    # the pretraining mix
    ("train-mix-unknown-task", ["train", *OUT, "--mix", "varasign:0.05"], "unknown task 'varasign'"),
    ("train-mix-fraction-above-1", ["train", *OUT, "--mix", "varassign:1.5"], "(0, 1)"),
    ("train-mix-total-not-below-1", ["train", *OUT, "--mix", "varassign:0.6,copying:0.5"], "below 1"),
    ("train-mix-no-fraction", ["train", *OUT, "--mix", "varassign"], "NAME:FRACTION"),
    ("train-mix-task-twice", ["train", *OUT, "--mix", "varassign:0.1,varassign-code-d0:0.1"], "twice"),
    ("plan-mix-zero", ["plan", "--mix", "copying:0"], "(0, 1)"),
    # schedules and settings
    ("train-zero-length-stage", ["train", "--method", "midas", "--schedule", "1,0,0,0", *OUT], "must all be positive"),
    ("plan-zero-length-stage", ["plan", "--method", "midas", "--schedule", "1,0,0,0"], "must all be positive"),
    ("train-log-every-zero", ["train", *OUT, "--set", "log_every=0"], "log_every must be at least 1"),
    ("train-snapshot-every-negative", ["train", *OUT, "--set", "snapshot_every=-5"], "snapshot_every must be >= 0"),
    ("train-compile-maybe", ["train", *OUT, "--set", "compile=maybe"], "compile takes true or false"),
    ("plan-tokens-fraction", ["plan", "--tokens", "1.5"], "whole number"),
    ("train-device-not-here", ["train", *OUT, "--set", "device=cuda:7"], "--set device=cuda:7"),
    ("train-corpus-missing", ["train", "--corpus", "{tmp}/nope", *OUT], "--corpus"),
    # a broken environment and settings of this round, all before any data is prepared
    ("train-cache-is-a-file", ["train", *OUT, "--cache-dir", "{fixtures}/user/notes.txt"], "is a file, not a folder"),
    ("train-cache-in-proc", ["train", *OUT, "--cache-dir", "/proc/rprim-cache"], "cannot be created"),
    ("train-mix-loss-unknown", ["train", *OUT, "--set", "mix_loss=some"], "unknown mix_loss 'some'"),
    ("train-ckpt-every-s-negative", ["train", *OUT, "--set", "ckpt_every_s=-1"], "ckpt_every_s must be >= 0"),
    ("train-threads-zero", ["train", *OUT, "--threads", "0"], "threads"),
    ("train-steps-empty-stage", ["train", "--method", "midas", *OUT, "--set", "steps=11"], "--steps 16 or more"),
    ("plan-steps-empty-stage", ["plan", "--method", "midas", "--set", "steps=13"], "--steps 16 or more"),
    # the output folder
    ("train-out-in-proc", ["train", "--out", "/proc/rprim-adversarial"], "not writable"),
    ("train-out-is-a-file", ["train", "--out", "{fixtures}/user/notes.txt"], "is a file"),
    ("train-resume-and-overwrite", ["train", "--resume", "--overwrite", *OUT], "not both"),
    ("train-resume-nothing-there", ["train", "--resume", "--out", "{tmp}/none"], "no run to resume"),
    ("train-resume-user-folder", ["train", "--resume", "--out", "{fixtures}/user"], "holds no rprim training run"),
    ("train-overwrite-user-folder", ["train", "--overwrite", "--out", "{fixtures}/user"],
     "not an rprim training run"),
    ("train-into-user-folder", ["train", "--out", "{fixtures}/user"], "exists and is not empty"),
    ("train-into-finished-run", ["train", "--out", "{fixtures}/run", *[a for s in RUN for a in ("--set", s)]],
     "--resume"),
    ("train-resume-other-settings", ["train", "--resume", "--out", "{fixtures}/run", "--cache-dir", "{fixtures}/cache",
                                     *[a for s in RUN + ["lr=0.5"] for a in ("--set", s)]], "other settings than the checkpoint"),
]


def setup(fixtures: Path) -> None:
    """A folder of a user's files, and a finished two-step run of a very small model."""
    user = fixtures / "user"
    user.mkdir()
    (user / "notes.txt").write_text("my notes\n")
    from rprim.model_zoo.presets import parse_sets, resolve_config
    from rprim.model_zoo.train import train

    cfg = resolve_config("tiny", overrides={**parse_sets(RUN), "cache_dir": str(fixtures / "cache")})
    train(cfg, fixtures / "run", progress=False, quiet=True)
