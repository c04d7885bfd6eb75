"""Tokenizer, token file cache, packing and the resumable sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from rprim.model_zoo.corpora import resolve_corpus  # noqa: E402
from rprim.model_zoo.data import PackedTokens, Sampler, cached_token_file  # noqa: E402
from rprim.core import RprimError  # noqa: E402
from rprim.model_zoo.tokenizer import cached_bpe, tokenizer_hash, train_bpe  # noqa: E402

DOCS = [f"def f{i}(x):\n    return x * {i * 37} + {i}\n\n# line {i}\n" for i in range(300)]


@pytest.fixture(scope="module")
def tok():
    return train_bpe(iter(DOCS), 300)


def test_digits_split_and_roundtrip(tok):
    text = "x = 12345\nprint(x)\n"
    ids = tok.encode(text, add_special_tokens=False)
    pieces = [tok.decode([i]) for i in ids]
    assert [p for p in pieces if p.strip().isdigit()] == ["1", "2", "3", "4", "5"]
    assert any("\n" in p for p in pieces)
    assert tok.decode(ids) == text
    assert tok.eos_token_id is not None and tok.bos_token_id is not None and tok.pad_token_id is not None


def test_token_file_cached_with_manifest(tmp_path, tok):
    f = tmp_path / "a.txt"
    f.write_text("hello world 42\n" * 200)
    corpus = resolve_corpus([str(f)], tmp_path / "cache", None)
    h = corpus.fingerprint()
    tf = cached_token_file(corpus.documents, tok, h, tokenizer_hash(tok), tmp_path / "cache")
    man = json.loads(tf.path.with_name(tf.path.name + ".json").read_text())
    assert man["corpus_hash"] == h and man["tokenizer_hash"] == tokenizer_hash(tok)
    assert man["dtype"] == "uint16" and tf.path.stat().st_size == 2 * man["n_tokens"]
    arr = tf.array()
    assert arr[-1] == tok.eos_token_id
    mtime = tf.path.stat().st_mtime_ns
    again = cached_token_file(lambda: pytest.fail("re-tokenized"), tok, h, tokenizer_hash(tok), tmp_path / "cache")
    assert again.path == tf.path and tf.path.stat().st_mtime_ns == mtime
    f.write_text("changed\n" * 200)
    assert resolve_corpus([str(f)], tmp_path / "cache", None).fingerprint() != h


def test_bpe_cache_reuses_tokenizer(tmp_path):
    a = cached_bpe(lambda: iter(DOCS), "h1", 300, tmp_path)
    b = cached_bpe(lambda: pytest.fail("retrained"), "h1", 300, tmp_path)
    assert tokenizer_hash(a) == tokenizer_hash(b)


def test_packing_and_split():
    tokens = np.arange(1001, dtype=np.uint16)
    p = PackedTokens(tokens, 10, 0.1)
    assert (p.n_train, p.n_val) == (90, 10)
    w = p.train_windows([0, 89])
    assert w.shape == (2, 11) and w[0, 0] == 0 and w[0, -1] == 10 and w[1, 0] == 890
    v = p.val_windows(0, 10)
    assert int(v[0, 0]) == 900 and int(v[:, 0].max()) == 990
    with pytest.raises(RprimError, match="seq_len"):
        PackedTokens(np.arange(15, dtype=np.uint16), 10, 0.1)


def test_sampler_state_resumes_exactly():
    ref = Sampler(37, seed=3)
    seq = [ref.take(8) for _ in range(12)]  # crosses epochs
    s = Sampler(37, seed=3)
    for _ in range(5):
        s.take(8)
    state = s.state_dict()
    r = Sampler(37, seed=3)
    r.load_state_dict(state)
    assert [r.take(8) for _ in range(7)] == seq[5:]
    flat = [i for b in seq for i in b]
    assert sorted(flat[:37]) == list(range(37))  # first epoch is a permutation
    assert flat[:37] != list(range(37))
    assert Sampler(37, seed=4).take(8) != seq[0]
    with pytest.raises(RprimError):
        Sampler(36, seed=3).load_state_dict(state)


def test_corpus_errors(tmp_path):
    with pytest.raises(RprimError, match="--corpus"):
        resolve_corpus([str(tmp_path / "missing")], tmp_path, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RprimError, match="--corpus"):
        resolve_corpus([str(tmp_path / "empty")], tmp_path, None)
    j = tmp_path / "d.jsonl"
    j.write_text('{"text": "a b c"}\n{"text": "d e"}\n')
    assert list(resolve_corpus([str(j)], tmp_path, None).documents()) == ["a b c", "d e"]
    j.write_text('{"body": "a"}\n')
    with pytest.raises(RprimError, match="text"):
        list(resolve_corpus([str(j)], tmp_path, None).documents())


def test_parquet_corpus(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["one", "two"], "n": [1, 2]}), tmp_path / "d.parquet")
    assert list(resolve_corpus([str(tmp_path)], tmp_path, None).documents()) == ["one", "two"]


def test_stdlib_corpus_is_sorted_and_capped(tmp_path):
    c = resolve_corpus(["stdlib-python"], tmp_path, 50_000)
    rels = [r for _, r in c.files]
    assert rels == sorted(rels) and all(r.endswith(".py") for r in rels)
    assert not any("site-packages" in r for r in rels)
    docs = list(c.documents())
    assert 50_000 <= sum(len(d.encode()) for d in docs) < 50_000 + max(len(d.encode()) for d in docs) + 1
