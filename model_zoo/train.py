"""``train`` (one run: checks, lock, then the :class:`~rprim.model_zoo.trainer.Trainer`), ``plan``
(stages, tokens and FLOPs without training) and the training summary.

Importing this module is light (no torch): ``rprim plan`` and the checks of ``rprim train`` run
before torch loads. Bad input fails here in one line before any data is prepared.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from rprim.core import RprimError, default_threads
from rprim.core import cache_dir as core_cache_dir
from rprim.model_zoo.corpora import resolve_corpus
from rprim.model_zoo.flops import FlopModel, layer_params, ratio_to_baseline, stage_flops
from rprim.model_zoo.presets import TrainConfig
from rprim.model_zoo.runfolder import RunFolder
from rprim.model_zoo.schedule import Stage, make_stages

# Settings that may change between a run and its resumption (they do not change the math).
RESUMABLE_CHANGES = {"snapshot_every", "snapshot_growth", "grad_checkpointing", "log_every", "eval_every",
                     "ckpt_every", "keep_checkpoints", "step_delay", "compile", "threads", "device", "cache_dir",
                     "eval_batches", "peak_flops", "micro_batch_size"}


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, quiet: bool = False) -> dict[str, Any]:
    """Run training into ``out``; return the training summary (also written there).

    ``resume``: continue the run in ``out`` from its latest checkpoint (a complete run is left
    as it is and its summary returned). ``overwrite``: replace the run in ``out``.
    """
    cfg.validate()
    folder = RunFolder(out, resume, overwrite)
    folder.check()
    stages = make_stages(cfg.method, cfg.n_layers, cfg.block_size, cfg.schedule, cfg.total_steps)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else core_cache_dir()
    corpus = resolve_corpus(cfg.corpus, cache_dir, cfg.max_corpus_bytes)
    if not corpus.files:
        raise RprimError(f"corpus {', '.join(cfg.corpus)} has no files; point --corpus at text files")

    import torch

    from rprim.model_zoo import distributed as D

    dist = D.init(cfg.device)
    # The free cores, shared among this machine's ranks, as eval and finetune do: torch's
    # default (every core) crawls beside another busy process (measured 12x slower per step
    # on a loaded 2-core machine).
    torch.set_num_threads(cfg.threads or max(1, default_threads() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))))
    try:
        par = D.strategy(dist, cfg.parallel, cfg.optimizer)
        with folder.lock(dist.main):
            done = _complete_run(folder, cfg) if dist.main else None
            if D.mean(1.0 if done else 0.0, dist) > 0:  # every rank learns it from rank 0
                return done or {}
            from rprim.model_zoo.trainer import Trainer

            return Trainer(cfg, folder, dist, par, stages, corpus, cache_dir, progress, quiet).run()
    finally:
        D.shutdown(dist)


def _complete_run(folder: RunFolder, cfg: TrainConfig) -> dict[str, Any] | None:
    """With --resume on a run that already finished: its summary (nothing is changed)."""
    from rprim.model_zoo.model import note
    from rprim.model_zoo.trainer import check_resumable

    summary = folder.finished_summary()
    if summary is None:
        return None
    check_resumable(summary["config"], cfg)
    if summary.get("steps") != cfg.total_steps:
        return None
    note(f"the run in {folder.out} is complete ({summary['steps']} steps); nothing to do "
         "(--overwrite trains it again)")
    return summary


def plan(cfg: TrainConfig) -> dict[str, Any]:
    """Stages, tokens and FLOPs of a run, without training (``rprim plan``)."""
    total = cfg.total_steps
    stages = make_stages(cfg.method, cfg.n_layers, cfg.block_size, cfg.schedule, total)
    fm = FlopModel.from_config(cfg)
    per_stage = stage_flops(stages, fm, cfg.tokens_per_step)
    base = total * cfg.tokens_per_step * fm.per_token(cfg.n_layers)
    return {
        "method": cfg.method, "schedule": cfg.schedule if cfg.method != "baseline" else None,
        "block_size": cfg.block_size, "n_layers": cfg.n_layers, "steps": total, "mix": cfg.mix,
        "tokens_per_step": cfg.tokens_per_step, "tokens": total * cfg.tokens_per_step,
        "stages": _stage_rows(stages, per_stage, cfg.tokens_per_step),
        "flops": sum(per_stage), "baseline_flops": base,
        "flop_ratio": ratio_to_baseline(stages, cfg.n_layers, fm, with_head=True),
        "flop_ratio_no_head": ratio_to_baseline(stages, cfg.n_layers, fm, with_head=False),
        "rho_head": fm.head / (cfg.n_layers * fm.layer),
        "params_non_embedding": cfg.n_layers * (layer_params(cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_mlp)
                                                + 2 * cfg.d_model),
    }


def _stage_rows(stages: list[Stage], per_stage: list[int], tokens_per_step: int) -> list[dict[str, Any]]:
    return [{"stage": s.index, "depth": s.depth, "start_step": s.start, "end_step": s.end, "steps": s.steps,
             "start_tokens": s.start * tokens_per_step, "tokens": s.steps * tokens_per_step, "flops": f}
            for s, f in zip(stages, per_stage)]


def summarize(trainer, final_val: float) -> dict[str, Any]:
    """training_summary.json: what was trained, on what, how fast, to which losses."""
    import json

    from rprim.model_zoo.metrics import steady_state

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
        "stages": _stage_rows(stages, per_stage, cfg.tokens_per_step),
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
