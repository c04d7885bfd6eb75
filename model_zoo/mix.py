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
- Loss (``mix_loss``): ``answers`` (default) trains on the answers of the primitive documents
  only (each example's target delimiter, target and the token that ends it), as the recall
  and k-hop literature does; the rest of a document (names, values, instructions) is context
  with no loss. ``all`` trains on every token, as the corpus. The choice is a byte mask beside
  the token file (1 = in the loss), so token files, checkpoints and resume carry it.
- The validation slice stays pure corpus (val loss stays comparable across mixes). The mixed
  training stream is the corpus's training region with the documents inserted at document
  boundaries, spread evenly; it is cached like the corpus token file, keyed by the mix spec,
  the corpus and tokenizer hashes, and the split point (seq_len, val_fraction).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rprim.core import RprimError, atomic_file, write_json

FORMAT = "rprim-mix-v2"
LOSSES = ("answers", "all")  # mix_loss: what of a primitive document is trained on
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


def _solved_pairs(task: Any, n: int) -> list[tuple[str, str]]:
    """The first ``n`` distinct solved examples of the train split as (query, target), the
    target in the exemplar form a k-shot prompt shows (the same path ``Primitive.exemplars``
    takes for the fewshot split)."""
    pairs: list[tuple[str, str]] = []
    for _, cols, rows in task._iter_unique(SPLIT, MIX_SEED, n, True, None):
        pairs += [(cols["query"][r], cols["exemplar_target"][r]) for r in rows]
    return pairs


def _solved(task: Any, n: int) -> list[str]:
    """The first ``n`` solved examples of the train split as text (``query target``)."""
    return [task.exemplar_text(q, t) for q, t in _solved_pairs(task, n)]


def _answer_mask(enc: Any, spans: list[tuple[int, int]], length: int) -> np.ndarray:
    """1 for the tokens of each answer span (characters [a, b)) and for the token right after
    each answer (the separator or eos that ends it: the model must learn where an answer
    stops, since evaluation reads up to the first newline); 0 elsewhere."""
    mask = np.zeros(length, dtype=np.uint8)
    offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
    for a, b in spans:
        hit = np.flatnonzero((offsets[:, 0] < b) & (offsets[:, 1] > a))
        if len(hit):
            mask[hit[0]: hit[-1] + 2] = 1  # the answer and its stop token (eos at the latest)
    return mask


def _documents(task_name: str, target_tokens: int, tokenizer,
               loss: str = "all") -> tuple[list[np.ndarray], list[np.ndarray] | None, int]:
    """Token arrays (eos-terminated) of documents of ``task_name`` until ``target_tokens`` are
    reached, their loss masks (None for ``loss="all"``), and the number of examples they hold."""
    import rprim.primitives as P

    from rprim.primitives import FEWSHOT_DELIMITER

    task = P.get(task_name)
    eos = tokenizer.eos_token_id
    backend = tokenizer.backend_tokenizer
    per_doc = SHOTS + 1
    n = per_doc * 8
    while True:
        pairs = _solved_pairs(task, n)
        docs, spans = [], []
        for i in range(0, len(pairs) - per_doc + 1, per_doc):
            texts, where, at = [], [], 0
            for query, target in pairs[i:i + per_doc]:
                text = task.exemplar_text(query, target)
                where.append((at + len(query), at + len(text)))
                texts.append(text)
                at += len(text) + len(FEWSHOT_DELIMITER)
            docs.append(FEWSHOT_DELIMITER.join(texts))
            spans.append(where)
        out, masks, total = [], [], 0
        for enc, where in zip(backend.encode_batch(docs, add_special_tokens=False), spans):
            ids = np.asarray(enc.ids + [eos], dtype=np.int64)
            if out and total + len(ids) / 2 > target_tokens:  # nearest whole number of documents, >= 1
                return out, (masks if loss == "answers" else None), len(out) * per_doc
            out.append(ids)
            if loss == "answers":
                masks.append(_answer_mask(enc, where, len(ids)))
            total += len(ids)
        per_token = max(1.0, total / max(1, len(out) * per_doc))  # tokens per example so far
        n = max(2 * n, int(target_tokens / per_token * 1.1) + per_doc)


def _positions(counts: list[int]) -> list[tuple[float, int, int]]:
    """Evenly spread positions in [0, 1) for every document: (position, task, doc index)."""
    return sorted(((i + 0.5) / c, t, i) for t, c in enumerate(counts) for i in range(c))


def mix_key(spec_entries: list[MixEntry], corpus_hash: str, tok_hash: str, seq_len: int,
            val_fraction: float, loss: str = "all") -> str:
    from rprim.primitives import GENERATOR_VERSION

    canon = json.dumps([[e.task, e.fraction] for e in spec_entries])
    text = (f"{FORMAT}|{GENERATOR_VERSION}|{MIX_SEED}|{canon}|{corpus_hash}|{tok_hash}|{seq_len}|"
            f"{val_fraction!r}|{loss}")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mask_path(path: Path) -> Path:
    """The loss mask beside a mixed token file: one byte per token, 1 = in the loss."""
    return path.with_name(path.stem + ".mask")


@dataclass
class MixFile:
    """The mixed training stream on disk, its loss mask (``mix_loss=answers``) and manifest."""

    path: Path
    manifest: dict

    def array(self) -> np.ndarray:
        return np.memmap(self.path, dtype=self.manifest["dtype"], mode="r", shape=(int(self.manifest["n_tokens"]),))

    def mask(self) -> np.ndarray | None:
        """uint8 per token (1 = trained on), or None when every token is (``mix_loss=all``)."""
        if self.manifest.get("loss", "all") == "all":
            return None
        return np.memmap(mask_path(self.path), dtype=np.uint8, mode="r", shape=(int(self.manifest["n_tokens"]),))

    def summary(self) -> dict[str, Any]:
        """What training_summary.json records about the mix."""
        m = self.manifest
        return {k: m.get(k) for k in ("spec", "split", "seed", "shots", "tasks", "mix_tokens",
                                      "corpus_train_tokens", "n_tokens", "fraction", "loss", "loss_tokens")}


def build_mix_file(corpus_train: np.ndarray, entries: list[MixEntry], spec: str, tokenizer,
                   path: Path, dtype: str, loss: str = "all") -> MixFile:
    """Write the corpus's training region with the mix documents inserted, and its loss mask
    when ``loss="answers"`` (both atomic; the manifest, written last, marks them complete)."""
    eos = tokenizer.eos_token_id
    n_corpus = len(corpus_train)
    want = n_corpus / (1.0 - sum(e.fraction for e in entries))  # tokens of the whole stream
    docs, masks, stats = [], [], {}
    for e in entries:
        d, m, examples = _documents(e.task, math.ceil(e.fraction * want), tokenizer, loss)
        docs.append(d)
        masks.append(m)
        stats[e.task] = {"from": e.source, "fraction_asked": e.fraction, "documents": len(d),
                         "examples": examples, "tokens": int(sum(len(x) for x in d))}
    boundaries = np.concatenate([[0], np.flatnonzero(np.asarray(corpus_train) == eos) + 1, [n_corpus]])
    order = _positions([len(d) for d in docs])
    path.parent.mkdir(parents=True, exist_ok=True)
    written, loss_tokens = 0, 0
    with atomic_file(path, "wb") as fh, \
            (atomic_file(mask_path(path), "wb") if loss == "answers" else contextlib.nullcontext()) as mh:
        done = 0  # corpus tokens written so far

        def corpus_until(cut: int) -> None:
            nonlocal done, written, loss_tokens
            if cut > done:
                fh.write(np.asarray(corpus_train[done:cut], dtype=dtype).tobytes())
                if mh is not None:
                    mh.write(np.ones(cut - done, dtype=np.uint8).tobytes())
                loss_tokens += cut - done
                written += cut - done
                done = cut

        for pos, t, i in order:
            corpus_until(int(boundaries[min(len(boundaries) - 1, np.searchsorted(boundaries, pos * n_corpus))]))
            fh.write(docs[t][i].astype(dtype).tobytes())
            if mh is not None:
                mh.write(masks[t][i].tobytes())
                loss_tokens += int(masks[t][i].sum())
            else:
                loss_tokens += len(docs[t][i])
            written += len(docs[t][i])
        corpus_until(n_corpus)
    mix_tokens = sum(s["tokens"] for s in stats.values())
    for s in stats.values():
        s["fraction"] = s["tokens"] / written
    manifest = {"format": FORMAT, "spec": spec, "split": SPLIT, "seed": MIX_SEED, "shots": SHOTS,
                "tasks": stats, "mix_tokens": mix_tokens, "corpus_train_tokens": n_corpus,
                "n_tokens": written, "fraction": mix_tokens / written, "dtype": dtype,
                "loss": loss, "loss_tokens": loss_tokens}
    write_json(path.with_name(path.name + ".json"), manifest)
    return MixFile(path, manifest)


def cached_mix_file(spec: str, corpus_train: np.ndarray, tokenizer, corpus_hash: str, tok_hash: str,
                    seq_len: int, val_fraction: float, cache_dir: Path, loss: str = "all") -> MixFile:
    """The mixed training stream for (mix, loss, corpus, tokenizer, split point), built on first use."""
    entries = parse_mix(spec)
    key = mix_key(entries, corpus_hash, tok_hash, seq_len, val_fraction, loss)
    path = cache_dir / "tokens" / f"mix-{key}.bin"
    mpath = path.with_name(path.name + ".json")
    if path.exists() and mpath.exists():
        try:
            man = json.loads(mpath.read_text())
            size = man["n_tokens"] * np.dtype(man["dtype"]).itemsize
            ok = path.stat().st_size == size and (man.get("loss", "all") == "all"
                                                 or mask_path(path).stat().st_size == man["n_tokens"])
        except (OSError, ValueError, KeyError, TypeError):
            ok = False  # a damaged cache entry is rebuilt
        if ok:
            return MixFile(path, man)
    return build_mix_file(corpus_train, entries, spec, tokenizer, path, str(corpus_train.dtype), loss)
