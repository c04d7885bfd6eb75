"""``evaluate``: records -> k-shot prompts -> backend greedy decoding -> scores -> Results.

The order of work is chosen so that every mistake a user can make fails before the expensive
part: arguments and data first, then the model's config and tokenizer (prompt lengths against
the context, the BOS rule), and only then the weights.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import rprim.primitives as P
from rprim.core import RprimError

from .data import EvalSet, TaskData, check_n, continuation, data_hash, eval_set, prepare
from .engine.backend import Backend, Request
from .scoring import TaskScore, prediction

if TYPE_CHECKING:
    from .engine.spec import ModelSpec
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
    per model (see ``rprim.evaluators.engine.tokens``), True/False forces it. The same load path as
    :func:`open_engine`, with nothing to score yet.
    """
    return open_engine(model, [], tokenizer=tokenizer, backend=backend, batch_size=batch_size,
                       trust_remote_code=trust_remote_code, dtype=dtype, device=device,
                       vllm_options=vllm_options, add_bos=add_bos)[0]


def _backend_kind(model: Any, backend: str) -> str:
    if backend not in ("auto", "hf", "vllm"):
        raise RprimError(f"unknown backend {backend!r}; use auto, hf or vllm")
    if backend == "auto":
        from .engine.vllm import available, on_gpu

        return "vllm" if _named(model) and available() and on_gpu() else "hf"
    if backend == "vllm" and not _named(model):
        raise RprimError("the vllm backend takes a model folder, not an in-memory model; "
                         "use backend='hf'")
    return backend


def _vllm_backend(model: Any, dtype: str, trust_remote_code: bool,
                  vllm_options: dict[str, Any] | None, add_bos: bool | None) -> Backend:
    from .engine.vllm import VLLMBackend

    return VLLMBackend(str(model), dtype=dtype, trust_remote_code=trust_remote_code, add_bos=add_bos,
                       **(vllm_options or {}))


def _estimate(spec: "ModelSpec", evals: EvalSet, prompt_tokens: int, device: str) -> str:
    """A rough time for the whole run from the model size and the tokens to process."""
    cfg = getattr(spec.config, "text_config", None) or spec.config
    hidden = getattr(cfg, "hidden_size", 0) or 0
    layers = getattr(cfg, "num_hidden_layers", 0) or 0
    if not hidden or not layers:
        return ""
    prefix = 0
    for t in evals.tasks[:1]:
        prompts = [r["prompt"] for r in t.records[:32]]
        prefix = len(os.path.commonprefix(prompts)) if len(prompts) > 1 else 0
    chars = max(1, len(evals.tasks[0].records[0]["prompt"]))
    unique = max(1.0, prompt_tokens * (1 - prefix / chars)) + max(evals.budgets.values()) / 2
    flops = 2 * 12 * layers * hidden * hidden * unique * evals.total
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


def open_engine(model: Any, tasks: list[TaskData], *, tokenizer: Any = None,
                backend: str = "auto", batch_size: int | str = "auto", trust_remote_code: bool = False,
                dtype: str = "auto", device: str = "auto", max_new_tokens: int | None = None,
                vllm_options: dict[str, Any] | None = None, add_bos: bool | None = None,
                progress: bool = False) -> tuple[Backend, EvalSet]:
    """The one load path: the model spec (config, tokenizer, BOS rule, context) is resolved
    once, the tasks' answer budgets are counted and every prompt is checked against the
    context, and only then are the weights loaded (or the vLLM engine prepared)."""
    from .engine.hf import HFBackend
    from .engine.loading import inspect_model
    from .engine.spec import ModelSpec

    engine: Backend | None = None
    if isinstance(model, Backend):
        engine = model
    elif _backend_kind(model, backend) == "vllm":
        engine = _vllm_backend(model, dtype, trust_remote_code, vllm_options, add_bos)
    spec = getattr(engine, "spec", None) if engine is not None else (
        inspect_model(str(model), trust_remote_code, add_bos, tokenizer) if _named(model)
        else ModelSpec.of_model(model, tokenizer, add_bos))
    work = eval_set(tasks, spec.count_tokens if spec else engine.count_tokens_many, max_new_tokens)
    lengths = spec.check_prompts(work) if spec is not None else []
    if engine is not None:
        if progress and tasks:
            _say(progress, _count_line(work))
        return engine, work
    if not _named(model):
        return HFBackend(model, batch_size=batch_size, spec=spec), work
    return _load(spec, work, lengths, batch_size, dtype, device, progress and bool(tasks)), work


def _load(spec: "ModelSpec", work: EvalSet, lengths: list[int], batch_size: int | str, dtype: str,
          device: str, progress: bool) -> Backend:
    """The transformers backend over ``spec``'s weights, after the last cheap checks."""
    from rprim.core.torch_util import resolve_device

    from .engine.hf import HFBackend
    from .engine.loading import check_safetensors, load_weights

    if Path(spec.source).is_dir() and "gguf_file" not in spec.kwargs:
        check_safetensors(Path(spec.source))  # a truncated download fails before anything is printed
    mean_prompt = int(sum(lengths) / max(1, len(lengths)))
    estimate = _estimate(spec, work, mean_prompt, resolve_device(device)) if work.tasks else ""
    if progress:  # the line is built only when shown (an empty set has no count line)
        _say(progress, f"{_count_line(work)}; {spec.where}{'; ' + estimate if estimate else ''}")
    return HFBackend(load_weights(spec, dtype, device), batch_size=batch_size, spec=spec)


def _count_line(evals: EvalSet) -> str:
    sizes = sorted({len(t.records) for t in evals.tasks})
    per = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}..{sizes[-1]:,}"
    shots = {t.shots for t in evals.tasks}
    shot = f", {shots.pop()}-shot" if len(shots) == 1 and None not in shots else ""
    return (f"{len(evals.tasks)} task{'s' if len(evals.tasks) != 1 else ''} x {per} examples = "
            f"{evals.total:,} examples{shot}")


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
    engine, evals = open_engine(model, prepare(tasks, shots, n, seed), tokenizer=tokenizer,
                               backend=backend, batch_size=batch_size,
                               trust_remote_code=trust_remote_code, dtype=dtype, device=device,
                               max_new_tokens=max_new_tokens, vllm_options=vllm_options,
                               add_bos=add_bos, progress=progress)
    scores, samples, hashes, wall = score(engine, evals, progress, on_progress)
    from rprim.core.paths import package_version

    custom = not any(t.shots is not None for t in evals.tasks)
    meta = {**engine.describe(), "rprim_version": package_version(), "shots": None if custom else shots,
            "seed": None if custom else seed, "n": n, "batch_size": batch_size,
            "data_hashes": hashes, "generator_version": P.GENERATOR_VERSION,
            "wall_time_s": round(wall, 3),
            "examples_per_s": round(evals.total / wall, 3) if wall > 0 else None,
            "examples": evals.total}
    return Results(scores, samples, meta)


def score(engine: Backend, evals: EvalSet, progress: bool = False,
          on_progress: Callable[[int], None] | None = None) -> tuple[dict, dict, dict, float]:
    """The scoring layer under :func:`evaluate`: every task of ``evals`` through ``engine``;
    (scores, samples, data hashes, wall seconds). No checks, no data preparation: callers that
    score many times (fine-tuning) build the evaluation set and the engine once."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=evals.total, unit="ex", desc="rprim eval", dynamic_ncols=True)

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
        for t in evals.tasks:
            recs = t.records
            reqs = [Request(r["prompt"], continuation(r), tuple(r["until"]))
                    for r in recs]
            budget = evals.budgets[t.name]
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
