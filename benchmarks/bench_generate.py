"""Generation speed: rprim vs reasoning-gym and a plain per-example generator, same run.

Times ``varassign-code-d2`` written as JSONL (the full record: query, prompt, target,
metadata, hash), a plain per-example Python generator of the same task (one
``random.Random`` per example, ``json.dumps`` per record), and reasoning-gym's fastest
comparable generators (``chain_sum``, ``basic_arithmetic``) written as JSONL the same way.
reasoning-gym is only needed here: ``pip install reasoning-gym`` in the benchmark venv.

    python benchmarks/bench_generate.py [--n 200000] [--rg-n 200000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import string
import tempfile
import time
from pathlib import Path

import rprim.primitives as P
from rprim.primitives.io import write_jsonl

HEADER = ("The following is a very short Python program. Use the program to resolve the value "
          "of the variable in the question.\nProgram:\n")


def plain_varassign_code_d2(index: int, seed: int = 0) -> dict:
    """The straightforward way: one seeded Random per example, strings built line by line."""
    rng = random.Random(hashlib.blake2b(f"varassign/{seed}/{index}".encode()).digest())
    w, d = 5, 2
    names = rng.sample(string.ascii_lowercase, w * (d + 1))
    consts = rng.sample(range(25), w)
    lines = [f"{names[i]}={consts[i]}" for i in range(w)]
    values: dict[str, int] = dict(zip(names[:w], consts))
    parents: dict[str, str] = {}
    for j in range(1, d + 1):
        below = names[(j - 1) * w:j * w]
        refs = rng.sample(below, w)
        for p in range(w):
            name = names[j * w + p]
            lines.append(f"{name}={refs[p]}")
            values[name] = values[refs[p]]
            parents[name] = refs[p]
    q = rng.choice(names[d * w:])
    chain = [q]
    while chain[-1] in parents:
        chain.append(parents[chain[-1]])
    query = HEADER + "\n".join(lines) + f"\nQuestion:\nWhat is the value of {q}?\nAnswer:"
    target = str(values[q])
    return {"id": f"varassign-code-d2/test/{seed}/{index}", "query": query, "prompt": query,
            "target": target, "metadata": {"assignments": dict(zip(names, (l.split("=")[1] for l in lines))),
                                           "chain": chain, "answer": values[q]},
            "hash": hashlib.blake2b(f"{query}\x1f{target}".encode(), digest_size=8).hexdigest()}


def write_dicts(items, path: Path) -> int:
    count = 0
    with open(path, "w") as f:
        for item in items:
            f.write(json.dumps(item) + "\n")
            count += 1
    return count


def timed(label: str, fn, n: int, results: dict) -> float:
    t0 = time.perf_counter()
    count = fn()
    dt = time.perf_counter() - t0
    assert count == n, (label, count, n)
    results[label] = n / dt
    print(f"{label:<34} {n:>8} examples  {dt:7.2f} s  {n / dt:>10,.0f} examples/s", flush=True)
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--rg-n", type=int, default=200_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rprim-bench-"))
    res: dict[str, float] = {}
    task = P.get("varassign-code-d2")
    task.generate(10)  # warm caches (templates, tables)
    timed("rprim varassign-code-d2", lambda: write_jsonl(task.iter_chunks(args.n), tmp / "rprim.jsonl"), args.n, res)
    timed("plain python varassign-code-d2", lambda: write_dicts(
        (plain_varassign_code_d2(i) for i in range(args.n)), tmp / "plain.jsonl"), args.n, res)
    try:
        import reasoning_gym
    except ImportError:
        reasoning_gym = None
        print("reasoning-gym is not installed: pip install reasoning-gym (benchmark venv only)")
    if reasoning_gym is not None:
        for name in ("chain_sum", "basic_arithmetic"):
            n = args.rg_n if name == "chain_sum" else max(1, args.rg_n // 4)
            timed(f"reasoning-gym {name}", lambda: write_dicts(
                iter(reasoning_gym.create_dataset(name, size=n, seed=0)), tmp / f"{name}.jsonl"), n, res)
    for f in tmp.iterdir():
        os.unlink(f)
    tmp.rmdir()
    ours = res["rprim varassign-code-d2"]
    print(f"\nrprim / plain python:          {ours / res['plain python varassign-code-d2']:.2f}x")
    rg = {k: v for k, v in res.items() if k.startswith("reasoning-gym")}
    if rg:
        best = max(rg, key=rg.get)
        print(f"rprim / fastest reasoning-gym ({best.split()[-1]}): {ours / rg[best]:.2f}x  (goal >= 5x)")


if __name__ == "__main__":
    main()
