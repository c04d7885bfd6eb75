"""The transformers backend: exact greedy decoding, mostly without decoding.

Why it is fast: for a correct answer, plain greedy decoding costs one forward pass per answer
token, per example, re-reading the whole k-shot prompt. Here one teacher-forced forward pass
over ``prompt + answer`` (batched, with the task's shared prompt prefix encoded once and its KV
cache shared by every row without copies) reveals the greedy token at every answer position.
Only examples where greedy leaves the answer, or does not stop right after it, are decoded
further, from the KV cache the pass already built, all rows of a batch in one step.

Why it is exact (the same text as ``model.generate`` greedy, see ``plain_greedy``):

* The prompt is tokenized alone, exactly as ``generate`` would see it (``P``), with the same
  BOS rule (``tokens.decide_bos``).
* The forced tokens ``T`` are only a *guess* of what greedy says (``tokens.forced_guess``).
  The greedy chain is walked: the argmax after ``P`` must equal ``T[0]``, the argmax after
  ``P+T[0]`` must equal ``T[1]``, ... Let ``j`` be the first mismatch. Greedy decoding's first
  ``j+1`` tokens are then *known*: ``T[:j]`` plus the argmax at the mismatch (or after all of
  ``T``). Nothing is claimed beyond that chain, so a wrong guess costs time, never exactness.
* Stopping is decided as ``generate`` decides it, prefix by prefix (``tokens.first_stop``),
  but text is decoded only for rows holding a token that can take part in a stop
  (``tokens.stop_table``); other rows provably have not stopped.
* Decoding continues from the cache of ``P + T[:j]`` (the entries of the rejected forced
  tokens and of padding are masked out), one token per step for all pending rows, with one
  device-to-host transfer per step.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Sequence

from rprim.core import RprimError

from .backend import Backend, Generation, Tick, Request
from .decode import NONE, Decoder, Job, cache_of
from .spec import ModelSpec, config_hash
from .tokens import (finish, finish_many, first_stop, forced_guess, plain_texts,
                     stop_table)

CPU_BATCH = 32  # CPU throughput stops improving around here; memory is not the limit
GPU_MAX_BATCH = 1024  # decode steps cost launch time per step: wide batches amortize it


# ---------------------------------------------------------------------------------------------
# the reference: plain per-example greedy generate


def plain_greedy(model: Any, tokenizer: Any, prompt: str, until: Sequence[str],
                 max_new_tokens: int, add_bos: bool | None = None) -> str:
    """What rprim must reproduce: ``model.generate`` greedy on the prompt alone (BOS by the same
    rule as the backends), stopped at an ``until`` string or EOS, decoded and cut before the
    first ``until`` string."""
    import torch
    from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

    spec = ModelSpec.of_model(model, tokenizer, add_bos)
    ids = torch.tensor(spec.encode([prompt]), device=model.device)
    n = ids.shape[1]
    eos = sorted(spec.stop_ids or ())

    class _Until(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
            text = tokenizer.decode(input_ids[0, n:].tolist(), skip_special_tokens=True)
            done = any(u in text for u in until if u)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    # a fresh config: pure argmax, whatever the model's generation_config says about
    # sampling, repetition penalties or suppressed tokens
    cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                           eos_token_id=eos or None, pad_token_id=pad)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=cfg,
                             stopping_criteria=StoppingCriteriaList([_Until()]))
    return finish(out[0, n:].tolist(), tokenizer, set(eos), until, max_new_tokens)[1]


# ---------------------------------------------------------------------------------------------
# KV cache helpers


def expand_cache(cache: Any, batch: int) -> Any:
    """A fresh cache for ``batch`` rows that all start with the prefix held in ``cache``.

    Dynamic layers only ever *replace* their key/value tensors (``torch.cat`` on update), so
    a new cache whose layers hold batch-expanded *views* of the prefix tensors costs no copy:
    the first forward pass concatenates the new tokens onto the views. The prefix cache itself
    is never modified. Other cache kinds (static, offloaded, quantized) are deep-copied.
    """
    layers = getattr(cache, "layers", None)
    try:
        from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

        plain: tuple[type, ...] = (DynamicLayer, DynamicSlidingWindowLayer)
    except ImportError:  # pragma: no cover - a transformers without layered caches
        plain = ()
    if (not layers or not plain or getattr(cache, "offloading", False)
            or any(type(layer) not in plain for layer in layers)):
        fresh = copy.deepcopy(cache)
        if batch > 1:
            fresh.batch_repeat_interleave(batch)
        return fresh
    fresh = copy.copy(cache)
    fresh.layers = [copy.copy(layer) for layer in layers]
    for layer in fresh.layers:
        keys = getattr(layer, "keys", None)
        if getattr(layer, "is_initialized", False) and keys is not None and keys.numel():
            layer.keys = keys.expand(batch, *keys.shape[1:])
            layer.values = layer.values.expand(batch, *layer.values.shape[1:])
    return fresh


def _common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest token prefix every sequence shares (list slices compare in C)."""
    first = seqs[0]
    n = len(first)
    for s in seqs[1:]:
        if s[:n] == first[:n]:
            continue
        lo, hi = 0, min(n, len(s))  # s[:lo] matches; find the first mismatch by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if s[:mid] == first[:mid]:
                lo = mid
            else:
                hi = mid - 1
        n = lo
        if n == 0:
            break
    return n


# ---------------------------------------------------------------------------------------------
# the backend


class HFBackend(Backend):
    """Greedy decoding with a transformers causal LM, exact and batched (see module doc)."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any = None, batch_size: int | str = "auto",
                 model_id: str | None = None, add_bos: bool | None = None, *,
                 spec: ModelSpec | None = None):
        """Over ``model`` with ``tokenizer`` (its spec resolved here), or with a ``spec``
        resolved before the weights loaded (``rprim.evaluators.evaluate.open_engine``)."""
        import torch

        if spec is None:
            spec = ModelSpec.of_model(model, tokenizer, add_bos, model_id)
        elif spec.stop_ids is None:
            spec = spec.bound(model)
        self.spec = spec
        self.model = model  # put in eval mode only while decoding (a trainer may be calling us)
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise RprimError(f"batch size must be 'auto' or a positive integer (got {batch_size!r})")
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        self.torch = torch
        self._tables: dict[tuple[Any, int], Any] = {}  # stop tables on the device
        self._marks: dict[tuple[Any, int], list[bool]] = {}  # the same on the host
        # transformers renamed ``past_key_values`` to ``cache`` (5.2x); use whichever it takes
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.stats = {"forward_tokens": 0, "decode_steps": 0, "fast": 0, "decoded": 0,
                      "text_checks": 0}

    # what the decoder reads of the model spec, under the names it uses
    tok = property(lambda self: self.spec.tokenizer)
    eos = property(lambda self: self.spec.stop_ids)
    max_len = property(lambda self: self.spec.context)
    bos = property(lambda self: self.spec.bos)
    model_id = property(lambda self: self.spec.where)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": str(self.model_id), "config_hash": config_hash(self.model),
                "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
                "device": str(self.device), "architecture": type(self.model).__name__,
                "add_bos": self.bos.add, "add_bos_reason": self.bos.reason}

    # -- the batch size -------------------------------------------------------------------
    def _auto_batch(self, prefix_len: int, row_len: int) -> int:
        if self.device.type != "cuda":
            return CPU_BATCH
        torch = self.torch
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

    def _stop_tables(self, untils: Sequence[tuple[str, ...]], vocab: int) -> tuple[Any, dict]:
        """(U x vocab bool tensor on the device, until -> row of it) for the given untils."""
        torch = self.torch
        keys = sorted(set(untils))
        for u in keys:
            if (u, vocab) not in self._tables:
                table = stop_table(self.tok, u, self.eos, vocab)
                self._tables[(u, vocab)] = torch.tensor(table, dtype=torch.bool, device=self.device)
                self._marks[(u, vocab)] = table
        return torch.stack([self._tables[(u, vocab)] for u in keys]), {u: i for i, u in enumerate(keys)}

    # -- the main entry -------------------------------------------------------------------
    def greedy(self, requests: Sequence[Request], max_new_tokens: int,
               progress: Tick | None = None) -> list[Generation]:
        """Greedy continuations (see the module doc for why they equal ``generate``'s)."""
        if not requests:
            return []
        if max_new_tokens < 1:
            raise RprimError(f"max_new_tokens must be positive (got {max_new_tokens})")
        prompts = self.spec.encode([r.prompt for r in requests])
        if min(len(p) for p in prompts) == 0:
            raise RprimError("a prompt tokenizes to nothing; the tokenizer cannot encode the task text")
        longest = max(len(p) for p in prompts)
        self.spec.fits(longest, max_new_tokens)
        guess = forced_guess(self.tok, [r.prompt for r in requests], [r.continuation for r in requests])
        tails = [t[:max_new_tokens - 1] for t in guess]
        shared = min(_common_prefix(prompts), min(len(p) for p in prompts) - 1)
        order = sorted(range(len(requests)), key=lambda i: -(len(prompts[i]) + len(tails[i])))
        job = Job(requests, prompts, tails, shared, max_new_tokens, progress)
        was_training = self.model.training
        self.model.eval()
        try:
            self._run(job, order)
        finally:
            self.model.train(was_training)
        missing = [i for i, g in enumerate(job.out) if g is None]
        assert not missing, f"no generation for requests {missing[:5]}"
        return job.out  # type: ignore[return-value]

    def _run(self, job: "Job", order: list[int]) -> None:
        torch = self.torch
        with torch.inference_mode():
            prefix = self._encode_prefix(job.prompts[0][:job.shared]) if job.shared else None
            row_len = max(len(job.prompts[i]) - job.shared + len(job.tails[i]) for i in order)
            bs = (self._auto_batch(job.shared, row_len + job.max_new) if self.batch_size == "auto"
                  else int(self.batch_size))
            self.stats["batch"] = bs
            start = 0
            while start < len(order):
                rows = order[start:start + bs]
                try:
                    self._batch(job, rows, prefix)
                except torch.cuda.OutOfMemoryError:
                    if bs == 1 or self.batch_size != "auto":
                        raise RprimError("out of GPU memory even for a small batch; pass a smaller "
                                         "--batch-size or use a smaller model") from None
                    torch.cuda.empty_cache()
                    bs = max(1, bs // 2)
                    self.stats["batch"] = bs
                    continue
                start += len(rows)

    def _encode_prefix(self, ids: list[int]) -> Any:
        torch = self.torch
        x = torch.tensor([ids], device=self.device)
        o = self.forward(input_ids=x, attention_mask=torch.ones_like(x), use_cache=True,
                          logits_to_keep=1)
        self.stats["forward_tokens"] += len(ids)
        return cache_of(o)

    def forward(self, **kw: Any) -> Any:
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

    def _inputs(self, job: "Job", rows: list[int]) -> tuple[Any, Any, int]:
        """(packed device tensor: ids | rest length | tail length | row length, until per row,
        L): built on the host with vectorized fills and moved in one transfer."""
        import itertools

        import numpy as np

        torch = self.torch
        shared = job.shared
        rests = [len(job.prompts[i]) - shared for i in rows]
        tl = [len(job.tails[i]) for i in rows]
        lens = [a + b for a, b in zip(rests, tl)]
        L = max(lens)
        parts = itertools.chain.from_iterable(
            itertools.chain(job.prompts[i][shared:], job.tails[i]) for i in rows)
        flat = torch.from_numpy(np.fromiter(parts, dtype=np.int64, count=sum(lens)))
        meta = torch.tensor([rests, tl, lens], dtype=torch.long).T
        ids = torch.full((len(rows), L), self.pad, dtype=torch.long)
        ids[torch.arange(L).unsqueeze(0) < meta[:, 2:3]] = flat
        packed = torch.cat([ids, meta], 1)
        if self.device.type == "cuda":
            packed = packed.pin_memory()
        return packed.to(self.device, non_blocking=True), [job.requests[i].until for i in rows], L

    def _batch(self, job: "Job", rows: list[int], prefix: Any) -> None:
        """Teacher-force prompt+guess for a batch, walk the greedy chain, decode the rest."""
        torch = self.torch
        B, shared = len(rows), job.shared
        packed, untils, L = self._inputs(job, rows)
        ids, rest, tlen, lens = packed[:, :L], packed[:, L], packed[:, L + 1], packed[:, L + 2]
        first = min(len(job.prompts[i]) for i in rows) - shared - 1  # earliest logits we need
        keep = L - first
        span = torch.arange(shared + L, device=self.device)
        mask = (span.unsqueeze(0) < (shared + lens).unsqueeze(1)).long()
        pos = span[shared:].unsqueeze(0).expand(B, L)
        cache = expand_cache(prefix, B) if prefix is not None else None
        o = self.forward(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                          use_cache=True, logits_to_keep=keep)
        self.stats["forward_tokens"] += int(sum(len(job.prompts[i]) - shared + len(job.tails[i]) for i in rows))
        cache = cache_of(o)
        tables, where = self._stop_tables(untils, o.logits.shape[-1])
        uidx = torch.tensor([where[u] for u in untils], device=self.device)
        walk = _walk(torch, o.logits.argmax(-1), ids, rest - 1 - first, rest, tlen, tables, uidx,
                     max(len(job.tails[i]) for i in rows))
        del o
        j_, nxt_, stop_ = walk.tolist()  # the one device-to-host transfer of this pass
        gens = [job.tails[b][:j_[k]] + [nxt_[k]] for k, b in enumerate(rows)]
        verdicts = self.settle(job, [(b, g, s, 0) for b, g, s in zip(rows, gens, stop_)])
        pending = []
        for k, (b, g, (over, text)) in enumerate(zip(rows, gens, verdicts)):
            if over:
                job.out[b] = Generation(text, fast=True)
            else:
                pending.append((k, b, g, len(job.prompts[b]) + j_[k], stop_[k]))
        self.stats["fast"] += B - len(pending)
        self.stats["decoded"] += len(pending)
        job.report(B - len(pending))
        if pending:
            marks = {u: self._marks[(u, tables.shape[1])] for u in set(untils)}
            Decoder(self, job, cache, pending, B, shared + L, marks).run()

    def settle(self, job: "Job", items: list[tuple[int, list[int], int, int]]) -> list[tuple[bool, str]]:
        """Which rows have stopped: (over, text) per (row, greedy tokens g, stop index, since).

        The stop index is that of g's first token able to stop (``NONE``: none, so the row can
        only end at its budget or the context end); ``since``: g's first token not checked
        before. Every prefix ending at or after both is checked, as ``generate`` checks after
        each token; texts are decoded in batches, and only where needed.
        """
        out: list[tuple[bool, str]] = [(False, "")] * len(items)
        check, walk, plain = [], [], []
        for n, (b, g, s, since) in enumerate(items):
            if s < NONE:
                start = min(max(s, since), len(g) - 1)
                (check if start == len(g) - 1 else walk).append((n, start))
            elif len(g) >= job.max_new or len(job.prompts[b]) + len(g) >= self.max_len:
                plain.append(n)
        self.stats["text_checks"] += len(check) + len(walk)
        tok, eos = self.tok, self.eos
        for n, start in walk:
            b, g = items[n][:2]
            out[n] = first_stop(g, start, tok, eos, job.requests[b].until, job.max_new)[:2]
        found = finish_many([items[n][1] for n, _ in check], tok, eos,
                            [job.requests[items[n][0]].until for n, _ in check], job.max_new)
        for (n, _), verdict in zip(check, found):
            out[n] = verdict
        texts = plain_texts([items[n][1] for n in plain], tok, eos,
                            [job.requests[items[n][0]].until for n in plain], job.max_new)
        for n, text in zip(plain, texts):
            out[n] = (True, text)
        for n, _ in check + walk:  # a row at the end of the context stops there
            b, g = items[n][:2]
            if not out[n][0] and len(job.prompts[b]) + len(g) >= self.max_len:
                out[n] = (True, out[n][1])
        return out


def _walk(torch: Any, argmax: Any, ids: Any, at: Any, rest: Any, tlen: Any, tables: Any,
          uidx: Any, longest_tail: int) -> Any:
    """On the device, per row: (j, greedy token after the j matched forced tokens, index of the
    first token of that chain that can stop or NONE), stacked as a (3, B) tensor.

    ``argmax``: greedy token after every kept position; ``at``: kept index of the prediction
    after the row's prompt; the forced tokens sit at ``ids[rest : rest + tlen]``.
    """
    B, keep = argmax.shape
    k = torch.arange(longest_tail + 1, device=argmax.device)
    preds = argmax.gather(1, (at.unsqueeze(1) + k).clamp(max=keep - 1))
    if longest_tail:
        kt = k[:longest_tail].unsqueeze(0)
        forced = ids.gather(1, (rest.unsqueeze(1) + kt).clamp(max=ids.shape[1] - 1))
        match = (preds[:, :longest_tail] == forced) & (kt < tlen.unsqueeze(1))
        j = match.long().cumprod(1).sum(1)
        stops = tables[uidx.unsqueeze(1), forced] & (kt < j.unsqueeze(1))
        first_forced = torch.where(stops.any(1), stops.long().argmax(1), NONE)
    else:
        j = torch.zeros(B, dtype=torch.long, device=argmax.device)
        first_forced = torch.full((B,), NONE, dtype=torch.long, device=argmax.device)
    nxt = preds.gather(1, j.unsqueeze(1)).squeeze(1)
    stop_nxt = torch.where(tables[uidx, nxt], j, NONE)
    return torch.stack([j, nxt, torch.minimum(first_forced, stop_nxt)])


