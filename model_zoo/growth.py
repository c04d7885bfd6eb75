"""Growth operators: pure functions on layer lists and on optimizer state.

A stack of n*b layers is n blocks of b layers, block 1 next to the input.

- GradStack (Reddi et al. 2023) copies the top block (block n) and puts the copy on top.
- MIDAS (Saunshi et al. 2024) copies block m = ceil(n/2) and inserts the copy right after it
  (n = 1 -> block 1, n = 2 -> block 1, n = 3 -> block 2, n = 4 -> block 2).

Everything reduces to :func:`source_indices`: for each layer of the grown stack, the index of the
layer of the old stack it is a copy of. The layers at :func:`new_positions` are the inserted
copies (for MIDAS the second of the two identical blocks, for GradStack the new top block); the
other positions keep their original layer objects. Embeddings, final norm and head are untouched.

Optimizer state follows the same map: the state of new layer j is a copy of the state of old
layer source[j]. With ``reset=True`` the new positions get no state at all, i.e. they start
like freshly created parameters (AdamW: exp_avg = exp_avg_sq = 0, step = 0 at their first
update), while the original layers keep theirs.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, Callable, Sequence, TypeVar

from rprim.core import RprimError

T = TypeVar("T")
LAYER_PREFIX = "model.layers."


def copied_block(n_blocks: int, method: str) -> int:
    """The 1-indexed block that ``method`` duplicates in a stack of ``n_blocks`` blocks."""
    if n_blocks < 1:
        raise RprimError("cannot grow an empty stack")
    if method == "gradstack":
        return n_blocks
    if method == "midas":
        return math.ceil(n_blocks / 2)
    raise RprimError(f"method {method!r} does not grow; use gradstack or midas")


def source_indices(n_layers: int, block_size: int, method: str) -> list[int]:
    """For each layer of the grown stack (n_layers + block_size), its source in the old stack."""
    if block_size < 1 or n_layers % block_size:
        raise RprimError(f"block size {block_size} does not divide the current depth {n_layers}")
    m = copied_block(n_layers // block_size, method)
    end = m * block_size  # one past the last layer of the copied block
    return list(range(end)) + list(range(end - block_size, end)) + list(range(end, n_layers))


def new_positions(n_layers: int, block_size: int, method: str) -> list[int]:
    """Positions (0-based) of the inserted copies in the grown stack."""
    m = copied_block(n_layers // block_size, method)
    return list(range(m * block_size, (m + 1) * block_size))


def grow_layers(layers: Sequence[T], block_size: int, method: str,
                clone: Callable[[T], T] = copy.deepcopy) -> list[T]:
    """The grown layer list. Does not modify ``layers``; inserted copies are ``clone``d."""
    src = source_indices(len(layers), block_size, method)
    fresh = set(new_positions(len(layers), block_size, method))
    return [clone(layers[s]) if j in fresh else layers[s] for j, s in enumerate(src)]


_LAYER_RE = re.compile(r"^(.*?layers\.)(\d+)(\..*)$")


def grow_state(state: dict[str, Any], n_layers: int, block_size: int, method: str,
               reset: bool = False) -> dict[str, Any]:
    """Per-parameter state keyed by parameter name, remapped to the grown stack.

    ``state`` maps names like ``model.layers.3.mlp.up_proj.weight`` to any per-parameter value
    (an optimizer state dict, a tensor). Names outside the layer stack are kept as they are.
    Copies are deep (tensors cloned), so the two copies of a block evolve independently.
    """
    src = source_indices(n_layers, block_size, method)
    fresh = set(new_positions(n_layers, block_size, method))
    by_layer: dict[int, list[tuple[str, str, Any]]] = {}
    out: dict[str, Any] = {}
    for name, value in state.items():
        m = _LAYER_RE.match(name)
        if m is None:
            out[name] = value
        else:
            by_layer.setdefault(int(m.group(2)), []).append((m.group(1), m.group(3), value))
    for j, s in enumerate(src):
        if reset and j in fresh:
            continue
        for head, tail, value in by_layer.get(s, []):
            out[f"{head}{j}{tail}"] = _deep_copy(value) if j in fresh else value
    return out


def _deep_copy(value: Any) -> Any:
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return value.detach().clone()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    return copy.deepcopy(value)


# ----------------------------------------------------------------------------- torch glue
def grow_model(model, block_size: int, method: str) -> list[int]:
    """Grow a ``LlamaForCausalLM`` in place by one block; return the source map.

    Replaces ``model.model.layers`` with :func:`grow_layers` of it, renumbers every
    ``layer_idx`` attribute (attention modules use it to index the KV cache) and updates
    ``config.num_hidden_layers`` (the forward pass slices the layer list with it).
    """
    import torch.nn as nn

    old = list(model.model.layers)
    src = source_indices(len(old), block_size, method)
    model.model.layers = nn.ModuleList(grow_layers(old, block_size, method))
    fix_layer_indices(model)
    return src


def fix_layer_indices(model) -> None:
    """Set ``layer_idx`` of every submodule of layer i to i, and num_hidden_layers to the depth."""
    layers = model.model.layers
    for i, layer in enumerate(layers):
        for mod in layer.modules():
            if hasattr(mod, "layer_idx"):
                mod.layer_idx = i
    model.config.num_hidden_layers = len(layers)
    if getattr(model.config, "layer_types", None) is not None:
        model.config.layer_types = [model.config.layer_types[0]] * len(layers)


def optimizer_state_by_name(model, optimizer) -> dict[str, dict[str, Any]]:
    """The optimizer's per-parameter state, keyed by parameter name."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: st for p, st in optimizer.state.items() if id(p) in names and st}


def load_state_by_name(model, optimizer, state: dict[str, dict[str, Any]]) -> None:
    """Put name-keyed per-parameter state into a (freshly built) optimizer for ``model``."""
    for n, p in model.named_parameters():
        if n in state:
            optimizer.state[p] = state[n]
