"""The fine-tuning protocol on the `tiny` zoo model, on CPU: wall time, where it goes, and
rprim's training step against a plain PyTorch loop on the same model and batch (same run).

Trains (or reuses) a `tiny` model with `rprim train`, then runs the protocol (by default the
paper's: `varassign-code` depth 1 + 2, 64 examples, 3 seeds, 300 full-batch Adafactor steps,
held-out accuracy of 1000 examples per task at every step 200..300) and prints the split
between training steps and evaluation. The reference is the bare loop ``loss.backward();
opt.step(); opt.zero_grad()`` over the seed-0 batch with the same optimizer: the ratio shows
what rprim's step adds (micro-batch accumulation, progress accounting).

    python benchmarks/bench_finetune.py [--model DIR] [--eval-every 1] [--seeds 3] [--steps 300]
        [--eval-n 1000] [--micro-batch-size auto|N] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rprim.core import default_threads, parse_batch_size
from rprim.core.torch_util import make_optimizer
from rprim.evaluators.finetune import FinetuneConfig, finetune
from rprim.evaluators.finetune.protocol import encode, training_set


def plain_steps(model_path: str, cfg: FinetuneConfig, steps: int) -> float:
    """Seconds per step of the bare full-batch loop on seed 0's batch (fp32, same optimizer)."""
    from rprim.evaluators.engine.loading import load_hf

    base, tok, _ = load_hf(model_path, dtype="float32", device="cpu")
    ids, mask, labels = encode(tok, training_set(cfg, cfg.seeds[0]))
    model = copy.deepcopy(base).train()
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    t0 = time.perf_counter()
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a trained model folder (default: train `tiny` now)")
    ap.add_argument("--method", default="midas")
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-n", type=int, default=1000)
    ap.add_argument("--micro-batch-size", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads or default_threads())
    model = args.model
    if model is None:
        model = str(Path(tempfile.mkdtemp(prefix="rprim-ft-")) / f"tiny-{args.method}")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rprim", "train", "--preset", "tiny", "--method",
                        args.method, "--corpus", "stdlib-python", "--out", model, "--quiet"], check=True)
        print(f"trained tiny {args.method} in {time.perf_counter() - t0:.1f}s -> {model}")
    cfg = FinetuneConfig(seeds=tuple(range(args.seeds)), steps=args.steps, eval_every=args.eval_every,
                         eval_n=args.eval_n, micro_batch_size=parse_batch_size(args.micro_batch_size))
    res = finetune(model, cfg, log=lambda s: print(s, flush=True) if "step" not in s else None)
    print(res.table())
    wall, train, ev = (res.meta[k] for k in ("wall_time_s", "train_time_s", "eval_time_s"))
    evals = len(cfg.eval_steps) * len(cfg.seeds)
    step = train / (cfg.steps * len(cfg.seeds))
    print(f"\nwall {wall:.1f}s: training {train:.1f}s ({train / wall:.0%}, {step * 1000:.0f} ms/step, "
          f"micro-batches of {res.meta['micro_batch_size']}), evaluation {ev:.1f}s ({ev / wall:.0%}, "
          f"{evals} evaluations of {cfg.eval_n * len(cfg.tasks)} examples, {ev / evals:.2f}s each), "
          f"other {wall - train - ev:.1f}s")
    plain = plain_steps(model, cfg, min(cfg.steps, 30))
    print(f"training step: rprim {step * 1000:.0f} ms, plain PyTorch loop {plain * 1000:.0f} ms "
          f"(ratio {step / plain:.2f})")


if __name__ == "__main__":
    main()
