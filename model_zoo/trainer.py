"""The training loop, nanoGPT-like: the whole run is :meth:`Trainer.run`, in one read.

    prepare data -> build (or resume) -> for each step: [grow] -> step -> log / snapshot /
    checkpoint -> finish

Parallelism (DDP, FSDP2) and compilation are applied to the plain model from the outside
(``distributed.Parallel``, ``model.apply_compile``), so the loop has no branch on them. Growth
happens *before* step ``stage.start`` of each new stage and is followed by a checkpoint, so a
resumed run never has to replay a growth. The loss is read on the host only at log steps,
checkpoints and snapshots (``metrics.Meter``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from typing import Any

import torch

from rprim.model_zoo import checkpoint as ckpt
from rprim.model_zoo import distributed as D
from rprim.model_zoo.data import PackedTokens, Sampler, cached_token_file
from rprim.model_zoo.flops import FlopModel
from rprim.model_zoo.metrics import Meter, peak_flops
from rprim.model_zoo.model import (Builder, apply_compile, eager_stance, note, remove_compile, save_hf,
                                   save_snapshot)
from rprim.model_zoo.runfolder import RunFolder
from rprim.model_zoo.schedule import Stage, lr_at, stage_at
from rprim.model_zoo.tokenizer import cached_bpe, load_tokenizer, tokenizer_hash
from rprim.core import RprimError


@dataclasses.dataclass
class RunState:
    """What a checkpoint carries about the run besides weights, optimizer, data and RNG."""

    step: int = 0
    tokens: int = 0
    flops: float = 0.0
    train_time: float = 0.0  # seconds of training steps (all segments of this run)
    growth_steps: list[int] = dataclasses.field(default_factory=list)
    starts: list[int] = dataclasses.field(default_factory=list)  # steps at which segments began
    wall_time: float = 0.0  # wall seconds of earlier segments, up to their last checkpoint
    compile_time: float = 0.0  # seconds spent compiling before the first step of segments
    last_loss: float | None = None  # train loss of the last step before the checkpoint


class Trainer:
    """One run of :func:`rprim.model_zoo.train.train` (see the module docstring)."""

    def __init__(self, cfg, folder: RunFolder, dist: D.Dist, par: D.Parallel, stages: list[Stage],
                 corpus, cache_dir, progress: bool, quiet: bool):
        self.cfg, self.folder, self.dist, self.par, self.stages = cfg, folder, dist, par, stages
        self.corpus, self.cache_dir, self.progress, self.quiet = corpus, cache_dir, progress, quiet
        self.device = dist.device
        self.total = cfg.total_steps
        self.t_start = time.perf_counter()
        self.last_checkpoint = self.t_start
        self.meter = Meter(self.device)
        self.state = RunState()
        self.mixfile = None
        if cfg.compile and par.sharded:
            raise RprimError("--set compile=true is not supported with FSDP (parallel=fsdp) yet; "
                             "use parallel=ddp or compile=false")
        self.compile_on = cfg.compile if cfg.compile is not None else (self.device.startswith("cuda")
                                                                       and not par.sharded)
        use_bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and self.device.startswith("cuda"))
        self.autocast = (torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16)
                         if use_bf16 else contextlib.nullcontext())
        if self.device.startswith("cuda"):
            torch.set_float32_matmul_precision("high")  # TF32 for the fp32 matmuls that remain

    # ------------------------------------------------------------------ the run, in one read
    def run(self) -> dict[str, Any]:
        self.prepare_data()
        self.build_or_resume()
        self.warm_up()
        bar = self.progress_bar()
        self.meter.resume()
        with self.stop_between_steps() as stop:
            while self.state.step < self.total:
                stage = stage_at(self.stages, self.state.step)
                if self.depth < stage.depth:
                    self.grow(stage)
                lr = self.train_step()
                bar.update(1)
                self.after_step(stage, lr, bar)
                if stop and self.state.step < self.total:
                    self.checkpoint("interrupted")  # resuming then costs nothing
                    raise KeyboardInterrupt
        bar.close()
        return self.finish()

    @contextlib.contextmanager
    def stop_between_steps(self):
        """Ctrl-C / SIGTERM during the loop (one process): finish the step, checkpoint, stop.
        An interruption inside an optimizer step would leave weights half updated, so the signal
        only sets a flag (a list, true once set) that the loop reads at the step boundary. With
        several ranks the signal keeps its default path (the time-based checkpoints bound the loss)."""
        import signal
        import threading

        flag: list[bool] = []
        if self.dist.world > 1 or threading.current_thread() is not threading.main_thread():
            yield flag
            return

        def request(signum, frame) -> None:
            if flag:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            flag.append(True)
            self.log("interrupted: finishing this step, then a checkpoint (Ctrl-C again to stop at once)")

        old = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield flag
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    @property
    def depth(self) -> int:
        return len(self.root.lm.model.layers)

    def log(self, msg: str) -> None:
        if self.dist.main and not self.quiet:
            print(msg, flush=True)

    def on_main_first(self, fn):
        """``fn()`` on rank 0 first (it builds caches), then on the other ranks (they read them)."""
        result = fn() if self.dist.main else None
        D.barrier(self.dist)
        return result if self.dist.main else fn()

    # ------------------------------------------------------------------ data
    def prepare_data(self) -> None:
        """Tokenizer, token file (cached), the mix (cached), packed windows, sampler, batch shape."""
        cfg, t0 = self.cfg, time.perf_counter()
        fingerprint = {}

        def corpus_hash() -> str:
            if "h" not in fingerprint:
                fingerprint["h"] = self.corpus.fingerprint()
            return fingerprint["h"]

        def tokens():
            saved = self.folder.out / "tokenizer"
            if self.folder.resume and (saved / "tokenizer.json").exists():
                tok = load_tokenizer(saved)
            elif cfg.tokenizer:
                tok = load_tokenizer(cfg.tokenizer)
            else:
                tok = cached_bpe(self.corpus.documents, corpus_hash(), cfg.vocab_size, self.cache_dir)
            extra = {"corpus": self.corpus.names, "licences": self.corpus.licences,
                     "max_corpus_bytes": self.corpus.max_bytes}
            return tok, cached_token_file(self.corpus.documents, tok, corpus_hash(), tokenizer_hash(tok),
                                          self.cache_dir, extra)

        self.tok, self.tfile = self.on_main_first(tokens)
        self.cfg = cfg = dataclasses.replace(cfg, vocab_size=len(self.tok))
        self.data = PackedTokens(self.tfile.array(), cfg.seq_len, cfg.val_fraction)
        if cfg.mix:
            self.add_mix()
        self.sampler = Sampler(self.data.n_train, cfg.seed)
        self.micro = cfg.micro_batch_size or cfg.batch_size // self.dist.world
        if self.micro < 1 or cfg.batch_size % (self.micro * self.dist.world):
            raise RprimError(f"batch_size {cfg.batch_size} is not a multiple of micro_batch_size {self.micro} x "
                             f"{self.dist.world} ranks; change --set batch_size or micro_batch_size")
        self.accum = cfg.batch_size // (self.micro * self.dist.world)
        self.log(f"data: {self.tfile.n_tokens:,} tokens ({self.data.n_train} train / {self.data.n_val} val "
                 f"windows of {cfg.seq_len}), vocab {cfg.vocab_size}, prepared in {time.perf_counter() - t0:.1f}s")

    def add_mix(self) -> None:
        from rprim.model_zoo.mix import cached_mix_file

        man = self.tfile.manifest
        self.mixfile = self.on_main_first(lambda: cached_mix_file(
            self.cfg.mix, self.data.corpus_train, self.tok, man["corpus_hash"], man["tokenizer_hash"],
            self.cfg.seq_len, self.cfg.val_fraction, self.cache_dir, self.cfg.mix_loss))
        self.data = PackedTokens(self.tfile.array(), self.cfg.seq_len, self.cfg.val_fraction,
                                 train_tokens=self.mixfile.array(), train_mask=self.mixfile.mask())
        m = self.mixfile.manifest
        within = "the corpus and the mix's answers" if m["loss"] == "answers" else "every token"
        self.log(f"mix {self.cfg.mix}: {m['mix_tokens']:,} of {m['n_tokens']:,} training tokens ({m['fraction']:.1%}); "
                 f"the loss is on {within} ({m['loss_tokens']:,} tokens)")

    def batch(self, idx: list[int]):
        """(inputs, targets) of training windows on the device (pinned memory and an
        asynchronous copy on CUDA); targets outside the loss mask are -100."""
        pair = self.data.train_targets(idx)
        if self.device.startswith("cuda"):
            return tuple(t.pin_memory().to(self.device, non_blocking=True) for t in pair)
        return tuple(t.to(self.device) for t in pair)

    # ------------------------------------------------------------------ build or resume
    def build_or_resume(self) -> None:
        cfg, folder = self.cfg, self.folder
        latest = ckpt.latest(folder.checkpoints) if folder.resume else None
        payload = ckpt.load(latest) if latest is not None else None
        if folder.resume and payload is None and self.dist.main:
            note(f"{folder.out} has no checkpoint yet (the run stopped before its first one); starting from step 0")
        if payload is not None:
            check_resumable(payload["config"], cfg)
            if bool(payload.get("sharded")) != self.par.sharded:
                raise RprimError(f"checkpoint {latest.name} was written "
                                 f"{'with' if payload.get('sharded') else 'without'} FSDP sharding; resume "
                                 "with the same number of processes and parallel mode, or --overwrite")
        else:
            if self.dist.main:
                folder.begin_fresh()
                self.tok.save_pretrained(str(folder.out / "tokenizer"))
            D.barrier(self.dist)
            torch.manual_seed(cfg.seed)
        self.build = Builder(cfg, self.tok, self.device, self.compile_on)
        self.root = self.build.root(int(payload["depth"]) if payload else self.stages[0].depth)
        self.prepare_model()
        if payload is not None:
            self.par.load_state(self.root, self.optimizer, payload["model"], payload["optimizer"])
            self.sampler.load_state_dict(payload["sampler"])
            torch.set_rng_state(payload["rng"]["torch"])
            if self.device.startswith("cuda") and payload["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(payload["rng"]["cuda"])
            self.state = RunState(**payload["run"])
            if self.dist.main:
                folder.truncate_after(self.state.step)
            self.log(f"resumed from {latest} at step {self.state.step} (depth {self.depth})")
        self.state.starts.append(self.state.step)
        self.fm = FlopModel.from_config(cfg)
        self.peak = peak_flops(cfg, self.device, self.dist.world)

    def prepare_model(self) -> None:
        """Compile (per layer) and parallelise the plain model from the outside; then the
        optimizer (FSDP replaces the parameters with sharded ones)."""
        if self.compile_on:
            apply_compile(self.root.lm)
        self.step_module = self.par.prepare(self.root)
        self.optimizer = self.build.optimizer(self.root.lm)

    def warm_up(self) -> None:
        """Compile before the clock starts (one forward and backward on a validation batch,
        gradients dropped, no RNG used), or fall back to eager in one line if it fails."""
        if not self.compile_on:
            return
        t0 = time.perf_counter()
        w = self.data.val_windows(0, self.micro).to(self.device)
        try:
            with self.par.sync(self.step_module, True), self.autocast:
                loss = self.step_module(w[:, :-1], w[:, 1:])
            loss.backward()
        except Exception as e:  # noqa: BLE001 - any compiler failure: train eagerly instead
            first = (str(e).strip().splitlines() or [""])[0][:200]
            note(f"torch.compile failed ({type(e).__name__}: {first}); training continues in eager mode "
                 "(--set compile=false skips compiling)")
            self.compile_on = self.build.compile_on = False
            remove_compile(self.root.lm)
            self.root.loss_fn = self.root.eval_loss_fn  # chunked on a GPU, plain on the CPU
        self.optimizer.zero_grad(set_to_none=True)
        self.state.compile_time += time.perf_counter() - t0
        self.log(f"compiled in {time.perf_counter() - t0:.1f}s" if self.compile_on else "eager mode")

    # ------------------------------------------------------------------ one optimizer step
    def train_step(self) -> float:
        cfg, st = self.cfg, self.state
        lr = lr_at(st.step, lr=cfg.lr, min_lr=cfg.min_lr, warmup=cfg.warmup_steps, total=self.total,
                   growth_steps=tuple(st.growth_steps), rewarmup=cfg.rewarmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx = self.sampler.take(cfg.batch_size)
        loss_sum = None
        for m in range(self.accum):
            lo = (m * self.dist.world + self.dist.rank) * self.micro
            inputs, targets = self.batch(idx[lo: lo + self.micro])
            with self.par.sync(self.step_module, last_micro_step=m == self.accum - 1):
                with self.autocast:
                    loss = self.step_module(inputs, targets)
                (loss / self.accum).backward()
            exact = loss.detach().to(torch.float32 if self.device == "mps" else torch.float64)
            loss_sum = exact if loss_sum is None else loss_sum + exact
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.root.lm.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if cfg.step_delay:
            time.sleep(cfg.step_delay)
        st.step += 1
        st.tokens += cfg.tokens_per_step
        st.flops += cfg.tokens_per_step * self.fm.per_token(self.depth)
        self.meter.add_step(cfg.tokens_per_step, loss_sum / self.accum)
        return lr

    def train_loss(self) -> float | None:
        """The last step's loss, averaged over ranks (a host sync; collective)."""
        last = self.meter.last_loss
        return D.mean(last, self.dist) if last is not None else self.state.last_loss

    # ------------------------------------------------------------------ after a step
    def after_step(self, stage: Stage, lr: float, bar) -> None:
        cfg, s, total = self.cfg, self.state.step, self.total
        do_eval = s % cfg.eval_every == 0 or s == total
        if s % cfg.log_every == 0 or do_eval:
            self.log_row(stage, lr, do_eval, bar)
        grows_next = s < total and stage_at(self.stages, s).depth > self.depth
        if (cfg.snapshot_every and s % cfg.snapshot_every == 0) or (cfg.snapshot_growth and grows_next):
            self.snapshot(stage.index, grows_next)
        if s % cfg.ckpt_every == 0 and s < total:
            self.checkpoint("periodic")
        elif s < total and cfg.ckpt_every_s and self.checkpoint_due(s):
            self.checkpoint("time")
        self.meter.resume()

    def pause(self) -> None:
        self.state.train_time += self.meter.pause()

    def log_row(self, stage: Stage, lr: float, do_eval: bool, bar) -> None:
        self.pause()
        tps = self.meter.close_interval()
        loss = self.train_loss()
        st, per_token = self.state, self.fm.per_token(self.depth)
        row = {"step": st.step, "tokens": st.tokens, "stage": stage.index, "depth": self.depth, "lr": lr,
               "loss": loss}
        if do_eval:
            row["val_loss"] = self.evaluate()
        row.update(tokens_per_s=tps, flops=st.flops,
                   mfu=(tps * per_token / self.peak) if (self.peak and tps) else None)
        if self.dist.main:
            with open(self.folder.metrics, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        bar.set_postfix(loss=f"{loss:.3f}", depth=self.depth, refresh=False)

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss on the held-out windows (eager, chunked on a GPU; collective)."""
        self.pause()
        self.root.eval()
        n = self.cfg.eval_batches * self.accum * self.dist.world
        losses = []
        with eager_stance():
            for j in range(self.dist.rank, n, self.dist.world):
                w = self.data.val_windows(j * self.micro, self.micro).to(self.device)
                with self.autocast:
                    losses.append(self.root(w[:, :-1], w[:, 1:]))
        local = sum(float(x) for x in losses) / max(1, len(losses))
        self.root.train()
        return D.mean(local, self.dist)

    def snapshot(self, stage_index: int, before_growth: bool) -> None:
        """An HF folder of the model as it is now, with its validation loss (collective)."""
        self.pause()
        info = {"step": self.state.step, "tokens": self.state.tokens, "depth": self.depth, "stage": stage_index,
                "val_loss": self.evaluate(), "train_loss": self.train_loss(), "method": self.cfg.method,
                "before_growth": before_growth}
        model = self.export_model()
        if self.dist.main:
            save_snapshot(self.folder.snapshots / f"step-{self.state.step:08d}", model, self.tok, info)
        D.barrier(self.dist)

    def export_model(self):
        """The plain model to save (rank 0; FSDP gathers it first, collectively)."""
        full = self.par.full_state(self.root, self.optimizer)[0] if self.par.sharded else None
        return self.par.plain(self.root, full, self.build) if self.dist.main else None

    def checkpoint_due(self, step: int) -> bool:
        """``ckpt_every_s`` seconds since the last checkpoint (rank 0's clock; with several
        ranks asked only at logging steps, where the ranks meet anyway)."""
        due = time.perf_counter() - self.last_checkpoint >= self.cfg.ckpt_every_s
        if self.dist.world == 1:
            return due
        return step % self.cfg.log_every == 0 and D.mean(1.0 if (due and self.dist.main) else 0.0, self.dist) > 0

    def checkpoint(self, reason: str) -> None:
        """Model, optimizer, sampler, RNG and run state, on rank 0 (collective: FSDP gathers)."""
        self.pause()
        self.last_checkpoint = time.perf_counter()
        model_state, optim_state = self.par.full_state(self.root, self.optimizer)
        st = self.state
        st.last_loss = self.train_loss()
        if self.dist.main:
            payload = {
                "config": self.cfg.to_dict(), "depth": self.depth, "sharded": self.par.sharded,
                "model": model_state, "optimizer": optim_state,
                "sampler": self.sampler.state_dict(),
                "run": dataclasses.asdict(dataclasses.replace(st, wall_time=self.wall_time())),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state() if self.device.startswith("cuda") else None},
            }
            ckpt.save(self.folder.checkpoints, st.step, payload,
                      {"reason": reason, "depth": self.depth, "tokens": st.tokens}, keep=self.cfg.keep_checkpoints)
        D.barrier(self.dist)

    def wall_time(self) -> float:
        return self.state.wall_time + time.perf_counter() - self.t_start

    # ------------------------------------------------------------------ growth
    def grow(self, stage: Stage) -> None:
        """Grow to the stage's depth; compile and wrap the grown model again; checkpoint."""
        self.pause()
        while self.depth < stage.depth:
            self.root, self.optimizer = self.par.grow(self.root, self.optimizer, self.build)
        if self.compile_on:
            apply_compile(self.root.lm)
        self.step_module = self.par.prepare(self.root)
        self.state.growth_steps.append(self.state.step)
        if not self.progress:
            self.log(f"step {self.state.step}: grew to depth {self.depth} ({self.cfg.method})")
        self.checkpoint("growth")
        self.meter.resume()

    # ------------------------------------------------------------------ the end
    def progress_bar(self):
        from tqdm.auto import tqdm

        return tqdm(total=self.total, initial=self.state.step, disable=not (self.progress and self.dist.main),
                    unit="step", dynamic_ncols=True)

    def finish(self) -> dict[str, Any]:
        """Final validation loss and checkpoint, the HF folder at ``out``, the training summary."""
        from rprim.model_zoo.summary import summarize

        self.pause()
        final_val = self.evaluate()
        self.checkpoint("final")
        model = self.export_model()
        summary = summarize(self, final_val)
        if self.dist.main:
            self.folder.publish_export(lambda tmp: save_hf(model, self.tok, tmp))
            self.folder.write_summary(summary)
            self.log(f"done: {self.state.step} steps, {self.state.tokens:,} tokens, train loss "
                     f"{summary['final_train_loss']:.4f}, val loss {final_val:.4f}, "
                     f"{summary['wall_time_s']:.1f}s -> {self.folder.out}")
        D.barrier(self.dist)
        return summary


def check_resumable(saved: dict[str, Any], cfg) -> None:
    """RprimError naming every setting that differs from the checkpoint's and changes the math."""
    from rprim.core.compat import check_same_settings
    from rprim.model_zoo.presets import RESUMABLE_CHANGES

    check_same_settings(saved, cfg.to_dict(), free=RESUMABLE_CHANGES | {"vocab_size"},
                        problem="--resume with other settings than the checkpoint's",
                        fix="use the original settings or --overwrite")
