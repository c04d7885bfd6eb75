"""`rprim eval` end to end on a tiny saved model, and every bad input as a one-line error."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
from click.testing import CliRunner  # noqa: E402

from rprim.cli import main  # noqa: E402
from rprim.cli_eval import eval_command  # noqa: E402
from tests.test_eval_helpers import tiny_model, tokenizer, trained  # noqa: E402


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
    return {"good": good, "notok": notok, "short": short, "bert": bert, "empty": empty,
            "afile": afile}


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
        main(["eval"] + args + ["--n", "3"])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("rprim eval:")]
    assert len(lines) == 1 and lines[0].startswith("rprim: error:"), err
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in err
    assert not out.exists()


def test_rprim_cli_subprocess(folders, tmp_path):
    """Through the real entry point: exit 2, one line on stderr, nothing on stdout."""
    r = subprocess.run([sys.executable, "-m", "rprim", "eval", "--model", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr
