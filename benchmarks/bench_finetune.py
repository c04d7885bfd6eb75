"""The whole fine-tuning protocol on the `tiny` zoo model, on CPU: wall time and where it goes.

Trains (or reuses) a `tiny` model with `rprim train`, then runs the paper's default protocol
(`varassign-code` depth 1 + 2, 64 examples, 3 seeds, 300 full-batch Adafactor steps, held-out
accuracy of 1000 examples per task at every step 200..300) and prints the split between
training steps and evaluation.

    python benchmarks/bench_finetune.py [--model DIR] [--eval-every 1] [--seeds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rprim.evaluators.finetune import FinetuneConfig, finetune, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a trained model folder (default: train `tiny` now)")
    ap.add_argument("--method", default="midas")
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    model = args.model
    if model is None:
        model = str(Path(tempfile.mkdtemp(prefix="rprim-ft-")) / f"tiny-{args.method}")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rprim", "train", "--preset", "tiny", "--method",
                        args.method, "--corpus", "stdlib-python", "--out", model, "--quiet"], check=True)
        print(f"trained tiny {args.method} in {time.perf_counter() - t0:.1f}s -> {model}")
    cfg = FinetuneConfig(seeds=tuple(range(args.seeds)), eval_every=args.eval_every)
    res = finetune(model, cfg, log=lambda s: print(s, flush=True) if "step" not in s else None)
    print(table(res))
    wall, train, ev = res["wall_time_s"], res["train_time_s"], res["eval_time_s"]
    evals = len(cfg.eval_steps) * len(cfg.seeds)
    print(f"\nwall {wall:.1f}s: training {train:.1f}s ({train / wall:.0%}, "
          f"{train / (cfg.steps * len(cfg.seeds)) * 1000:.0f} ms/step), evaluation {ev:.1f}s "
          f"({ev / wall:.0%}, {evals} evaluations of {cfg.eval_n * len(cfg.tasks)} examples, "
          f"{ev / evals:.2f}s each), other {wall - train - ev:.1f}s")


if __name__ == "__main__":
    main()
