"""FLOP accounting per stage, and the compute ratio of a growth run to the baseline.

Per token, forward: every matmul with a weight of m parameters costs 2m FLOPs; attention scores
and the weighted sum cost 2 * 2 * seq_len * (n_heads * head_dim) per layer (as in PaLM,
Chowdhery et al. 2022, app. B: the causal mask is not discounted). Training (forward +
backward) is 3x forward. Embedding lookups and norms are not counted.

With the LM head counted, the ratio to a baseline on the same tokens is
R = (rho + sum_i f_i d_i / L) / (1 + rho), rho = head cost / all L layers' cost
(spec: stacking.md). Without the head (rho = 0) R = sum_i f_i d_i / L, the paper's table.
"""

from __future__ import annotations

from dataclasses import dataclass

from rprim.model_zoo.schedule import Stage, apportion, parse_schedule


def layer_params(d_model: int, n_heads: int, kv_heads: int, d_mlp: int) -> int:
    """Weights in one Llama decoder layer's matmuls (no biases; norms not counted)."""
    hd = d_model // n_heads
    attn = d_model * n_heads * hd + 2 * d_model * kv_heads * hd + n_heads * hd * d_model
    mlp = 3 * d_model * d_mlp
    return attn + mlp


def layer_flops_per_token(d_model: int, n_heads: int, kv_heads: int, d_mlp: int, seq_len: int) -> int:
    """Training FLOPs (3x forward) of one layer for one token."""
    fwd = 2 * layer_params(d_model, n_heads, kv_heads, d_mlp) + 4 * seq_len * d_model
    return 3 * fwd


def head_flops_per_token(d_model: int, vocab_size: int) -> int:
    """Training FLOPs of the LM head for one token."""
    return 3 * 2 * d_model * vocab_size


@dataclass(frozen=True)
class FlopModel:
    layer: int  # per token, per layer, training
    head: int  # per token, training

    @classmethod
    def from_config(cls, cfg) -> "FlopModel":
        return cls(layer_flops_per_token(cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_mlp, cfg.seq_len),
                   head_flops_per_token(cfg.d_model, cfg.vocab_size))

    def per_token(self, depth: int, with_head: bool = True) -> int:
        return depth * self.layer + (self.head if with_head else 0)


def stage_flops(stages: list[Stage], fm: FlopModel, tokens_per_step: int, with_head: bool = True) -> list[int]:
    """Training FLOPs of each stage."""
    return [s.steps * tokens_per_step * fm.per_token(s.depth, with_head) for s in stages]


def ratio_to_baseline(stages: list[Stage], n_layers: int, fm: FlopModel, with_head: bool = True) -> float:
    """R = FLOPs of this run / FLOPs of the baseline on the same tokens (speedup = 1/R)."""
    total = sum(s.steps for s in stages)
    rho = fm.head / (n_layers * fm.layer) if with_head else 0.0
    frac = sum(s.steps / total * s.depth / n_layers for s in stages)
    return (rho + frac) / (1.0 + rho)


def analytic_ratio(k: int, schedule: str) -> float:
    """Spec table value without the head: R = (1/k) sum_i i * f_i, exact real fractions."""
    f = parse_schedule(schedule, k)
    return sum((i + 1) * fi for i, fi in enumerate(f)) / k


def rounded_ratio(k: int, schedule: str, total_steps: int) -> float:
    """The same ratio with integer stage lengths (what a run of ``total_steps`` really does)."""
    steps = apportion(total_steps, parse_schedule(schedule, k))
    return sum((i + 1) * t for i, t in enumerate(steps)) / (k * total_steps)


def stage_rows(stages: list[Stage], per_stage: list[int], tokens_per_step: int) -> list[dict[str, object]]:
    """Per stage: depth, steps and tokens (start and count), and its FLOPs."""
    return [{"stage": s.index, "depth": s.depth, "start_step": s.start, "end_step": s.end, "steps": s.steps,
             "start_tokens": s.start * tokens_per_step, "tokens": s.steps * tokens_per_step, "flops": f}
            for s, f in zip(stages, per_stage)]
