"""What an inference engine must provide to be scored by rprim.

Scoring, results and the CLI only talk to this interface, so a new engine (vLLM, a remote
server) plugs in by implementing one method, ``greedy``, without touching them.

The contract is *greedy decoding*: for each request the backend returns exactly the text that
plain greedy decoding of ``prompt`` produces, cut at the first ``until`` string (or at an end
of sequence token, or after ``max_new_tokens`` tokens). ``Request.continuation`` (the expected
answer) is only a hint a backend may use to *verify* a greedy continuation in one
teacher-forced pass; it must never change the returned text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Request:
    """One prompt to decode greedily."""

    prompt: str
    continuation: str  # target_delimiter + target: what a correct model would say
    until: tuple[str, ...] = ("\n",)


@dataclass(frozen=True)
class Generation:
    """The greedy continuation of one request, cut before the first ``until`` string."""

    text: str
    fast: bool = False  # decided by the teacher-forced pass alone (no decoding step needed)


Tick = Callable[[int], None]  # told how many requests just finished (moves a progress bar)


class Backend(ABC):
    """An engine that decodes greedily. Subclasses set ``name`` and implement ``greedy``."""

    name: str = "?"
    spec: Any = None  # the ModelSpec the engine was built from (checks prompts before decoding)

    @abstractmethod
    def greedy(self, requests: Sequence[Request], max_new_tokens: int,
               progress: Tick | None = None) -> list[Generation]:
        """Greedy continuations, in the order of ``requests``.

        Requests passed together are expected to share a long prompt prefix (one task's
        k-shot exemplars); a backend may encode that prefix once.
        """

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (sizes ``max_new_tokens``); a rough
        count for an engine without a model spec."""
        return max(1, len(text) // 2)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text: the spec's tokenizer when the engine has one, in one batch."""
        if self.spec is not None:
            return self.spec.count_tokens(texts)
        return [self.count_tokens(t) for t in texts]

    def describe(self) -> dict[str, Any]:
        """What identifies the model and engine in results.json (path, config hash, dtype)."""
        return {"backend": self.name}
