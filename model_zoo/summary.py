"""``training_summary.json``: what a finished run trained, on what, how fast, to which losses.

Read from the :class:`~rprim.model_zoo.trainer.Trainer` at the end of a run (its config, state,
stages, FLOP model, data files and timers).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from rprim.model_zoo.flops import ratio_to_baseline, stage_flops, stage_rows
from rprim.model_zoo.metrics import steady_state


def summarize(trainer, final_val: float) -> dict[str, Any]:
    """training_summary.json: what was trained, on what, how fast, to which losses."""
    cfg, st, fm, stages = trainer.cfg, trainer.state, trainer.fm, trainer.stages
    per_stage = stage_flops(stages, fm, cfg.tokens_per_step)
    tps = st.tokens / st.train_time if st.train_time > 0 else None
    rows = [json.loads(x) for x in trainer.folder.metrics.read_text().splitlines()] if trainer.dist.main else []
    steady = steady_state(rows, cfg.n_layers, fm.per_token(cfg.n_layers), trainer.peak, st.starts)
    mfus = [r["mfu"] for r in rows if r.get("mfu")]
    return {
        "method": cfg.method, "schedule": cfg.schedule if cfg.method != "baseline" else None,
        "block_size": cfg.block_size, "n_layers": cfg.n_layers, "steps": st.step,
        "tokens": st.tokens, "world_size": trainer.dist.world,
        "stages": stage_rows(stages, per_stage, cfg.tokens_per_step),
        "growth_steps": st.growth_steps, "flops": st.flops,
        "baseline_flops": st.tokens * fm.per_token(cfg.n_layers),
        "flop_ratio": ratio_to_baseline(stages, cfg.n_layers, fm),
        "flop_ratio_no_head": ratio_to_baseline(stages, cfg.n_layers, fm, with_head=False),
        "final_train_loss": trainer.train_loss(), "final_val_loss": final_val,
        "wall_time_s": trainer.wall_time(), "train_time_s": st.train_time, "compile_time_s": st.compile_time,
        "compiled": trainer.compile_on, "device": trainer.device, "tokens_per_s": tps,
        "mfu": (st.flops / st.train_time / trainer.peak) if (trainer.peak and st.train_time) else None,
        **steady, "median_mfu_logged": statistics.median(mfus) if mfus else None,
        "corpus": trainer.corpus.names, "corpus_licences": trainer.corpus.licences,
        "corpus_tokens": trainer.tfile.n_tokens, "corpus_hash": trainer.tfile.manifest.get("corpus_hash"),
        "tokenizer_hash": trainer.tfile.manifest.get("tokenizer_hash"), "vocab_size": len(trainer.tok),
        "mix": trainer.mixfile.summary() if trainer.mixfile is not None else None,
        "config": cfg.to_dict(),
    }
