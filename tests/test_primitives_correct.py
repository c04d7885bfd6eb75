"""Every generated example is right, as checked by independent solvers (tests/solvers.py)."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest

import rprim.primitives as P
from rprim.primitives.copying import vocabulary

from solvers import (program_lines, resolve_assignments, solve_arithmetic, solve_code,
                     solve_copying, solve_psm)

N = 2000

VARASSIGN = [
    {"format": f, "depth": d} for f in ("basic", "math", "code") for d in (0, 1, 2)
] + [
    {"format": "code", "depth": 3, "width": 6},
    {"format": "basic", "depth": 4, "width": 8, "name_length": 2, "low": -50, "high": 50},
    {"format": "math", "depth": 1, "width": 2, "low": 3, "high": 4},
]


@pytest.mark.parametrize("params", VARASSIGN, ids=lambda p: P.get("varassign", **p).name)
def test_varassign_answers_and_structure(params):
    task = P.get("varassign", **params)
    c = task.config
    answer_line = Counter()
    for rec in task.generate(N, seed=3, split="test"):
        lines, var = program_lines(rec["query"], c.format)
        value, hops = resolve_assignments(lines, var)
        assert rec["target"] == value
        if c.format == "code":
            assert solve_code(rec["query"]) == value
        # structure: w*(d+1) lines, distinct names, exactly d hops, level order, ranges
        assert len(lines) == c.width * (c.depth + 1)
        names = [line.split("=")[0] for line in lines]
        assert len(set(names)) == len(names)
        assert all(len(n) == c.name_length for n in names)
        assert hops == c.depth
        consts = [int(line.split("=")[1]) for line in lines[: c.width]]
        assert len(set(consts)) == c.width and all(c.low <= v <= c.high for v in consts)
        assert all(re.fullmatch(r"[a-z]+=[a-z]+", line) for line in lines[c.width:])
        # each level >= 1 references every variable of the level below exactly once
        for j in range(1, c.depth + 1):
            refs = sorted(line.split("=")[1] for line in lines[j * c.width:(j + 1) * c.width])
            assert refs == sorted(names[(j - 1) * c.width:j * c.width])
        assert var in names[c.depth * c.width:]
        # metadata agrees with the text
        meta = rec["metadata"]
        parsed = {n: (int(v) if re.fullmatch(r"-?\d+", v) else v)
                  for n, v in (line.split("=") for line in lines)}
        assert meta["assignments"] == parsed and list(meta["assignments"]) == names
        assert meta["chain"][0] == var and len(meta["chain"]) == c.depth + 1
        assert str(meta["answer"]) == value
        answer_line[consts.index(int(value))] += 1
    # chance is 1/w: the queried chain ends at each constant line equally often
    assert task.chance == pytest.approx(1 / c.width)
    expected = N / c.width
    chi2 = sum((answer_line[i] - expected) ** 2 / expected for i in range(c.width))
    assert chi2 < 3 * c.width + 30, answer_line


@pytest.mark.parametrize("name,n,m", [("copying-random", 10, 5), ("copying-words", 10, 5),
                                      ("copying-words-n20-m3", 20, 3)])
def test_copying(name, n, m):
    task = P.get(name)
    vocab = set(vocabulary(task.config.vocab))
    starts = Counter()
    for rec in task.generate(N, seed=1):
        assert rec["target"] == solve_copying(rec["query"], n, m)
        seq = rec["query"].split("\n")[1].split(" ")[:n]
        assert len(set(seq)) == n and set(seq) <= vocab
        starts[rec["metadata"]["start"]] += 1
    assert sorted(starts) == list(range(n - m))  # every start that leaves a next word


def test_words_vocabulary_is_real_three_letter_words():
    words = vocabulary("words")
    assert len(words) >= 300
    assert all(re.fullmatch(r"[a-z]{3}", w) for w in words)
    assert {"cat", "dog", "sun"} <= set(words)


@pytest.mark.parametrize("calc", [False, True])
def test_psm(calc):
    task = P.get("psm-calc" if calc else "psm")
    assert task.until == (("=", "\n") if calc else ("\n",))
    for rec in task.generate(N, seed=2):
        substituted, value = solve_psm(rec["query"])
        assert rec["target"] == (substituted if calc else f"{substituted}={value}")
        assert rec["metadata"]["value"] == int(value)


def test_psm_calc_shares_problems_and_full_exemplars():
    full, calc = P.get("psm"), P.get("psm-calc")
    a, b = full.generate(50), calc.generate(50)
    assert [r["query"] for r in a] == [r["query"] for r in b]
    # calc exemplars still show the worked answer; only the scored target differs
    assert calc.fewshot_prefix(0, 3) == full.fewshot_prefix(0, 3)
    assert re.search(r" [+-]\d[+-]\d=-?\d+\n\n", calc.fewshot_prefix(0, 3))


def test_arithmetic():
    task = P.get("arithmetic")
    assert task.target_delimiter == ""
    for rec in task.generate(N, seed=4):
        assert rec["target"] == solve_arithmetic(rec["query"])
        assert len(rec["query"].split("\n")) == 6


def test_spec_examples_shapes():
    """The suite's first test example of each family looks like the spec's example."""
    q = P.get("varassign-basic-d0").generate(1)[0]["query"]
    assert re.fullmatch(r"Fill in blank:\n([a-z]=\d+\n){5}[a-z]=___\. ->", q)
    q = P.get("psm").generate(1)[0]["query"]
    assert re.fullmatch(r"Fill in blank:\n[a-z]=\d\n[a-z]=\d\n[a-z]=[+-][a-z][+-][a-z]\n[a-z]=_ ->", q)
    q = P.get("copying-random").generate(1)[0]["query"]
    assert re.fullmatch(r"Fill in blank:\n([a-z]{3} ){15}___\. ->", q)
    assert math.isclose(P.get("varassign-code-d2").chance, 0.2)
