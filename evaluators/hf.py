"""The transformers backend: exact greedy decoding, mostly without decoding.

Why it is fast: for a correct answer, plain greedy decoding costs one forward pass per answer
token, per example, re-reading the whole k-shot prompt. Here one teacher-forced forward pass
over ``prompt + answer`` (batched, with the task's shared prompt prefix encoded once and its KV
cache reused) reveals the greedy token at every answer position. Only examples where greedy
leaves the answer, or does not stop right after it, are decoded further, from the KV cache the
pass already built.

Why it is exact (the same verdict *and* the same text as ``model.generate`` greedy):

* The prompt is tokenized alone, exactly as ``generate`` would see it (``P``).
* The forced tokens ``T`` are the tokens after ``P`` in the tokenization of prompt+answer, used
  only when ``P`` is a prefix of it (joining can merge tokens across the boundary; then
  ``T`` is empty and we simply decode).
* The greedy chain is walked: the argmax after ``P`` must equal ``T[0]``, the argmax after
  ``P+T[0]`` must equal ``T[1]``, ... Let ``j`` be the first mismatch. Greedy decoding's first
  ``j+1`` tokens are then *known*: ``T[:j]`` plus the argmax at the mismatch (or after all of
  ``T``). Nothing is claimed beyond that chain.
* If those tokens already contain an end-of-sequence token or an ``until`` string, the text is
  final. Otherwise decoding continues from the cache of ``P + T[:j]`` (the cache entries of the
  rejected forced tokens are masked out), one token per step, batched.
"""

from __future__ import annotations

import copy
import inspect
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from rprim.core import RprimError
from rprim.core.torch_util import resolve_device, torch_dtype

from .backend import Backend, Generation, Progress, Request

CPU_BATCH = 32  # CPU throughput stops improving around here; memory is not the limit
GPU_MAX_BATCH = 512


# ---------------------------------------------------------------------------------------------
# loading


def _looks_local(spec: str) -> bool:
    return (spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or spec.count("/") > 1
            or os.sep != "/" and os.sep in spec)


def _check_causal(config: Any, where: str) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kind = getattr(config, "model_type", "?")
    archs = getattr(config, "architectures", None) or []
    causal_arch = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    if (kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False)
            or (archs and not causal_arch)):
        what = archs[0] if archs else kind
        raise RprimError(f"{where} is a {what} model, not a causal language model; rprim scores "
                         "decoder-only causal LMs (Llama, GPT-2, Qwen, ...)")


def load_hf(spec: str, trust_remote_code: bool = False, dtype: str = "auto",
            device: str = "auto") -> tuple[Any, Any, str]:
    """(model, tokenizer, resolved path) for a folder, a .gguf file, a reference or hub name.

    Every failure a user can fix becomes a one-line RprimError before any scoring starts.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .reference import is_reference, reference_path

    if is_reference(spec):
        spec = str(reference_path(spec))
    path = Path(spec).expanduser()
    gguf_file = None
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if path.exists():
        if path.is_file():
            if path.suffix != ".gguf":
                raise RprimError(f"--model {spec} is a file but not a .gguf; pass a Hugging Face "
                                 "model folder (with config.json) or a .gguf file")
            import importlib.util

            missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
            if missing:
                raise RprimError(f"loading a .gguf needs {' and '.join(missing)}: "
                                 f"pip install {' '.join(missing)}")
            gguf_file, path = path.name, path.parent
            kwargs["gguf_file"] = gguf_file
        elif not (path / "config.json").is_file():
            raise RprimError(f"{spec} has no config.json; point --model at a Hugging Face model "
                             "folder (save_pretrained output) or a .gguf file")
        where = str(path if gguf_file is None else path / gguf_file)
        source = str(path)
    elif _looks_local(spec):
        raise RprimError(f"no such file or folder: {spec}; check the --model path")
    else:
        where = source = spec  # a hub id
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise RprimError(f"{where} needs custom code; pass --trust-remote-code if you "
                             "trust it") from None
        raise RprimError(f"cannot read the model config of {where}: {_first_line(e)}") from None
    except OSError as e:
        raise RprimError(f"cannot load {where}: not a local path and the hub is unreachable "
                         f"or has no such model ({_first_line(e)}); pass a local folder") from None
    _check_causal(config, where)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as e:  # transformers raises many kinds here
        raise RprimError(f"no usable tokenizer in {where} ({_first_line(e)}); save one there with "
                         "tokenizer.save_pretrained or pass tokenizer= in Python") from None
    if tokenizer is None or not callable(tokenizer) or isinstance(tokenizer, bool):
        raise RprimError(f"no tokenizer in {where}; save one there with tokenizer.save_pretrained")
    dev = resolve_device(device)
    dt = torch_dtype(dtype, dev)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dt, **kwargs)
    except OSError as e:
        raise RprimError(f"cannot load the weights of {where}: {_first_line(e)}") from None
    model.to(dev).eval()
    return model, tokenizer, where


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def config_hash(model: Any) -> str:
    """16 hex digits over the model config (architecture and sizes, not the path)."""
    cfg = model.config.to_dict()
    for k in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash",
              "quantization_config"):
        cfg.pop(k, None)
    blob = json.dumps(cfg, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def context_length(model: Any, tokenizer: Any) -> int:
    """The longest sequence the model accepts (positions), or a very large number."""
    cfg = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    v = getattr(tokenizer, "model_max_length", None)
    return v if isinstance(v, int) and 0 < v < 10**8 else 10**9


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end greedy decoding, as ``generate`` sees them (plus the tokenizer's)."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for v in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    return ids


# ---------------------------------------------------------------------------------------------
# the reference: plain per-example greedy generate


def plain_greedy(model: Any, tokenizer: Any, prompt: str, until: Sequence[str],
                 max_new_tokens: int) -> str:
    """What rprim must reproduce: ``model.generate`` greedy on the prompt alone, stopped at an
    ``until`` string or EOS, decoded and cut before the first ``until`` string."""
    import torch
    from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

    enc = tokenizer(prompt, return_tensors="pt")
    ids = enc["input_ids"].to(model.device)
    n = ids.shape[1]
    eos = sorted(eos_ids(model, tokenizer))

    class _Until(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
            text = tokenizer.decode(input_ids[0, n:].tolist(), skip_special_tokens=True)
            done = any(u in text for u in until)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    # a fresh config: pure argmax, whatever the model's generation_config says about
    # sampling, repetition penalties or suppressed tokens
    cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                           eos_token_id=eos or None, pad_token_id=pad)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=cfg,
                             stopping_criteria=StoppingCriteriaList([_Until()]))
    return _finish(out[0, n:].tolist(), tokenizer, set(eos), until, max_new_tokens)[1]


def _finish(tokens: list[int], tokenizer: Any, eos: set[int], until: Sequence[str],
            max_new_tokens: int) -> tuple[bool, str]:
    """(decoding is over, text cut before the first until string) for greedy tokens so far."""
    done = False
    for i, t in enumerate(tokens):
        if t in eos:
            tokens, done = tokens[:i], True
            break
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cut = min((i for i in (text.find(u) for u in until) if i >= 0), default=-1)
    if cut >= 0:
        return True, text[:cut]
    return done or len(tokens) >= max_new_tokens, text


# ---------------------------------------------------------------------------------------------
# the backend


class HFBackend(Backend):
    """Greedy decoding with a transformers causal LM, exact and batched (see module doc)."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, batch_size: int | str = "auto",
                 model_id: str | None = None):
        import torch

        if tokenizer is None:
            raise RprimError("an in-memory model needs its tokenizer: pass tokenizer=...")
        if not callable(getattr(model, "forward", None)) or not hasattr(model, "config"):
            raise RprimError("model must be a path, a reference name, or a transformers causal LM")
        self.model = model  # put in eval mode only while decoding (a trainer may be calling us)
        self.tok = tokenizer
        self.model_id = model_id or getattr(model.config, "_name_or_path", "") or type(model).__name__
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise RprimError(f"batch size must be 'auto' or a positive integer (got {batch_size!r})")
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.eos = eos_ids(model, tokenizer)
        self.max_len = context_length(model, tokenizer)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._torch = torch
        # transformers renamed ``past_key_values`` to ``cache`` (5.2x); use whichever it takes
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.stats = {"forward_tokens": 0, "decode_steps": 0, "fast": 0, "decoded": 0}

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": str(self.model_id), "config_hash": config_hash(self.model),
                "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
                "device": str(self.device), "architecture": type(self.model).__name__}

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    # -- the batch size -------------------------------------------------------------------
    def _auto_batch(self, prefix_len: int, row_len: int) -> int:
        if self.device.type != "cuda":
            return CPU_BATCH
        torch = self._torch
        cfg = self.model.config
        free, _ = torch.cuda.mem_get_info(self.device)
        layers = getattr(cfg, "num_hidden_layers", 32)
        heads = getattr(cfg, "num_attention_heads", 32)
        kv = getattr(cfg, "num_key_value_heads", None) or heads
        hidden = getattr(cfg, "hidden_size", 4096)
        head_dim = getattr(cfg, "head_dim", None) or hidden // heads
        width = next(self.model.parameters()).element_size()
        seq = prefix_len + row_len
        per_row = (2 * layers * kv * head_dim * seq * width * 2  # cache (+ a copy while growing)
                   + row_len * hidden * width * 24                 # activations of one layer
                   + heads * row_len * seq * 4                     # attention scores
                   + row_len * getattr(cfg, "vocab_size", 50000) * 4)  # kept logits
        return int(max(1, min(GPU_MAX_BATCH, 0.6 * free // max(per_row, 1))))

    # -- the main entry -------------------------------------------------------------------
    def greedy(self, requests: Sequence[Request], max_new_tokens: int,
               progress: Progress | None = None) -> list[Generation]:
        """Greedy continuations (see the module doc for why they equal ``generate``'s)."""
        if not requests:
            return []
        enc_p = self.tok([r.prompt for r in requests])["input_ids"]
        enc_f = self.tok([r.prompt + r.continuation for r in requests])["input_ids"]
        prompts: list[list[int]] = [list(p) for p in enc_p]
        tails: list[list[int]] = []
        for p, f in zip(prompts, enc_f):
            f = list(f)
            tail = f[len(p):] if f[:len(p)] == p else []
            tails.append(tail[:max(0, max_new_tokens - 1)])
        longest = max(len(p) for p in prompts)
        if longest + max_new_tokens > self.max_len:
            raise RprimError(f"a prompt needs {longest} tokens plus {max_new_tokens} for the answer, "
                             f"but the model's context is {self.max_len}; use fewer --shots or a "
                             "model with a longer context")
        if min(len(p) for p in prompts) == 0:
            raise RprimError("a prompt tokenizes to nothing; the tokenizer cannot encode the task text")
        shared = _common_prefix(prompts)
        shared = min(shared, min(len(p) for p in prompts) - 1)
        order = sorted(range(len(requests)), key=lambda i: -(len(prompts[i]) + len(tails[i])))
        out: list[Generation | None] = [None] * len(requests)
        was_training = self.model.training
        self.model.eval()
        try:
            self._run(requests, prompts, tails, order, shared, max_new_tokens, out, progress)
        finally:
            self.model.train(was_training)
        missing = [i for i, g in enumerate(out) if g is None]
        assert not missing, f"no generation for requests {missing[:5]}"
        return out  # type: ignore[return-value]

    def _run(self, requests: Sequence[Request], prompts: list[list[int]], tails: list[list[int]],
             order: list[int], shared: int, max_new_tokens: int, out: list[Generation | None],
             progress: Progress | None) -> None:
        torch = self._torch
        with torch.inference_mode():
            prefix_cache = self._encode_prefix(prompts[0][:shared]) if shared else None
            row_len = max(len(prompts[i]) - shared + len(tails[i]) for i in order)
            bs = (self._auto_batch(shared, row_len + max_new_tokens) if self.batch_size == "auto"
                  else int(self.batch_size))
            start = 0
            while start < len(order):
                rows = order[start:start + bs]
                try:
                    gens = self._batch([prompts[i] for i in rows], [tails[i] for i in rows],
                                       [requests[i].until for i in rows], shared, prefix_cache,
                                       max_new_tokens)
                except torch.cuda.OutOfMemoryError:
                    if bs == 1 or self.batch_size != "auto":
                        raise RprimError("out of GPU memory even for a small batch; pass a smaller "
                                         "--batch-size or use a smaller model") from None
                    torch.cuda.empty_cache()
                    bs = max(1, bs // 2)
                    continue
                for i, g in zip(rows, gens):
                    out[i] = g
                start += len(rows)
                if progress is not None:
                    progress(len(rows))

    def _encode_prefix(self, ids: list[int]) -> Any:
        torch = self._torch
        x = torch.tensor([ids], device=self.device)
        o = self._forward(input_ids=x, attention_mask=torch.ones_like(x), use_cache=True,
                          logits_to_keep=1)
        self.stats["forward_tokens"] += len(ids)
        return _cache_of(o)

    def _forward(self, **kw: Any) -> Any:
        if "past_key_values" in kw:
            kw[self._cache_kw] = kw.pop("past_key_values")
        try:
            return self.model(**kw)
        except TypeError as e:  # a model without logits_to_keep
            if "logits_to_keep" not in str(e):
                raise
            keep = kw.pop("logits_to_keep")
            o = self.model(**kw)
            o.logits = o.logits[:, -keep:] if keep else o.logits
            return o

    def _batch(self, prompts: list[list[int]], tails: list[list[int]], untils: list[tuple[str, ...]],
               shared: int, prefix_cache: Any, max_new: int) -> list[Generation]:
        """Teacher-force prompt+tail for a batch, walk the greedy chain, decode the rest."""
        torch = self._torch
        B = len(prompts)
        rests = [p[shared:] + t for p, t in zip(prompts, tails)]
        L = max(len(r) for r in rests)
        ids = torch.full((B, L), self.pad, dtype=torch.long)
        mask = torch.zeros((B, shared + L), dtype=torch.long)
        mask[:, :shared] = 1
        for b, r in enumerate(rests):
            ids[b, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[b, shared:shared + len(r)] = 1
        first = min(len(p) - shared - 1 for p in prompts)  # earliest position whose logits we need
        keep = L - first
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            if B > 1:
                cache.batch_repeat_interleave(B)
        pos = torch.arange(shared, shared + L).unsqueeze(0).expand(B, L)
        o = self._forward(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                          position_ids=pos.to(self.device), past_key_values=cache, use_cache=True,
                          logits_to_keep=keep)
        self.stats["forward_tokens"] += sum(len(r) for r in rests)
        cache = _cache_of(o)
        argmax = o.logits.argmax(-1).tolist()  # (B, keep)
        del o
        gens: list[list[int]] = []
        results: list[Generation | None] = [None] * B
        pending: list[int] = []
        valid: list[int] = []  # per row: cache positions [0, valid) hold greedy's own tokens
        for b in range(B):
            p0 = len(prompts[b]) - shared - 1 - first  # index in the kept logits
            tail = tails[b]
            j = 0
            while j < len(tail) and argmax[b][p0 + j] == tail[j]:
                j += 1
            g = tail[:j] + [argmax[b][p0 + j]]
            done, text = _finish(g, self.tok, self.eos, untils[b], max_new)
            gens.append(g)
            valid.append(len(prompts[b]) + j)
            if done:
                results[b] = Generation(text, fast=True)
            else:
                pending.append(b)
        self.stats["fast"] += B - len(pending)
        self.stats["decoded"] += len(pending)
        if pending:
            self._decode(cache, pending, gens, [len(p) for p in prompts], valid, untils, B,
                         shared + L, max_new, results)
        return [r for r in results if r is not None]

    def _decode(self, cache: Any, rows: list[int], gens: list[list[int]], plens: list[int],
                valid: list[int], untils: list[tuple[str, ...]], batch: int, cache_len: int,
                max_new: int, results: list[Generation | None]) -> None:
        """Continue greedy decoding of ``rows`` from the batch cache, one token per step.

        Row b's cache is valid on [0, valid[b]); later entries (padding, rejected forced tokens)
        are masked. New tokens are appended after ``cache_len`` with their true positions
        (the last greedy token of row b sits at position plens[b] + len(gens[b]) - 1).
        """
        torch = self._torch
        if len(rows) != batch:
            cache.batch_select_indices(torch.tensor(rows, device=self.device))
        mask = torch.zeros((len(rows), cache_len), dtype=torch.long, device=self.device)
        for k, b in enumerate(rows):
            mask[k, :valid[b]] = 1
        while rows:
            x = torch.tensor([[gens[b][-1]] for b in rows], device=self.device)
            pos = torch.tensor([[plens[b] + len(gens[b]) - 1] for b in rows], device=self.device)
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long, device=self.device)], 1)
            o = self._forward(input_ids=x, attention_mask=mask, position_ids=pos,
                              past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = _cache_of(o)
            nxt = o.logits[:, -1].argmax(-1).tolist()
            self.stats["decode_steps"] += 1
            still: list[int] = []
            for k, b in enumerate(rows):
                gens[b].append(nxt[k])
                done, text = _finish(gens[b], self.tok, self.eos, untils[b], max_new)
                if done or plens[b] + len(gens[b]) >= self.max_len:
                    results[b] = Generation(text, fast=False)
                else:
                    still.append(k)
            if still and len(still) < len(rows):
                sel = torch.tensor(still, device=self.device)
                cache.batch_select_indices(sel)
                mask = mask[sel]
            rows = [rows[k] for k in still]


def _cache_of(output: Any) -> Any:
    """The KV cache of a model output, under its new (``cache``) or old name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest token prefix every sequence shares."""
    first = seqs[0]
    n = len(first)
    for s in seqs[1:]:
        m = min(n, len(s))
        k = 0
        while k < m and s[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n
