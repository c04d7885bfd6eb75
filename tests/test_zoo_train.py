"""End to end: trained models load and generate, exact resume after SIGKILL, DDP = 1 process,
bad input exits with status 2 and a one-line message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rprim.cli import main  # noqa: E402
from rprim.model_zoo.presets import parse_sets, resolve_config  # noqa: E402

# 4 layers, block size 1 -> 4 stages; prop-1 over 12 steps gives stages of 1, 2, 4, 5 steps.
TINY = ["n_layers=4", "d_model=64", "n_heads=2", "d_mlp=128", "vocab_size=320", "seq_len=32",
        "batch_size=4", "steps=12", "block_size=1", "schedule=prop-1", "warmup_steps=2",
        "eval_every=6", "eval_batches=1", "log_every=1", "ckpt_every=3", "max_corpus_bytes=60000",
        "threads=1", "keep_checkpoints=10", "snapshot_every=4", "snapshot_growth=true"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zoo-cache")


def cfg_for(cache: Path, method: str, *extra: str):
    return resolve_config("tiny", overrides={**parse_sets(TINY + list(extra)), "method": method,
                                             "corpus": ["stdlib-python"], "cache_dir": str(cache)})


def cli_args(cache: Path, method: str, out: Path, *extra: str) -> list[str]:
    args = ["train", "--method", method, "--corpus", "stdlib-python", "--out", str(out), "--quiet",
            "--cache-dir", str(cache)]
    for s in TINY + list(extra):
        args += ["--set", s]
    return args


def load_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(cache, tmp_path_factory) -> dict[str, Path]:
    from rprim.model_zoo.train import train

    outs = {}
    for method in ("baseline", "gradstack", "midas"):
        out = tmp_path_factory.mktemp(f"run-{method}")
        train(cfg_for(cache, method), out, overwrite=True, progress=False, quiet=True)
        outs[method] = out
    return outs


@pytest.mark.parametrize("method", ["baseline", "gradstack", "midas"])
def test_trained_model_loads_and_generates(trained, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = trained[method]
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["method"] == method and summary["steps"] == 12 and summary["tokens"] == 12 * 4 * 32
    assert summary["growth_steps"] == ([] if method == "baseline" else [1, 3, 7])
    assert summary["final_val_loss"] < 6.0  # log(320) = 5.77 at init; it learned something
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    depths = [r["depth"] for r in rows]
    assert depths == ([4] * 12 if method == "baseline" else [1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4])
    # cumulative FLOPs in the log match the plan's total
    assert rows[-1]["flops"] == pytest.approx(summary["flops"])
    assert sum(s["flops"] for s in summary["stages"]) == pytest.approx(summary["flops"])
    model = AutoModelForCausalLM.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert model.config.num_hidden_layers == 4 and len(model.model.layers) == 4
    ids = tok("def main():\n    x = 12", return_tensors="pt").input_ids
    gen = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] == ids.shape[1] + 5 or tok.eos_token_id in gen[0, ids.shape[1]:].tolist()
    # the saved weights are the trained ones, not a fresh init
    assert summary["final_train_loss"] < 5.7


def test_methods_train_different_models(trained):
    w = {m: load_weights(p) for m, p in trained.items()}
    key = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(w["midas"][key], w["gradstack"][key])
    assert not torch.equal(w["midas"][key], w["baseline"][key])


def test_reset_optimizer_flag_changes_training(cache, trained, tmp_path):
    from rprim.model_zoo.train import train

    train(cfg_for(cache, "midas", "reset_optimizer_on_growth=true"), tmp_path / "r", progress=False, quiet=True)
    a, b = losses(trained["midas"]), losses(tmp_path / "r")
    assert a[:1] == b[:1]  # identical before the first growth
    assert a[2:] != b[2:]


def test_resume_after_sigkill_is_exact(cache, trained, tmp_path):
    """Kill a run mid-way (after a checkpoint exists), resume, and get the uninterrupted weights."""
    from rprim.model_zoo.train import train

    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "rprim"] +
                            cli_args(cache, "midas", out, "step_delay=0.5"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = out / "checkpoints" / "LATEST"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step-00000004":
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()  # it really was interrupted
    train(cfg_for(cache, "midas", "step_delay=0.5"), out, resume=True, progress=False, quiet=True)
    ref, got = load_weights(trained["midas"]), load_weights(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert losses(out) == losses(trained["midas"])
    assert snapshots(out) == snapshots(trained["midas"])  # snapshots too, byte for byte


def snapshots(run: Path) -> dict[str, bytes]:
    root = run / "snapshots"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_snapshots_are_hf_folders_with_their_losses(trained):
    """Every snapshot_every steps and at the end of each stage (just before growth): a plain HF
    folder of the model at that step, with step, tokens, depth, stage and losses."""
    from transformers import AutoModelForCausalLM

    out = trained["midas"]
    rows = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    folders = sorted((out / "snapshots").iterdir())
    assert [p.name for p in folders] == [f"step-{s:08d}" for s in (1, 3, 4, 7, 8, 12)]
    for p in folders:
        info = json.loads((p / "snapshot.json").read_text())
        row = rows[info["step"]]
        assert (info["tokens"], info["depth"], info["stage"]) == (row["tokens"], row["depth"], row["stage"])
        assert info["train_loss"] == pytest.approx(row["loss"])
        assert info["before_growth"] == (info["step"] in (1, 3, 7))
        if "val_loss" in row:
            assert info["val_loss"] == pytest.approx(row["val_loss"])
        model = AutoModelForCausalLM.from_pretrained(str(p))
        assert len(model.model.layers) == model.config.num_hidden_layers == info["depth"]
        assert (p / "tokenizer.json").exists()
    last = json.loads((folders[-1] / "snapshot.json").read_text())
    summary = json.loads((out / "training_summary.json").read_text())
    assert last["val_loss"] == pytest.approx(summary["final_val_loss"])
    assert load_weights(folders[-1]).keys() == load_weights(out).keys()
    assert not (trained["baseline"] / "snapshots" / "step-00000001").exists()  # no growth there


def test_long_context_with_mix(cache, tmp_path):
    """Study shapes: seq_len 1024 (5-shot depth-2 prompts fit) with the pretraining mix; the
    model's context equals seq_len and the summary records the mix."""
    from rprim.model_zoo.train import train

    out = tmp_path / "long"
    s = train(cfg_for(cache, "midas", "seq_len=1024", "batch_size=2", "steps=6", "max_corpus_bytes=120000",
                      "mix=varassign:0.05,copying:0.02", "snapshot_every=0"), out, progress=False, quiet=True)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["max_position_embeddings"] == 1024
    assert s["mix"]["spec"] == "varassign:0.05,copying:0.02" and 0.05 < s["mix"]["fraction"] < 0.09
    assert len(s["mix"]["tasks"]) == 11 and all(t["tokens"] > 0 for t in s["mix"]["tasks"].values())
    assert s["config"]["mix"] == "varassign:0.05,copying:0.02"


def torchrun(cache: Path, out: Path, *extra_args: str, resume: bool = False) -> dict:
    """Train midas with 2 CPU processes (gloo); return the training summary."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "rprim"] + cli_args(cache, "midas", out, "device=cpu", *extra_args) + (["--resume"] if resume else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((out / "training_summary.json").read_text())


@pytest.fixture(scope="module")
def fsdp_run(cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fsdp") / "run"
    torchrun(cache, out, "parallel=fsdp")
    return out


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_match_one(mode, cache, trained, fsdp_run, tmp_path):
    """torchrun with 2 CPU processes, same global batch: same losses and weights as one process,
    through three growths, with DDP (replicated) and with FSDP2 (sharded).

    Each rank computes the mean loss of its half of the batch; the reduced gradient equals the
    gradient of the whole batch's mean loss (every sequence has the same number of tokens).
    Only the order of floating-point sums differs, so after 12 AdamW steps the losses agree to
    ~1e-6; we allow 1e-4 (about 0.002% of the loss), far below the step-to-step change.
    """
    if mode == "fsdp":
        out = fsdp_run
    else:
        out = tmp_path / mode
        torchrun(cache, out)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["config"]["parallel"] == mode
    one, two = losses(trained["midas"]), losses(out)
    assert len(one) == len(two) == 12
    assert two == pytest.approx(one, abs=1e-4)
    assert max(abs(a - b) for a, b in zip(one, one[1:])) > 1e-2  # the tolerance is meaningful
    ref, got = load_weights(trained["midas"]), load_weights(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.allclose(ref[k], got[k], atol=1e-4), k


def test_fsdp_resume_is_exact(cache, fsdp_run, tmp_path):
    """An FSDP run resumed from its step-6 checkpoint (depth 3, one growth still to come)
    ends with bit-identical weights and losses."""
    import shutil

    out = tmp_path / "resumed"
    shutil.copytree(fsdp_run, out)
    for f in ("model.safetensors", "training_summary.json"):
        (out / f).unlink()
    ckpts = out / "checkpoints"
    for p in ckpts.glob("step-*"):
        if p.name > "step-00000006":
            shutil.rmtree(p)
    (ckpts / "LATEST").write_text("step-00000006\n")
    summary = torchrun(cache, out, "parallel=fsdp", resume=True)
    assert summary["growth_steps"] == [1, 3, 7]
    ref, got = load_weights(fsdp_run), load_weights(out)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert losses(out) == losses(fsdp_run)


# ----------------------------------------------------------------------------- bad input
def run_main(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize("extra,needle", [
    (["--method", "stack"], "--method"),
    (["--preset", "huge"], "preset"),
    (["--schedule", "prop-7"], "prop-"),
    (["--block-size", "3"], "--block-size"),
    (["--steps", "5", "--tokens", "100"], "--tokens"),
    (["--set", "lr"], "KEY=VALUE"),
])
def test_bad_arguments_exit_2(extra, needle, capsys, tmp_path):
    args = ["train", "--out", str(tmp_path / "o"), "--quiet"] + extra
    code, err = run_main(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rprim: error:") and needle in lines[0], err
    assert not (tmp_path / "o").exists()


def test_bad_corpora_exit_2(cache, capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    short = tmp_path / "short.txt"
    short.write_text("just a few words\n")
    for corpus, needle in ((empty, "empty"), (short, "seq_len"), (tmp_path / "nope", "--corpus")):
        args = ["train", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--quiet",
                "--cache-dir", str(cache), "--set", "vocab_size=260"]
        code, err = run_main(args, capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "o").exists()


def test_existing_output_and_incompatible_resume(cache, trained, capsys, tmp_path):
    out = trained["baseline"]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, err = run_main(cli_args(cache, "baseline", out), capsys)
    assert code == 2 and "--resume" in err and "--overwrite" in err
    code, err = run_main(cli_args(cache, "baseline", out, "lr=0.01") + ["--resume"], capsys)
    assert code == 2 and "lr" in err and "--overwrite" in err
    code, err = run_main(cli_args(cache, "baseline", out) + ["--resume", "--overwrite"], capsys)
    assert code == 2
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing touched


def test_cli_subprocess_exit_code_and_plan(tmp_path):
    res = subprocess.run([sys.executable, "-m", "rprim", "train", "--method", "midas", "--block-size", "3",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip().startswith("rprim: error:")
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = subprocess.run([sys.executable, "-m", "rprim", "plan", "--preset", "paper-1b", "--method", "midas",
                          "--schedule", "prop-2", "--steps", "100000", "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    p = json.loads(res.stdout)
    assert [s["depth"] for s in p["stages"]] == [4, 8, 12, 16, 20, 24]
    assert round(1 / p["flop_ratio_no_head"], 2) == 1.24  # spec table, k = 6, PROP-2
    assert p["flop_ratio"] > p["flop_ratio_no_head"]


def test_gradient_accumulation_matches_full_batch(cache, trained, tmp_path):
    """micro_batch_size 2 x 2 accumulation steps = batch 4 in one go (same mean-loss gradient)."""
    from rprim.model_zoo.train import train

    train(cfg_for(cache, "midas", "micro_batch_size=2"), tmp_path / "acc", progress=False, quiet=True)
    assert losses(tmp_path / "acc") == pytest.approx(losses(trained["midas"]), abs=1e-4)


def test_rprim_eval_scores_each_method(cache, tmp_path, capsys):
    """The final check of the study: each method's model is scored by `rprim eval` end to end.

    seq_len 192 so that 0-shot prompts of the tiny 320-token BPE fit the context."""
    from rprim.model_zoo.train import train

    for method in ("baseline", "gradstack", "midas"):
        model = tmp_path / method
        train(cfg_for(cache, method, "seq_len=192", "steps=8"), model, progress=False, quiet=True)
        code = None
        try:
            main(["eval", "--model", str(model), "--tasks", "arithmetic,varassign-code-d0", "--shots", "0",
                  "--n", "8", "--out", str(tmp_path / f"eval-{method}")])
        except SystemExit as e:
            code = e.code
        assert code in (None, 0), capsys.readouterr().err
        res = json.loads((tmp_path / f"eval-{method}" / "results.json").read_text())
        for task in ("arithmetic", "varassign-code-d0"):
            score = res["tasks"][task]
            assert score["n"] == 8 and 0.0 <= score["accuracy"] <= 1.0
            rows = (tmp_path / f"eval-{method}" / "samples" / f"{task}.jsonl").read_text().splitlines()
            assert len(rows) == 8 and all("prediction" in json.loads(r) for r in rows)


def test_fsdp_with_adafactor_is_refused(cache, tmp_path):
    """torch's Adafactor cannot step DTensor parameters: say so before any work is done."""
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "rprim"] + cli_args(cache, "midas", out, "device=cpu", "parallel=fsdp", "optimizer=adafactor")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode != 0
    assert "rprim: error: Adafactor does not run on FSDP2-sharded parameters" in res.stderr
    assert "optimizer=adamw" in res.stderr and not out.exists()


def test_answer_loss_resume_is_exact(cache, tmp_path):
    """mix_loss=answers (the default): the loss mask travels through the token files and a run
    resumed from a mid-run checkpoint ends with the uninterrupted run's weights and losses; the
    masked loss is another loss than mix_loss=all on the same tokens."""
    import shutil

    from rprim.model_zoo.train import train

    extra = ("seq_len=256", "batch_size=2", "steps=6", "ckpt_every=3", "snapshot_every=0",
             "max_corpus_bytes=120000", "mix=varassign-basic-d0:0.3,copying:0.1")
    ref = tmp_path / "ref"
    s = train(cfg_for(cache, "midas", *extra), ref, progress=False, quiet=True)
    assert s["config"]["mix_loss"] == "answers"
    full = train(cfg_for(cache, "midas", *extra, "mix_loss=all"), tmp_path / "all", progress=False, quiet=True)
    assert losses(ref) != losses(tmp_path / "all") and full["config"]["mix_loss"] == "all"
    # a copy of the run as it stood after its step-3 checkpoint
    cut = tmp_path / "cut"
    shutil.copytree(ref, cut)
    for p in list(cut.glob("*.safetensors")) + [cut / "training_summary.json"]:
        p.unlink()
    for p in (cut / "checkpoints").glob("step-*"):
        if int(p.name[5:]) > 3:
            shutil.rmtree(p)
    (cut / "checkpoints" / "LATEST").write_text("step-00000003\n")
    train(cfg_for(cache, "midas", *extra), cut, resume=True, progress=False, quiet=True)
    a, b = load_weights(ref), load_weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(cut) == losses(ref)


def test_sigterm_checkpoints_where_the_run_is(cache, trained, tmp_path):
    """SIGTERM mid-run (no periodic checkpoint yet): the step in flight finishes, a checkpoint
    of that step is written, the command exits as interrupted, and resuming ends with the
    uninterrupted run's weights and losses."""
    from rprim.model_zoo.train import train

    out = tmp_path / "termed"
    proc = subprocess.Popen([sys.executable, "-m", "rprim"] +
                            cli_args(cache, "midas", out, "step_delay=0.4", "ckpt_every=100"),
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    latest = (out / "checkpoints" / "LATEST").read_text().strip()
    step = int(latest[5:])
    assert 5 <= step < 12 and not (out / "model.safetensors").exists()
    meta = json.loads((out / "checkpoints" / latest / "meta.json").read_text())
    assert meta["reason"] == "interrupted"
    train(cfg_for(cache, "midas", "step_delay=0.4", "ckpt_every=100"), out, resume=True, progress=False, quiet=True)
    ref, got = load_weights(trained["midas"]), load_weights(out)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert losses(out) == losses(trained["midas"])


def test_models_and_snapshots_have_normal_rights(trained):
    """Weights are written through a temp file (0600 by default); a run's files get the rights
    of a normally created file, so another user of a shared machine can read the model."""
    from rprim.core.files import _umask

    want = 0o666 & ~_umask()
    run = trained["midas"]
    files = [run / "model.safetensors", run / "config.json",
             *sorted((run / "snapshots").glob("step-*/model.safetensors"))]
    assert len(files) > 3
    for p in files:
        assert p.stat().st_mode & 0o777 == want, p
