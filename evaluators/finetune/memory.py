"""Memory for the fine-tuning protocol: how many training rows fit one forward pass, and the cut.

The protocol's step is full-batch for any ``--examples`` (see :mod:`rprim.evaluators.finetune.protocol`);
what fits the memory is a micro-batch. This module estimates, before any training, the bytes
a step needs (the trained fp32 copy, its gradients and the optimizer's state, plus the
activations kept for the backward pass per token), reads what the device has free, sizes the
micro-batches to that (``--micro-batch-size auto``), refuses a run where not even one row fits
(a one-line error instead of an out-of-memory crash mid-run), and cuts the batch into those
micro-batches. torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from rprim.core import RprimError


def free_memory(device: Any) -> int:
    """Bytes this process can still allocate on ``device`` (GPU: free memory; CPU: available
    RAM, capped by a container's memory limit)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            free.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    if not free:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            free.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    return max(0, min(free)) if free else 8 << 30


def memory_per_token(config: Any, seq_len: int, width: int = 4) -> int:
    """Bytes of activations kept for the backward pass per training token (an upper estimate:
    per layer the attention and MLP inputs and outputs plus the attention weights, and the
    fp32 logits, their log-softmax and gradient; measured 2.2-2.5 MB per token for SmolLM2-135M
    in fp32, estimated 2.5 MB)."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 1024)
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 24)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 16)
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
    vocab = getattr(cfg, "vocab_size", 50000)
    per_layer = 8 * hidden + 5 * inter + 2 * heads * seq_len
    return int(width * layers * per_layer + 16 * vocab)


def micro_batch_size(setting: int | str, rows: int, width: int, per_token: int, state: int,
                     free: int) -> int:
    """Training rows per forward pass: ``setting`` if a number, else as many as fit in 60% of
    the free memory after the trained copy's weights, gradients and optimizer state
    (``state`` bytes). RprimError when not even one row fits."""
    if setting != "auto":
        return min(int(setting), rows)
    budget = 0.6 * free - state
    row = width * per_token * 1.25
    if budget < row:
        gb = 1 << 30
        raise RprimError(f"fine-tuning needs about {(state + row) / gb:.1f} GB for one training row "
                         f"(weights, gradients, optimizer state, activations of {width} tokens) but "
                         f"only {free / gb:.1f} GB are free; use fewer --shots, a smaller model or a "
                         "machine with more memory")
    return max(1, min(rows, int(budget // row)))


def state_bytes(model: Any, optimizer: str) -> int:
    """The trained copy (fp32), its gradients and the optimizer's state."""
    n = sum(p.numel() for p in model.parameters())
    return int(n * 4 * (2 + (2 if optimizer == "adamw" else 0.1)))


def micro_batches(ids: Any, mask: Any, labels: Any, size: int) -> list[tuple[Any, Any, Any, int]]:
    """(ids, mask, labels, answer tokens) per micro-batch, each cut to its own longest row.

    Rows are right-padded, so dropping padding columns changes no position or result.
    """
    out = []
    for i in range(0, ids.shape[0], size):
        m = mask[i:i + size]
        w = int(m.sum(1).max())
        lab = labels[i:i + size, :w].contiguous()
        out.append((ids[i:i + size, :w].contiguous(), m[:, :w].contiguous(), lab,
                    int((lab[:, 1:] != -100).sum())))
    return out
