"""``evaluate``: records -> k-shot prompts -> backend greedy decoding -> scores -> Results.

The order of work is chosen so that every mistake a user can make fails before the expensive
part: arguments and data first, then the model's config and tokenizer (prompt lengths against
the context, the BOS rule), and only then the weights.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import rprim.primitives as P
from rprim.core import RprimError

from .backend import Backend, Request
from .data import TaskData, answer_budget, check_n, data_hash, prepare
from .scoring import TaskScore, prediction

if TYPE_CHECKING:
    from .loading import ModelSource
    from .results import Results

CPU_FLOPS_PER_THREAD = 4e10  # rough speeds for the up-front estimate (the bar then measures)
GPU_FLOPS = 5e13


def _named(model: Any) -> bool:
    return isinstance(model, (str, bytes)) or hasattr(model, "__fspath__")


def make_backend(model: Any, tokenizer: Any = None, backend: str = "auto",
                 batch_size: int | str = "auto", trust_remote_code: bool = False,
                 dtype: str = "auto", device: str = "auto",
                 vllm_options: dict[str, Any] | None = None, add_bos: bool | None = None) -> Backend:
    """A backend for a path / reference name / hub id, or for an in-memory model + tokenizer.

    ``auto`` picks vLLM when it is installed, a GPU is present and ``model`` names a model
    (not an in-memory one), else transformers. ``vllm_options``: ``tensor_parallel_size``,
    ``max_model_len``, ``gpu_memory_utilization``, ``enforce_eager``. ``add_bos``: None decides
    per model (see ``rprim.evaluators.tokens``), True/False forces it.
    """
    if isinstance(model, Backend):
        return model
    kind = _backend_kind(model, backend)
    if kind == "vllm":
        return _vllm_backend(model, dtype, trust_remote_code, vllm_options, add_bos)
    from .hf import HFBackend
    from .loading import inspect_model, load_weights

    if _named(model):
        src = inspect_model(str(model), trust_remote_code=trust_remote_code)
        return HFBackend(load_weights(src, dtype, device), tokenizer or src.tokenizer,
                         batch_size=batch_size, model_id=src.where, add_bos=add_bos)
    return HFBackend(model, tokenizer, batch_size=batch_size, add_bos=add_bos)


def _backend_kind(model: Any, backend: str) -> str:
    if backend not in ("auto", "hf", "vllm"):
        raise RprimError(f"unknown backend {backend!r}; use auto, hf or vllm")
    if backend == "auto":
        from .vllm import available, on_gpu

        return "vllm" if _named(model) and available() and on_gpu() else "hf"
    if backend == "vllm" and not _named(model):
        raise RprimError("the vllm backend takes a model folder, not an in-memory model; "
                         "use backend='hf'")
    return backend


def _vllm_backend(model: Any, dtype: str, trust_remote_code: bool,
                  vllm_options: dict[str, Any] | None, add_bos: bool | None) -> Backend:
    from .reference import is_reference, reference_path
    from .vllm import VLLMBackend

    path = str(reference_path(str(model))) if is_reference(str(model)) else str(model)
    return VLLMBackend(path, dtype=dtype, trust_remote_code=trust_remote_code, add_bos=add_bos,
                       **(vllm_options or {}))


@dataclass
class Plan:
    """Tasks with their answer budgets, known before any weights are loaded; built once and
    scored as often as needed (fine-tuning scores one plan at every evaluation step)."""

    tasks: list[TaskData]
    budgets: dict[str, int]

    @property
    def total(self) -> int:
        return sum(len(t.records) for t in self.tasks)


def plan_for(tasks: list[TaskData], count_many: Callable[[Sequence[str]], list[int]],
             max_new_tokens: int | None = None) -> Plan:
    """The plan of ``tasks``: each task's answer budget counted with the model's tokenizer."""
    return Plan(tasks, {t.name: max_new_tokens or answer_budget(t, count_many) for t in tasks})


def _check_context(src: "ModelSource", plan: Plan, add_bos: bool | None) -> int:
    """Refuse prompts the model's context cannot hold, from config + tokenizer (no weights);
    returns the mean prompt length in tokens (for the estimate)."""
    from .loading import check_fits, context_length
    from .tokens import decide_bos, encode

    bos = decide_bos(src.tokenizer, src.config, add_bos)
    limit = context_length(src.config, src.tokenizer)
    lengths = []
    for t in plan.tasks:
        longest = sorted(t.records, key=lambda r: -len(r["prompt"]))[:8]  # tokens follow characters
        ids = encode(src.tokenizer, [r["prompt"] for r in longest], bos.token_id if bos.add else None)
        need = max(len(x) for x in ids)
        lengths += [len(x) for x in ids]
        check_fits(need, plan.budgets[t.name], limit, f"a prompt of {t.name}")
    return int(sum(lengths) / max(1, len(lengths)))


def _estimate(src: "ModelSource", plan: Plan, prompt_tokens: int, device: str) -> str:
    """A rough time for the whole run from the model size and the tokens to process."""
    cfg = getattr(src.config, "text_config", None) or src.config
    hidden = getattr(cfg, "hidden_size", 0) or 0
    layers = getattr(cfg, "num_hidden_layers", 0) or 0
    if not hidden or not layers:
        return ""
    prefix = 0
    for t in plan.tasks[:1]:
        prompts = [r["prompt"] for r in t.records[:32]]
        prefix = len(os.path.commonprefix(prompts)) if len(prompts) > 1 else 0
    chars = max(1, len(plan.tasks[0].records[0]["prompt"]))
    unique = max(1.0, prompt_tokens * (1 - prefix / chars)) + max(plan.budgets.values()) / 2
    flops = 2 * 12 * layers * hidden * hidden * unique * plan.total
    if device.startswith("cuda"):
        rate = GPU_FLOPS
    else:
        import torch

        rate = CPU_FLOPS_PER_THREAD * torch.get_num_threads()
    seconds = flops / rate
    return f"rough estimate {seconds / 60:.1f} min" if seconds >= 90 else f"rough estimate {seconds:.0f} s"


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"rprim eval: {text}", file=sys.stderr, flush=True)


def open_engine(model: Any, plan_tasks: list[TaskData], *, tokenizer: Any = None,
                backend: str = "auto", batch_size: int | str = "auto", trust_remote_code: bool = False,
                dtype: str = "auto", device: str = "auto", max_new_tokens: int | None = None,
                vllm_options: dict[str, Any] | None = None, add_bos: bool | None = None,
                progress: bool = False) -> tuple[Backend, Plan]:
    """The engine and the plan (answer budgets), with every no-weights check done before the
    weights load."""
    if isinstance(model, Backend) or _backend_kind(model, backend) == "vllm" or not _named(model):
        engine = make_backend(model, tokenizer, backend, batch_size, trust_remote_code, dtype,
                              device, vllm_options, add_bos)
        plan = plan_for(plan_tasks, engine.count_tokens_many, max_new_tokens)
        _say(progress, f"{_count_line(plan)}")
        return engine, plan
    from rprim.core.torch_util import resolve_device

    from .hf import HFBackend
    from .loading import check_safetensors, inspect_model, load_weights
    from .tokens import count_tokens

    src = inspect_model(str(model), trust_remote_code=trust_remote_code)
    tok = tokenizer or src.tokenizer
    plan = plan_for(plan_tasks, lambda texts: count_tokens(tok, texts), max_new_tokens)
    mean_prompt = _check_context(src, plan, add_bos)
    if Path(src.source).is_dir() and "gguf_file" not in src.kwargs:
        check_safetensors(Path(src.source))  # a truncated download fails before anything is printed
    estimate = _estimate(src, plan, mean_prompt, resolve_device(device))
    _say(progress, f"{_count_line(plan)}; {src.where}{'; ' + estimate if estimate else ''}")
    engine = HFBackend(load_weights(src, dtype, device), tok, batch_size=batch_size,
                       model_id=src.where, add_bos=add_bos)
    return engine, plan


def _count_line(plan: Plan) -> str:
    sizes = sorted({len(t.records) for t in plan.tasks})
    per = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}..{sizes[-1]:,}"
    shots = {t.shots for t in plan.tasks}
    shot = f", {shots.pop()}-shot" if len(shots) == 1 and None not in shots else ""
    return (f"{len(plan.tasks)} task{'s' if len(plan.tasks) != 1 else ''} x {per} examples = "
            f"{plan.total:,} examples{shot}")


def evaluate(model: Any, tasks: Any = "suite", shots: int = 5,
             n: int | None = None, seed: int = 0, tokenizer: Any = None,
             batch_size: int | str = "auto", backend: str = "auto",
             max_new_tokens: int | None = None, trust_remote_code: bool = False,
             dtype: str = "auto", device: str = "auto", progress: bool = False,
             on_progress: Callable[[int], None] | None = None,
             vllm_options: dict[str, Any] | None = None, add_bos: bool | None = None) -> "Results":
    """Score ``model`` on ``tasks`` by greedy exact match.

    ``model``: a HF folder, a ``.gguf`` file, a reference name (``smollm2-135m``), a hub id,
    an in-memory causal LM (then pass ``tokenizer``), or a ready ``Backend``.
    ``tasks``: ``"suite"``, names (``"a,b"`` or a list), or your own records as
    ``{"mytask": [{"prompt": ..., "target": ...}, ...]}`` (see ``rprim.evaluators.data``).
    ``n``: examples per task (the first n; default all 1000 of the frozen suite).
    ``max_new_tokens``: default = the task's longest answer in tokens + 8 (not a function of n).
    ``add_bos``: None decides per model as lm-evaluation-harness does; True/False forces it.
    """
    from .results import Results

    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
        raise RprimError(f"--shots must be an integer >= 0 (got {shots!r})")
    check_n(n)
    if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
        raise RprimError(f"--max-new-tokens must be a positive integer (got {max_new_tokens!r})")
    if _named(model) and not isinstance(model, Backend):
        from rprim.core.torch_util import resolve_device

        resolve_device(device)  # a missing GPU fails before data, config or weights
    engine, plan = open_engine(model, prepare(tasks, shots, n, seed), tokenizer=tokenizer,
                               backend=backend, batch_size=batch_size,
                               trust_remote_code=trust_remote_code, dtype=dtype, device=device,
                               max_new_tokens=max_new_tokens, vllm_options=vllm_options,
                               add_bos=add_bos, progress=progress)
    scores, samples, hashes, wall = score(engine, plan, progress, on_progress)
    from rprim.core.paths import package_version

    custom = not any(t.shots is not None for t in plan.tasks)
    meta = {**engine.describe(), "rprim_version": package_version(), "shots": None if custom else shots,
            "seed": None if custom else seed, "n": n, "batch_size": batch_size,
            "data_hashes": hashes, "generator_version": P.GENERATOR_VERSION,
            "wall_time_s": round(wall, 3),
            "examples_per_s": round(plan.total / wall, 3) if wall > 0 else None,
            "examples": plan.total}
    return Results(scores, samples, meta)


def score(engine: Backend, plan: Plan, progress: bool = False,
          on_progress: Callable[[int], None] | None = None) -> tuple[dict, dict, dict, float]:
    """The scoring layer under :func:`evaluate`: every task of ``plan`` through ``engine``;
    (scores, samples, data hashes, wall seconds). No checks, no data preparation: callers that
    score many times (fine-tuning) build the plan and the engine once."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.total, unit="ex", desc="rprim eval", dynamic_ncols=True)

    def tick(k: int) -> None:
        if bar is not None:
            bar.update(k)
        if on_progress is not None:
            on_progress(k)

    start = time.perf_counter()
    scores: dict[str, dict[str, Any]] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    hashes: dict[str, str] = {}
    try:
        for t in plan.tasks:
            recs = t.records
            reqs = [Request(r["prompt"], r["target_delimiter"] + r["target"], tuple(r["until"]))
                    for r in recs]
            budget = plan.budgets[t.name]
            gens = engine.greedy(reqs, budget, progress=tick)
            preds = [prediction(g.text, r["until"]) for g, r in zip(gens, recs)]
            s = TaskScore.of(preds, [r["target"] for r in recs])
            scores[t.name] = {"accuracy": s.accuracy, "n": s.n, "ci95": list(s.ci95),
                              "flexible_accuracy": s.flexible_accuracy,
                              "unparsable": s.unparsable, "chance": t.chance,
                              "max_new_tokens": budget}
            samples[t.name] = [{"id": r["id"], "prompt": r["prompt"], "target": r["target"],
                                "prediction": p, "correct": p == r["target"]}
                               for r, p in zip(recs, preds)]
            hashes[t.name] = data_hash(recs)
    finally:
        if bar is not None:
            bar.close()
    return scores, samples, hashes, time.perf_counter() - start
