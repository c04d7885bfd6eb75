"""Block similarity and linearity (model_zoo/analysis.py): numbers on constructed models."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rprim.core import RprimError  # noqa: E402
from rprim.model_zoo import analysis as A  # noqa: E402


def _llama(layers: int = 4, d: int = 32, seed: int = 0, positions: int = 256):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=300, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers,
                      num_attention_heads=2, max_position_embeddings=positions, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def _tokenizer():
    from test_eval_helpers import tokenizer

    return tokenizer("bpe")


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------- similarity
def test_exact_copies_have_similarity_one(tmp_path):
    m = _llama(4)
    m.model.layers[2].load_state_dict(m.model.layers[0].state_dict())
    m.model.layers[3].load_state_dict(m.model.layers[1].state_dict())
    folder = _save(m, tmp_path / "m")
    per_layer = A.block_similarity(A.ffn_vectors(folder), 1)
    assert per_layer.shape == (4, 4)
    assert per_layer[0, 2] == pytest.approx(1.0, abs=1e-9)
    assert per_layer[1, 3] == pytest.approx(1.0, abs=1e-9)
    assert np.allclose(np.diag(per_layer), 1.0)
    assert abs(per_layer[0, 1]) < 0.2                  # independent random layers: near 0
    blocks = A.block_similarity(A.ffn_vectors(folder), 2)
    assert blocks.shape == (2, 2) and blocks[0, 1] == pytest.approx(1.0, abs=1e-9)


def test_ffn_vector_is_gate_then_up_flattened(tmp_path):
    m = _llama(2)
    folder = _save(m, tmp_path / "m")
    v = A.ffn_vectors(folder)[1]
    mlp = m.model.layers[1].mlp
    want = np.concatenate([mlp.gate_proj.weight.detach().numpy().ravel(),
                           mlp.up_proj.weight.detach().numpy().ravel()])
    assert np.array_equal(v, want.astype(np.float64))


def test_midas_growth_copies_show_up_as_ones(tmp_path):
    from rprim.model_zoo.growth import grow_model

    m = _llama(2)
    grow_model(m, 1, "midas")          # 2 layers -> 3: layer 1 (block ceil(2/2)=1) is copied
    sim = A.similarity(_save(m, tmp_path / "g"), block_size=1)
    mat = np.array(sim["snapshots"][-1]["similarity"])
    assert mat.shape == (3, 3) and mat[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert mat[1, 2] < 0.5


def test_run_folder_gives_growth_snapshots_then_the_final_model(tmp_path):
    run = tmp_path / "run"
    m = _llama(1)
    for step, depth, stage in ((10, 1, 1), (20, 1, 1), (30, 2, 2)):
        snap = run / "snapshots" / f"step-{step:08d}"
        model = _llama(depth, seed=step)
        _save(model, snap)
        (snap / "snapshot.json").write_text(json.dumps({"step": step, "depth": depth, "stage": stage,
                                                        "tokens": step, "val_loss": 3.0}))
    _save(_llama(3), run)
    (run / "training_summary.json").write_text(json.dumps({"block_size": 1, "steps": 40}))
    res = A.similarity(run)
    assert res["block_size"] == 1
    # the last snapshot of each stage before the final depth: step 20 (depth 1), step 30 (depth 2)
    assert [s["step"] for s in res["snapshots"]] == [20, 30, 40]
    assert [len(s["similarity"]) for s in res["snapshots"]] == [1, 2, 3]
    del m


def test_similarity_rejects_a_block_size_that_does_not_divide(tmp_path):
    folder = _save(_llama(3), tmp_path / "m")
    with pytest.raises(RprimError, match="does not divide"):
        A.similarity(folder, block_size=2)


# ----------------------------------------------------------------------------- linearity
def test_fit_linear_recovers_an_exact_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    w = rng.normal(size=(8, 8))
    u = x @ w + 0.5
    r2, cos = A.fit_linear(x[:200], u[:200], x[200:], u[200:])
    assert r2 == pytest.approx(1.0, abs=1e-10) and cos == pytest.approx(1.0, abs=1e-10)
    r2n, _ = A.fit_linear(x[:200], rng.normal(size=(200, 8)), x[200:], rng.normal(size=(200, 8)))
    assert r2n < 0.1                                   # noise is not linear in x


class LinearLayer(torch.nn.Module):
    """A decoder layer whose residual update is exactly x @ W + c."""

    def __init__(self, d: int):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = torch.nn.Parameter(torch.randn(d, d, generator=g) * 0.1)
        self.c = torch.nn.Parameter(torch.randn(d, generator=g) * 0.1)

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states + hidden_states @ self.w + self.c


def test_an_exactly_linear_layer_has_r2_one():
    m = _llama(3, d=32)
    m.model.layers[1] = LinearLayer(32)
    g = torch.Generator().manual_seed(0)
    windows = [torch.randint(0, 300, (128,), generator=g) for _ in range(4)]
    rows = A.layer_linearity(m, windows)
    assert [r["layer"] for r in rows] == [0, 1, 2]
    assert rows[1]["r2"] == pytest.approx(1.0, abs=1e-6)
    assert rows[1]["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert rows[0]["r2"] < 0.999                       # a real attention + SwiGLU layer is not


def test_linearity_of_a_folder_uses_primitives_text_by_default(tmp_path):
    tok = _tokenizer()
    m = _llama(2, d=32, positions=128)
    m.config.vocab_size = len(tok)
    m.resize_token_embeddings(len(tok))
    folder = _save(m, tmp_path / "m")
    tok.save_pretrained(folder)
    from rprim.study import LINEARITY_FALLBACK

    with pytest.raises(RprimError, match="pass --text"):
        A.linearity(folder, tokens=600)
    res = A.linearity(folder, tokens=600, fallback=LINEARITY_FALLBACK)
    assert res["text"].startswith("solved primitives problems")
    assert len(res["layers"]) == 2 and res["tokens_fit"] + res["tokens_score"] >= 600
    text = tmp_path / "t.txt"
    text.write_text("x = 1\ny = x + 2\n" * 400)
    assert A.linearity(folder, text_file=text, tokens=300)["text"] == f"--text {text}"


def test_cli_analyze_similarity_writes_json_and_png(tmp_path):
    pytest.importorskip("matplotlib")
    m = _llama(2)
    m.model.layers[1].load_state_dict(copy.deepcopy(m.model.layers[0].state_dict()))
    folder = _save(m, tmp_path / "m")
    out = tmp_path / "sim"
    r = subprocess.run([sys.executable, "-m", "rprim", "analyze", "similarity", "--model", str(folder),
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert " 1.000  1.000" in r.stdout
    data = json.loads((out / "similarity.json").read_text())
    assert data["snapshots"][0]["similarity"][0][1] == pytest.approx(1.0)
    assert (out / "similarity.png").read_bytes()[:4] == b"\x89PNG"
