"""The training loop: stages, growth, checkpoints, metrics, the final HF folder.

One call of :func:`train` is one run. The loop is nanoGPT-like: for each optimizer step, grow
the model if a stage boundary was reached, set the learning rate, run ``grad_accum``
micro-batches, clip, step. Growth happens *before* step ``stage.start`` of each new stage and is
followed by a checkpoint, so a resumed run never has to replay a growth.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rprim.model_zoo import checkpoint as ckpt
from rprim.model_zoo import distributed as D
from rprim.model_zoo.corpora import resolve_corpus
from rprim.core import RprimError, atomic_folder, write_json, write_text
from rprim.core import cache_dir as core_cache_dir
from rprim.model_zoo.flops import FlopModel, ratio_to_baseline, stage_flops
from rprim.model_zoo.growth import grow_model, grow_state, load_state_by_name, optimizer_state_by_name
from rprim.model_zoo.presets import TrainConfig
from rprim.model_zoo.schedule import Stage, lr_at, make_stages, stage_at

# Settings that may change between a run and its resumption (they do not change the math).
RESUMABLE_CHANGES = {"snapshot_every", "snapshot_growth", "grad_checkpointing", "log_every", "eval_every", "ckpt_every", "keep_checkpoints", "step_delay",
                     "compile", "threads", "device", "cache_dir", "eval_batches", "peak_flops",
                     "micro_batch_size"}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "B200": 2250e12, "A100": 312e12,
             "L40S": 362e12, "L4": 121e12, "A10G": 70e12}


# ----------------------------------------------------------------------------- building blocks
def build_model(cfg: TrainConfig, depth: int, tokenizer, meta: bool = False):
    """A freshly initialised ``LlamaForCausalLM`` of ``depth`` layers (SDPA attention).

    ``meta=True`` allocates nothing (parameters on the meta device, no RNG use): for models whose
    weights are loaded right after (FSDP growth, export)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
        num_hidden_layers=depth, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.seq_len, rms_norm_eps=cfg.rms_eps, initializer_range=cfg.init_std,
        tie_word_embeddings=cfg.tie_embeddings, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa", use_cache=True,
    )
    with torch.device("meta") if meta else contextlib.nullcontext():
        model = LlamaForCausalLM(config)
    if cfg.grad_checkpointing:  # copies made by growth inherit the flag (deepcopy of a layer)
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return model


def build_optimizer(model, cfg: TrainConfig, device: str):
    """AdamW (default) or Adafactor; weight decay on matrices only."""
    import torch

    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    other = [p for _, p in model.named_parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
                                 fused=device.startswith("cuda") or None)
    if hasattr(torch.optim, "Adafactor"):
        return torch.optim.Adafactor(groups, lr=cfg.lr)
    from transformers.optimization import Adafactor

    return Adafactor(groups, lr=cfg.lr, relative_step=False, scale_parameter=False, warmup_init=False)


def _peak_flops(cfg: TrainConfig, device: str, world: int) -> float | None:
    if cfg.peak_flops:
        return cfg.peak_flops * world
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name()
    for key in sorted(PEAK_BF16, key=len, reverse=True):
        if key in name:
            return PEAK_BF16[key] * world
    return None


def check_output(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an existing run unless told how to treat it."""
    if resume and overwrite:
        raise RprimError("pass either --resume (continue the run in the output folder) or --overwrite "
                       "(replace it), not both")
    if out.exists() and not out.is_dir():
        raise RprimError(f"output {out} is a file; pass --out a folder path")
    if out.is_dir() and any(out.iterdir()) and not (resume or overwrite):
        raise RprimError(f"output folder {out} exists and is not empty; pass --resume to continue it, "
                       "--overwrite to replace it, or another --out")


def plan(cfg: TrainConfig) -> dict[str, Any]:
    """Stages, tokens and FLOPs of a run, without training (``rprim plan``)."""
    total = cfg.total_steps
    stages = make_stages(cfg.method, cfg.n_layers, cfg.block_size, cfg.schedule, total)
    fm = FlopModel.from_config(cfg)
    per_stage = stage_flops(stages, fm, cfg.tokens_per_step)
    base = total * cfg.tokens_per_step * fm.per_token(cfg.n_layers)
    return {
        "method": cfg.method, "schedule": cfg.schedule if cfg.method != "baseline" else None,
        "block_size": cfg.block_size, "n_layers": cfg.n_layers, "steps": total,
        "tokens_per_step": cfg.tokens_per_step, "tokens": total * cfg.tokens_per_step,
        "stages": [{"stage": s.index, "depth": s.depth, "start_step": s.start, "end_step": s.end,
                    "steps": s.steps, "start_tokens": s.start * cfg.tokens_per_step,
                    "tokens": s.steps * cfg.tokens_per_step, "flops": f}
                   for s, f in zip(stages, per_stage)],
        "flops": sum(per_stage), "baseline_flops": base,
        "flop_ratio": ratio_to_baseline(stages, cfg.n_layers, fm, with_head=True),
        "flop_ratio_no_head": ratio_to_baseline(stages, cfg.n_layers, fm, with_head=False),
        "rho_head": fm.head / (cfg.n_layers * fm.layer),
        "params_non_embedding": cfg.n_layers * _layer_params(cfg),
    }


def _layer_params(cfg: TrainConfig) -> int:
    from rprim.model_zoo.flops import layer_params

    return layer_params(cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_mlp) + 2 * cfg.d_model


# ----------------------------------------------------------------------------- the run
@dataclasses.dataclass
class _RunState:
    step: int = 0
    tokens: int = 0
    flops: float = 0.0
    train_time: float = 0.0  # seconds spent in training steps (all runs of this output)
    growth_steps: list[int] = dataclasses.field(default_factory=list)


def _log(dist: D.Dist, msg: str, quiet: bool) -> None:
    if dist.main and not quiet:
        print(msg, flush=True)


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, quiet: bool = False) -> dict[str, Any]:
    """Run training; return the training summary (also written to ``out``)."""
    cfg.validate()
    out = Path(out)
    check_output(out, resume, overwrite)
    stages = make_stages(cfg.method, cfg.n_layers, cfg.block_size, cfg.schedule, cfg.total_steps)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else core_cache_dir()
    corpus = resolve_corpus(cfg.corpus, cache_dir, cfg.max_corpus_bytes)
    if not corpus.files:
        raise RprimError(f"corpus {', '.join(cfg.corpus)} has no files; point --corpus at text files")

    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist = D.init(cfg.device)
    if D.sharded(dist, cfg.parallel) and cfg.optimizer == "adafactor":
        D.shutdown(dist)
        raise RprimError("Adafactor does not run on FSDP2-sharded parameters (torch's and transformers' "
                       "implementations reject DTensors); use --set optimizer=adamw, or --set parallel=ddp")
    try:
        return _train(cfg, out, resume, overwrite, progress, quiet, stages, cache_dir, corpus, dist)
    finally:
        D.shutdown(dist)


def _train(cfg: TrainConfig, out: Path, resume: bool, overwrite: bool, progress: bool, quiet: bool,
           stages: list[Stage], cache_dir: Path, corpus, dist: D.Dist) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from rprim.model_zoo.data import PackedTokens, Sampler, cached_token_file
    from rprim.model_zoo.tokenizer import cached_bpe, load_tokenizer, tokenizer_hash

    t_start = time.perf_counter()
    ckpt_root = out / "checkpoints"
    resume_from = ckpt.latest(ckpt_root) if resume else None

    # --- tokenizer and token file (rank 0 builds caches, the others then read them) ---
    corpus_hash = None

    def get_tokenizer():
        nonlocal corpus_hash
        if resume_from is not None and (out / "tokenizer" / "tokenizer.json").exists():
            return load_tokenizer(out / "tokenizer")
        if cfg.tokenizer:
            return load_tokenizer(cfg.tokenizer)
        corpus_hash = corpus_hash or corpus.fingerprint()
        return cached_bpe(corpus.documents, corpus_hash, cfg.vocab_size, cache_dir)

    def get_tokens(tok):
        nonlocal corpus_hash
        corpus_hash = corpus_hash or corpus.fingerprint()
        return cached_token_file(corpus.documents, tok, corpus_hash, tokenizer_hash(tok), cache_dir,
                                 {"corpus": corpus.names, "licences": corpus.licences,
                                  "max_corpus_bytes": corpus.max_bytes})

    t0 = time.perf_counter()
    if dist.main:
        tok = get_tokenizer()
        tfile = get_tokens(tok)
    D.barrier(dist)
    if not dist.main:
        tok = get_tokenizer()
        tfile = get_tokens(tok)
    cfg = dataclasses.replace(cfg, vocab_size=len(tok))
    data = PackedTokens(tfile.array(), cfg.seq_len, cfg.val_fraction)
    mixfile = None
    if cfg.mix:
        from rprim.model_zoo.mix import cached_mix_file

        def get_mix():
            return cached_mix_file(cfg.mix, data.corpus_train, tok, tfile.manifest["corpus_hash"],
                                   tfile.manifest["tokenizer_hash"], cfg.seq_len, cfg.val_fraction, cache_dir)

        if dist.main:
            mixfile = get_mix()
        D.barrier(dist)
        if not dist.main:
            mixfile = get_mix()
        data = PackedTokens(tfile.array(), cfg.seq_len, cfg.val_fraction, train_tokens=mixfile.array())
        _log(dist, f"mix {cfg.mix}: {mixfile.manifest['mix_tokens']:,} of {mixfile.manifest['n_tokens']:,} "
                   f"training tokens ({mixfile.manifest['fraction']:.1%})", quiet)
    data_time = time.perf_counter() - t0
    _log(dist, f"data: {tfile.n_tokens:,} tokens ({data.n_train} train / {data.n_val} val windows of "
               f"{cfg.seq_len}), vocab {cfg.vocab_size}, prepared in {data_time:.1f}s", quiet)

    # --- batch geometry ---
    micro = cfg.micro_batch_size or cfg.batch_size // dist.world
    if micro < 1 or cfg.batch_size % (micro * dist.world):
        raise RprimError(f"batch_size {cfg.batch_size} is not a multiple of micro_batch_size {micro} x "
                       f"{dist.world} ranks; change --set batch_size or micro_batch_size")
    accum = cfg.batch_size // (micro * dist.world)
    device = dist.device
    use_bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and device.startswith("cuda"))
    autocast = (torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
                if use_bf16 else contextlib.nullcontext())

    # --- model, optimizer, state (fresh or resumed) ---
    state = _RunState()
    sampler = Sampler(data.n_train, cfg.seed)
    shard = D.sharded(dist, cfg.parallel)

    def wrapped_model(m):
        """(module to call, DDP handle or None); re-done after every growth. With FSDP the
        model is sharded in place, so build its optimizer after this."""
        w = D.wrap(m, dist, cfg.parallel)
        return (torch.compile(w) if cfg.compile else w), (w if dist.enabled and not shard else None)

    if resume_from is not None:
        payload = ckpt.load(resume_from)
        _check_resumable(payload["config"], cfg)
        if bool(payload.get("sharded")) != shard:
            raise RprimError(f"checkpoint {resume_from.name} was written "
                           f"{'with' if payload.get('sharded') else 'without'} FSDP sharding; resume "
                           "with the same number of processes and parallel mode, or --overwrite")
        depth = int(payload["depth"])
        model = build_model(cfg, depth, tok).to(device)
        if not shard:  # before wrapping: DDP broadcasts rank 0's weights when it wraps
            model.load_state_dict(payload["model"])
        step_model, ddp = wrapped_model(model)
        optimizer = build_optimizer(model, cfg, device)
        if shard:
            D.load_full_state(model, optimizer, payload["model"], payload["optimizer"])
        else:
            optimizer.load_state_dict(payload["optimizer"])
        sampler.load_state_dict(payload["sampler"])
        torch.set_rng_state(payload["rng"]["torch"])
        if device.startswith("cuda") and payload["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(payload["rng"]["cuda"])
        state = _RunState(**payload["run"])
        _log(dist, f"resumed from {resume_from} at step {state.step} (depth {depth})", quiet)
    else:
        if dist.main:
            if overwrite and out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True, exist_ok=True)
            tok.save_pretrained(str(out / "tokenizer"))
            (out / "metrics.jsonl").write_text("")
        D.barrier(dist)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, stages[0].depth, tok).to(device)
        step_model, ddp = wrapped_model(model)
        optimizer = build_optimizer(model, cfg, device)
    fm = FlopModel.from_config(cfg)
    total = cfg.total_steps
    peak = _peak_flops(cfg, device, dist.world)
    metrics_path = out / "metrics.jsonl"
    if dist.main and resume_from is not None:
        _truncate_metrics(metrics_path, state.step)

    def save_checkpoint(reason: str) -> dict | None:
        """Save on rank 0 (FSDP: after gathering full states from all ranks); return the full
        model state on rank 0."""
        if shard:
            model_state, optim_state = D.full_state(model, optimizer)
        else:
            model_state, optim_state = model.state_dict(), optimizer.state_dict()
        if dist.main:
            payload = {
                "config": cfg.to_dict(), "depth": len(model.model.layers), "sharded": shard,
                "model": model_state, "optimizer": optim_state,
                "sampler": sampler.state_dict(), "run": dataclasses.asdict(state),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state() if device.startswith("cuda") else None},
            }
            ckpt.save(ckpt_root, state.step, payload,
                      {"reason": reason, "depth": len(model.model.layers), "tokens": state.tokens},
                      keep=cfg.keep_checkpoints)
        D.barrier(dist)
        return model_state if dist.main else None

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        n = cfg.eval_batches * accum * dist.world
        losses = []
        for j in range(dist.rank, n, dist.world):
            w = data.val_windows(j * micro, micro).to(device)
            with autocast:
                logits = model(input_ids=w[:, :-1], use_cache=False).logits
            losses.append(F.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten()).item())
        model.train()
        local = sum(losses) / max(1, len(losses))
        return D.mean(local, dist)

    def snapshot(stage_index: int, depth: int, train_loss: float, before_growth: bool) -> None:
        """An HF folder of the model as it is now, with its validation loss (all ranks call)."""
        val = evaluate()
        full = D.full_state(model, optimizer)[0] if shard else None
        if dist.main:
            info = {"step": state.step, "tokens": state.tokens, "depth": depth, "stage": stage_index,
                    "val_loss": val, "train_loss": train_loss, "method": cfg.method,
                    "before_growth": before_growth}
            save_snapshot(snap_root / f"step-{state.step:08d}", _plain_model(cfg, model, full, tok, shard), tok, info)
        D.barrier(dist)

    snap_root = out / "snapshots"
    if dist.main and resume_from is not None:
        _drop_snapshots_after(snap_root, state.step)

    # --- the loop ---
    bar = tqdm(total=total, initial=state.step, disable=not (progress and dist.main), unit="step",
               dynamic_ncols=True)
    model.train()
    last_loss = float("nan")
    interval_tokens, interval_time = 0, 0.0
    while state.step < total:
        stage = stage_at(stages, state.step)
        if len(model.model.layers) < stage.depth:
            while len(model.model.layers) < stage.depth:
                if shard:
                    model, optimizer = _grow_sharded(model, optimizer, cfg, device, dist, tok)
                else:
                    optimizer = _grow(model, optimizer, cfg, device)
            state.growth_steps.append(state.step)
            step_model, ddp = wrapped_model(model)
            _log(dist, f"step {state.step}: grew to depth {len(model.model.layers)} ({cfg.method})",
                 quiet or progress)
            save_checkpoint("growth")
        depth = len(model.model.layers)
        t_step = time.perf_counter()
        lr = lr_at(state.step, lr=cfg.lr, min_lr=cfg.min_lr, warmup=cfg.warmup_steps, total=total,
                   growth_steps=tuple(state.growth_steps), rewarmup=cfg.rewarmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = sampler.take(cfg.batch_size)
        loss_sum = 0.0
        for m in range(accum):
            lo = (m * dist.world + dist.rank) * micro
            batch = data.train_windows(idx[lo: lo + micro]).to(device, non_blocking=True)
            with D.gradient_sync(model, ddp, dist, cfg.parallel, last_micro_step=m == accum - 1):
                with autocast:
                    logits = step_model(input_ids=batch[:, :-1], use_cache=False).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
                (loss / accum).backward()
            loss_sum += loss.detach().item()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last_loss = D.mean(loss_sum / accum, dist)
        if cfg.step_delay:
            time.sleep(cfg.step_delay)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t_step
        state.step += 1
        state.tokens += cfg.tokens_per_step
        state.flops += cfg.tokens_per_step * fm.per_token(depth)
        state.train_time += dt
        interval_tokens += cfg.tokens_per_step
        interval_time += dt
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.3f}", depth=depth, refresh=False)

        do_eval = state.step % cfg.eval_every == 0 or state.step == total
        if state.step % cfg.log_every == 0 or do_eval:
            row = {"step": state.step, "tokens": state.tokens, "stage": stage.index, "depth": depth,
                   "lr": lr, "loss": last_loss}
            if do_eval:
                row["val_loss"] = evaluate()
            tps = interval_tokens / interval_time if interval_time > 0 else None
            row.update(tokens_per_s=tps, flops=state.flops,
                       mfu=(tps * fm.per_token(depth) / peak) if (peak and tps) else None)
            interval_tokens, interval_time = 0, 0.0
            if dist.main:
                with open(metrics_path, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
        grows_next = state.step < total and stage_at(stages, state.step).depth > depth
        if (cfg.snapshot_every and state.step % cfg.snapshot_every == 0) or (cfg.snapshot_growth and grows_next):
            snapshot(stage.index, depth, last_loss, grows_next)
        if state.step % cfg.ckpt_every == 0 and state.step < total:
            save_checkpoint("periodic")
    bar.close()

    # --- final outputs ---
    final_val = evaluate()
    final_state = save_checkpoint("final")
    summary = _summary(cfg, stages, state, last_loss, final_val, time.perf_counter() - t_start,
                       fm, corpus, tok, tfile, dist.world, peak)
    summary["mix"] = mixfile.summary() if mixfile is not None else None
    if dist.main:
        save_hf(_plain_model(cfg, model, final_state, tok, shard), tok, out)
        write_json(out / "training_summary.json", summary)
        _log(dist, f"done: {state.step} steps, {state.tokens:,} tokens, train loss {last_loss:.4f}, "
                   f"val loss {final_val:.4f}, {summary['wall_time_s']:.1f}s -> {out}", quiet)
    D.barrier(dist)
    return summary


def _plain_model(cfg: TrainConfig, model, full_state: dict | None, tok, shard: bool):
    """The model as a plain (unsharded) module on rank 0: FSDP's sharded one cannot be saved,
    so a meta-device copy is filled with the gathered full state."""
    if not shard:
        return model
    export = build_model(cfg, len(model.model.layers), tok, meta=True)
    export.load_state_dict(full_state, assign=True)
    return export


def save_hf(model, tok, folder: Path) -> None:
    """Write ``model`` and ``tok`` as a plain HF folder (config, safetensors, generation config,
    tokenizer) that transformers, vLLM and ``rprim eval`` load."""
    model.config.use_cache = True
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))


def save_snapshot(folder: Path, model, tok, info: dict[str, Any]) -> None:
    """One snapshot: an HF folder plus ``snapshot.json``, published atomically."""
    with atomic_folder(folder) as tmp:
        save_hf(model, tok, tmp)
        write_json(tmp / "snapshot.json", info)


def _drop_snapshots_after(root: Path, step: int) -> None:
    """Snapshots written after the checkpoint a run resumes from are redone by the resumed run."""
    for p in root.glob("step-*"):
        if p.is_dir() and p.name[5:].isdigit() and int(p.name[5:]) > step:
            shutil.rmtree(p, ignore_errors=True)


def _grow(model, optimizer, cfg: TrainConfig, device: str):
    """Grow ``model`` by one block in place; return an optimizer carrying the remapped state."""
    old_state = optimizer_state_by_name(model, optimizer)
    depth = len(model.model.layers)
    grow_model(model, cfg.block_size, cfg.method)
    new_state = grow_state(old_state, depth, cfg.block_size, cfg.method,
                           reset=cfg.reset_optimizer_on_growth)
    new_opt = build_optimizer(model, cfg, device)
    load_state_by_name(model, new_opt, new_state)
    return new_opt


def _grow_sharded(model, optimizer, cfg: TrainConfig, device: str, dist: D.Dist, tok):
    """FSDP growth: gather full states to rank 0, grow them by name there, build the deeper model
    on the meta device, shard it, and load the grown states with a broadcast from rank 0."""
    model_state, optim_state = D.full_state(model, optimizer)
    depth = len(model.model.layers)
    grown = build_model(cfg, depth + cfg.block_size, tok, meta=True)
    D.wrap(grown, dist, "fsdp")
    grown.to_empty(device=device)
    for name, buf in model.named_buffers():  # non-persistent buffers (RoPE frequencies)
        grown.get_buffer(name).copy_(buf)
    new_opt = build_optimizer(grown, cfg, device)
    grown_optim = {}
    if dist.main:
        model_state = grow_state(model_state, depth, cfg.block_size, cfg.method)
        grown_optim = {"state": grow_state(optim_state["state"], depth, cfg.block_size, cfg.method,
                                           reset=cfg.reset_optimizer_on_growth),
                       "param_groups": D.named_param_groups(grown, new_opt, like=optim_state["param_groups"])}
    D.load_full_state(grown, new_opt, model_state, grown_optim)
    return grown, new_opt


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig) -> None:
    now = cfg.to_dict()
    diffs = [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
             if k not in RESUMABLE_CHANGES and k != "vocab_size" and saved.get(k) != now.get(k)]
    if diffs:
        raise RprimError(f"--resume with settings that differ from the checkpoint's ({'; '.join(diffs)}); "
                       "use the original settings or --overwrite")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows logged after the checkpoint we resume from (they will be redone)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):
            continue
    write_text(path, "".join(line + "\n" for line in keep))


def _summary(cfg, stages: list[Stage], state: _RunState, train_loss: float, val_loss: float,
             wall: float, fm: FlopModel, corpus, tok, tfile, world: int, peak) -> dict[str, Any]:
    per_stage = stage_flops(stages, fm, cfg.tokens_per_step)
    tps = state.tokens / state.train_time if state.train_time > 0 else None
    return {
        "method": cfg.method, "schedule": cfg.schedule if cfg.method != "baseline" else None,
        "block_size": cfg.block_size, "n_layers": cfg.n_layers, "steps": state.step,
        "tokens": state.tokens, "world_size": world,
        "stages": [{"stage": s.index, "depth": s.depth, "start_step": s.start, "end_step": s.end,
                    "tokens": s.steps * cfg.tokens_per_step, "flops": f} for s, f in zip(stages, per_stage)],
        "growth_steps": state.growth_steps, "flops": state.flops,
        "baseline_flops": state.tokens * fm.per_token(cfg.n_layers),
        "flop_ratio": ratio_to_baseline(stages, cfg.n_layers, fm),
        "flop_ratio_no_head": ratio_to_baseline(stages, cfg.n_layers, fm, with_head=False),
        "final_train_loss": train_loss, "final_val_loss": val_loss,
        "wall_time_s": wall, "train_time_s": state.train_time, "tokens_per_s": tps,
        "mfu": (state.flops / state.train_time / peak) if (peak and state.train_time) else None,
        "corpus": corpus.names, "corpus_licences": corpus.licences,
        "corpus_tokens": tfile.n_tokens, "corpus_hash": tfile.manifest.get("corpus_hash"),
        "tokenizer_hash": tfile.manifest.get("tokenizer_hash"), "vocab_size": len(tok),
        "config": cfg.to_dict(),
    }
