"""The decode loop of the transformers backend: every pending row of a batch, one forward per step.

A model that does not end its line after the answer is decoded up to the answer budget. Each
step is one forward pass for all live rows plus one device-to-host transfer; the host only
appends tokens and checks stops for rows that hold a token able to stop (``tokens``).

Loops are guessed and verified. A row that does not stop usually repeats itself (an untrained
model says "Return Return Return ..."; a weak one repeats a phrase). When most rows' last token
occurred earlier in their continuation, each row feeds its last token plus ``k`` guesses that
continue its latest cycle, and keeps the guesses the model's own argmax confirms, plus the
argmax after them: speculative decoding with the row's history as the draft (as prompt-lookup
decoding does). Exact: a token is kept only if it equals the greedy argmax after the tokens
before it, and the cache entries of rejected guesses are masked out. When guesses stop paying
off, steps go back to one token.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from .backend import Generation, Tick, Request


class Host(Protocol):
    """What the decoder needs of its backend (``HFBackend``): torch, the device, the model's
    forward pass, the pad id and context, the stats to count into, and ``settle`` (turn rows'
    tokens into verdicts: over, and the answer text)."""

    torch: Any
    device: Any
    pad: int
    max_len: int
    stats: dict[str, int]

    def forward(self, **inputs: Any) -> Any: ...

    def settle(self, job: "Job", items: list[tuple[int, list[int], int, int]]) -> list[tuple[bool, str]]: ...

SPECULATE = {"cuda": 4, "cpu": 2}  # guesses per step where loops are seen (a GPU step is cheap)
NONE = 1 << 30


class Decoder:
    """Decode the pending rows of one batch to their stops (see the module doc)."""

    def __init__(self, be: Host, job: "Job", cache: Any,
                 pending: list[tuple[int, int, list[int], int, int]], batch: int, cache_len: int,
                 marks: dict[tuple[str, ...], list[bool]]):
        torch = be.torch
        self.be, self.job, self.torch, self.dev = be, job, torch, be.device
        sel = torch.tensor([k for k, *_ in pending], device=self.dev)
        if len(pending) != batch:
            cache.batch_select_indices(sel)
        self.cache = cache
        self.alive: list[int | None] = [b for _, b, *_ in pending]
        self.gens = {b: g for _, b, g, _, _ in pending}
        self.stop_at = {b: s for _, b, _, _, s in pending}
        self.marks = {b: marks[job.requests[b].until] for b in self.alive if b is not None}
        self.k_max = SPECULATE.get(self.dev.type, 2)
        self.width = job.max_new + self.k_max + 1
        rows = [[g[-1], len(job.prompts[b]) + len(g) - 1, v, len(g)] + g + [be.pad] * (self.width - len(g))
                for _, b, g, v, _ in pending]
        state = torch.tensor(rows, device=self.dev)  # one transfer for all decoding state
        self.last, self.pos, self.n = state[:, 0], state[:, 1], state[:, 3]
        self.gen = state[:, 4:].contiguous()  # each row's greedy tokens so far (draft source)
        self.mask = (torch.arange(cache_len, device=self.dev).unsqueeze(0) < state[:, 2:3]).long()
        self.max_pos = max(0, be.max_len - 1)
        self.k = 0  # guesses fed this step
        self.paid_off = True

    def run(self) -> None:
        while any(b is not None for b in self.alive):
            preds, acc, loops = self._step()
            self._absorb(preds, acc, loops)

    # -- the device side --------------------------------------------------------------------
    def _guesses(self) -> tuple[Any, Any]:
        """(A x k_max guesses continuing each row's latest cycle, whether the row has one)."""
        torch = self.torch
        A, W = self.gen.shape
        idx = torch.arange(W, device=self.dev)
        end = (self.n - 1).clamp(0, W - 1).unsqueeze(1)  # rows past their budget stay in range
        last = self.gen.gather(1, end)
        seen = torch.where((self.gen == last) & (idx < end), idx, -1).max(1).values
        period = (end.squeeze(1) - seen).clamp(min=1).unsqueeze(1)
        i = torch.arange(self.k_max, device=self.dev).unsqueeze(0)
        src = (self.n.unsqueeze(1) - period + i % period).clamp(0, W - 1)
        return self.gen.gather(1, src), seen >= 0

    def _step(self) -> tuple[list, list, list]:
        """One forward for all live rows: their last token (+ guesses); returns host lists."""
        torch, be = self.torch, self.be
        guesses, loops = self._guesses()
        k = self.k
        x = torch.cat([self.last.unsqueeze(1), guesses[:, :k]], 1) if k else self.last.unsqueeze(1)
        span = torch.arange(1 + k, device=self.dev)
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1 + k))], 1)
        positions = (self.pos.unsqueeze(1) + span).clamp(max=self.max_pos)  # only rows past
        o = be.forward(input_ids=x, attention_mask=self.mask,  # their budget reach the clamp
                        position_ids=positions, past_key_values=self.cache,
                        use_cache=True, logits_to_keep=1 + k)
        self.cache = cache_of(o)
        preds = o.logits.argmax(-1)
        del o
        if k:
            acc = (preds[:, :k] == guesses[:, :k]).long().cumprod(1).sum(1)
            self.mask[:, -(1 + k):] = (span.unsqueeze(0) <= acc.unsqueeze(1)).long()
        else:
            acc = torch.zeros_like(self.last)
        self.last = preds.gather(1, acc.unsqueeze(1)).squeeze(1)
        cols = (self.n.unsqueeze(1) + span).clamp(max=self.gen.shape[1] - 1)
        keep = span.unsqueeze(0) <= acc.unsqueeze(1)
        self.gen.scatter_(1, cols, torch.where(keep, preds, self.gen.gather(1, cols)))
        self.n = (self.n + 1 + acc).clamp(max=self.gen.shape[1])
        self.pos = self.pos + 1 + acc
        be.stats["decode_steps"] += 1
        out = torch.cat([preds, acc.unsqueeze(1), loops.long().unsqueeze(1)], 1).tolist()  # one sync
        return [r[:1 + k] for r in out], [r[1 + k] for r in out], [r[2 + k] for r in out]

    # -- the host side ----------------------------------------------------------------------
    def _absorb(self, preds: list, acc: list, loops: list) -> None:
        """Append each live row's new tokens, settle stops, drop finished rows, pick next k."""
        job, be = self.job, self.be
        live = [(k, b) for k, b in enumerate(self.alive) if b is not None]
        items = []
        for k, b in live:
            g = self.gens[b]
            new = preds[k][:acc[k] + 1][:max(0, job.max_new - len(g))]
            since = len(g)
            g.extend(new)
            if self.stop_at[b] >= NONE:
                marks = self.marks[b]
                hit = next((since + i for i, t in enumerate(new) if t >= len(marks) or marks[t]), NONE)
                self.stop_at[b] = hit
            items.append((b, g, self.stop_at[b], since))
        be.stats["decode_tokens"] = be.stats.get("decode_tokens", 0) + sum(len(i[1]) - i[3] for i in items)
        verdicts = be.settle(job, items)
        for (k, b), (over, text) in zip(live, verdicts):
            if over:
                job.out[b] = Generation(text, fast=False)
                self.alive[k] = None
        job.report(sum(over for over, _ in verdicts))
        if self.k:
            self.paid_off = sum(acc[k] for k, _ in live) >= len(live)  # >= 1 guess kept per row
        looping = sum(loops[k] for k, _ in live) * 2 >= len(live)
        self.k = self.k_max if looping and self.paid_off else 0
        if not self.k and not looping:
            self.paid_off = True  # new loops may start later: try again when seen
        self._shrink()

    def _shrink(self) -> None:
        """Drop finished rows from the cache once they are half of it (a copy of the cache)."""
        still = [k for k, b in enumerate(self.alive) if b is not None]
        if not still or len(still) > len(self.alive) // 2:
            return
        keep = self.torch.tensor(still, device=self.dev)
        self.cache.batch_select_indices(keep)
        self.mask, self.last, self.pos = self.mask[keep], self.last[keep], self.pos[keep]
        self.n, self.gen = self.n[keep], self.gen[keep]
        self.alive = [self.alive[k] for k in still]


def cache_of(output: Any) -> Any:
    """The KV cache of a model output, under its new (``cache``) or old name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


class Job:
    """One ``greedy`` call: its requests, encodings and results, and progress per example."""

    def __init__(self, requests: Sequence[Request], prompts: list[list[int]], tails: list[list[int]],
                 shared: int, max_new: int, progress: Tick | None):
        self.requests, self.prompts, self.tails = requests, prompts, tails
        self.shared, self.max_new = shared, max_new
        self.out: list[Generation | None] = [None] * len(requests)
        self._progress = progress
        self._reported = 0

    def report(self, k: int) -> None:
        """Tell the progress callback about k more finished examples (never more than all:
        a batch retried after running out of memory finishes its rows again)."""
        k = min(k, len(self.requests) - self._reported)
        if k > 0 and self._progress is not None:
            self._reported += k
            self._progress(k)
