"""Counter-based, hash-derived randomness, vectorised with numpy.

Every example owns a 64-bit key derived by hashing (family, structural params, split, seed)
and mixing in its index; all of its random numbers are SplitMix64 outputs of that key plus a
counter. So example ``i`` is the same whether it is generated alone, in a batch of a million,
in another process, or on another machine: nothing depends on the global RNG, on batch
boundaries, on ``seed + index`` arithmetic, or on PYTHONHASHSEED.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective 64-bit hash, applied elementwise."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def stream_key(*parts: object) -> int:
    """A 64-bit key from JSON-encodable parts, via BLAKE2b (stable across machines/processes)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little")


def example_keys(base: int, indices: np.ndarray) -> np.ndarray:
    """Per-example keys: hash(base, index), not base + index, so nearby streams never overlap."""
    idx = np.asarray(indices, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix(mix(idx * _GOLDEN + np.uint64(base)) ^ np.uint64(base))


def attempt_keys(keys: np.ndarray, attempt: int) -> np.ndarray:
    """Keys for the ``attempt``-th try of rejection sampling (attempt 0 is the key itself)."""
    if attempt == 0:
        return keys
    with np.errstate(over="ignore"):
        return mix(keys ^ mix(np.uint64(attempt) * _GOLDEN))


def derived_keys(keys: np.ndarray, salt: int) -> np.ndarray:
    """An independent key per example for a second stream (e.g. the rest of a structure)."""
    return mix(np.asarray(keys, dtype=np.uint64) ^ np.uint64(salt))


def row_hash(codes: np.ndarray, salt: int) -> np.ndarray:
    """Hash each row of an integer matrix to 64 bits (used to partition examples into splits)."""
    h = np.full(codes.shape[0], salt, dtype=np.uint64)
    for col in np.asarray(codes, dtype=np.int64).T:
        h = mix(h ^ col.astype(np.uint64))
    return h


class Draws:
    """Random numbers for a batch of examples, one row per example.

    Each call consumes fresh counters in a fixed order, so the t-th number of an example
    depends only on its key and on t.
    """

    def __init__(self, keys: np.ndarray):
        self.keys = np.asarray(keys, dtype=np.uint64)
        self._next = 0

    def u64(self, count: int) -> np.ndarray:
        """A (rows, count) block of uniform 64-bit integers."""
        t = np.arange(self._next + 1, self._next + count + 1, dtype=np.uint64)
        self._next += count
        with np.errstate(over="ignore"):
            return mix(self.keys[:, None] + t[None, :] * _GOLDEN)

    def integers(self, high: int, count: int = 1) -> np.ndarray:
        """Uniform integers in [0, high), shape (rows, count). Modulo bias is below 2**-58."""
        return (self.u64(count) % np.uint64(high)).astype(np.int64)

    def permutations(self, size: int) -> np.ndarray:
        """A uniform random permutation of range(size) per row, shape (rows, size).

        Small sizes index a table of all permutations with one draw (much faster than
        sorting tiny rows); larger ones sort random keys.
        """
        if size <= 6:
            return _perm_table(size)[self.integers(math.factorial(size))[:, 0]]
        return self._sorted_keys(size)

    def _sorted_keys(self, size: int) -> np.ndarray:
        """argsort of random keys made distinct within a row (the low 6 bits hold the column
        index when size <= 64), so every sort algorithm on every machine gives one answer."""
        keys = self.u64(size)
        if size <= 64:
            keys = (keys & ~np.uint64(63)) | np.arange(size, dtype=np.uint64)
            return np.argsort(keys, axis=1).astype(np.int64)
        return np.argsort(keys, axis=1, kind="stable").astype(np.int64)

    def distinct(self, k: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
        """k distinct integers from range(pool) per row, in random order.

        Pools up to 64 sort random keys. Larger ones draw with replacement and report rows
        with a repeat as invalid (the caller redraws them with the next attempt key), which
        avoids touching the whole pool. Returns (values, valid_rows).
        """
        if k > pool:
            raise ValueError(f"cannot draw {k} distinct items from {pool}")
        if pool <= 64:
            return self._sorted_keys(pool)[:, :k], np.ones(len(self.keys), dtype=bool)
        vals = self.integers(pool, k)
        srt = np.sort(vals, axis=1)
        valid = np.all(srt[:, 1:] != srt[:, :-1], axis=1)
        return vals, valid


@functools.cache
def _perm_table(size: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(size))), dtype=np.int64).reshape(-1, size)
