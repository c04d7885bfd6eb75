"""Growth operators: pure list semantics, weight-by-weight model growth, optimizer state."""

from __future__ import annotations

import math

import pytest

from rprim.core import RprimError
from rprim.model_zoo.growth import copied_block, grow_layers, grow_state, new_positions, source_indices


def blocks(n: int, b: int) -> list[str]:
    return [f"B{i // b + 1}.{i % b}" for i in range(n * b)]


def expected(n: int, b: int, method: str) -> list[str]:
    """Written from the spec's block notation, independently of growth.py's index arithmetic."""
    bl = [[f"B{k}.{j}" for j in range(b)] for k in range(1, n + 1)]
    m = n if method == "gradstack" else math.ceil(n / 2)
    grown = bl[:m] + [bl[m - 1]] + bl[m:]
    return [x for blk in grown for x in blk]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("b", [1, 2, 3])
@pytest.mark.parametrize("method", ["midas", "gradstack"])
def test_grow_layers_lists(n, b, method):
    layers = blocks(n, b)
    before = list(layers)
    grown = grow_layers(layers, b, method, clone=lambda x: x + "'")
    assert layers == before  # pure: input untouched
    assert [x.rstrip("'") for x in grown] == expected(n, b, method)
    # the copies are exactly the inserted block
    assert [j for j, x in enumerate(grown) if x.endswith("'")] == new_positions(n * b, b, method)


def test_midas_block_choice_matches_spec():
    assert [copied_block(n, "midas") for n in (1, 2, 3, 4, 5, 6)] == [1, 1, 2, 2, 3, 3]
    assert [copied_block(n, "gradstack") for n in (1, 2, 3)] == [1, 2, 3]
    assert source_indices(4, 1, "midas") == [0, 1, 1, 2, 3]
    assert source_indices(6, 2, "midas") == [0, 1, 2, 3, 2, 3, 4, 5]
    assert source_indices(4, 2, "gradstack") == [0, 1, 2, 3, 2, 3]


def test_grow_rejects_bad_block_size():
    with pytest.raises(RprimError):
        source_indices(5, 2, "midas")
    with pytest.raises(RprimError):
        copied_block(2, "baseline")


def test_grow_state_remaps_and_resets():
    n, b = 3, 2
    state = {f"model.layers.{i}.w": {"exp_avg": i} for i in range(n * b)}
    state["model.embed_tokens.weight"] = {"exp_avg": -1}
    g = grow_state(state, n * b, b, "midas")
    assert [g[f"model.layers.{j}.w"]["exp_avg"] for j in range(8)] == [0, 1, 2, 3, 2, 3, 4, 5]
    assert g["model.embed_tokens.weight"] == {"exp_avg": -1}
    assert g["model.layers.4.w"] is not g["model.layers.2.w"]  # deep copy, not an alias
    r = grow_state(state, n * b, b, "midas", reset=True)
    assert "model.layers.4.w" not in r and "model.layers.5.w" not in r
    assert [r[f"model.layers.{j}.w"]["exp_avg"] for j in (0, 1, 2, 3, 6, 7)] == [0, 1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------- torch models
torch = pytest.importorskip("torch")


def tiny_model(depth: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(depth)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=depth,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16,
                      attn_implementation="sdpa")
    return LlamaForCausalLM(cfg)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("b", [1, 2])
@pytest.mark.parametrize("method", ["midas", "gradstack"])
def test_grow_model_weight_by_weight(n, b, method):
    from rprim.model_zoo.growth import grow_model

    model = tiny_model(n * b)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grow_model(model, b, method)
    after = model.state_dict()
    m = n if method == "gradstack" else math.ceil(n / 2)
    old_of_new = [i for i in range(m * b)] + [i for i in range((m - 1) * b, m * b)] + \
                 [i for i in range(m * b, n * b)]
    assert len(model.model.layers) == (n + 1) * b == model.config.num_hidden_layers
    for j, i in enumerate(old_of_new):
        for k, v in before.items():
            if k.startswith(f"model.layers.{i}."):
                assert torch.equal(after[k.replace(f"layers.{i}.", f"layers.{j}.", 1)], v), (j, i, k)
    for k in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(after[k], before[k])
    # layer_idx renumbered, copies are independent parameters
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == list(range((n + 1) * b))
    ids = {id(p) for p in model.parameters()}
    assert len(ids) == sum(1 for _ in model.parameters())
    # the grown model runs, with and without the KV cache
    x = torch.randint(0, 64, (1, 5))
    out = model.generate(x, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 8)


def test_grown_copy_trains_independently():
    from rprim.model_zoo.growth import grow_model

    model = tiny_model(2)
    grow_model(model, 1, "midas")  # layers: 0, 0', 1
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.add_(1.0)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, model.model.layers[1].mlp.up_proj.weight)


@pytest.mark.parametrize("reset", [False, True])
def test_optimizer_state_follows_copied_layers(reset):
    from rprim.model_zoo.growth import (grow_model, grow_state, load_state_by_name,
                                        optimizer_state_by_name)

    model = tiny_model(4)  # b = 2, n = 2 -> MIDAS copies block 1 (layers 0, 1) to positions 2, 3
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        model(input_ids=torch.randint(0, 64, (2, 8)), labels=torch.randint(0, 64, (2, 8))).loss.backward()
        opt.step()
        opt.zero_grad()
    old = optimizer_state_by_name(model, opt)
    snap = {k: {s: t.clone() for s, t in v.items()} for k, v in old.items()}
    grow_model(model, 2, "midas")
    new_opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    load_state_by_name(model, new_opt, grow_state(old, 4, 2, "midas", reset=reset))
    by_name = dict(model.named_parameters())
    src = [0, 1, 0, 1, 2, 3]
    for j, i in enumerate(src):
        for name in snap:
            if not name.startswith(f"model.layers.{i}."):
                continue
            new_name = name.replace(f"layers.{i}.", f"layers.{j}.", 1)
            st = new_opt.state.get(by_name[new_name], {})
            if reset and j in (2, 3):
                assert st == {}
                continue
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(st[key], snap[name][key]), (new_name, key)
    # copies do not share tensors with their originals
    a = new_opt.state[by_name["model.layers.0.mlp.up_proj.weight"]]
    if not reset:
        c = new_opt.state[by_name["model.layers.2.mlp.up_proj.weight"]]
        assert a["exp_avg"].data_ptr() != c["exp_avg"].data_ptr()
    # the optimizer still steps with the remapped state
    model(input_ids=torch.randint(0, 64, (2, 8)), labels=torch.randint(0, 64, (2, 8))).loss.backward()
    new_opt.step()
    assert float(new_opt.state[by_name["model.layers.0.mlp.up_proj.weight"]]["step"]) == 4.0
    fresh = float(new_opt.state[by_name["model.layers.2.mlp.up_proj.weight"]]["step"])
    assert fresh == (1.0 if reset else 4.0)
