"""What rprim knows of a model before (and apart from) its weights: the model spec.

A model is opened once. :class:`ModelSpec` holds everything every engine and check derives
from the config and the tokenizer: where the model is, the BOS rule, the context length and,
once weights are bound, the token ids that end greedy decoding. The evaluation set, both
backends and fine-tuning read these from the spec instead of working them out again, and the
one question "does this text fit?" is answered by :func:`check_fits` alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from rprim.core import RprimError

from .tokens import BosChoice, count_tokens, decide_bos, encode

if TYPE_CHECKING:
    from rprim.evaluators.data import EvalSet


def check_fits(need: int, answer: int, context: int, what: str = "a prompt",
               limit: str = "the model's context", fix: str = "a model with a longer context") -> None:
    """The one check that text fits a model's context: ``need`` tokens of prompt (or a whole
    training row, with ``answer`` 0) plus ``answer`` tokens to decode, against ``context``.
    Every place (evaluation set, backends, fine-tuning) asks here, so they agree."""
    if need + answer > context:
        plus = f" plus {answer} for the answer" if answer else ""
        raise RprimError(f"{what} needs {need} tokens{plus}, but {limit} is {context}; "
                         f"use fewer --shots or {fix}")


def context_length(config: Any, tokenizer: Any) -> int:
    """The longest sequence the model accepts (positions), or a very large number."""
    config = getattr(config, "config", config)  # a model works too
    text_config = getattr(config, "text_config", None)
    for cfg in (config, text_config):
        for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"):
            v = getattr(cfg, name, None) if cfg is not None else None
            if isinstance(v, int) and v > 0:
                return v
    v = getattr(tokenizer, "model_max_length", None)
    return v if isinstance(v, int) and 0 < v < 10**8 else 10**9


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Token ids that end greedy decoding, as ``generate`` sees them (plus the tokenizer's)."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for v in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    return frozenset(ids)


def config_hash(model_or_config: Any) -> str:
    """16 hex digits over the model config (architecture and sizes, not the path)."""
    config = getattr(model_or_config, "config", model_or_config)
    cfg = config.to_dict()
    for k in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash",
              "quantization_config"):
        cfg.pop(k, None)
    blob = json.dumps(cfg, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelSpec:
    """A model resolved once: its files, config and tokenizer, and what rprim derives from them.

    ``stop_ids`` is None until weights are bound (:meth:`bound`): ``generate`` reads them from
    the loaded model's generation config, so the spec does too.
    """

    where: str                     # shown in messages and results.json
    config: Any
    tokenizer: Any
    bos: BosChoice
    context: int
    source: str = ""               # folder or hub id given to from_pretrained ("" in memory)
    kwargs: dict[str, Any] = field(default_factory=dict)  # gguf_file, trust_remote_code, ...
    stop_ids: frozenset[int] | None = None
    limit: str = "the model's context"              # how messages name ``context``
    fix: str = "a model with a longer context"

    @classmethod
    def of(cls, where: str, config: Any, tokenizer: Any, add_bos: bool | None = None,
           source: str = "", kwargs: dict[str, Any] | None = None) -> "ModelSpec":
        """The spec of a config and tokenizer (the BOS rule and the context decided here)."""
        return cls(where, config, tokenizer, decide_bos(tokenizer, config, add_bos),
                   context_length(config, tokenizer), source, dict(kwargs or {}))

    @classmethod
    def of_model(cls, model: Any, tokenizer: Any, add_bos: bool | None = None,
                 where: str | None = None) -> "ModelSpec":
        """The spec of an in-memory causal LM and its tokenizer, bound to it."""
        if tokenizer is None:
            raise RprimError("an in-memory model needs its tokenizer: pass tokenizer=...")
        if not callable(getattr(model, "forward", None)) or not hasattr(model, "config"):
            raise RprimError("model must be a path, a reference name, or a transformers causal LM")
        name = where or getattr(model.config, "_name_or_path", "") or type(model).__name__
        return cls.of(str(name), model.config, tokenizer, add_bos).bound(model)

    def bound(self, model: Any) -> "ModelSpec":
        """This spec with the stop ids of ``model`` (its weights loaded)."""
        return dataclasses.replace(self, stop_ids=eos_ids(model, self.tokenizer))

    def with_context(self, context: int, limit: str, fix: str) -> "ModelSpec":
        """This spec for an engine that holds fewer positions than the model (vLLM's
        max_model_len), named ``limit`` in messages, with ``fix`` to raise it."""
        return dataclasses.replace(self, context=context, limit=limit, fix=fix)

    def fits(self, need: int, answer: int, what: str = "a prompt") -> None:
        """:func:`check_fits` against this spec's context."""
        check_fits(need, answer, self.context, what, self.limit, self.fix)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of prompts, as every engine feeds them (the BOS rule applied)."""
        return encode(self.tokenizer, texts, self.bos.token_id if self.bos.add else None)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text alone, without special tokens (sizes answer budgets)."""
        return count_tokens(self.tokenizer, texts)

    def check_prompts(self, work: "EvalSet", longest: int | None = 8) -> list[int]:
        """RprimError unless every prompt of ``work`` plus its task's answer budget fits the
        context; returns the prompt lengths measured. ``longest``: measure only that many of
        each task's longest prompts by characters (tokens follow characters), None for all."""
        lengths: list[int] = []
        for t in work.tasks:
            recs = t.records if longest is None else sorted(t.records, key=lambda r: -len(r["prompt"]))[:longest]
            sizes = [len(x) for x in self.encode([r["prompt"] for r in recs])]
            self.fits(max(sizes, default=0), work.budgets[t.name], f"a prompt of {t.name}")
            lengths += sizes
        return lengths
