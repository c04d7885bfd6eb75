"""Byte-level BPE with single-digit splitting, trained on the corpus (or an existing one).

Digits are split one per token before byte-level BPE (pre-tokenizer
``Sequence([Digits(individual_digits=True), ByteLevel])``), so numbers tokenize digit by
digit as in the paper's arithmetic tasks; newlines and every byte stay representable. Wrapped
as a ``PreTrainedTokenizerFast`` with bos/eos/pad so it is saved and reloaded with the model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from rprim.core import RprimError, atomic_folder

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
RECIPE = "bytebpe-digits-v1"  # bump when the training recipe changes (invalidates caches)


def train_bpe(documents: Iterable[str], vocab_size: int):
    """Train the BPE on ``documents``; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + 3:
        raise RprimError(f"vocab_size {vocab_size} is below 259 (256 bytes + 3 specials); raise it")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(documents, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def load_tokenizer(path: str | Path):
    """An existing HF tokenizer folder (``--tokenizer PATH``); needs an eos token."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - any loader failure is a bad path for the user
        raise RprimError(f"cannot load tokenizer from {path} ({type(e).__name__}); pass a folder with "
                       "tokenizer.json / tokenizer_config.json") from None
    if tok.eos_token_id is None:
        raise RprimError(f"tokenizer {path} has no eos token; documents are separated by eos, pick another")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def tokenizer_hash(tok) -> str:
    """sha256 of the tokenizer's serialized model (vocab, merges, pre-tokenizer)."""
    return hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()


def cached_bpe(documents_fn, corpus_hash: str, vocab_size: int, cache_dir: Path):
    """Train once per (corpus, vocab size); later runs load the cached folder."""
    key = hashlib.sha256(f"{RECIPE}|{corpus_hash}|{vocab_size}".encode()).hexdigest()[:16]
    folder = cache_dir / "tokenizers" / key
    if (folder / "tokenizer.json").exists():
        return load_tokenizer(folder)
    tok = train_bpe(documents_fn(), vocab_size)
    with atomic_folder(folder, keep_existing=True) as tmp:  # another process may win the race
        tok.save_pretrained(str(tmp))
    return load_tokenizer(folder)
