"""The model side of a run: building, the loss, compilation, and saving HF folders.

- :class:`Builder` makes the run's ``LlamaForCausalLM`` (SDPA attention), its loss module and
  its optimizer, so growth and resumption build exactly what a fresh start builds.
- :class:`LossModel` returns the mean next-token loss computed from the final hidden states, so
  the fp32 logits of a whole batch never exist at once on a GPU: inside ``torch.compile``
  inductor fuses the upcast into the cross-entropy; in eager mode the loss is taken over chunks
  of tokens with recomputation in backward. On the CPU in fp32 it is the plain loss (logits,
  then cross-entropy), which keeps the CPU path and its benchmark as they were. DDP wraps this
  module, and FSDP2 shards it as its root, so the parallel wrappers see the whole forward.
- :func:`apply_compile` compiles each decoder layer on its own (torchtitan's recipe): the layers
  are identical modules, so they share one compiled graph, and a GradStack/MIDAS growth adds
  layers that hit the same cache instead of recompiling the model.
- :func:`save_hf` writes a plain HF folder (config, safetensors, generation config, tokenizer).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from rprim.core import atomic_folder, write_json
from rprim.core.torch_util import make_optimizer

# fp32 logits of at most this many elements exist at once in the chunked loss (512 MB)
CHUNK_ELEMENTS = 1 << 27


def build_model(cfg, depth: int, tokenizer, meta: bool = False):
    """A freshly initialised ``LlamaForCausalLM`` of ``depth`` layers (SDPA attention).

    ``meta=True`` allocates nothing (parameters on the meta device, no RNG use): for models whose
    weights are loaded right after (FSDP growth, export)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
        num_hidden_layers=depth, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.seq_len, rms_norm_eps=cfg.rms_eps, initializer_range=cfg.init_std,
        tie_word_embeddings=cfg.tie_embeddings, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa", use_cache=True,
    )
    with torch.device("meta") if meta else contextlib.nullcontext():
        model = LlamaForCausalLM(config)
    if cfg.grad_checkpointing:  # copies made by growth inherit the flag (deepcopy of a layer)
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return model


def build_optimizer(model, cfg, device: str):
    """AdamW (fused on CUDA) or Adafactor from the core factory; weight decay on matrices only."""
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    other = [p for _, p in model.named_parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return make_optimizer(cfg.optimizer, groups, cfg.lr, weight_decay=cfg.weight_decay,
                          betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, fused=device.startswith("cuda"))


# ----------------------------------------------------------------------------- the loss
def _mean(total, targets):
    """A loss sum over the targets in the loss (not -100: a masked mix token), as a mean; a
    batch with none gives 0 with a zero gradient, never NaN."""
    return total / (targets != -100).sum().clamp(min=1)


def plain_loss(h, weight, targets):
    """Logits, then fp32 cross-entropy over the targets in the loss (the CPU path)."""
    logits = F.linear(h, weight)
    return _mean(F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum"), targets)


def _chunk_loss_sum(h, weight, targets):
    return F.cross_entropy(F.linear(h, weight).float(), targets, reduction="sum")


def chunked_loss(h, weight, targets):
    """Mean cross-entropy over token chunks whose fp32 logits are recomputed in backward, so
    at most ``CHUNK_ELEMENTS`` fp32 logits exist at once (eager mode on a GPU)."""
    h, targets = h.flatten(0, 1), targets.flatten()
    size = max(256, CHUNK_ELEMENTS // weight.shape[0])
    total = None
    for hs, ts in zip(h.split(size), targets.split(size)):
        part = (checkpoint(_chunk_loss_sum, hs, weight, ts, use_reentrant=False)
                if torch.is_grad_enabled() else _chunk_loss_sum(hs, weight, ts))
        total = part if total is None else total + part
    return _mean(total, targets)


def fused_loss(h, weight, targets):
    """The loss to compile: inductor fuses the fp32 upcast into the cross-entropy kernel."""
    return _mean(F.cross_entropy(F.linear(h, weight).flatten(0, 1).float(), targets.flatten(), reduction="sum"),
                 targets)


class LossModel(torch.nn.Module):
    """``forward(inputs, targets)`` -> mean next-token loss of the causal LM ``lm``.

    ``loss_fn(hidden, head_weight, targets)`` is the training loss (plain, chunked, or the
    compiled fused one); ``eval_loss_fn`` is used when gradients are off (evaluation)."""

    def __init__(self, lm, loss_fn, eval_loss_fn=None):
        super().__init__()
        self.lm = lm
        self.loss_fn, self.eval_loss_fn = loss_fn, eval_loss_fn or loss_fn

    def forward(self, inputs, targets):
        h = self.lm.model(input_ids=inputs, use_cache=False).last_hidden_state
        fn = self.loss_fn if torch.is_grad_enabled() else self.eval_loss_fn
        return fn(h, self.lm.lm_head.weight, targets)


# ----------------------------------------------------------------------------- compilation
def compile_backend() -> str:
    """inductor; ``RPRIM_COMPILE_BACKEND`` (e.g. ``aot_eager``) lets CPU tests exercise the same
    graph capture and guards without generating kernels."""
    return os.environ.get("RPRIM_COMPILE_BACKEND", "inductor")


def apply_compile(lm) -> None:
    """Compile every decoder layer in place (``Module.compile``: names and state dicts stay).

    Called again after each growth: a deep-copied layer would otherwise keep the compiled call
    of the layer it was copied from. New wrappers cost nothing: dynamo caches on the code and
    guards on the module's type and attributes, not its identity, so all layers share a graph.
    """
    for layer in lm.model.layers:
        layer.compile(backend=compile_backend())


def remove_compile(lm) -> None:
    """Back to eager for every layer (the fallback when compilation fails)."""
    for layer in lm.model.layers:
        layer._compiled_call_impl = None


def compiled_loss():
    return torch.compile(fused_loss, backend=compile_backend())


def eager_stance():
    """Evaluation runs the compiled modules eagerly (its no-grad graph is never compiled)."""
    stance = getattr(torch.compiler, "set_stance", None)
    return stance("force_eager") if stance is not None else contextlib.nullcontext()


def note(msg: str) -> None:
    """A one-line notice on stderr that is not an error (shown even with --quiet)."""
    print(f"rprim: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the builder
class Builder:
    """Everything a run builds, in one place: fresh start, resumption and growth agree."""

    def __init__(self, cfg, tokenizer, device: str, compile_on: bool):
        self.cfg, self.tok, self.device, self.compile_on = cfg, tokenizer, device, compile_on

    def model(self, depth: int, meta: bool = False):
        m = build_model(self.cfg, depth, self.tok, meta=meta)
        return m if meta else m.to(self.device)

    def loss_fns(self) -> tuple[Any, Any]:
        """(training loss, evaluation loss) for this device, dtype and compile setting."""
        if self.device == "cpu":
            return plain_loss, plain_loss
        return (compiled_loss() if self.compile_on else chunked_loss), chunked_loss

    def root(self, depth: int, meta: bool = False, lm=None):
        """The loss module around ``lm`` (or a new model of ``depth`` layers)."""
        lm = lm if lm is not None else self.model(depth, meta=meta)
        return LossModel(lm, *self.loss_fns())

    def optimizer(self, model):
        return build_optimizer(model, self.cfg, self.device)


# ----------------------------------------------------------------------------- saving
def save_hf(model, tok, folder: Path) -> None:
    """Write ``model`` and ``tok`` as a plain HF folder (config, safetensors, generation config,
    tokenizer) that transformers, vLLM and ``rprim eval`` load."""
    model.config.use_cache = True
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))


def save_snapshot(folder: Path, model, tok, info: dict[str, Any]) -> None:
    """One snapshot: an HF folder plus ``snapshot.json``, published atomically (a snapshot that
    a resumed run writes again is replaced whole)."""
    with atomic_folder(folder) as tmp:
        save_hf(model, tok, tmp)
        write_json(tmp / "snapshot.json", info)
