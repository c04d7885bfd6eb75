"""Token file, packing, held-out split and a sampler with explicit state.

The corpus is tokenized once into a flat memory-mapped token file (uint16 when the vocabulary
fits, else uint32), documents separated by eos, with a JSON manifest (corpus hash, tokenizer
hash, dtype, token count, licences). Both are cached under a key of corpus hash and tokenizer
hash, so a second run with the same inputs skips tokenization.

Packing: window i is tokens[i*S : i*S + S + 1] (inputs are the first S, targets the last S).
The last ``val_fraction`` of the windows (at least one) is the held-out validation slice; the
rest is training data. The :class:`Sampler` walks a seeded permutation of the training windows
per epoch; its whole state is (epoch, position), so a resumed run continues at the exact
window it would have drawn next.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from rprim.core import RprimError, atomic_file, write_json

FORMAT = "rprim-tokens-v1"
IGNORE = -100  # a target the loss skips (torch cross_entropy's ignore_index)


@dataclass
class TokenFile:
    path: Path
    manifest: dict

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    def array(self) -> np.ndarray:
        return np.memmap(self.path, dtype=self.manifest["dtype"], mode="r", shape=(self.n_tokens,))


def build_token_file(documents: Iterable[str], tokenizer, path: Path, manifest: dict,
                     batch_docs: int = 256) -> TokenFile:
    """Tokenize ``documents`` (eos after each) into ``path``; write ``path.json``. Atomic."""
    vocab = len(tokenizer)
    dtype = "uint16" if vocab <= np.iinfo(np.uint16).max + 1 else "uint32"
    eos = tokenizer.eos_token_id
    backend = tokenizer.backend_tokenizer
    path.parent.mkdir(parents=True, exist_ok=True)
    n_tokens, n_docs = 0, 0
    with atomic_file(path, "wb") as fh:
        batch: list[str] = []

        def flush() -> None:
            nonlocal n_tokens, n_docs
            for enc in backend.encode_batch(batch, add_special_tokens=False):
                ids = np.asarray(enc.ids + [eos], dtype=dtype)
                fh.write(ids.tobytes())
                n_tokens += len(ids)
                n_docs += 1
            batch.clear()

        for doc in documents:
            batch.append(doc)
            if len(batch) >= batch_docs:
                flush()
        if batch:
            flush()
        if n_docs == 0:
            raise RprimError("the corpus is empty (no documents with text); point --corpus at non-empty files")
    man = dict(manifest, format=FORMAT, dtype=dtype, n_tokens=n_tokens, n_documents=n_docs,
               vocab_size=vocab)
    write_json(path.with_name(path.name + ".json"), man)
    return TokenFile(path, man)


def cached_token_file(documents_fn, tokenizer, corpus_hash: str, tok_hash: str, cache_dir: Path,
                      extra: dict | None = None) -> TokenFile:
    """The token file for (corpus, tokenizer), built on first use."""
    key = hashlib.sha256(f"{FORMAT}|{corpus_hash}|{tok_hash}".encode()).hexdigest()[:16]
    path = cache_dir / "tokens" / f"{key}.bin"
    mpath = path.with_name(path.name + ".json")
    if path.exists() and mpath.exists():
        man = json.loads(mpath.read_text())
        if man.get("corpus_hash") == corpus_hash and man.get("tokenizer_hash") == tok_hash \
                and path.stat().st_size == man["n_tokens"] * np.dtype(man["dtype"]).itemsize:
            return TokenFile(path, man)
    manifest = dict(extra or {}, corpus_hash=corpus_hash, tokenizer_hash=tok_hash)
    return build_token_file(documents_fn(), tokenizer, path, manifest)


class PackedTokens:
    """Fixed-length windows over a token file, split into train and validation.

    ``train_tokens`` replaces the training region (the corpus's, with the pretraining mix
    inserted: ``model_zoo.mix``); the validation windows stay those of the corpus."""

    def __init__(self, tokens: np.ndarray, seq_len: int, val_fraction: float,
                 train_tokens: np.ndarray | None = None, train_mask: np.ndarray | None = None):
        self.seq_len = seq_len
        n_windows = (len(tokens) - 1) // seq_len
        self.n_val = max(1, round(n_windows * val_fraction))
        self.n_train = n_windows - self.n_val
        if self.n_train < 1:
            raise RprimError(f"the corpus has {len(tokens)} tokens, too few for a training and a "
                           f"validation sequence of {seq_len}+1 tokens; add text or lower "
                           "--set seq_len")
        split = self.n_train * seq_len
        self.corpus_train = tokens[: split + 1]  # window i: [i*S, i*S + S + 1)
        self.val = tokens[split:]
        self.train = self.corpus_train if train_tokens is None else train_tokens
        self.train_mask = train_mask  # uint8 per training token, 1 = in the loss (None: all)
        if train_tokens is not None:
            self.n_train = (len(train_tokens) - 1) // seq_len
        if train_mask is not None and len(train_mask) != len(self.train):
            raise RprimError("the loss mask does not match the training tokens; delete the cache folder's "
                             "tokens/ entries and run again")

    @staticmethod
    def _rows(tokens: np.ndarray, starts: list[int], s: int):
        import torch

        rows = np.stack([np.asarray(tokens[i * s: i * s + s + 1], dtype=np.int64) for i in starts])
        return torch.from_numpy(rows)

    def train_windows(self, idx: list[int]):
        """LongTensor [len(idx), seq_len + 1] of training windows."""
        return self._rows(self.train, idx, self.seq_len)

    def train_targets(self, idx: list[int]):
        """(inputs [B, S], targets [B, S]) of training windows; a target out of the loss
        (mask 0: the context of a primitive document) is -100, which the loss ignores."""
        rows = self.train_windows(idx)
        targets = rows[:, 1:].clone()
        if self.train_mask is not None:
            keep = self._rows(self.train_mask, idx, self.seq_len)[:, 1:]
            targets[keep == 0] = IGNORE
        return rows[:, :-1], targets

    def val_windows(self, start: int, count: int):
        """Validation windows start .. start+count-1 (wrapping around the validation slice)."""
        return self._rows(self.val, [(start + j) % self.n_val for j in range(count)], self.seq_len)


class Sampler:
    """Seeded per-epoch permutations of ``n`` windows; state is (epoch, position)."""

    def __init__(self, n: int, seed: int, epoch: int = 0, pos: int = 0):
        self.n, self.seed, self.epoch, self.pos = n, seed, epoch, pos
        self._perm: list[int] | None = None
        self._perm_epoch = -1

    def _permutation(self) -> list[int]:
        if self._perm_epoch != self.epoch:
            import torch

            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
            self._perm = torch.randperm(self.n, generator=g).tolist()
            self._perm_epoch = self.epoch
        return self._perm  # type: ignore[return-value]

    def take(self, count: int) -> list[int]:
        """The next ``count`` window indices (continuing into the next epoch as needed)."""
        out: list[int] = []
        while len(out) < count:
            perm = self._permutation()
            chunk = perm[self.pos: self.pos + count - len(out)]
            out += chunk
            self.pos += len(chunk)
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n or state["seed"] != self.seed:
            raise RprimError("the checkpoint's data differs from this run's (window count or seed); "
                           "resume with the same corpus, tokenizer, seq_len and seed, or use --overwrite")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
