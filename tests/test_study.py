"""`rprim study`: a very small study end to end, reruns that skip finished parts, bad input.

The real presets take minutes (tiny) or a GPU (small); here a micro preset with a 2-layer,
d=32 model, 8 steps and a few examples per task runs the whole pipeline in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from rprim import study as S  # noqa: E402
from rprim.core import RprimError  # noqa: E402

MICRO = S.StudyPreset(
    "micro", "tiny",
    {"n_layers": 2, "d_model": 32, "n_heads": 2, "d_mlp": 64, "vocab_size": 300, "seq_len": 512,
     "batch_size": 2, "steps": 8, "block_size": 1, "warmup_steps": 2, "ckpt_every": 4,
     "eval_every": 4, "log_every": 2, "eval_batches": 1, "max_corpus_bytes": 40_000,
     "compile": False},  # on a GPU machine too: no compile time in a test
    mix="varassign:0.2,copying:0.05", snapshots=2, eval_n=3, snapshot_eval_n=2, shots=0,
    finetune={"examples": 2, "seeds": (0,), "steps": 2, "eval_start": 1, "eval_end": 2,
              "eval_every": 1, "eval_n": 2},
    linearity_tokens=200, rates={"train": 1e-4, "eval": 0.01, "finetune": 0.1})


def corpus(tmp: Path) -> Path:
    lines = [f"def f{i}(x):\n    y = x + {i}\n    return y * {i % 7}\n\n" for i in range(900)]
    path = tmp / "corpus.txt"
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def micro_study(tmp_path_factory) -> tuple[Path, list[str]]:
    tmp = tmp_path_factory.mktemp("study")
    cache = tmp / "cache"
    s = S.resolve(MICRO, tmp / "out", corpus=(str(corpus(tmp)),), sets={"cache_dir": str(cache)}, threads=1)
    lines: list[str] = []
    S.run(s, log=lines.append)
    return tmp, lines


def test_micro_study_writes_every_part_and_the_report(micro_study):
    tmp, lines = micro_study
    out = tmp / "out"
    for m in S.METHODS:
        assert (out / "runs" / m / "training_summary.json").is_file()
        res = out / "results" / m
        assert json.loads((res / "results.json").read_text())["tasks"]["varassign-code-d0"]["n"] == 3
        assert (res / "training_summary.json").is_file()
        snaps = sorted(p.name for p in (res / "checkpoints").iterdir())
        assert snaps == ["step-00000004"]                     # every 8 // 2 steps, final apart
        assert json.loads((res / "checkpoints" / snaps[0] / "snapshot.json").read_text())["step"] == 4
        assert (res / "finetune" / "results.json").is_file()
        sim = json.loads((res / "analysis" / "similarity" / "similarity.json").read_text())
        lin = json.loads((res / "analysis" / "linearity" / "linearity.json").read_text())
        assert len(lin["layers"]) == 2 and lin["text"].startswith("1 validation window(s) of the run")
        if m != "baseline":                                   # growth snapshot (depth 1) + final
            assert [s["depth"] for s in sim["snapshots"]] == [1, 2]
    rep = out / "report"
    assert sorted(p.name for p in rep.glob("*.png")) == [
        "accuracy.png", "gain.png", "linearity.png", "loss_accuracy.png", "similarity.png"]
    md = (rep / "report.md").read_text()
    assert "varassign:0.2,copying:0.05" in md and "Pretraining mix" in md
    data = json.loads((rep / "report.json").read_text())
    assert {r["model"] for r in data["rows"]} == set(S.METHODS)
    assert any("[study 1/" in x and "left" in x for x in lines)   # progress with an ETA
    # depth 3, never in a mix, is scored as a held-out row; the depth-0 answers are profiled
    assert any(r["group"] == "varassign d3" for r in data["rows"]) and "held out" in md
    assert {r["group"] for r in data["binding"] if r["checkpoint"] == "final"} >= {"varassign d0", "varassign d3"}
    from rprim.model_zoo.mix import parse_mix

    for spec in {p.mix for p in S.PRESETS.values() if p.mix} | {MICRO.mix}:
        assert not {e.task for e in parse_mix(spec)} & set(S.HELD_OUT), spec


def test_same_data_order_and_budget_for_every_method(micro_study):
    tmp, _ = micro_study
    sums = {m: json.loads((tmp / "out" / "runs" / m / "training_summary.json").read_text())
            for m in S.METHODS}
    assert len({(s["tokens"], s["steps"], s["config"]["seed"]) for s in sums.values()}) == 1
    assert sums["midas"]["config"]["block_size"] == sums["gradstack"]["config"]["block_size"]
    assert sums["midas"]["config"]["schedule"] == sums["gradstack"]["config"]["schedule"]


def test_rerun_skips_finished_parts_and_redoes_missing_ones(micro_study):
    """Each part's output is its done-marker: remove midas's fine-tuning and its run's summary
    (as if killed after the last checkpoint) and only those parts run again, training resumed."""
    tmp, _ = micro_study
    s = S.resolve(MICRO, tmp / "out", corpus=(str(corpus(tmp)),), sets={"cache_dir": str(tmp / "cache")},
                  threads=1)
    import shutil

    shutil.rmtree(tmp / "out" / "results" / "midas" / "finetune")
    (tmp / "out" / "runs" / "midas" / "training_summary.json").unlink()
    # gradstack killed before its first checkpoint: its run folder holds no checkpoint
    shutil.rmtree(tmp / "out" / "runs" / "gradstack" / "checkpoints")
    (tmp / "out" / "runs" / "gradstack" / "training_summary.json").unlink()
    lines: list[str] = []
    S.run(s, log=lines.append)
    ran = [x.split("] ")[1].split(" -- ")[0].split(" (")[0] for x in lines if x.startswith("[study") and "skipped" not in x]
    assert ran == ["train gradstack", "train midas", "fine-tune midas", "write the report"]
    assert (tmp / "out" / "runs" / "gradstack" / "training_summary.json").is_file()
    assert (tmp / "out" / "runs" / "midas" / "training_summary.json").is_file()
    assert (tmp / "out" / "results" / "midas" / "finetune" / "results.json").is_file()


def test_other_settings_into_the_same_study_are_refused(micro_study):
    tmp, _ = micro_study
    # runtime settings (device, compile, logging) may change between runs of one study
    S.resolve(MICRO, tmp / "out", corpus=(str(corpus(tmp)),),
              sets={"cache_dir": str(tmp / "cache"), "log_every": 1, "compile": True}, threads=2)
    with pytest.raises(RprimError, match="other settings"):
        S.resolve(MICRO, tmp / "out", mix="varassign:0.3", corpus=(str(corpus(tmp)),),
                  sets={"cache_dir": str(tmp / "cache")})


def test_resolve_checks_before_any_work(tmp_path):
    with pytest.raises(RprimError, match="unknown study preset"):
        S.resolve("huge", tmp_path / "o")
    with pytest.raises(RprimError, match="--methods"):
        S.resolve("tiny", tmp_path / "o", methods="baseline,stack")
    with pytest.raises(RprimError, match="--mix"):
        S.resolve("tiny", tmp_path / "o", mix="varassign:2")
    with pytest.raises(RprimError, match="block size"):
        S.resolve("tiny", tmp_path / "o", sets={"block_size": 3})
    with pytest.raises(RprimError, match="--corpus"):
        S.resolve("tiny", tmp_path / "o", corpus=(str(tmp_path / "no-such-corpus"),))
    with pytest.raises(RprimError, match="--steps 16 or more"):
        S.resolve("tiny", tmp_path / "o", steps=11)
    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    with pytest.raises(RprimError, match="is a file"):
        S.resolve("tiny", tmp_path / "o", sets={"cache_dir": str(blocker)})
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RprimError, match="device=cuda"):
            S.resolve("tiny", tmp_path / "o", sets={"device": "cuda"})
    assert not (tmp_path / "o").exists()


def test_a_study_that_never_started_takes_new_settings(tmp_path):
    """study.json alone (the study stopped before any part wrote anything) protects nothing:
    a corrected command replaces it; once a part has written, other settings are refused."""
    out = tmp_path / "o"
    out.mkdir()
    (out / ".rprim.json").write_text(json.dumps({"kind": "study", "entries": []}))
    (out / "study.json").write_text(json.dumps({"settings": {"preset": "tiny", "steps": 1}}))
    S.resolve("tiny", out)  # accepted
    (out / "runs" / "baseline").mkdir(parents=True)
    (out / "runs" / "baseline" / "metrics.jsonl").write_text("")
    with pytest.raises(RprimError, match="other settings"):
        S.resolve("tiny", out)


def test_presets_fit_the_five_shot_suite():
    """The study presets' context holds the longest 5-shot suite prompt with its answer."""
    for name, preset in S.PRESETS.items():
        cfg = S.train_config(S.StudySettings(preset, Path("x"), S.METHODS, preset.mix), "midas")
        assert preset.shots == 5 and cfg.seq_len >= 1024, name
        from rprim.model_zoo.presets import resolve_config

        assert cfg.tokens_per_step == resolve_config(preset.train_preset).tokens_per_step, name


def test_cli_study_bad_preset_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rprim", "study", "--preset", "huge", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown study preset" in r.stderr
    assert not (tmp_path / "o").exists()


def test_micro_preset_is_a_dataclass_copy():
    assert dataclasses.replace(MICRO, eval_n=4).eval_n == 4


def test_seeds_add_runs_and_the_report_compares_across_seeds(micro_study, tmp_path):
    """--seeds 2 on a finished one-seed study: the first seed's parts are skipped, seed 1 of
    each method is trained (seed=1, shared by the methods), and the report gives the spread
    across seeds, a paired t-test per method, and McNemar against the same seed's baseline."""
    import shutil

    tmp, _ = micro_study
    out = tmp_path / "out"
    shutil.copytree(tmp / "out", out)
    s = S.resolve(MICRO, out, methods="baseline,midas", corpus=(str(corpus(tmp)),),
                  sets={"cache_dir": str(tmp / "cache")}, threads=1, seeds=2)
    lines: list[str] = []
    S.run(s, log=lines.append)
    assert any("] train midas (" in line and line.endswith("done before, skipped") for line in lines)
    for m in ("baseline", "midas"):
        summary = json.loads((out / "runs" / f"{m}-seed1" / "training_summary.json").read_text())
        assert summary["config"]["seed"] == 1 and summary["config"]["method"] == m
        assert (out / "results" / f"{m}-seed1" / "results.json").is_file()
    data = json.loads((out / "report" / "report.json").read_text())
    seeds = {(r["method"], r["group"]): r for r in data["seeds"]}
    assert seeds[("midas", "varassign d0")]["seeds"] == 2 and seeds[("baseline", "copying")]["seeds"] == 2
    assert {r["method"] for r in data["seed_tests"]} == {"midas"}
    pairs = {(r["a"], r["b"]) for r in data["paired"]}
    assert ("midas-seed1", "baseline-seed1") in pairs and ("midas", "baseline") in pairs
    assert not any(r["a"].startswith("baseline") for r in data["paired"])
    assert "Across pretraining seeds" in (out / "report" / "report.md").read_text()
    with pytest.raises(RprimError, match="--seeds"):
        S.resolve(MICRO, tmp_path / "o2", seeds=2, sets={"seed": 3})
