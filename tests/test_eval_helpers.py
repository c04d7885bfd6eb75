"""Tiny models and tokenizers for the evaluator tests (built in-test: no hub downloads).

Kept tiny so the whole eval test suite runs in well under a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import functools
from typing import Any

import rprim.primitives as P

TASKS = ["varassign-code-d0", "varassign-basic-d1", "arithmetic", "psm-calc", "copying-words"]


def corpus(n: int = 40) -> list[str]:
    """Solved task texts (prompt + delimiter + target) to train tokenizers and models on."""
    texts = []
    for name in TASKS:
        task = P.get(name)
        for r in task.generate(n, seed=1, split="train", shots=2):
            texts.append(r["prompt"] + r["target_delimiter"] + r["target"] + "\n\n")
    return texts


@functools.lru_cache(maxsize=None)
def tokenizer(kind: str = "bpe") -> Any:
    """A small tokenizer trained on task text.

    ``bpe``: byte-level BPE with GPT-2 style pre-tokenization (merges stay inside words), no BOS;
    ``merge``: byte-level BPE without pre-tokenization, so merges cross the prompt/answer
    boundary (e.g. ': 1'); ``sp``: SentencePiece-like (``▁`` for spaces, merges across words,
    byte-fallback tokens ``<0xNN>`` for characters outside its vocabulary, a decoder that drops
    the leading space) whose post-processor adds BOS, as Llama's does.
    """
    if kind == "sp":
        return _sentencepiece_like()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=(kind == "bpe"))
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400 if kind == "bpe" else 500,
                                  special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def _sentencepiece_like() -> Any:
    import json

    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  limit_alphabet=50)
    tok.train_from_iterator(corpus(), trainer)
    spec = json.loads(tok.to_str())  # byte tokens as ordinary vocabulary, as in Llama's
    vocab = spec["model"]["vocab"]
    base = len(vocab)
    for i in range(256):
        vocab[f"<0x{i:02X}>"] = base + i
    spec["model"]["byte_fallback"] = True
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>")


@functools.lru_cache(maxsize=None)
def trained(kind: str = "bpe") -> tuple[Any, Any]:
    """(model, tokenizer), built once per test session."""
    tok = tokenizer(kind)
    return tiny_model(tok, train_steps=150), tok


def tiny_model(tok: Any, seed: int = 0, train_steps: int = 60, max_positions: int = 1024,
               hidden: int = 48, heads: int = 4, kv_heads: int = 2) -> Any:
    """A 2-layer Llama, briefly trained on task text so it answers in format (and is sometimes
    right), which exercises both the fast path and the decoding fallback."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      max_position_embeddings=max_positions, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    if train_steps:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared CPU
        ids = tok("".join(corpus()))["input_ids"]
        data = torch.tensor(ids[: (len(ids) // 128) * 128]).view(-1, 128)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(train_steps):
            batch = data[torch.randint(len(data), (16,), generator=g)]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        torch.set_num_threads(threads)
    return model.eval()
