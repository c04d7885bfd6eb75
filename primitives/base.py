"""What every primitive shares: keys, split partition, uniqueness, few-shot prompts, records.

A family (copying, varassign, ...) only says how to *sample* one batch of structures as
integer codes, how to *decode* codes to strings, and which template slots and JSON metadata
it fills. Everything that makes the data trustworthy lives here, once:

* Each example's randomness comes from hash(family, structural params, split, seed, index)
  (see ``rng``), never from ``seed + index`` or the global RNG.
* Splits are disjoint *by construction*: the example space is partitioned by a hash of the
  rendered structure, and a split only keeps candidates from its own third (rejected
  candidates are redrawn from the same example's next attempt key). So no query can appear in
  two splits, whatever the seeds.
* Inside a split, repeated queries are skipped (``unique=True``, the default) or kept and
  counted (``unique=False``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import numbers
import re
import sys
import typing
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_str  # the C encoder of json.dumps(str)
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from rprim.core import RprimError, typed_values
from .render import Raw, Skeleton, Slot, TemplateSources, compile_json, compile_template
from .rng import Draws, attempt_keys, derived_keys, example_keys, row_hash, stream_key

GENERATOR_VERSION = "1"
SPLITS = ("test", "fewshot", "train")
FEWSHOT_DELIMITER = "\n\n"
PER_QUERY_POOL = 1000  # fewshot examples that per-query exemplars are drawn from
_PARTITION_SALT = stream_key("rprim-split-partition")
_REST_SALT = stream_key("rprim-rest")
_CHUNK = 1 << 15
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')
_MAX_ATTEMPTS = 256
MAX_VALUE = 10**9         # |low|, |high| of any value range: far beyond any task, safe in int64
MAX_RANGE = 1_000_000     # values in one range: each is kept as a string
FORMAT_SUFFIX = r"(?:-f([A-Za-z][A-Za-z0-9_]*))?"  # "-f<format>" in names of families whose
#                                                    default wording is implied by the name


@dataclass
class GenerationStats:
    """What a generation run skipped: repeated queries within the split."""

    duplicates: int = 0
    scanned: int = 0


class Primitive:
    """Base class of a primitive family. Subclasses set ``family`` and ``Config``."""

    family: ClassVar[str]
    Config: ClassVar[type]
    presentation: ClassVar[tuple[str, ...]] = ("format",)  # knobs that don't change structure
    target_delimiter: ClassVar[str] = " "
    until: ClassVar[tuple[str, ...]] = ("\n",)

    def __init__(self, config: Any = None, **params: Any):
        self.config = _typed_config(self.Config, self.family,
                                    config if config is not None else self.Config(), params)
        self.validate()
        self._query = compile_template(self.family, self.config.format, self.context(),
                                       self.template_sources())
        self._target, self._exemplar_target = self.target_layout()

    # ---- names: each family owns both directions ------------------------------------
    @property
    def name(self) -> str:
        """The canonical task name (as in results and data files); ``parse_name`` inverts it."""
        raise NotImplementedError

    @classmethod
    def parse_name(cls, name: str) -> dict[str, Any] | None:
        """The knobs a task name stands for, or None when the name is not this family's.

        The registry asks every family in turn (plugins included), so a family's names resolve
        wherever task names are accepted. Override it next to ``name``; the default knows the
        family's bare name and the name of its default configuration.
        """
        if name == cls.family:
            return {}
        try:
            return {} if name == cls().name else None
        except RprimError:
            return None

    # ---- templates ----------------------------------------------------------------------
    templates: ClassVar[dict[str, str]] = {}  # format -> jinja2 source, for one-file plugins

    @classmethod
    def template_sources(cls) -> TemplateSources:
        """Where this family's ``<format>.j2`` files live: ``templates/<family>/`` beside the
        module that defines the class (built-ins and plugins alike), plus ``templates``."""
        module = sys.modules.get(cls.__module__)
        file = getattr(module, "__file__", None)
        folder = Path(file).parent / "templates" / cls.family if file else None
        return TemplateSources(folder, dict(cls.templates))

    # ---- what a family provides -------------------------------------------------------
    def validate(self) -> None:
        """Raise RprimError for impossible configurations."""

    def context(self) -> dict[str, Any]:
        """The template context, with Slot placeholders for per-example values."""
        raise NotImplementedError

    def metadata_layout(self) -> Any:
        """The record's ``metadata`` as a JSON layout of Slot/Raw placeholders."""
        raise NotImplementedError

    def target_layout(self) -> tuple[Skeleton, Skeleton]:
        """(scored target, target shown in few-shot exemplars); usually the same."""
        t = Skeleton("%s", ("answer",))
        return t, t

    def sample(self, draws: Draws) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Draw structures (or their head, see ``sample_rest``) as integer codes.

        Returns ({slot: (rows,) ints}, valid_rows). The codes must be a function of the
        rendered text, so that equal queries get equal codes and land in the same split.
        """
        raise NotImplementedError

    def sample_rest(self, draws: Draws, head: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Draw the rest of each structure given its head (optional; default: nothing).

        Splitting a structure this way keeps split rejection cheap: only the head is redrawn.
        The head must still be a function of the rendered text.
        """
        return {}, np.ones(len(draws.keys), dtype=bool)

    def decode(self, codes: dict[str, np.ndarray]) -> dict[str, list[str]]:
        """Turn codes into the string columns the skeletons read."""
        raise NotImplementedError

    def space(self) -> tuple[int, int] | None:
        """(distinct heads, distinct rests per head) of the problem space, or None if unknown.

        A head (``sample``) decides the split; every head has the same number of rests
        (``sample_rest``), and distinct codes render to distinct queries. So a split holds
        (heads in the split) x rests distinct queries, which ``capacity`` bounds.
        """
        return None

    # ---- derived ----------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @property
    def structural_params(self) -> dict[str, Any]:
        """Params that define the problems; formats of one family share the same problems."""
        return {k: v for k, v in self.params.items() if k not in self.presentation}

    @property
    def chance(self) -> float | None:
        """Accuracy of guessing among the plausible answers, where that is defined."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # ---- generation -------------------------------------------------------------------
    def _columns(self, split: str, seed: int, start: int, stop: int) -> dict[str, list[str]]:
        """String columns (slots, query, target, ...) for indices [start, stop) of a split.

        The *head* of each example (``sample``) decides its split and is redrawn until it
        falls in this split's third of the space; the rest (``sample_rest``) is drawn once
        from a separate stream of the same key.
        """
        split_id = np.uint64(_split_id(split))
        base = stream_key("rprim", self.family, self.structural_params, split, int(seed))
        keys = example_keys(base, np.arange(start, stop, dtype=np.uint64))

        def in_split(codes: dict[str, np.ndarray]) -> np.ndarray:
            stacked = np.stack([codes[k] for k in sorted(codes)], axis=1)
            return row_hash(stacked, _PARTITION_SALT) % np.uint64(3) == split_id

        head = _rejection(keys, lambda d, rows: self.sample(d), in_split, self.name)
        rest = _rejection(derived_keys(keys, _REST_SALT),
                          lambda d, rows: self.sample_rest(d, {k: v[rows] for k, v in head.items()}),
                          None, self.name)
        cols = self.decode({**head, **rest})
        for slot, values in cols.items():
            if _NEEDS_ESCAPE.search("".join(values)):
                raise RprimError(f"{self.name}: values of slot {slot!r} contain quotes, backslashes "
                                 "or control characters; slot values are written into JSON as they are")
        cols["query"] = self._query.fill(cols)
        cols["target"] = self._target.fill(cols)
        cols["exemplar_target"] = (cols["target"] if self._exemplar_target is self._target
                                   else self._exemplar_target.fill(cols))
        return cols

    def capacity(self, split: str) -> int | None:
        """A safe upper bound on the distinct queries one split holds (None: unknown).

        A head lands in a split by a 64-bit hash, so a split holds about a third of the heads;
        seven standard deviations above that third is never exceeded in practice (p < 1e-11).
        For tiny spaces that bound exceeds the whole space, which is then the bound.
        """
        _split_id(split)
        space = self.space()
        if space is None:
            return None
        heads, rests = space
        third = heads // 3 + 7 * math.isqrt(2 * heads // 9 + 1) + 2
        return min(heads, third) * rests

    def check_count(self, n: int, split: str = "test", unique: bool = True) -> None:
        """RprimError unless n examples can be drawn from the split (n > 0; with ``unique``,
        no more than the split's distinct queries), before any work starts."""
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n <= 0:
            raise RprimError(f"n must be a positive number of examples (got {n!r}); pass --n 1 or more")
        cap = self.capacity(split) if unique else None
        if cap is not None and n > cap:
            raise RprimError(f"{self.name} has too few distinct queries for {n:,} unique examples: "
                             f"its {split} split holds at most {cap:,}; ask for fewer, widen the "
                             "task's ranges, or allow duplicates (--allow-duplicates)")

    def _iter_unique(self, split: str, seed: int, n: int, unique: bool,
                     stats: GenerationStats | None) -> Iterator[tuple[int, dict[str, list[str]], list[int]]]:
        """Yield (first index, columns, kept row numbers) chunk by chunk until n are kept."""
        self.check_count(n, split, unique)
        seen: set[str] = set()
        kept_total, start = 0, 0
        limit = 20 * n + 100_000
        while kept_total < n:
            if start >= limit:
                raise RprimError(f"{self.name} has too few distinct queries for {n} unique "
                                 f"examples (found {kept_total}); lower --n, widen the task's "
                                 "ranges, or pass --allow-duplicates")
            size = min(_CHUNK, max(64, (n - kept_total) * 11 // 10))
            cols = self._columns(split, seed, start, start + size)
            rows: list[int] = []
            for r, q in enumerate(cols["query"]):
                if kept_total + len(rows) == n:
                    break
                if stats is not None:
                    stats.scanned += 1
                if q in seen:
                    if stats is not None:
                        stats.duplicates += 1
                    if unique:
                        continue
                seen.add(q)
                rows.append(r)
            kept_total += len(rows)
            yield start, cols, rows
            start += size

    def exemplars(self, seed: int = 0, k: int = 5) -> list[tuple[str, str]]:
        """The fixed few-shot exemplar set for (task, seed): first k fewshot-split examples."""
        pairs: list[tuple[str, str]] = []
        if k <= 0:
            return pairs
        for _, cols, rows in self._iter_unique("fewshot", seed, k, True, None):
            pairs += [(cols["query"][r], cols["exemplar_target"][r]) for r in rows]
        return pairs

    def exemplar_text(self, query: str, target: str) -> str:
        return query + self.target_delimiter + target

    def fewshot_prefix(self, seed: int = 0, k: int = 5) -> str:
        """The shared k-shot prefix: k solved exemplars, each followed by the delimiter."""
        return "".join(self.exemplar_text(q, t) + FEWSHOT_DELIMITER for q, t in self.exemplars(seed, k))

    def iter_lines(self, n: int, seed: int = 0, split: str = "test", shots: int = 0,
                   unique: bool = True, per_query_shots: bool = False,
                   stats: GenerationStats | None = None) -> Iterator[str]:
        """JSONL lines (without newline) of n examples."""
        return itertools.chain.from_iterable(
            self.iter_chunks(n, seed, split, shots, unique, per_query_shots, stats))

    def iter_chunks(self, n: int, seed: int = 0, split: str = "test", shots: int = 0,
                    unique: bool = True, per_query_shots: bool = False,
                    stats: GenerationStats | None = None) -> Iterator[list[str]]:
        """Lists of JSONL lines (without newline), n in all: the fast path behind everything.

        The arguments are checked when this is called, not on the first chunk, so a caller
        learns of a bad request before it opens any output.
        """
        _split_id(split)
        if not isinstance(shots, numbers.Integral) or isinstance(shots, bool) or shots < 0:
            raise RprimError(f"shots must be >= 0 (got {shots!r})")
        self.check_count(n, split, unique)
        prefix = self.fewshot_prefix(seed, shots) if shots and not per_query_shots else ""
        pool = self._pool(seed, shots) if shots and per_query_shots else None
        return self._chunks(n, seed, split, shots, unique, prefix, pool, stats)

    def _chunks(self, n: int, seed: int, split: str, shots: int, unique: bool, prefix: str,
                pool: list[str] | None, stats: GenerationStats | None) -> Iterator[list[str]]:
        layout = {
            "id": f"{self.name}/{split}/{int(seed)}/" + Slot("_index"), "task": self.name, "split": split, "seed": int(seed),
            "index": Raw("_index"), "num_fewshot": int(shots), "params": self.params,
            "query": Raw("_jquery"), "prompt": Raw("_jprompt"), "target": Slot("target"),
            "target_delimiter": self.target_delimiter, "until": list(self.until),
            "metadata": self.metadata_layout(), "hash": Slot("_hash"),
            "generator_version": GENERATOR_VERSION,
        }
        record = compile_json(layout)
        for start, cols, rows in self._iter_unique(split, seed, n, unique, stats):
            idx = [start + r for r in rows]
            if len(rows) < len(cols["query"]):
                cols = {k: [v[r] for r in rows] for k, v in cols.items()}
            q, t = cols["query"], cols["target"]
            jq = list(map(_json_str, q))
            if pool is not None:
                prefixes = self._per_query_prefixes(pool, shots, seed, split, idx)
                prompts = [p + x for p, x in zip(prefixes, q)]
                jp = list(map(_json_str, prompts))
            elif prefix:
                jp = [_json_str(prefix + x) for x in q]
            else:
                jp = jq
            cols.update({
                "_index": list(map(str, idx)), "_jquery": jq, "_jprompt": jp,
                "_hash": [content_hash(a, b) for a, b in zip(q, t)],
            })
            yield record.fill(cols)

    def generate(self, n: int, seed: int = 0, split: str = "test", shots: int = 0,
                 unique: bool = True, per_query_shots: bool = False) -> list[dict[str, Any]]:
        """n records as dicts (exactly the JSON objects ``rprim generate`` writes)."""
        return [json.loads(line) for line in
                self.iter_lines(n, seed, split, shots, unique, per_query_shots)]

    # ---- per-query exemplars -----------------------------------------------------------
    def _pool(self, seed: int, shots: int) -> list[str]:
        size = max(PER_QUERY_POOL, 4 * shots)
        cap = self.capacity("fewshot")
        size = max(shots, min(size, cap)) if cap is not None else size
        texts: list[str] = []
        for _, cols, rows in self._iter_unique("fewshot", seed, size, True, None):
            texts += [self.exemplar_text(cols["query"][r], cols["exemplar_target"][r]) for r in rows]
        return texts

    def _per_query_prefixes(self, pool: list[str], k: int, seed: int, split: str,
                            indices: list[int]) -> list[str]:
        """k distinct pool exemplars per query, drawn from a stream keyed by the query's index."""
        base = stream_key("rprim-fewshot-choice", self.family, self.params, split, int(seed))
        keys = example_keys(base, np.asarray(indices, dtype=np.uint64))

        def draw(d: Draws, rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
            vals, ok = d.distinct(k, len(pool))
            return {"choice": vals}, ok

        choice = _rejection(keys, draw, None, self.name)["choice"]
        return ["".join(pool[j] + FEWSHOT_DELIMITER for j in row) for row in choice.tolist()]


def _is_simple(tp: Any) -> bool:
    """Whether knobs of this annotated type are typed here (int, float, bool, str, optional)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) else [tp]
    return bool(args) and all(a in (int, float, bool, str) for a in args)


def _typed_config(cls: type, family: str, config: Any, params: dict[str, Any]) -> Any:
    """``config`` with ``params`` applied, each knob of a simple type checked against its field
    (``n="abc"``, ``n=12.5``, ``calc="maybe"`` are one-line errors, never a TypeError later)."""
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    bad = sorted(set(params) - set(names))
    if bad:
        raise RprimError(f"{family} has no knob {', '.join(bad)}; its knobs are {', '.join(names)}")
    values = {name: getattr(config, name) for name in names}
    values.update(params)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a plugin's annotations that do not resolve: leave its knobs as they are
        hints = {}
    simple = {k: v for k, v in values.items() if _is_simple(hints.get(k))}
    values.update(typed_values(cls, simple, "knob"))
    return dataclasses.replace(config, **values)


def _rejection(keys: np.ndarray, sample: Callable[[Draws, np.ndarray], tuple[dict[str, np.ndarray], np.ndarray]],
               accept: Callable[[dict[str, np.ndarray]], np.ndarray] | None, name: str) -> dict[str, np.ndarray]:
    """Draw codes for every key, redrawing rejected rows from their next attempt key."""
    n = len(keys)
    out: dict[str, np.ndarray] = {}
    pending = np.arange(n)
    for attempt in range(_MAX_ATTEMPTS):
        codes, ok = sample(Draws(attempt_keys(keys[pending], attempt)), pending)
        if accept is not None:
            ok = ok & accept(codes)
        for k, v in codes.items():
            out.setdefault(k, np.zeros((n, *v.shape[1:]), dtype=np.int64))[pending[ok]] = v[ok]
        pending = pending[~ok]
        if not len(pending):
            return out
    raise RprimError(f"{name}: could not draw valid examples; widen the value or name range")


def check_range(task: str, low: int, high: int, most: int = MAX_RANGE, least: int | None = None) -> None:
    """RprimError unless low..high is a usable value range (bounded, so nothing blows up)."""
    if least is not None and low < least:
        raise RprimError(f"{task} needs low >= {least} (got low={low})")
    if low > high:
        raise RprimError(f"{task} needs low <= high (got {low}..{high})")
    if max(abs(low), abs(high)) > MAX_VALUE:
        raise RprimError(f"{task} values must lie within -{MAX_VALUE:,}..{MAX_VALUE:,} "
                         f"(got {low}..{high}); pick a smaller range")
    if high - low + 1 > most:
        raise RprimError(f"{task} value range {low}..{high} holds {high - low + 1:,} values; "
                         f"rprim supports up to {most:,}; pick a smaller range")


def format_suffix(fmt: str, default: str) -> str:
    """``-f<format>`` for a non-default wording, so user formats never borrow a built-in name."""
    return "" if fmt == default else f"-f{fmt}"


def content_hash(query: str, target: str) -> str:
    """16 hex digits of BLAKE2b over query and target (a unit separator between them)."""
    return hashlib.blake2b(f"{query}\x1f{target}".encode(), digest_size=8).hexdigest()


def _split_id(split: str) -> int:
    if split not in SPLITS:
        raise RprimError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return SPLITS.index(split)
