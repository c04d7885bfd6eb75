"""Learning curves of variable binding: depth-0 accuracy against training tokens, per design.

    python benchmarks/bench_binding.py                       # old vs new design, tiny-study shape
    python benchmarks/bench_binding.py --tokens 2000000 --snapshots 8 \\
        --design "old:mix_loss=all" --design "new:mix_loss=answers" --design "lr1e-2:lr=1e-2"

Each design is a set of trainer overrides on the ``tiny`` study's model (8 layers, d 64,
context 1024, its mix). ``old`` is the design before issue 18 (loss on every token of the mix
documents), ``new`` the default now (loss on the primitives' answers only). Every design trains
the baseline method on the same tokens and data order; every ``tokens / snapshots`` tokens a
snapshot is scored exactly as the study scores it (5-shot prompts of the ``test`` split, greedy
exact match) on variable assignment at depth 0, and its errors are sorted by where the answer
came from (``rprim.evaluators.report.probe``). Prints one row per snapshot and design; chance is 0.2.
Runs in one process, one design after another, so the curves share the machine's state.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

TASKS = ["varassign-basic-d0", "varassign-math-d0", "varassign-code-d0"]


def parse_design(text: str) -> tuple[str, dict[str, str]]:
    name, _, sets = text.partition(":")
    pairs = [s for s in sets.split(",") if s.strip()]
    return name.strip(), dict(p.split("=", 1) for p in pairs)


def train_design(name: str, sets: dict[str, str], args, root: Path) -> Path:
    from rprim import study as S
    from rprim.model_zoo.presets import parse_sets
    from rprim.model_zoo.train import train

    preset = S.PRESETS["tiny"]
    steps = max(args.snapshots, args.tokens // (2 * 1024))
    overrides = {**preset.train, "steps": steps, "snapshot_every": max(1, steps // args.snapshots),
                 "ckpt_every": steps, "eval_every": steps, "threads": args.threads,
                 "mix": args.mix or preset.mix, "cache_dir": str(root / "cache"),
                 **parse_sets([f"{k}={v}" for k, v in sets.items()])}
    s = S.StudySettings(preset, root, ("baseline",), overrides["mix"], sets=overrides)
    cfg = S.train_config(s, "baseline")
    out = root / name
    t0 = time.perf_counter()
    train(cfg, out, overwrite=True, progress=False, quiet=True)
    print(f"# {name}: trained {cfg.total_steps} steps ({cfg.total_steps * cfg.tokens_per_step:,} tokens) "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def score(folder: Path, n: int) -> tuple[float, int, dict[str, int]]:
    from rprim.evaluators import evaluate
    from rprim.evaluators.report import probe

    res = evaluate(str(folder), tasks=TASKS, shots=5, n=n, progress=False)
    rows = [r for t in TASKS for r in res.samples[t]]
    k = sum(r["correct"] for r in rows)
    return k / len(rows), len(rows), probe.profile(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=600_000, help="training tokens per design")
    ap.add_argument("--snapshots", type=int, default=4)
    ap.add_argument("--n", type=int, default=40, help="examples per depth-0 format per snapshot")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mix", default=None, help="the mix (default: the tiny study's)")
    ap.add_argument("--design", action="append", default=None,
                    help="NAME:key=value,... trainer overrides (repeatable)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    designs = [parse_design(d) for d in (args.design or ["old:mix_loss=all", "new:mix_loss=answers"])]
    from rprim.cli_eval import _quiet_transformers
    from rprim.evaluators.report import probe
    from rprim.evaluators.scoring import wilson

    _quiet_transformers()

    rows = []
    with tempfile.TemporaryDirectory(prefix="rprim-bench-binding-") as tmp:
        for name, sets in designs:
            out = train_design(name, sets, args, Path(tmp))
            points = [(p, json.loads((p / "snapshot.json").read_text()))
                      for p in sorted((out / "snapshots").glob("step-*"))]
            final = json.loads((out / "training_summary.json").read_text())
            if not points or points[-1][1]["tokens"] != final["tokens"]:
                points.append((out, final))
            for p, info in points:
                acc, n, prof = score(p, args.n)
                lo, hi = wilson(round(acc * n), n)
                rows.append({"design": name, "tokens": info["tokens"], "accuracy": acc, "n": n,
                             "ci95": [lo, hi], **prof})
                print(f"{name:>10} {info['tokens']:>10,} tokens  depth-0 accuracy {acc:.3f} "
                      f"[{lo:.3f}, {hi:.3f}]  " + "  ".join(f"{c} {prof[c]}" for c in probe.CLASSES),
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
