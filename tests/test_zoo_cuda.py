"""The trainer on a CUDA GPU (skipped where none is visible): one step, compile by default,
growth without recompilation, resumption, and the throughput numbers of the summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_zoo_train import TINY, load_weights, losses  # noqa: E402

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cuda-cache")


def run(cache: Path, out: Path, method: str, *extra: str, resume: bool = False) -> dict:
    from rprim.model_zoo.presets import parse_sets, resolve_config
    from rprim.model_zoo.train import train

    cfg = resolve_config("tiny", overrides={**parse_sets(TINY + ["snapshot_every=0", "snapshot_growth=false",
                                                                 *extra]),
                                            "method": method, "cache_dir": str(cache)})
    return train(cfg, out, resume=resume, overwrite=not resume, progress=False, quiet=True)


def test_one_eager_step_on_cuda(cache, tmp_path):
    s = run(cache, tmp_path / "eager", "baseline", "steps=1", "compile=false")
    assert s["device"].startswith("cuda") and not s["compiled"] and s["steps"] == 1
    assert s["config"]["dtype"] == "auto" and 0 < s["final_train_loss"] < 10
    assert s["final_val_loss"] == s["final_val_loss"]  # not NaN


def test_compile_is_the_default_and_growth_does_not_recompile(cache, tmp_path):
    """A baseline run compiles the decoder layer (one graph shared by all layers) and the fused
    loss; a MIDAS run after it, through three growths, adds no graph at all."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    b = run(cache, tmp_path / "base", "baseline")
    graphs = counters["stats"]["unique_graphs"]
    assert b["compiled"] and 1 <= graphs <= 3, dict(counters["stats"])
    s = run(cache, tmp_path / "midas", "midas")
    assert s["compiled"] and s["growth_steps"] == [1, 3, 7]
    assert counters["stats"]["unique_graphs"] == graphs, dict(counters["stats"])
    assert s["compile_time_s"] > 0 and s["final_val_loss"] < 6.0
    run(cache, tmp_path / "midas-eager", "midas", "compile=false")
    assert losses(tmp_path / "midas") == pytest.approx(losses(tmp_path / "midas-eager"), abs=0.05)


def test_resume_on_cuda(cache, tmp_path):
    """A compiled CUDA run resumed from its step-6 checkpoint ends where the whole run ended
    (to bf16/atomics tolerance: flash-attention backward is not bit-deterministic)."""
    whole = tmp_path / "whole"
    run(cache, whole, "midas")
    out = tmp_path / "resumed"
    shutil.copytree(whole, out)
    for f in ("model.safetensors", "training_summary.json"):
        (out / f).unlink()
    for p in (out / "checkpoints").glob("step-*"):
        if p.name > "step-00000006":
            shutil.rmtree(p)
    (out / "checkpoints" / "LATEST").write_text("step-00000006\n")
    s = run(cache, out, "midas", resume=True)
    assert s["steps"] == 12 and s["growth_steps"] == [1, 3, 7]
    assert losses(out)[:6] == losses(whole)[:6]  # rows before the checkpoint are kept as they were
    assert losses(out) == pytest.approx(losses(whole), abs=2e-2)
    ref, got = load_weights(whole), load_weights(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.allclose(ref[k], got[k], atol=5e-2), k


def test_summary_reports_throughput_and_mfu(cache, tmp_path):
    s = run(cache, tmp_path / "tput", "baseline", "steps=30", "log_every=5", "peak_flops=1e14")
    assert s["steady_intervals"] >= 3 and s["steady_tokens_per_s"] > 0
    assert 0 < s["steady_mfu"] < 1 and 0 < s["mfu"] < 1
    rows = [json.loads(x) for x in (tmp_path / "tput" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["tokens_per_s"] > 0 for r in rows)
