"""``evaluate``: records -> k-shot prompts -> backend greedy decoding -> scores -> Results."""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import rprim.primitives as P
from rprim.core import RprimError

from .backend import Backend, Request
from .scoring import TaskScore, prediction

if TYPE_CHECKING:
    from .results import Results

DEFAULT_N = 1000
ANSWER_MARGIN = 8  # decode up to (longest answer + this many) tokens


def task_names(tasks: str | Sequence[str] | None) -> list[str]:
    """``None``/``"suite"`` -> the canonical suite; ``"a,b"`` or a list -> those names, checked."""
    if tasks is None or tasks == "suite":
        return P.suite_names()
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    names = [t for t in names if t]
    if not names:
        raise RprimError("the task list is empty; pass --tasks suite or names like "
                         "varassign-code-d0,arithmetic (see `rprim tasks`)")
    out: list[str] = []
    for t in names:
        if t == "suite":
            out += [s for s in P.suite_names() if s not in out]
        else:
            P.resolve(t)  # RprimError with suggestions for unknown names
            if t not in out:
                out.append(t)
    return out


def _suite_available() -> bool:
    return (P.suite_dir() / "manifest.json").is_file()


def task_records(name: str, shots: int, n: int | None, seed: int) -> tuple[Any, list[dict[str, Any]]]:
    """(task, records with k-shot prompts). Suite tasks at seed 0 read the frozen suite."""
    task = P.get(name)
    if n is not None and n <= 0:
        raise RprimError(f"--n must be a positive number of examples (got {n})")
    if name in P.SUITE and seed == 0 and _suite_available():
        recs = P.load_suite([task.name])[task.name]
        if n is not None:
            if n > len(recs):
                raise RprimError(f"the frozen suite has {len(recs)} examples of {name}; "
                                 f"pass --n {len(recs)} or less")
            recs = recs[:n]
        prefix = task.fewshot_prefix(seed, shots) if shots else ""
        recs = [{**r, "prompt": prefix + r["query"], "num_fewshot": shots} for r in recs]
        return task, recs
    return task, task.generate(n or DEFAULT_N, seed=seed, split="test", shots=shots)


def data_hash(records: Sequence[dict[str, Any]]) -> str:
    """sha256 over exactly what was scored: each prompt and target."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r["prompt"], r["target_delimiter"], r["target"]]).encode())
    return h.hexdigest()


def make_backend(model: Any, tokenizer: Any = None, backend: str = "auto",
                 batch_size: int | str = "auto", trust_remote_code: bool = False,
                 dtype: str = "auto", device: str = "auto",
                 vllm_options: dict[str, Any] | None = None) -> Backend:
    """A backend for a path / reference name / hub id, or for an in-memory model + tokenizer.

    ``auto`` picks vLLM when it is installed, a GPU is present and ``model`` names a model
    (not an in-memory one), else transformers. ``vllm_options``: ``tensor_parallel_size``,
    ``max_model_len``, ``gpu_memory_utilization``, ``enforce_eager``.
    """
    if isinstance(model, Backend):
        return model
    if backend not in ("auto", "hf", "vllm"):
        raise RprimError(f"unknown backend {backend!r}; use auto, hf or vllm")
    named = isinstance(model, (str, bytes)) or hasattr(model, "__fspath__")
    if backend == "auto":
        from .vllm import available, on_gpu

        backend = "vllm" if named and available() and on_gpu() else "hf"
    if backend == "vllm":
        from .reference import is_reference, reference_path
        from .vllm import VLLMBackend

        if not named:
            raise RprimError("the vllm backend takes a model folder, not an in-memory model; "
                             "use backend='hf'")
        path = str(reference_path(str(model))) if is_reference(str(model)) else str(model)
        return VLLMBackend(path, dtype=dtype, trust_remote_code=trust_remote_code,
                           **(vllm_options or {}))
    from .hf import HFBackend, load_hf

    if named:
        m, tok, where = load_hf(str(model), trust_remote_code=trust_remote_code, dtype=dtype,
                                device=device)
        return HFBackend(m, tokenizer or tok, batch_size=batch_size, model_id=where)
    return HFBackend(model, tokenizer, batch_size=batch_size)


def evaluate(model: Any, tasks: str | Sequence[str] | None = "suite", shots: int = 5,
             n: int | None = None, seed: int = 0, tokenizer: Any = None,
             batch_size: int | str = "auto", backend: str = "auto",
             max_new_tokens: int | None = None, trust_remote_code: bool = False,
             dtype: str = "auto", device: str = "auto", progress: bool = False,
             on_progress: Callable[[int], None] | None = None,
             vllm_options: dict[str, Any] | None = None) -> "Results":
    """Score ``model`` on ``tasks`` by greedy exact match.

    ``model``: a HF folder, a ``.gguf`` file, a reference name (``smollm2-135m``), a hub id,
    an in-memory causal LM (then pass ``tokenizer``), or a ready ``Backend``.
    ``n``: examples per task (the first n of the frozen suite; default all 1000).
    ``max_new_tokens``: default = the longest answer in tokens + 8, per task.
    """
    from .results import Results

    if shots < 0:
        raise RprimError(f"--shots must be >= 0 (got {shots})")
    names = task_names(tasks)
    prepared = [task_records(name, shots, n, seed) for name in names]
    engine = make_backend(model, tokenizer, backend, batch_size, trust_remote_code, dtype, device,
                          vllm_options)
    total = sum(len(r) for _, r in prepared)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="ex", desc="rprim eval", dynamic_ncols=True)

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
        for task, recs in prepared:
            reqs = [Request(r["prompt"], r["target_delimiter"] + r["target"], tuple(r["until"]))
                    for r in recs]
            budget = max_new_tokens or (max(engine.count_tokens(q.continuation) for q in reqs)
                                        + ANSWER_MARGIN)
            gens = engine.greedy(reqs, budget, progress=tick)
            preds = [prediction(g.text, r["until"]) for g, r in zip(gens, recs)]
            s = TaskScore.of(preds, [r["target"] for r in recs])
            scores[task.name] = {"accuracy": s.accuracy, "n": s.n, "ci95": list(s.ci95),
                                 "flexible_accuracy": s.flexible_accuracy,
                                 "unparsable": s.unparsable, "chance": task.chance,
                                 "max_new_tokens": budget}
            samples[task.name] = [{"id": r["id"], "prompt": r["prompt"], "target": r["target"],
                                   "prediction": p, "correct": p == r["target"]}
                                  for r, p in zip(recs, preds)]
            hashes[task.name] = data_hash(recs)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    from rprim import __version__

    meta = {**engine.describe(), "rprim_version": __version__, "shots": shots, "seed": seed,
            "n": n, "batch_size": batch_size, "data_hashes": hashes,
            "generator_version": P.GENERATOR_VERSION, "wall_time_s": round(wall, 3),
            "examples_per_s": round(total / wall, 3) if wall > 0 else None,
            "examples": total}
    return Results(scores, samples, meta)
