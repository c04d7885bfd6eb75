"""The pretraining mix (rprim's train split in the training stream) and HF snapshots."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

import rprim.primitives as P  # noqa: E402
from rprim.core import RprimError  # noqa: E402
from rprim.model_zoo.data import PackedTokens  # noqa: E402
from rprim.model_zoo.mix import _solved_pairs, cached_mix_file, parse_mix  # noqa: E402
from rprim.model_zoo.tokenizer import tokenizer_hash, train_bpe  # noqa: E402

DOCS = [f"def f{i}(x):\n    y = x * {i * 37} + {i}\n    return y\n" for i in range(400)]
VARASSIGN = [f"varassign-{f}-d{d}" for f in ("basic", "math", "code") for d in (0, 1, 2)]


@pytest.fixture(scope="module")
def tok():
    return train_bpe(iter(DOCS + ["Fill in blank:\nx=1\nx=___. -> 1"] * 20), 400)


@pytest.fixture(scope="module")
def corpus(tok) -> np.ndarray:
    eos = tok.eos_token_id
    ids = [i for d in DOCS for i in tok.encode(d, add_special_tokens=False) + [eos]]
    return np.asarray(ids, dtype=np.uint16)


def test_parse_mix_families_and_tasks():
    entries = parse_mix("varassign:0.09,copying-words:0.02")
    assert [e.task for e in entries] == VARASSIGN + ["copying-words"]
    assert sum(e.fraction for e in entries) == pytest.approx(0.11)
    assert all(e.source == "varassign" for e in entries[:9])
    # psm-calc shows the same solved examples as psm: the family spreads over psm only
    assert [e.task for e in parse_mix("psm:0.1")] == ["psm"]
    assert parse_mix(None) == [] and parse_mix("") == []


@pytest.mark.parametrize("spec,needle", [
    ("varasign:0.05", "did you mean"),
    ("varassign:0", "(0, 1)"),
    ("varassign:1.5", "(0, 1)"),
    ("varassign:-0.1", "(0, 1)"),
    ("varassign:abc", "NAME:FRACTION"),
    ("varassign", "NAME:FRACTION"),
    ("varassign:0.6,copying:0.5", "below 1"),
    ("varassign:0.1,varassign-code-d0:0.1", "twice"),
])
def test_parse_mix_errors(spec, needle):
    with pytest.raises(RprimError, match=None) as e:
        parse_mix(spec)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and "--mix" in msg


def _stream(tmp_path: Path, tok, corpus: np.ndarray, spec: str, seq_len: int = 32):
    data = PackedTokens(corpus, seq_len, 0.1)
    mf = cached_mix_file(spec, data.corpus_train, tok, "corpus-h", tokenizer_hash(tok), seq_len, 0.1, tmp_path)
    return data, mf


def test_mix_uses_only_the_train_split(tmp_path, tok, corpus):
    """No test or fewshot query of a mixed task is anywhere in the decoded token stream; train
    queries are (positive control); the validation windows are pure corpus."""
    spec = "varassign:0.2,copying:0.1"
    data, mf = _stream(tmp_path, tok, corpus, spec)
    text = tok.decode(mf.array().tolist())
    for name in VARASSIGN + ["copying-random", "copying-words"]:
        task = P.get(name)
        for split in ("test", "fewshot"):
            for rec in task.generate(150, seed=0, split=split):
                assert rec["query"] not in text, (name, split, rec["query"])
        train = [r["query"] + " " + r["target"] for r in task.generate(6, seed=0, split="train")]
        assert all(q in text for q in train), name
    # in-context format: documents are solved examples joined by a blank line
    assert re.search(r"\n[a-z]=___\. -> \d+\n\nFill in blank:\n", text)
    mixed = PackedTokens(corpus, 32, 0.1, train_tokens=mf.array())
    assert mixed.n_val == data.n_val and np.array_equal(mixed.val_windows(0, data.n_val).numpy(),
                                                        data.val_windows(0, data.n_val).numpy())
    assert mixed.n_train > data.n_train


def test_mix_fractions_summary_and_cache(tmp_path, tok, corpus):
    _, mf = _stream(tmp_path, tok, corpus, "varassign-code-d1:0.1,psm:0.05")
    s = mf.summary()
    assert s["spec"] == "varassign-code-d1:0.1,psm:0.05" and s["split"] == "train"
    assert set(s["tasks"]) == {"varassign-code-d1", "psm"}
    assert s["tasks"]["varassign-code-d1"]["fraction"] == pytest.approx(0.1, abs=0.03)
    assert s["tasks"]["psm"]["fraction"] == pytest.approx(0.05, abs=0.02)
    assert s["n_tokens"] == len(mf.array()) == s["mix_tokens"] + s["corpus_train_tokens"]
    assert s["fraction"] == pytest.approx(s["mix_tokens"] / s["n_tokens"])
    mtime = mf.path.stat().st_mtime_ns
    _, again = _stream(tmp_path, tok, corpus, "varassign-code-d1:0.1,psm:0.05")
    assert again.path == mf.path and mf.path.stat().st_mtime_ns == mtime  # cached
    _, other = _stream(tmp_path, tok, corpus, "varassign-code-d1:0.1")
    assert other.path != mf.path


def test_mix_is_deterministic(tmp_path, tok, corpus):
    _, a = _stream(tmp_path / "a", tok, corpus, "copying:0.1,arithmetic:0.05")
    _, b = _stream(tmp_path / "b", tok, corpus, "copying:0.1,arithmetic:0.05")
    assert a.path.read_bytes() == b.path.read_bytes()


def test_answer_mask_covers_exactly_the_answers_and_their_stop(tmp_path, tok, corpus):
    """mix_loss=answers: decoded, the masked tokens of the mix documents are exactly each
    example's target delimiter + target, then the token that ends it ("\\n\\n" or eos); every
    corpus token stays in the loss."""
    spec = "varassign-basic-d0:0.2,varassign-code-d1:0.1,copying-words:0.1"
    data = PackedTokens(corpus, 32, 0.1)
    mf = cached_mix_file(spec, data.corpus_train, tok, "corpus-h", tokenizer_hash(tok), 32, 0.1, tmp_path,
                         loss="answers")
    ids, mask = np.asarray(mf.array()), np.asarray(mf.mask())
    assert mf.manifest["loss"] == "answers" and mf.manifest["loss_tokens"] == int(mask.sum())
    eos = tok.eos_token_id
    targets = {}
    for name in ("varassign-basic-d0", "varassign-code-d1", "copying-words"):
        for q, t in _solved_pairs(P.get(name), 400):
            targets[q] = t
    # walk the documents: the mix documents are the eos-terminated stretches holding a mask 0
    starts = np.concatenate([[0], np.flatnonzero(ids == eos) + 1])
    seen_docs = 0
    for a, b in zip(starts[:-1], starts[1:]):
        m = mask[a:b]
        if m.all():
            continue  # a corpus document: all in the loss
        seen_docs += 1
        runs, i = [], 0
        while i < len(m):
            if m[i]:
                j = i
                while j < len(m) and m[j]:
                    j += 1
                runs.append((a + i, a + j))
                i = j
            else:
                i += 1
        text = tok.decode(ids[a:b].tolist())
        examples = text.removesuffix(tok.eos_token).split("\n\n")
        assert len(runs) == len(examples) == 6
        for (ra, rb), ex in zip(runs, examples):
            answer = tok.decode(ids[ra:rb - 1].tolist())  # the masked run without its stop token
            stop = tok.decode(ids[rb - 1: rb].tolist())
            query = tok.decode(ids[a:ra].tolist()).split("\n\n")[-1]
            assert query + answer == ex and answer == " " + targets[query]
            assert stop in ("\n\n", "\n", tok.eos_token) or ids[rb - 1] == eos
    assert seen_docs > 10
    # the all-tokens mix has no mask file and another cache entry
    full = cached_mix_file(spec, data.corpus_train, tok, "corpus-h", tokenizer_hash(tok), 32, 0.1, tmp_path)
    assert full.mask() is None and full.path != mf.path
    assert np.array_equal(np.asarray(full.array()), ids)  # the same tokens, only the loss differs


@pytest.mark.parametrize("which", ["plain_loss", "chunked_loss", "fused_loss"])
def test_masked_targets_are_ignored_by_the_loss(which):
    import torch

    from rprim.model_zoo import model as M

    plain_loss = getattr(M, which)

    torch.manual_seed(0)
    h, w = torch.randn(2, 5, 8), torch.randn(11, 8)
    targets = torch.randint(0, 11, (2, 5))
    masked = targets.clone()
    masked[:, :3] = -100
    full = torch.nn.functional.cross_entropy((h[:, 3:] @ w.T).reshape(-1, 11), targets[:, 3:].reshape(-1))
    assert plain_loss(h, w, masked).item() == pytest.approx(full.item(), rel=1e-6)
    none = torch.full_like(targets, -100)
    hh = h.clone().requires_grad_()
    loss = plain_loss(hh, w, none)
    loss.backward()
    assert loss.item() == 0.0 and float(hh.grad.abs().sum()) == 0.0  # never NaN
