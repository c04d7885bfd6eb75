"""A model is opened once (one spec, one load path), and a saved run continues only with the
settings it was started with (one comparison, in core)."""

from __future__ import annotations

import pytest

import test_eval_helpers as H
from rprim.core import RprimError
from rprim.core.compat import changed_settings, check_same_settings


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tok = H.tokenizer("bpe")
    model = H.tiny_model(tok, train_steps=0, max_positions=256)
    path = tmp_path_factory.mktemp("spec") / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _count(monkeypatch, cls, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(cls, name).__func__

    def counted(c, *a, **k):
        calls.append(1)
        return real(c, *a, **k)

    monkeypatch.setattr(cls, name, classmethod(counted))
    return calls


def test_evaluate_opens_config_tokenizer_and_weights_once(folder, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rprim.evaluators import evaluate
    from rprim.evaluators.engine import loading

    specs: list[int] = []
    inspect = loading.inspect_model
    monkeypatch.setattr(loading, "inspect_model", lambda *a, **k: specs.append(1) or inspect(*a, **k))
    tokenizers = _count(monkeypatch, AutoTokenizer, "from_pretrained")
    weights = _count(monkeypatch, AutoModelForCausalLM, "from_pretrained")
    res = evaluate(str(folder), tasks="varassign-code-d0,psm", shots=1, n=3, backend="hf")
    assert (len(specs), len(tokenizers), len(weights)) == (1, 1, 1)
    assert res.meta["model"] == str(folder)


def test_make_backend_is_the_same_load_path(folder):
    from rprim.evaluators.evaluate import make_backend, open_engine

    made = make_backend(str(folder), backend="hf")
    opened, work = open_engine(str(folder), [], backend="hf")
    assert made.spec.where == opened.spec.where == str(folder)
    assert made.spec.context == opened.spec.context == 256
    assert made.spec.stop_ids == opened.spec.stop_ids and made.spec.stop_ids
    assert made.describe() == opened.describe() and work.total == 0
    assert make_backend(made) is made  # a ready engine passes through the same path
    again, work = open_engine(made, [], progress=True)
    assert again is made and work.total == 0


def test_prompts_that_do_not_fit_fail_before_the_weights_load(folder, monkeypatch):
    from transformers import AutoModelForCausalLM

    from rprim.evaluators import evaluate

    weights = _count(monkeypatch, AutoModelForCausalLM, "from_pretrained")
    with pytest.raises(RprimError, match="a prompt of varassign-code-d2 needs .* but the model's "
                                         "context is 256; use fewer --shots"):
        evaluate(str(folder), tasks="varassign-code-d2", shots=5, n=2, backend="hf")
    assert weights == []


def test_in_memory_models_are_checked_up_front_too():
    from rprim.evaluators import evaluate

    tok = H.tokenizer("bpe")
    model = H.tiny_model(tok, train_steps=0, max_positions=64)
    with pytest.raises(RprimError, match="a prompt of varassign-code-d2 needs"):
        evaluate(model, tasks="varassign-code-d2", shots=5, n=2, tokenizer=tok)
    with pytest.raises(RprimError, match="needs its tokenizer"):
        evaluate(model, tasks="psm", n=2)


def test_settings_differences_are_named_flat_and_as_json():
    saved = {"lr": 0.001, "tasks": ("a", "b"), "train": {"steps": 10, "threads": 2}, "seeds": [0]}
    now = {"lr": 0.002, "tasks": ["a", "b"], "train": {"steps": 12, "threads": 4}, "seeds": [0, 1]}
    assert changed_settings(saved, now, free={"seeds", "train.threads"}) == [
        "lr: 0.001 -> 0.002", "train.steps: 10 -> 12"]
    assert changed_settings(saved, now, free={"seeds", "train"}) == ["lr: 0.001 -> 0.002"]
    assert changed_settings({"a": 1}, {"b": 2}) == ["a: 1 -> None", "b: None -> 2"]
    check_same_settings(saved, {**saved, "seeds": [5]}, free={"seeds"}, problem="x", fix="y")
    with pytest.raises(RprimError, match=r"^cannot resume \(--eval-start: 4 -> 3\); start over$"):
        check_same_settings({"eval_start": 4}, {"eval_start": 3}, problem="cannot resume",
                            fix="start over", name=lambda k: "--" + k.replace("_", "-"))
    with pytest.raises(RprimError) as e:
        check_same_settings({f"k{i}": i for i in range(100)}, {f"k{i}": -i for i in range(100)},
                            problem="p", fix="f")
    assert len(str(e.value)) < 400 and str(e.value).endswith("...); f")
