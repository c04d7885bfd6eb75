"""Token-level rules every backend shares: the BOS decision, prompt encoding, and stopping.

BOS. Whether a prompt starts with the beginning-of-sequence token changes scores a lot for
some models (Gemma-3-270M: 0.20 without, 0.47 with on 5-shot varassign-code-d0), and a GGUF
tokenizer may not say what the model was trained with. rprim decides as lm-evaluation-harness
does, in two rules taken from its ``HFLM``:

* the tokenizer's own default (lm-eval >= 0.4.10, PR #3347: ``add_bos_token=None`` means "what
  the tokenizer does", and an explicit True/False overrides it);
* a model whose config ``model_type`` contains ``gemma`` always gets BOS (lm-eval <= 0.4.9
  forced this: "Gemma underperforms without it"), because a Gemma GGUF tokenizer says
  ``add_bos_token: false`` although the model was trained with BOS.

``add_bos=True/False`` (``--add-bos/--no-add-bos``) overrides both. Prompts are then encoded
*without* the tokenizer's special tokens and the BOS id is prepended by hand, the same way for
the transformers backend, the vLLM backend (which receives token ids) and ``plain_greedy``.

Stopping. Greedy decoding of a row ends at an end-of-sequence token, at the first step whose
decoded continuation contains an ``until`` string, or at the token budget. Decoding the text of
every row at every step is what made decoding slow, so :func:`stop_table` marks, once per
tokenizer and ``until`` set, the token ids that can take part in a stop: EOS ids, ids whose text
contains a character of an ``until`` string, and ids whose text is not plain (a partial UTF-8
byte, a byte-fallback piece, ids beyond the tokenizer). The decoded text of a sequence of
unmarked ids contains no ``until`` character (decoders only join token texts, drop or add
spaces and complete split characters, which marked ids carry), so such a row cannot have
stopped; only rows holding a marked id are checked with :func:`finish`, exactly as ``generate``
checks them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Sequence

from rprim.core import RprimError

REPLACEMENT = "\ufffd"  # what a decoder emits for bytes that are not (yet) a whole character


# ---------------------------------------------------------------------------------- BOS
@dataclass(frozen=True)
class BosChoice:
    """Whether prompts start with BOS (``token_id``), and why (recorded in results.json)."""

    add: bool
    token_id: int | None
    reason: str


def bos_token_id(tokenizer: Any, config: Any = None) -> int | None:
    """The BOS id of the tokenizer, else of the model config, else None."""
    for v in (getattr(tokenizer, "bos_token_id", None), getattr(config, "bos_token_id", None)):
        if isinstance(v, int) and v >= 0:
            return v
    return None


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts BOS in front of a text by default (its post-processor)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    with_special = list(tokenizer("a")["input_ids"])
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    return with_special[:1] == [bos] and plain[:1] != [bos]


def decide_bos(tokenizer: Any, config: Any = None, add_bos: bool | None = None) -> BosChoice:
    """The BOS rule of the module doc; ``add_bos`` True/False overrides it."""
    if add_bos not in (None, True, False):
        raise RprimError(f"add_bos must be None (decide per model), True or False (got {add_bos!r})")
    bos = bos_token_id(tokenizer, config)
    if add_bos is True:
        if bos is None:
            raise RprimError("--add-bos: neither the tokenizer nor the model config defines a BOS "
                             "token; drop --add-bos")
        return BosChoice(True, bos, "--add-bos")
    if add_bos is False:
        return BosChoice(False, None, "--no-add-bos")
    if getattr(tokenizer, "bos_token_id", None) is None:
        return BosChoice(False, None, "the tokenizer has no BOS token")
    kind = str(getattr(config, "model_type", "") or "")
    if "gemma" in kind:
        return BosChoice(True, bos, f"model type {kind}: Gemma models are trained with BOS "
                                    "(lm-evaluation-harness forces it for them)")
    if tokenizer_adds_bos(tokenizer):
        return BosChoice(True, bos, "the tokenizer adds BOS by default")
    return BosChoice(False, None, "the tokenizer adds no BOS by default")


def encode(tokenizer: Any, texts: Sequence[str], bos: int | None) -> list[list[int]]:
    """Token ids of ``texts`` without the tokenizer's special tokens, ``bos`` prepended (unless
    a text already starts with it)."""
    if not texts:
        return []
    ids = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]
    # the tokenizer's lists are fresh: copy only what is not a list (a copy of every prompt was
    # ~5% of a GPU evaluation's host time)
    if bos is None:
        return [x if type(x) is list else list(x) for x in ids]
    return [(x if type(x) is list else list(x)) if x[:1] == [bos] else [bos, *x] for x in ids]


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens of each text alone, without special tokens (sizes the answer budget)."""
    if not texts:
        return []
    ids = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return [len(x) for x in ids]


def forced_guess(tokenizer: Any, prompts: Sequence[str], continuations: Sequence[str],
                 context_chars: int = 24) -> list[list[int]]:
    """The tokens a correct model would emit after each prompt: a guess to verify, not truth.

    The teacher-forced pass only *checks* greedy's choices against these tokens, so any guess
    keeps results exact; a good one lets most correct answers skip decoding. Tokenizing the
    last ``context_chars`` characters of the prompt with the answer (and taking the tokens after
    the prompt's own) sees how the answer joins the prompt, without re-encoding the long shared
    k-shot prefix. Where the join merges across the boundary, the answer alone is the guess.
    """
    heads = [p[-context_chars:] for p in prompts]
    joined = tokenizer([h + c for h, c in zip(heads, continuations)], add_special_tokens=False,
                       return_attention_mask=False)["input_ids"]
    alone = tokenizer(heads, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    answers: list[list[int]] | None = None
    out = []
    for k, (j, a) in enumerate(zip(joined, alone)):
        if list(j[:len(a)]) == list(a):
            out.append(list(j[len(a):]))
            continue
        if answers is None:
            answers = [list(x) for x in tokenizer(list(continuations), add_special_tokens=False,
                                                  return_attention_mask=False)["input_ids"]]
        out.append(answers[k])
    return out


# ---------------------------------------------------------------------------------- stopping
def finish(tokens: Sequence[int], tokenizer: Any, eos: set[int] | frozenset[int],
           until: Sequence[str], max_new_tokens: int) -> tuple[bool, str]:
    """(decoding is over, text cut before the first until string) for greedy tokens so far.

    This is the stopping rule of ``plain_greedy`` (``generate`` with an until criterion),
    applied to one prefix of a greedy continuation.
    """
    done = False
    tokens = list(tokens)
    for i, t in enumerate(tokens):
        if t in eos:
            tokens, done = tokens[:i], True
            break
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cut = min((i for i in (text.find(u) for u in until if u) if i >= 0), default=-1)
    if cut >= 0:
        return True, text[:cut]
    return done or len(tokens) >= max_new_tokens, text


def finish_many(seqs: Sequence[Sequence[int]], tokenizer: Any, eos: set[int] | frozenset[int],
                untils: Sequence[Sequence[str]], max_new_tokens: int) -> list[tuple[bool, str]]:
    """:func:`finish` for many sequences with one batched decode."""
    cut_seqs, ended = [], []
    for s in seqs:
        s = list(s)
        at = next((i for i, t in enumerate(s) if t in eos), -1)
        cut_seqs.append(s[:at] if at >= 0 else s)
        ended.append(at >= 0)
    texts = tokenizer.batch_decode(cut_seqs, skip_special_tokens=True) if cut_seqs else []
    out = []
    for s, done, text, until in zip(cut_seqs, ended, texts, untils):
        cut = min((i for i in (text.find(u) for u in until if u) if i >= 0), default=-1)
        out.append((True, text[:cut]) if cut >= 0 else (done or len(s) >= max_new_tokens, text))
    return out


def first_stop(tokens: Sequence[int], start: int, tokenizer: Any, eos: set[int] | frozenset[int],
               until: Sequence[str], max_new_tokens: int) -> tuple[bool, str, int]:
    """Walk greedy's tokens from prefix length ``start + 1`` on, as ``generate`` does step by
    step: (over, text, tokens used) at the first prefix that stops, else the whole sequence.

    ``start`` is the index of the first token that can take part in a stop (prefixes before
    it cannot stop, see the module doc), so usually one decode is enough.
    """
    text = ""
    for t in range(max(1, start + 1), len(tokens) + 1):
        over, text = finish(tokens[:t], tokenizer, eos, until, max_new_tokens)
        if over:
            return True, text, t
    if start + 1 > len(tokens):
        over, text = finish(tokens, tokenizer, eos, until, max_new_tokens)
        return over, text, len(tokens)
    return False, text, len(tokens)


def plain_texts(seqs: Sequence[Sequence[int]], tokenizer: Any, eos: set[int] | frozenset[int],
                untils: Sequence[Sequence[str]], max_new_tokens: int) -> list[str]:
    """Texts of greedy continuations that hold no token able to stop (one batched decode).

    Such a text holds no ``until`` character (module doc); should a tokenizer break that rule,
    the continuation is walked prefix by prefix instead, so the result stays exact.
    """
    texts = tokenizer.batch_decode([list(s) for s in seqs], skip_special_tokens=True) if seqs else []
    out = []
    for s, text, until in zip(seqs, texts, untils):
        if any(u and u in text for u in until):
            text = first_stop(s, 0, tokenizer, eos, until, max_new_tokens)[1]
        out.append(text)
    return out


_TABLES: "weakref.WeakKeyDictionary[Any, dict[tuple, list[bool]]]" = weakref.WeakKeyDictionary()


def _anchor(tokenizer: Any) -> tuple[list[int], str]:
    """A plain token to decode others after, so a decoder's start-of-text rules (a dropped
    leading space) do not apply to the token under test."""
    ids = list(tokenizer("a", add_special_tokens=False, return_attention_mask=False)["input_ids"])
    ids = ids[-1:] if ids else []
    return ids, tokenizer.decode(ids, skip_special_tokens=True) if ids else ""


def stop_table(tokenizer: Any, until: Sequence[str], eos: set[int] | frozenset[int],
               vocab: int) -> list[bool]:
    """Per token id below ``vocab``: True where the id can take part in a stop (module doc).

    Built once per tokenizer and ``until`` set (a few tenths of a second for a 50k vocabulary)
    and cached while the tokenizer lives.
    """
    key = (tuple(sorted(set(until))), tuple(sorted(eos)), vocab)
    try:
        cache = _TABLES.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: build every time
        cache = {}
    if key not in cache:
        cache[key] = _build_table(tokenizer, until, eos, vocab)
    return cache[key]


def _build_table(tokenizer: Any, until: Sequence[str], eos: set[int] | frozenset[int],
                 vocab: int) -> list[bool]:
    chars = set("".join(until)) | {REPLACEMENT}
    known = min(vocab, len(tokenizer))
    anchor, anchor_text = _anchor(tokenizer)
    alone = tokenizer.batch_decode([[i] for i in range(known)], skip_special_tokens=True)
    after = tokenizer.batch_decode([anchor + [i] for i in range(known)], skip_special_tokens=True)
    table = [True] * vocab  # ids beyond the tokenizer: always checked
    for i in range(known):
        a, b = alone[i], after[i]
        if not b.startswith(anchor_text):
            continue  # the decoder rewrote the anchor: keep this id checked
        piece = b[len(anchor_text):]
        table[i] = any(c in chars for c in a) or any(c in chars for c in piece)
    for e in eos:
        if 0 <= e < vocab:
            table[e] = True
    return table
