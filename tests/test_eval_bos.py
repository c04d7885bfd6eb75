"""BOS is decided per model as lm-evaluation-harness does, can be forced either way, is recorded
in results.json, and is applied identically by the backend and by ``plain_greedy``."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import rprim.primitives as P  # noqa: E402
from rprim.core import RprimError  # noqa: E402
from rprim.evaluators import evaluate  # noqa: E402
from rprim.evaluators.engine.backend import Request  # noqa: E402
from rprim.evaluators.engine.hf import HFBackend, plain_greedy  # noqa: E402
from rprim.evaluators.engine.tokens import decide_bos, encode  # noqa: E402
from test_eval_helpers import tiny_model, tokenizer, trained  # noqa: E402


class _Cfg:
    def __init__(self, model_type: str, bos_token_id=None):
        self.model_type, self.bos_token_id = model_type, bos_token_id


def test_rules():
    no_bos, with_bos = tokenizer("bpe"), tokenizer("sp")
    assert no_bos.bos_token_id is None and with_bos.bos_token_id is not None
    assert decide_bos(no_bos, _Cfg("llama")).add is False
    assert decide_bos(with_bos, _Cfg("llama")).add is True  # its post-processor adds BOS
    assert decide_bos(with_bos, _Cfg("llama"), add_bos=False).add is False
    with pytest.raises(RprimError, match="defines a BOS token"):
        decide_bos(no_bos, _Cfg("llama"), add_bos=True)
    forced = decide_bos(no_bos, _Cfg("llama", bos_token_id=1), add_bos=True)
    assert forced.add and forced.token_id == 1 and forced.reason == "--add-bos"


def test_gemma_gets_bos_even_when_its_tokenizer_says_no():
    """A Gemma GGUF tokenizer has a BOS token but does not add it; the model needs it."""
    from tokenizers import Tokenizer

    from transformers import PreTrainedTokenizerFast

    sp = tokenizer("sp")
    raw = Tokenizer.from_str(sp.backend_tokenizer.to_str())
    raw.post_processor = None  # like the GGUF's add_bos_token: false
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>",
                                  pad_token="<pad>")
    assert tok("a")["input_ids"][0] != tok.bos_token_id
    assert decide_bos(tok, _Cfg("llama")).add is False
    choice = decide_bos(tok, _Cfg("gemma3_text"))
    assert choice.add and "gemma" in choice.reason.lower()


def test_encode_prepends_once():
    tok = tokenizer("sp")
    bos = tok.bos_token_id
    assert encode(tok, ["a b"], bos)[0][0] == bos
    assert encode(tok, ["a b"], bos)[0][1] != bos
    assert encode(tok, ["<bos>a b"], bos)[0][:2] != [bos, bos]
    assert encode(tok, ["a b"], None) == [tok("a b", add_special_tokens=False)["input_ids"]]


@pytest.mark.parametrize("kind,add_bos", [("sp", None), ("sp", False), ("bpe", None)])
def test_backend_and_plain_greedy_agree(kind, add_bos):
    model, tok = trained(kind) if kind == "sp" else (tiny_model(tokenizer(kind), train_steps=0), tokenizer(kind))
    reqs = [Request(r["prompt"], r["target_delimiter"] + r["target"], tuple(r["until"]))
            for name in ("varassign-code-d0", "arithmetic")
            for r in P.get(name).generate(4, seed=2, shots=1)]
    be = HFBackend(model, tok, batch_size=3, add_bos=add_bos)
    ref = [plain_greedy(model, tok, r.prompt, r.until, 6, add_bos=add_bos) for r in reqs]
    assert [g.text for g in be.greedy(reqs, 6)] == ref
    assert be.bos.add is (kind == "sp" and add_bos is not False)


def test_bos_changes_what_the_model_sees_and_is_recorded(tmp_path):
    model, tok = trained("sp")
    kw = dict(tokenizer=tok, tasks=["varassign-code-d0"], shots=1, n=6, batch_size=6)
    on = evaluate(model, add_bos=True, **kw)
    off = evaluate(model, add_bos=False, **kw)
    assert on.meta["add_bos"] is True and off.meta["add_bos"] is False
    assert on.meta["add_bos_reason"] == "--add-bos" and off.meta["add_bos_reason"] == "--no-add-bos"
    for res, flag in ((on, True), (off, False)):
        for row in res.samples["varassign-code-d0"]:
            want = plain_greedy(model, tok, row["prompt"], ["\n"], res.tasks["varassign-code-d0"]["max_new_tokens"],
                                add_bos=flag)
            assert row["prediction"] == want.strip()
    data = json.loads((on.save(tmp_path / "r") / "results.json").read_text())
    assert data["add_bos"] is True and data["add_bos_reason"] == "--add-bos"
