"""The study presets: what each trains and measures, the mixes, the held-out depth, the regimes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


METHODS = ("baseline", "gradstack", "midas")


# Scored beside the suite, never in a mix (the mixes draw depths 0-2): depth 3 is extrapolation.
HELD_OUT = ("varassign-basic-d3", "varassign-math-d3", "varassign-code-d3")


DEFAULT_MIX = "varassign:0.3,copying:0.05,psm:0.05,arithmetic:0.05"


SMALL_MIX = ",".join([*(f"varassign-{f}-d0:0.06" for f in ("basic", "math", "code")),
                      *(f"varassign-{f}-d{d}:0.02" for d in (1, 2) for f in ("basic", "math", "code")),
                      "copying:0.05", "psm:0.05", "arithmetic:0.05"])


REGIMES = {
    "paper": "the paper's: a natural-text corpus with the primitives' train split mixed in.",
    "synthetic": "synthetic: primitives-dominant training tokens (like looped-transformer studies).",
}


@dataclass(frozen=True)
class StudyPreset:
    """What a study trains and measures. ``train``: TrainConfig overrides on ``train_preset``."""

    name: str
    train_preset: str
    train: dict[str, Any]
    mix: str | None = DEFAULT_MIX
    snapshots: int = 4                  # periodic snapshots per run (every steps // snapshots)
    eval_n: int = 100                   # examples per task for the final models
    snapshot_eval_n: int = 50           # examples per task for the snapshots
    shots: int = 5
    finetune: dict[str, Any] = field(default_factory=dict)   # FinetuneConfig fields
    linearity_tokens: int | None = None
    regime: str = "paper"               # paper: natural-text corpus plus a primitives mix | synthetic
    rates: dict[str, float] = field(default_factory=dict)    # prior seconds per unit (ETA)
    note: str = ""


PRESETS: dict[str, StudyPreset] = {
    # CPU, minutes: the tiny trainer preset at half its width (d 64: 3x faster at context 1024),
    # with a context that holds the 5-shot suite (5-shot varassign-code-d2 is ~870 tokens with
    # the tiny BPE) and the same tokens per step (2 x 1024 = 8 x 256).
    "tiny": StudyPreset(
        "tiny", "tiny", {"d_model": 64, "n_heads": 2, "d_mlp": 192, "seq_len": 1024, "batch_size": 2,
                         "steps": 160, "ckpt_every": 40, "eval_every": 40},
        eval_n=60, snapshot_eval_n=30,
        finetune={"examples": 16, "seeds": (0,), "steps": 16, "eval_start": 8, "eval_end": 16,
                  "eval_every": 8, "eval_n": 100, "lr": 1e-3, "optimizer": "adamw"},
        rates={"train": 1 / 4000, "eval": 1 / 120, "finetune": 0.3, "analysis": 5.0, "report": 8.0},
        note="The tiny study's fine-tuning protocol is reduced to fit a CPU: 1 seed, 16 examples, "
             "16 full-batch steps of AdamW at 1e-3, accuracy averaged over steps 8 and 16 on 100 "
             "held-out examples per depth (the paper: 3 seeds, 64 examples, 300 steps of Adafactor, "
             "every step from 200 to 300, 1000 examples)."),
    # One GPU, about 11 minutes on an H100 (measured): the small trainer preset (12 layers, d 768) at
    # context 1024; the mix weights depth 0 up (the easiest binding, the one a model this size
    # can show within 39M tokens), keeping the 45% total of the default mix.
    "small": StudyPreset(
        "small", "small", {"seq_len": 1024, "batch_size": 32, "steps": 1200, "warmup_steps": 100,
                           "eval_every": 200, "ckpt_every": 400},
        mix=SMALL_MIX,
        eval_n=400, snapshot_eval_n=150,
        finetune={"examples": 64, "seeds": (0, 1, 2), "steps": 300, "eval_start": 200,
                  "eval_end": 300, "eval_every": 50, "eval_n": 400},
        rates={"train": 1 / 330_000, "eval": 1 / 600, "finetune": 0.085, "analysis": 15.0, "report": 8.0},
        note="The small study's fine-tuning protocol evaluates at steps 200, 250 and 300 on 400 "
             "held-out examples per depth (the paper: every step from 200 to 300, 1000 examples)."),
}
