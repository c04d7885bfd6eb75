"""``train`` (one run: checks, lock, then the :class:`~rprim.model_zoo.trainer.Trainer`), ``plan``
(stages, tokens and FLOPs without training). The training summary is ``model_zoo.summary``.

Importing this module is light (no torch): ``rprim plan`` and the checks of ``rprim train`` run
before torch loads. Bad input fails here in one line before any data is prepared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rprim.core import RprimError, default_threads
from rprim.core import cache_dir as core_cache_dir
from rprim.model_zoo.corpora import resolve_corpus
from rprim.model_zoo.flops import FlopModel, layer_params, ratio_to_baseline, stage_flops, stage_rows
from rprim.model_zoo.presets import TrainConfig
from rprim.model_zoo.runfolder import RunFolder
from rprim.model_zoo.schedule import make_stages



def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, quiet: bool = False) -> dict[str, Any]:
    """Run training into ``out``; return the training summary (also written there).

    ``resume``: continue the run in ``out`` from its latest checkpoint (a complete run is left
    as it is and its summary returned). ``overwrite``: replace the run in ``out``.
    """
    folder = RunFolder(out, resume, overwrite)
    folder.check()
    stages, cache_dir, corpus = preflight(cfg)

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


def preflight(cfg: TrainConfig) -> tuple[list[Any], Path, Any]:
    """Every check a run makes before it touches a folder: settings, stages, the cache folder,
    the corpus and the device. ``rprim study`` calls it for each run before the study exists.
    Returns (stages, cache folder, corpus)."""
    cfg.validate()
    stages = make_stages(cfg.method, cfg.n_layers, cfg.block_size, cfg.schedule, cfg.total_steps)
    cache_dir = check_cache_dir(Path(cfg.cache_dir).expanduser() if cfg.cache_dir else core_cache_dir())
    corpus = resolve_corpus(cfg.corpus, cache_dir, cfg.max_corpus_bytes)
    if not corpus.files:
        raise RprimError(f"corpus {', '.join(cfg.corpus)} has no files; point --corpus at text files")
    if cfg.device != "auto" or os.environ.get("RPRIM_DEVICE"):
        from rprim.core.torch_util import resolve_device

        resolve_device(cfg.device, "--set device=")
    return stages, cache_dir, corpus


def check_cache_dir(folder: Path) -> Path:
    """The cache folder, created if missing; one line if it is a file, read-only or not creatable."""
    where = "the cache folder (--cache-dir / --set cache_dir, else RPRIM_CACHE)"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RprimError(f"{where} {folder} is a file, not a folder; point it at a folder") from None
    except OSError as e:
        raise RprimError(f"{where} {folder} cannot be created ({e.strerror or e}); point it at a writable "
                         "folder") from None
    if not folder.is_dir():
        raise RprimError(f"{where} {folder} is not a folder; point it at a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RprimError(f"{where} {folder} is not writable; point it at a writable folder")
    return folder


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
        "stages": stage_rows(stages, per_stage, cfg.tokens_per_step),
        "flops": sum(per_stage), "baseline_flops": base,
        "flop_ratio": ratio_to_baseline(stages, cfg.n_layers, fm, with_head=True),
        "flop_ratio_no_head": ratio_to_baseline(stages, cfg.n_layers, fm, with_head=False),
        "rho_head": fm.head / (cfg.n_layers * fm.layer),
        "params_non_embedding": cfg.n_layers * (layer_params(cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_mlp)
                                                + 2 * cfg.d_model),
    }


