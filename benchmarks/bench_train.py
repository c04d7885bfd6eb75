"""Trainer throughput against a plain PyTorch loop, and MIDAS wall clock against its FLOP ratio.

    python benchmarks/bench_train.py [--steps 100] [--threads 2] [--preset tiny] [--repeats 2]

1. Overhead: ``rprim.model_zoo.train`` (baseline, full depth) vs a minimal loop (forward, cross
   entropy, backward, clip, AdamW step) on the same model shape, batch and data. Both time every
   optimizer step; we compare medians (robust to load spikes from other processes on a shared
   machine). Runs interleave (plain, trainer, MIDAS, plain, ...) and the best of each is kept.
   Goal: trainer within 5% of the plain loop.
2. MIDAS PROP-2 vs baseline on the same tokens: measured training-time ratio next to the
   theoretical FLOP ratio R (LM head counted, and not). Two measurements: the raw sum of step
   times, and a load-robust one, sum over stages of (steps x median step time at that depth).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def trainer_run(cfg, out: Path) -> tuple[dict, list[dict]]:
    from rprim.model_zoo.train import train

    summary = train(cfg, out, overwrite=True, progress=False, quiet=True)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return summary, rows


def step_seconds(rows: list[dict], tokens_per_step: int) -> list[tuple[int, float]]:
    """(depth, seconds) of each step, from per-step metric rows (log_every = 1)."""
    return [(r["depth"], tokens_per_step / r["tokens_per_s"]) for r in rows if r.get("tokens_per_s")]


def robust_time(rows: list[dict], tokens_per_step: int) -> float:
    """Sum over depths of (steps at that depth) x (median step time at that depth)."""
    by_depth: dict[int, list[float]] = {}
    for d, s in step_seconds(rows, tokens_per_step)[1:]:  # the very first step warms up
        by_depth.setdefault(d, []).append(s)
    return sum(len(v) * statistics.median(v) for v in by_depth.values())


def plain_run(cfg, steps: int) -> list[float]:
    """The reference: the same model and batches, nothing but the math. Seconds per step."""
    import torch
    import torch.nn.functional as F

    from rprim.model_zoo.corpora import resolve_corpus
    from rprim.model_zoo.data import PackedTokens, Sampler, cached_token_file
    from rprim.model_zoo.tokenizer import cached_bpe, tokenizer_hash
    from rprim.model_zoo.model import build_model

    cache = Path(cfg.cache_dir)
    corpus = resolve_corpus(cfg.corpus, cache, cfg.max_corpus_bytes)
    h = corpus.fingerprint()
    tok = cached_bpe(corpus.documents, h, cfg.vocab_size, cache)
    tf = cached_token_file(corpus.documents, tok, h, tokenizer_hash(tok), cache)
    data = PackedTokens(tf.array(), cfg.seq_len, cfg.val_fraction)
    sampler = Sampler(data.n_train, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, cfg.n_layers, tok)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            weight_decay=cfg.weight_decay)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = data.train_windows(sampler.take(cfg.batch_size))
        logits = model(input_ids=batch[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - t0)
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch

    from rprim.model_zoo.presets import resolve_config

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="rprim-bench-"))
    common = {"steps": args.steps, "cache_dir": str(tmp / "cache"), "threads": args.threads,
              "log_every": 1, "eval_every": 10**9, "ckpt_every": 10**9, "eval_batches": 1}
    base = resolve_config(args.preset, overrides=dict(common, method="baseline"))
    midas = resolve_config(args.preset, overrides=dict(common, method="midas", schedule="prop-2"))
    tps = base.tokens_per_step
    print(f"torch {torch.__version__}, {args.threads} threads, preset {args.preset}: {base.n_layers} layers, "
          f"d {base.d_model}, seq {base.seq_len}, batch {base.batch_size}, {args.steps} steps", flush=True)
    trainer_run(resolve_config(args.preset, overrides=dict(common, steps=5)), tmp / "warm")  # caches

    best = {"plain": float("inf"), "trainer": float("inf"), "base_raw": float("inf"),
            "midas_raw": float("inf"), "base_robust": float("inf"), "midas_robust": float("inf")}
    mid_summary = base_summary = None
    for r in range(args.repeats):
        plain = statistics.median(plain_run(base, args.steps))
        s, rows = trainer_run(base, tmp / f"base{r}")
        m, mrows = trainer_run(midas, tmp / f"midas{r}")
        trainer = statistics.median(sec for _, sec in step_seconds(rows, tps)[1:])
        cur = {"plain": plain, "trainer": trainer, "base_raw": s["train_time_s"], "midas_raw": m["train_time_s"],
               "base_robust": robust_time(rows, tps), "midas_robust": robust_time(mrows, tps)}
        print(f"  repeat {r}: median step plain {plain * 1e3:.1f} ms, trainer {trainer * 1e3:.1f} ms; train time "
              f"baseline {cur['base_raw']:.1f}s (robust {cur['base_robust']:.1f}s), midas {cur['midas_raw']:.1f}s "
              f"(robust {cur['midas_robust']:.1f}s)", flush=True)
        best = {k: min(v, cur[k]) for k, v in best.items()}
        base_summary, mid_summary = s, m
    ratio = best["plain"] / best["trainer"]
    print(f"1. throughput: trainer {tps / best['trainer']:,.0f} tok/s vs plain loop {tps / best['plain']:,.0f} tok/s "
          f"-> ratio {ratio:.3f} (goal >= 0.95)")
    raw = best["midas_raw"] / best["base_raw"]
    rob = best["midas_robust"] / best["base_robust"]
    R, R0 = mid_summary["flop_ratio"], mid_summary["flop_ratio_no_head"]
    print(f"2. MIDAS prop-2 vs baseline, {base_summary['tokens']:,} tokens each: time ratio {rob:.3f} "
          f"(robust; raw {raw:.3f}) vs FLOP ratio R = {R:.3f} with LM head, {R0:.3f} without "
          f"(measured/theory {rob / R:.3f})")
    print(f"   final val loss: baseline {base_summary['final_val_loss']:.4f}, midas {mid_summary['final_val_loss']:.4f}")
    print(json.dumps({"plain_tok_s": tps / best["plain"], "trainer_tok_s": tps / best["trainer"],
                      "throughput_ratio": ratio, "midas_time_ratio_robust": rob, "midas_time_ratio_raw": raw,
                      "midas_flop_ratio": R, "midas_flop_ratio_no_head": R0}))


if __name__ == "__main__":
    sys.exit(main())
