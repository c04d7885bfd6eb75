"""Bad input to `rprim eval`: each is one `rprim: error:` line, exit 2, nothing written.

Run by tests/test_adversarial.py. ``setup`` builds, in a few seconds, a tiny saved causal LM,
a copy with truncated weights, one with a config.json that is not JSON, one whose context is
too short for the prompts (its weights corrupt too, so the context must be checked first), a
BERT-like masked LM, and two data files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

CASES = [
    ("eval-model-missing", ["eval", "--model", "{tmp}/nope"], "no such file"),
    ("eval-model-not-causal", ["eval", "--model", "{fixtures}/bert"], "not a causal language model"),
    ("eval-weights-truncated", ["eval", "--model", "{fixtures}/trunc", "--tasks", "psm"],
     "truncated or corrupt"),
    ("eval-config-not-json", ["eval", "--model", "{fixtures}/badcfg"], "config.json is not valid JSON"),
    ("eval-no-config", ["eval", "--model", "{tmp}"], "has no config.json"),
    ("eval-no-tokenizer", ["eval", "--model", "{fixtures}/notok"], "tokenizer"),
    ("eval-context-before-weights", ["eval", "--model", "{fixtures}/short", "--tasks",
                                     "varassign-code-d2"], "the model's context is 64"),
    ("eval-device-tpu", ["eval", "--model", "{fixtures}/good", "--device", "tpu"], "unknown --device"),
    ("eval-device-absent", ["eval", "--model", "{fixtures}/good", "--device", "cuda:7"],
     "--device cuda:7"),
    ("eval-n-huge", ["eval", "--model", "{fixtures}/good", "--n", "100000000"],
     "more than rprim eval scores per task"),
    ("eval-n-expression", ["eval", "--model", "{fixtures}/good", "--n", "10**8"],
     "--n takes a positive integer"),
    ("eval-n-beyond-suite", ["eval", "--model", "{fixtures}/good", "--tasks", "psm", "--n", "1001"],
     "frozen suite has 1000"),
    ("eval-data-and-tasks", ["eval", "--model", "{fixtures}/good", "--data", "{fixtures}/data.jsonl",
                             "--tasks", "psm"], "exclude each other"),
    ("eval-data-missing", ["eval", "--model", "{fixtures}/good", "--data", "{tmp}/none.jsonl"],
     "no such file"),
    ("eval-data-not-json", ["eval", "--model", "{fixtures}/good", "--data", "{fixtures}/bad.jsonl"],
     "line 2 is not JSON"),
    ("eval-data-no-target", ["eval", "--model", "{fixtures}/good", "--data",
                             "{fixtures}/notarget.jsonl"], "'target'"),
    ("eval-data-n-beyond", ["eval", "--model", "{fixtures}/good", "--data", "{fixtures}/data.jsonl",
                            "--n", "4"], "has 3 records"),
    ("eval-data-duplicate-ids", ["eval", "--model", "{fixtures}/good", "--data", "{fixtures}/dupids.jsonl"],
     "the same id '7'"),
    ("eval-data-names-collide", ["eval", "--model", "{fixtures}/good", "--data", "{fixtures}/collide.jsonl"],
     "both save their samples"),
    ("eval-data-name-too-long", ["eval", "--model", "{fixtures}/good", "--data", "{fixtures}/longname.jsonl"],
     "cannot name a samples file"),
    ("eval-data-name-nul", ["eval", "--model", "{fixtures}/good", "--data", "{fixtures}/nulname.jsonl"],
     "cannot name a samples file"),
    ("eval-data-name-hidden", ["eval", "--model", "{fixtures}/good", "--data", "{fixtures}/dotname.jsonl"],
     "cannot name a samples file"),
    ("eval-data-missing-ids-collide", ["eval", "--model", "{fixtures}/good", "--data", "{fixtures}/nullids.jsonl"],
     "the same id 'None'"),
    ("eval-add-bos-without-bos", ["eval", "--model", "{fixtures}/good", "--tasks", "psm",
                                  "--add-bos"], "BOS"),
    ("eval-hub-unreachable", ["eval", "--model", "nosuchorg/nosuchmodel", "--tasks", "psm"],
     "cannot load nosuchorg/nosuchmodel"),
    ("eval-gguf-expected", ["eval", "--model", "{fixtures}/data.jsonl"], "not a .gguf"),
    ("eval-max-new-tokens", ["eval", "--model", "{fixtures}/good", "--max-new-tokens", "0"],
     "--max-new-tokens must be positive"),
]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def setup(fixtures: Path) -> None:
    """Tiny models and data files (a few seconds: untrained 2-layer models)."""
    from transformers import BertConfig, BertForMaskedLM

    import rprim.primitives as P
    from test_eval_helpers import tiny_model, tokenizer  # tests/ is on sys.path (conftest)

    tok = tokenizer("bpe")
    good = fixtures / "good"
    tiny_model(tok, train_steps=0).save_pretrained(good)
    tok.save_pretrained(good)
    weights = _copy(good, fixtures / "trunc") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (_copy(good, fixtures / "badcfg") / "config.json").write_text('{"model_type": "llama", ')
    short = fixtures / "short"
    tiny_model(tok, train_steps=0, max_positions=64).save_pretrained(short)
    tok.save_pretrained(short)
    (short / "model.safetensors").write_bytes(b"\0" * 16)
    notok = fixtures / "notok"
    tiny_model(tok, train_steps=0).save_pretrained(notok)
    bert = fixtures / "bert"
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32)).save_pretrained(bert)
    tok.save_pretrained(bert)
    rows = P.get("psm").generate(3, seed=1, shots=1)
    (fixtures / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (fixtures / "bad.jsonl").write_text(json.dumps(rows[0]) + "\n{not json\n")
    rec = {"prompt": "1+1=", "target": "2"}
    lines = {"dupids": [{**rec, "id": 7}, {**rec, "id": "7"}],
             "collide": [{**rec, "task": "a/b"}, {**rec, "task": "a_b"}],
             "longname": [{**rec, "task": "t" * 300}],
             "nulname": [{**rec, "task": "bad\u0000name"}],
             "dotname": [{**rec, "task": ".hidden"}],
             "nullids": [{**rec, "id": None}, {**rec, "id": None}]}
    for name, recs in lines.items():
        (fixtures / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (fixtures / "notarget.jsonl").write_text(json.dumps({"prompt": "1+1=", "answer": "2"}) + "\n")
