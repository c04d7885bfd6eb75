"""The pretraining mix: rprim's own ``train`` split, folded into the corpus's training stream.

This is the one module of ``rprim.model_zoo`` that imports ``rprim.primitives`` (the layering
allows it for the mix only). ``--mix varassign:0.05,copying:0.02`` makes 5% and 2% of the
*training* tokens solved primitive problems, so that models of study size learn the in-context
format of the 5-shot suite (the paper pretrains on natural text only; the report says so).

- Names are families (spread evenly over the family's suite tasks that show distinct text,
  e.g. ``varassign``: the 3 formats x depths 0-2) or task names (``varassign-code-d2``).
- Documents hold ``SHOTS + 1`` solved examples of one task joined by ``"\\n\\n"``, exactly as a
  5-shot prompt followed by its answer, with the exemplar form of the target (``psm-calc``
  shows ``-6+9=3`` in its prompts, so its documents do too).
- Examples come only from the ``train`` split of ``rprim.primitives`` (seed ``MIX_SEED``),
  never ``test`` or ``fewshot``: the splits partition the problem space by a hash of each
  problem, so no evaluated query can be in the stream (a test checks the decoded stream).
- The validation slice stays pure corpus (val loss stays comparable across mixes). The mixed
  training stream is the corpus's training region with the documents inserted at document
  boundaries, spread evenly; it is cached like the corpus token file, keyed by the mix spec,
  the corpus and tokenizer hashes, and the split point (seq_len, val_fraction).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rprim.core import RprimError, atomic_file, write_json

FORMAT = "rprim-mix-v1"
SHOTS = 5        # documents are 5-shot prompts with their answer: SHOTS + 1 solved examples
MIX_SEED = 0     # the primitives seed of the mix's examples (train split)
SPLIT = "train"


@dataclass(frozen=True)
class MixEntry:
    """One task of the mix and its share of the training tokens."""

    task: str
    fraction: float
    source: str  # the name the user wrote (a family or this task)


def _family_tasks(family: str) -> list[str]:
    """The family's suite tasks, minus those whose documents would repeat an earlier one's
    (``psm-calc`` scores a shorter target but shows the same solved examples as ``psm``)."""
    import rprim.primitives as P

    tasks, seen = [], set()
    for name in P.suite_names():
        if P.resolve(name)[0] != family:
            continue
        first = tuple(_solved(P.get(name), 2))
        if first not in seen:
            seen.add(first)
            tasks.append(name)
    return tasks or [family]


def parse_mix(spec: str | None) -> list[MixEntry]:
    """``"varassign:0.05,copying:0.02"`` -> entries per task; RprimError in one line otherwise."""
    if spec is None or not spec.strip():
        return []
    import rprim.primitives as P

    hint = "write NAME:FRACTION pairs such as --mix varassign:0.05,copying:0.02"
    entries: list[MixEntry] = []
    total = 0.0
    for item in spec.split(","):
        name, sep, value = item.strip().partition(":")
        name = name.strip()
        try:
            frac = float(value)
        except ValueError:
            frac = float("nan")
        if not sep or not name or not math.isfinite(frac):
            raise RprimError(f"--mix {item.strip()!r} is not NAME:FRACTION; {hint}")
        if not 0.0 < frac < 1.0:
            raise RprimError(f"--mix {name}:{value.strip()}: the fraction must be in (0, 1), a share of the "
                             "training tokens (0.05 = 5%)")
        try:
            family, _ = P.resolve(name)
        except RprimError as e:
            raise RprimError(f"--mix: {e}") from None
        tasks = _family_tasks(name) if name == family and name in P.families() else [name]
        entries += [MixEntry(t, frac / len(tasks), name) for t in tasks]
        total += frac
    names = [e.task for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RprimError(f"--mix names {', '.join(dup)} twice (a family includes its tasks); name each once")
    if total >= 1.0:
        raise RprimError(f"--mix fractions add up to {total:g}; they must stay below 1 (the rest is the corpus)")
    return entries


def _solved(task: Any, n: int) -> list[str]:
    """The first ``n`` distinct solved examples of the train split, each ``query target`` in
    the exemplar form a k-shot prompt shows (the same path ``Primitive.exemplars`` takes for
    the fewshot split)."""
    texts: list[str] = []
    for _, cols, rows in task._iter_unique(SPLIT, MIX_SEED, n, True, None):
        texts += [task.exemplar_text(cols["query"][r], cols["exemplar_target"][r]) for r in rows]
    return texts


def _documents(task_name: str, target_tokens: int, tokenizer) -> tuple[list[np.ndarray], int]:
    """Token arrays (eos-terminated) of documents of ``task_name`` until ``target_tokens`` are
    reached; and the number of examples they hold."""
    import rprim.primitives as P

    from rprim.primitives import FEWSHOT_DELIMITER

    task = P.get(task_name)
    eos = tokenizer.eos_token_id
    backend = tokenizer.backend_tokenizer
    per_doc = SHOTS + 1
    n = per_doc * 8
    while True:
        texts = _solved(task, n)
        docs = [FEWSHOT_DELIMITER.join(texts[i:i + per_doc]) for i in range(0, len(texts) - per_doc + 1, per_doc)]
        out, total = [], 0
        for enc in backend.encode_batch(docs, add_special_tokens=False):
            ids = np.asarray(enc.ids + [eos], dtype=np.int64)
            if out and total + len(ids) / 2 > target_tokens:  # nearest whole number of documents, >= 1
                return out, len(out) * per_doc
            out.append(ids)
            total += len(ids)
        per_token = max(1.0, total / max(1, len(out) * per_doc))  # tokens per example so far
        n = max(2 * n, int(target_tokens / per_token * 1.1) + per_doc)


def _positions(counts: list[int]) -> list[tuple[float, int, int]]:
    """Evenly spread positions in [0, 1) for every document: (position, task, doc index)."""
    return sorted(((i + 0.5) / c, t, i) for t, c in enumerate(counts) for i in range(c))


def mix_key(spec_entries: list[MixEntry], corpus_hash: str, tok_hash: str, seq_len: int,
            val_fraction: float) -> str:
    from rprim.primitives import GENERATOR_VERSION

    canon = json.dumps([[e.task, e.fraction] for e in spec_entries])
    text = f"{FORMAT}|{GENERATOR_VERSION}|{MIX_SEED}|{canon}|{corpus_hash}|{tok_hash}|{seq_len}|{val_fraction!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class MixFile:
    """The mixed training stream on disk and its manifest."""

    path: Path
    manifest: dict

    def array(self) -> np.ndarray:
        return np.memmap(self.path, dtype=self.manifest["dtype"], mode="r", shape=(int(self.manifest["n_tokens"]),))

    def summary(self) -> dict[str, Any]:
        """What training_summary.json records about the mix."""
        m = self.manifest
        return {k: m[k] for k in ("spec", "split", "seed", "shots", "tasks", "mix_tokens",
                                  "corpus_train_tokens", "n_tokens", "fraction")}


def build_mix_file(corpus_train: np.ndarray, entries: list[MixEntry], spec: str, tokenizer,
                   path: Path, dtype: str) -> MixFile:
    """Write the corpus's training region with the mix documents inserted (atomic)."""
    eos = tokenizer.eos_token_id
    n_corpus = len(corpus_train)
    want = n_corpus / (1.0 - sum(e.fraction for e in entries))  # tokens of the whole stream
    docs, stats = [], {}
    for e in entries:
        d, examples = _documents(e.task, math.ceil(e.fraction * want), tokenizer)
        docs.append(d)
        stats[e.task] = {"from": e.source, "fraction_asked": e.fraction, "documents": len(d),
                         "examples": examples, "tokens": int(sum(len(x) for x in d))}
    boundaries = np.concatenate([[0], np.flatnonzero(np.asarray(corpus_train) == eos) + 1, [n_corpus]])
    order = _positions([len(d) for d in docs])
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with atomic_file(path, "wb") as fh:
        done = 0  # corpus tokens written so far
        for pos, t, i in order:
            cut = int(boundaries[min(len(boundaries) - 1, np.searchsorted(boundaries, pos * n_corpus))])
            if cut > done:
                fh.write(np.asarray(corpus_train[done:cut], dtype=dtype).tobytes())
                written += cut - done
                done = cut
            fh.write(docs[t][i].astype(dtype).tobytes())
            written += len(docs[t][i])
        fh.write(np.asarray(corpus_train[done:], dtype=dtype).tobytes())
        written += n_corpus - done
    mix_tokens = sum(s["tokens"] for s in stats.values())
    for s in stats.values():
        s["fraction"] = s["tokens"] / written
    manifest = {"format": FORMAT, "spec": spec, "split": SPLIT, "seed": MIX_SEED, "shots": SHOTS,
                "tasks": stats, "mix_tokens": mix_tokens, "corpus_train_tokens": n_corpus,
                "n_tokens": written, "fraction": mix_tokens / written, "dtype": dtype}
    write_json(path.with_name(path.name + ".json"), manifest)
    return MixFile(path, manifest)


def cached_mix_file(spec: str, corpus_train: np.ndarray, tokenizer, corpus_hash: str, tok_hash: str,
                    seq_len: int, val_fraction: float, cache_dir: Path) -> MixFile:
    """The mixed training stream for (mix, corpus, tokenizer, split point), built on first use."""
    entries = parse_mix(spec)
    key = mix_key(entries, corpus_hash, tok_hash, seq_len, val_fraction)
    path = cache_dir / "tokens" / f"mix-{key}.bin"
    mpath = path.with_name(path.name + ".json")
    if path.exists() and mpath.exists():
        man = json.loads(mpath.read_text())
        if path.stat().st_size == man["n_tokens"] * np.dtype(man["dtype"]).itemsize:
            return MixFile(path, man)
    return build_mix_file(corpus_train, entries, spec, tokenizer, path, str(corpus_train.dtype))
