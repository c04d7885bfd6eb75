"""Model and training presets: one dataclass, every field overridable.

A run is fully described by a :class:`TrainConfig`. Presets are named starting points;
``--set key=value`` and ``--config file.json`` override any field. Validation lives here (pure
Python, no torch) so bad input fails fast, before torch is imported or any file is written.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rprim.core import RprimError, parse_device, parse_dtype, parse_pairs, typed_values

METHODS = ("baseline", "gradstack", "midas")
OPTIMIZERS = ("adamw", "adafactor")


@dataclass
class TrainConfig:
    """Everything that defines a training run (model shape, method, optimizer, data, runtime)."""

    # --- model (Llama architecture) ---
    n_layers: int = 8
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: same as n_heads (no GQA)
    d_mlp: int = 384  # SwiGLU hidden size
    vocab_size: int = 2048  # size of the BPE trained on the corpus (ignored with --tokenizer)
    seq_len: int = 256  # tiny: fits the 0-shot fine-tuning prompts (varassign-code d2: ~145 tokens)
    rms_eps: float = 1e-5
    init_std: float = 0.02
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    # --- method ---
    method: str = "baseline"
    block_size: int = 2  # b: layers per block; must divide n_layers
    schedule: str = "prop-2"  # prop-ALPHA or comma-separated stage fractions
    # --- optimization ---
    optimizer: str = "adamw"
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    rewarmup_steps: int = 0  # >0: linear re-warmup over this many steps after each growth
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping
    reset_optimizer_on_growth: bool = False
    # --- batch and length ---
    batch_size: int = 8  # global sequences per optimizer step (all ranks, all micro-steps)
    micro_batch_size: int | None = None  # per rank per micro-step; None: batch_size / world
    steps: int = 200
    tokens: int | None = None  # if set, steps = ceil(tokens / (batch_size * seq_len))
    # --- data ---
    corpus: list[str] = field(default_factory=lambda: ["stdlib-python"])
    max_corpus_bytes: int | None = 1_500_000  # cap on raw corpus bytes read (None: all)
    val_fraction: float = 0.02
    tokenizer: str | None = None  # existing HF tokenizer folder; None: train a BPE
    cache_dir: str | None = None  # None: $RPRIM_CACHE or ~/.cache/rprim
    mix: str | None = None  # primitives' train split in the training tokens: "varassign:0.05,copying:0.02"
    mix_loss: str = "answers"  # answers: loss on the mix's answers only | all: on every token
    # --- runtime ---
    seed: int = 0
    parallel: str = "ddp"  # several ranks (torchrun): ddp (replicate) | fsdp (FSDP2 fully_shard)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | float32 | bfloat16 (fp32, bf16)
    compile: bool | None = None  # None: on for CUDA (per-layer torch.compile), off on the CPU
    grad_checkpointing: bool = False  # recompute activations in backward (less memory, ~30% slower)
    threads: int | None = None  # torch CPU threads (None: the cores free now, shared by local ranks)
    log_every: int = 10
    eval_every: int = 100
    eval_batches: int = 4
    ckpt_every: int = 100
    ckpt_every_s: float = 600.0  # also checkpoint when this many seconds passed since the last (0: off)
    keep_checkpoints: int = 2
    snapshot_every: int = 0  # >0: an HF folder at OUT/snapshots/step-N every N steps (0: off)
    snapshot_growth: bool = False  # an HF folder at the end of each stage, just before it grows
    peak_flops: float | None = None  # per device, for MFU; None: looked up for known GPUs
    step_delay: float = 0.0  # seconds to sleep per step; only for tests that interrupt a run

    # ------------------------------------------------------------------ derived values
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def n_blocks(self) -> int:
        return self.n_layers // self.block_size

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def total_steps(self) -> int:
        if self.tokens is not None:
            return -(-self.tokens // self.tokens_per_step)
        return self.steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """Raise :class:`RprimError` naming the fix for any inconsistent field; return self."""
        if self.method not in METHODS:
            raise RprimError(f"unknown method {self.method!r}; use --method one of {', '.join(METHODS)}")
        if self.optimizer not in OPTIMIZERS:
            raise RprimError(f"unknown optimizer {self.optimizer!r}; use --set optimizer= one of {', '.join(OPTIMIZERS)}")
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "vocab_size", "seq_len",
                     "block_size", "batch_size"):
            if getattr(self, name) < 1:
                raise RprimError(f"{name} must be a positive integer; got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise RprimError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}; "
                           "pick n_heads that divides it")
        hd = self.head_dim
        if hd % 8 or hd > 256:
            raise RprimError(f"head dim d_model/n_heads = {hd} must be a multiple of 8 and at most 256 "
                           "for SDPA kernels; change d_model or n_heads")
        if self.n_heads % self.kv_heads:
            raise RprimError(f"n_kv_heads {self.kv_heads} must divide n_heads {self.n_heads}")
        if self.n_layers % self.block_size:
            divisors = [b for b in range(1, self.n_layers + 1) if self.n_layers % b == 0]
            raise RprimError(f"block size {self.block_size} does not divide n_layers {self.n_layers}; "
                           f"use --block-size one of {divisors}")
        if self.steps < 1 and self.tokens is None:
            raise RprimError("steps must be at least 1; pass --steps N or --tokens N")
        if self.tokens is not None and self.tokens < 1:
            raise RprimError("--tokens must be positive")
        if not 0.0 < self.val_fraction < 1.0:
            raise RprimError(f"val_fraction must be in (0, 1); got {self.val_fraction}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise RprimError("micro_batch_size must be positive (or null for batch_size / world)")
        self.dtype = parse_dtype(self.dtype, "--set dtype=", allowed=("auto", "float32", "bfloat16"))
        if self.parallel not in ("ddp", "fsdp"):
            raise RprimError(f"unknown parallel mode {self.parallel!r}; use --set parallel=ddp or parallel=fsdp")
        self.device = parse_device(self.device, "--set device=")
        if not self.corpus:
            raise RprimError("no corpus given; pass --corpus stdlib-python|shakespeare|PATH")
        if self.max_corpus_bytes is not None and self.max_corpus_bytes < 1:
            raise RprimError("max_corpus_bytes must be positive (or null for the whole corpus)")
        for name in ("log_every", "eval_every", "ckpt_every", "eval_batches"):
            if getattr(self, name) < 1:
                raise RprimError(f"{name} must be at least 1 step; got {getattr(self, name)}")
        for name in ("warmup_steps", "rewarmup_steps", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise RprimError(f"{name} must be >= 0; got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "step_delay", "adam_eps"):
            if getattr(self, name) < 0:
                raise RprimError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.lr <= 0:
            raise RprimError(f"lr must be positive; got {self.lr}")
        if self.threads is not None and self.threads < 1:
            raise RprimError(f"threads must be a positive integer (or none); got {self.threads}")
        if not self.ckpt_every_s >= 0:
            raise RprimError(f"ckpt_every_s must be >= 0 seconds (0 turns time-based checkpoints off); "
                             f"got {self.ckpt_every_s}")
        if self.snapshot_every < 0:
            raise RprimError(f"snapshot_every must be >= 0 steps (0 turns snapshots off); got {self.snapshot_every}")
        from rprim.model_zoo.mix import LOSSES  # light: numpy only

        if self.mix_loss not in LOSSES:
            raise RprimError(f"unknown mix_loss {self.mix_loss!r}; use --set mix_loss=answers (loss on the "
                             "primitives' answers only) or mix_loss=all")
        if self.mix is not None:
            from rprim.model_zoo.mix import parse_mix  # imports rprim.primitives (light: no torch)

            parse_mix(self.mix)
        from rprim.model_zoo.schedule import parse_schedule  # pure, light

        parse_schedule(self.schedule, self.n_blocks)
        return self


def _p(**kw: Any) -> dict[str, Any]:
    return kw


# Settings that may change between a run and its resumption (they do not change the math).
RESUMABLE_CHANGES = {"snapshot_every", "snapshot_growth", "grad_checkpointing", "log_every", "eval_every",
                     "ckpt_every", "ckpt_every_s", "keep_checkpoints", "step_delay", "compile", "threads", "device", "cache_dir",
                     "eval_batches", "peak_flops", "micro_batch_size"}

# Presets override TrainConfig defaults. Head dims: tiny 32, small 64, paper-1b/2b 64, 8b 128.
PRESETS: dict[str, dict[str, Any]] = {
    # CPU: the whole run (tokenizer training included) takes about a minute on 2 cores.
    "tiny": _p(),
    # One GPU, ~85M parameters (~60M non-embedding).
    "small": _p(n_layers=12, d_model=768, n_heads=12, d_mlp=2048, vocab_size=16384, seq_len=512,
                block_size=3, batch_size=64, micro_batch_size=None, lr=1e-3, min_lr=1e-4,
                warmup_steps=200, steps=2000, max_corpus_bytes=None, eval_every=250,
                ckpt_every=500, log_every=10),
    # The paper's shapes (Saunshi et al. 2024, appendix A): Adafactor, cosine 0.01 -> 0.001,
    # batch 512 x 1280, block size 4, PROP-2. 1B/2B fit replicated (DDP) on 80 GB GPUs.
    "paper-1b": _p(n_layers=24, d_model=2048, n_heads=32, d_mlp=5120, vocab_size=32000,
                   seq_len=1280, block_size=4, optimizer="adafactor", lr=1e-2, min_lr=1e-3,
                   batch_size=512, micro_batch_size=8, warmup_steps=1000, steps=100_000,
                   max_corpus_bytes=None, eval_every=1000, ckpt_every=1000, log_every=10),
    "paper-2b": _p(n_layers=48, d_model=2048, n_heads=32, d_mlp=5120, vocab_size=32000,
                   seq_len=1280, block_size=4, optimizer="adafactor", lr=1e-2, min_lr=1e-3,
                   batch_size=512, micro_batch_size=4, warmup_steps=1000, steps=100_000,
                   max_corpus_bytes=None, eval_every=1000, ckpt_every=1000, log_every=10),
    # 8B does not fit replicated (fp32 weights + gradients alone are 64 GB), so it shards with
    # FSDP2. Adafactor does not run on sharded (DTensor) parameters in torch, so this preset
    # uses AdamW at the paper's 8B learning rates (the paper: Adafactor, 1e-3 -> 1e-4).
    "paper-8b": _p(n_layers=72, d_model=2048, n_heads=16, d_mlp=16384, vocab_size=32000,
                   seq_len=1280, block_size=4, optimizer="adamw", lr=1e-3, min_lr=1e-4,
                   batch_size=1024, micro_batch_size=2, warmup_steps=1000, steps=100_000,
                   max_corpus_bytes=None, eval_every=1000, ckpt_every=1000, log_every=10,
                   parallel="fsdp"),
}


def resolve_config(preset: str = "tiny", config_file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Preset, then JSON config file, then explicit overrides (CLI flags, ``--set``); validated."""
    if preset not in PRESETS:
        raise RprimError(f"unknown preset {preset!r}; use --preset one of {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset])
    if config_file is not None:
        try:
            data = json.loads(Path(config_file).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RprimError(f"cannot read config file {config_file}: {e}; pass a JSON object of settings") from None
        if not isinstance(data, dict):
            raise RprimError(f"config file {config_file} must hold a JSON object of settings")
        values.update(typed_values(TrainConfig, data, f"setting in {config_file}:"))
    values.update(typed_values(TrainConfig, dict(overrides or {}), "--set"))
    return TrainConfig(**values).validate()


def parse_sets(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "n_layers=12"]`` to typed values (``--set``; dashes in keys allowed)."""
    pairs = {k.replace("-", "_"): v for k, v in parse_pairs(items, "--set").items()}
    return typed_values(TrainConfig, pairs, "--set")
