"""Exact / flexible / unparsable scoring and the Wilson interval."""

import math

import pytest

from rprim.evaluators.scoring import TaskScore, cut, flexible, flexible_answer, prediction, wilson


def test_prediction_cuts_at_first_until_and_strips():
    assert prediction(" 17\nx=3", ["\n"]) == "17"
    assert prediction(" -1+8=7\n", ["=", "\n"]) == "-1+8"
    assert prediction("  ", ["\n"]) == ""
    assert cut("ab=c\nd", ["\n", "="]) == "ab"
    assert prediction(" 17 ", ["\n"]) == "17"


def test_exact_is_strict_flexible_forgives():
    s = TaskScore.of(["17", "17.", "17 because", "x", "", "-3"], ["17", "17", "17", "17", "17", "-3"])
    assert s.accuracy == pytest.approx(2 / 6)
    assert s.flexible_accuracy == pytest.approx(4 / 6)
    assert s.unparsable == pytest.approx(2 / 6)  # "x" and "" hold no integer


def test_flexible_words_and_signs():
    assert flexible("sea foo", "sea")
    assert flexible("sea.", "sea")
    assert not flexible("seas", "sea")
    assert flexible("+5", "5")
    assert not flexible("-5", "5")
    assert flexible_answer("", "sea") is None
    assert flexible("-1+8=7 yes", "-1+8=7")


def test_wilson_known_values():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson(100, 100)
    assert hi == 1.0 and lo == pytest.approx(0.9630, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    for k in range(0, 21):
        lo, hi = wilson(k, 20)
        assert 0 <= lo <= k / 20 <= hi <= 1 and not math.isnan(lo)
