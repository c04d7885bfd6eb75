"""`rprim eval` end to end on a tiny saved model, and every bad input as a one-line error."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
from click.testing import CliRunner  # noqa: E402

import rprim.primitives as P  # noqa: E402
from rprim.cli import main  # noqa: E402
from rprim.cli_eval import eval_command  # noqa: E402
from test_eval_helpers import tiny_model, tokenizer, trained  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    model, tok = trained("bpe")
    good = root / "good"
    model.save_pretrained(good)
    tok.save_pretrained(good)
    notok = root / "notok"
    model.save_pretrained(notok)
    short = root / "short"
    tiny_model(tokenizer("bpe"), train_steps=0, max_positions=64).save_pretrained(short)
    tok.save_pretrained(short)
    from transformers import BertConfig, BertForMaskedLM

    bert = root / "bert"
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32)).save_pretrained(bert)
    tok.save_pretrained(bert)
    empty = root / "empty"
    empty.mkdir()
    afile = root / "afile.txt"
    afile.write_text("x")
    trunc = _copy(good, root / "trunc")
    weights = trunc / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    badcfg = _copy(good, root / "badcfg")
    (badcfg / "config.json").write_text('{"model_type": "llama", ')
    short_trunc = _copy(short, root / "short-trunc")  # too short AND corrupt: context is said first
    (short_trunc / "model.safetensors").write_bytes(b"\x00" * 16)
    data = root / "data.jsonl"
    rows = P.get("psm").generate(4, seed=1, shots=1) + P.get("arithmetic").generate(3, seed=1, shots=1)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"good": good, "notok": notok, "short": short, "bert": bert, "empty": empty,
            "afile": afile, "trunc": trunc, "badcfg": badcfg, "short_trunc": short_trunc,
            "data": data}


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _run(args):
    return CliRunner().invoke(eval_command, args, catch_exceptions=False)


def test_eval_writes_results_and_table(folders, tmp_path):
    out = tmp_path / "res"
    r = _run(["--model", str(folders["good"]), "--tasks", "arithmetic,varassign-basic-d0",
              "--n", "6", "--shots", "1", "--batch-size", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "arithmetic" in r.output and "95% CI" in r.output
    data = json.loads((out / "results.json").read_text())
    for key in ("model", "config_hash", "data_hashes", "rprim_version", "shots", "seed", "backend",
                "dtype", "wall_time_s", "examples_per_s"):
        assert key in data, key
    t = data["tasks"]["varassign-basic-d0"]
    assert t["n"] == 6 and t["chance"] == pytest.approx(0.2)
    assert 0 <= t["ci95"][0] <= t["accuracy"] <= t["ci95"][1] <= 1
    assert {"flexible_accuracy", "unparsable"} <= set(t)
    rows = [json.loads(x) for x in (out / "samples" / "arithmetic.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and set(rows[0]) == {"id", "prompt", "target", "prediction", "correct"}
    assert data["tasks"]["arithmetic"]["accuracy"] == sum(x["correct"] for x in rows) / 6
    # a rerun into the same folder replaces it whole, and --batch-size does not change scores
    r = _run(["--model", str(folders["good"]), "--tasks", "arithmetic,varassign-basic-d0",
              "--n", "6", "--shots", "1", "--batch-size", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows2 = [json.loads(x) for x in (out / "samples" / "arithmetic.jsonl").read_text().splitlines()]
    assert rows2 == rows
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


BAD = {
    "missing path": (["--model", "{root}/nope"], "no such file"),
    "no config": (["--model", "{empty}"], "config.json"),
    "not causal": (["--model", "{bert}"], "not a causal language model"),
    "no tokenizer": (["--model", "{notok}"], "tokenizer"),
    "too long": (["--model", "{short}", "--tasks", "varassign-code-d2"], "context"),
    "unknown task": (["--model", "{good}", "--tasks", "varasign-code-d0"], "unknown task"),
    "empty tasks": (["--model", "{good}", "--tasks", " , "], "empty"),
    "unwritable out": (["--model", "{good}", "--out", "{afile}/res"], "--out"),
    "vllm": (["--model", "{good}", "--backend", "vllm"], "vllm"),
    "bad batch": (["--model", "{good}", "--batch-size", "many"], "--batch-size"),
    "a non-gguf file": (["--model", "{afile}"], ".gguf"),
    "truncated weights": (["--model", "{trunc}"], "truncated or corrupt"),
    "config not json": (["--model", "{badcfg}"], "config.json is not valid JSON"),
    "context before weights": (["--model", "{short_trunc}", "--tasks", "varassign-code-d2"], "context"),
    "n too large": (["--model", "{good}", "--n", "100000000"], "more than rprim eval scores"),
    "n not a number": (["--model", "{good}", "--n", "10**8"], "--n takes a positive integer"),
    "suite n": (["--model", "{good}", "--tasks", "psm", "--n", "1001"], "frozen suite has 1000"),
    "tpu": (["--model", "{good}", "--device", "tpu"], "unknown --device"),
    "data and tasks": (["--model", "{good}", "--data", "{data}", "--tasks", "psm"], "exclude each other"),
    "data and shots": (["--model", "{good}", "--data", "{data}", "--shots", "2"], "--shots does not apply"),
    "data missing": (["--model", "{good}", "--data", "{root}/none.jsonl"], "no such file"),
    "add-bos without bos": (["--model", "{good}", "--add-bos", "--tasks", "psm"], "BOS"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2(case, folders, tmp_path, capsys):
    args, needle = BAD[case]
    paths = {k: str(v) for k, v in folders.items()}
    paths["root"] = str(tmp_path)
    args = [a.format(**paths) for a in args]
    out = tmp_path / "out"
    if "--out" not in args:
        args += ["--out", str(out)]
    with pytest.raises(SystemExit) as e:
        main(["eval"] + args + ([] if "--n" in args else ["--n", "3"]))
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("rprim eval:")]
    assert len(lines) == 1 and lines[0].startswith("rprim: error:"), err
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_missing_gpu_is_one_line(folders, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", str(folders["good"]), "--device", "cuda", "--tasks", "psm"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0 and "--device cuda" in err


def test_offline_hub_id_fails_at_once(tmp_path, monkeypatch):
    """No retries: with HF_HUB_OFFLINE set, or an endpoint that refuses connections."""
    env = {**__import__("os").environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    for extra in ({}, {"HF_HUB_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9"}):
        r = subprocess.run([sys.executable, "-m", "rprim", "eval", "--model", "someorg/somemodel",
                            "--tasks", "psm"], capture_output=True, text=True, timeout=120,
                           env={**env, **extra})
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().count("\n") == 0 and "Retry" not in r.stderr, r.stderr
        assert ("HF_HUB_OFFLINE" if not extra else "127.0.0.1 cannot be reached") in r.stderr


def test_announces_count_and_estimate_then_scores_own_data(folders, tmp_path, capsys, monkeypatch):
    import torch

    import rprim.cli_eval

    monkeypatch.setattr(rprim.cli_eval, "default_threads", lambda: 1)
    threads = torch.get_num_threads()
    try:
        main(["eval", "--model", str(folders["good"]), "--data", str(folders["data"]),
              "--out", str(tmp_path / "r")])
        assert torch.get_num_threads() == 1  # the default comes from the free cores
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert "2 tasks x 3..4 examples = 7 examples" in err and "estimate" in err
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert set(data["tasks"]) == {"psm", "arithmetic"} and data["tasks"]["psm"]["n"] == 4
    assert data["add_bos"] is False and "no BOS" in data["add_bos_reason"]


def test_corrupt_weights_fail_in_one_line_for_finetune_too(folders):
    """Fine-tuning loads models through the same path (make_backend / load_hf)."""
    from rprim.core import RprimError
    from rprim.evaluators import make_backend
    from rprim.evaluators.engine.loading import load_hf

    for load in (load_hf, make_backend):
        with pytest.raises(RprimError, match="truncated or corrupt"):
            load(str(folders["trunc"]))
    with pytest.raises(RprimError, match="not valid JSON"):
        load_hf(str(folders["badcfg"]))


def test_rprim_cli_subprocess(folders, tmp_path):
    """Through the real entry point: exit 2, one line on stderr, nothing on stdout."""
    r = subprocess.run([sys.executable, "-m", "rprim", "eval", "--model", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr
