"""The run folder is safe: one writer, --resume/--overwrite that never lose or mix work, clean
signals; plus the loss and compile paths the GPU uses, checked on the CPU."""

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

from rprim.core import RprimError  # noqa: E402
from test_zoo_train import TINY, cli_args, losses  # noqa: E402

FAST = ["steps=6", "ckpt_every=2", "snapshot_every=0", "snapshot_growth=false"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("folder-cache")


def rprim(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rprim", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(res: subprocess.CompletedProcess, needle: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert lines[0].startswith("rprim: error:") and needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def done(cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("done") / "run"
    res = rprim(*cli_args(cache, "midas", out, *FAST))
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def test_resume_of_a_finished_run_changes_nothing(cache, done):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in done.rglob("*") if p.is_file()}
    res = rprim(*cli_args(cache, "midas", done, *FAST), "--resume")
    assert res.returncode == 0 and "is complete" in res.stderr, res.stderr[-2000:]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in done.rglob("*") if p.is_file()} == before
    summary = json.loads((done / "training_summary.json").read_text())  # strict JSON, no NaN
    assert summary["final_train_loss"] is not None and summary["steps"] == 6


def test_resume_needs_a_run(cache, tmp_path):
    one_line_error(rprim(*cli_args(cache, "midas", tmp_path / "missing", *FAST), "--resume"), "no run to resume")
    assert not (tmp_path / "missing").exists()
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    for flag, needle in (("--resume", "holds no rprim training run"), ("--overwrite", "not an rprim training run"),
                         (None, "exists and is not empty")):
        res = rprim(*cli_args(cache, "midas", user, *FAST), *([flag] if flag else []))
        one_line_error(res, needle)
        assert tree(user) == {"notes.txt": b"keep me"}


def test_overwrite_replaces_only_what_rprim_wrote(cache, done, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(done, out)
    (out / "notes.txt").write_text("my notes")
    (out / "checkpoints" / ".step-00000004.tmp-x").mkdir()  # a stale temp of a killed run
    res = rprim(*cli_args(cache, "midas", out, *FAST, "seed=1"), "--overwrite")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "notes.txt").read_text() == "my notes"
    assert json.loads((out / "training_summary.json").read_text())["config"]["seed"] == 1
    assert not list((out / "checkpoints").glob(".*"))
    assert not (out / ".rprim.lock").exists()
    marker = json.loads((out / ".rprim.json").read_text())
    assert marker["kind"] == "train" and "notes.txt" not in marker["entries"]
    assert {"model.safetensors", "config.json", "checkpoints", "metrics.jsonl"} <= set(marker["entries"])


def test_second_train_into_a_busy_folder_refuses(cache, tmp_path):
    """Two trains into one folder: the second refuses at once; the first ends as a valid run."""
    out = tmp_path / "busy"
    first = subprocess.Popen([sys.executable, "-m", "rprim", *cli_args(cache, "midas", out, *FAST, "step_delay=2")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.05)
    for flags in (["--overwrite"], ["--resume"]):
        res = rprim(*cli_args(cache, "midas", out, *FAST), *flags)
        one_line_error(res, "in use by another rprim training run")
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 7))
    assert json.loads((out / "training_summary.json").read_text())["steps"] == 6


def kill_after(cache: Path, out: Path, sig: int, ready, method: str = "midas", *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-m", "rprim", *cli_args(cache, method, out, *FAST, "step_delay=0.4",
                                                                       *extra)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def test_sigterm_keeps_checkpoints_and_resumes(cache, done, tmp_path):
    out = tmp_path / "term"
    latest = out / "checkpoints" / "LATEST"
    res = kill_after(cache, out, signal.SIGTERM, lambda: latest.exists() and latest.read_text().strip() >= "step-00000002")
    assert res.returncode == 130 and "interrupted" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (out / ".rprim.lock").exists() and not (out / "model.safetensors").exists()
    assert (out / "checkpoints" / latest.read_text().strip() / "state.pt").exists()
    res = rprim(*cli_args(cache, "midas", out, *FAST, "step_delay=0.4"), "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert losses(out) == losses(done)


def test_resume_before_the_first_checkpoint_says_so(cache, tmp_path):
    """A baseline run (no growth checkpoints) killed before its first checkpoint."""
    out = tmp_path / "early"
    extra = ("ckpt_every=100",)
    res = kill_after(cache, out, signal.SIGKILL, lambda: (out / "metrics.jsonl").exists()
                     and (out / "metrics.jsonl").read_text().count("\n") >= 1, "baseline", *extra)
    assert res.returncode == -signal.SIGKILL and not list((out / "checkpoints").glob("step-*"))
    res = rprim(*cli_args(cache, "baseline", out, *FAST, "step_delay=0.4", *extra), "--resume")
    assert res.returncode == 0 and "no checkpoint yet" in res.stderr and "step 0" in res.stderr, res.stderr
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 7))
    assert json.loads((out / "training_summary.json").read_text())["steps"] == 6


@pytest.mark.parametrize("args,needle", [
    (["--schedule", "1,0,0,0"], "must all be positive"),
    (["--set", "log_every=0"], "log_every must be at least 1"),
    (["--mix", "varassign:2"], "(0, 1)"),
])
def test_bad_settings_in_plan_and_train(args, needle, tmp_path):
    for cmd in (["plan", "--method", "midas"], ["train", "--method", "midas", "--out", str(tmp_path / "o")]):
        one_line_error(rprim(*cmd, *args), needle)
    assert not (tmp_path / "o").exists()


def test_unusable_places_and_devices_fail_first(cache, tmp_path):
    one_line_error(rprim(*cli_args(cache, "midas", Path("/proc/rprim-out"), *FAST)), "not writable")
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        one_line_error(rprim(*cli_args(cache, "midas", ro / "o", *FAST)), "not writable")
    if not torch.cuda.is_available():
        one_line_error(rprim(*cli_args(cache, "midas", tmp_path / "c", *FAST, "device=cuda")), "--set device=cuda")
        assert not (tmp_path / "c").exists()


def test_torchrun_with_more_ranks_than_gpus_is_one_line(monkeypatch):
    from rprim.model_zoo import distributed as D

    monkeypatch.delenv("RPRIM_DEVICE", raising=False)  # auto as on a real one-GPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RprimError, match=r"--nproc-per-node 1.*--set device=cpu"):
        D._device("auto", local=1, world=2)
    assert D._device("cpu", local=1, world=2) == "cpu"


# ----------------------------------------------------------------------------- GPU paths on the CPU
def test_chunked_and_fused_losses_equal_the_plain_loss(monkeypatch):
    from rprim.model_zoo import model as M

    monkeypatch.setattr(M, "CHUNK_ELEMENTS", 50 * 64)  # chunks of 256 tokens: 3 of them here
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 200, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=True)
    t = torch.randint(0, 50, (3, 200), generator=g)
    ref = M.plain_loss(h, w, t)
    ref_grads = torch.autograd.grad(ref, (h, w))
    for fn in (M.chunked_loss, M.fused_loss):
        got = fn(h, w, t)
        assert torch.allclose(got, ref, rtol=1e-6)
        for a, b in zip(torch.autograd.grad(got, (h, w)), ref_grads):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        assert torch.allclose(M.chunked_loss(h, w, t), ref, rtol=1e-6)


def test_compiled_layers_share_one_graph_through_growth(cache, tmp_path, monkeypatch):
    """compile=true (per-layer, graph capture with the aot_eager backend on the CPU): one graph
    for every layer, no recompilation at the three growths, losses as in eager mode."""
    from torch._dynamo.utils import counters

    from rprim.model_zoo.presets import parse_sets, resolve_config
    from rprim.model_zoo.train import train

    monkeypatch.setenv("RPRIM_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()

    def run(name: str, compile_: str) -> dict:
        cfg = resolve_config("tiny", overrides={**parse_sets(TINY + FAST + ["steps=12", f"compile={compile_}"]),
                                                "method": "baseline" if name == "base" else "midas",
                                                "cache_dir": str(cache)})
        return train(cfg, tmp_path / name, progress=False, quiet=True)

    eager = run("eager", "false")
    assert not eager["compiled"] and counters["stats"]["unique_graphs"] == 0
    base = run("base", "true")
    assert base["compiled"] and counters["stats"]["unique_graphs"] == 1  # all 4 layers: one graph
    comp = run("compiled", "true")
    assert comp["compiled"] and comp["growth_steps"] == [1, 3, 7]
    assert counters["stats"]["unique_graphs"] == 1  # MIDAS at depths 1..4: still that graph
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), abs=1e-5)
    assert comp["compile_time_s"] > 0 and comp["train_time_s"] > 0


def test_summary_reports_steady_throughput(done):
    s = json.loads((done / "training_summary.json").read_text())
    rows = [json.loads(x) for x in (done / "metrics.jsonl").read_text().splitlines()]
    full = [r["tokens_per_s"] for r in rows if r["depth"] == 4]
    assert s["steady_intervals"] == len(full) - 1 and s["steady_tokens_per_s"] > 0
    assert min(full[1:]) <= s["steady_tokens_per_s"] <= max(full[1:])
    assert s["mfu"] is None and s["steady_mfu"] is None  # no known peak on a CPU
    assert s["compiled"] is False and s["device"] == "cpu"
