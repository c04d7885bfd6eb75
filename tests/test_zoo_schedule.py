"""Stage schedules, FLOP accounting against the spec's table, LR schedule, config validation."""

from __future__ import annotations

import math

import pytest

from rprim.core import RprimError
from rprim.model_zoo.flops import (FlopModel, analytic_ratio, head_flops_per_token, layer_params,
                                   ratio_to_baseline, rounded_ratio, stage_flops)
from rprim.model_zoo.presets import PRESETS, parse_sets, resolve_config
from rprim.model_zoo.schedule import apportion, lr_at, make_stages, parse_schedule, stage_at

# stacking.md: speedup 1/R for k stages (rows) and equal / PROP-1 / PROP-2 / PROP-3 (columns)
SPEC_TABLE = {4: (1.60, 1.33, 1.20, 1.13), 6: (1.71, 1.38, 1.24, 1.16), 12: (1.85, 1.44, 1.28, 1.20)}


@pytest.mark.parametrize("k", sorted(SPEC_TABLE))
def test_flop_ratio_matches_spec_table(k):
    for sched, speedup in zip(("equal", "prop-1", "prop-2", "prop-3"), SPEC_TABLE[k]):
        assert round(1 / analytic_ratio(k, sched), 2) == pytest.approx(speedup, abs=1e-9), (k, sched)
        # with integer stage lengths over many steps the ratio converges to the same value
        assert round(1 / rounded_ratio(k, sched, 100_000), 2) == pytest.approx(speedup, abs=1e-9)


def test_large_k_limit():
    for alpha in (1, 2, 3):
        assert analytic_ratio(200, f"prop-{alpha}") == pytest.approx((alpha + 1) / (alpha + 2), abs=5e-3)


def test_apportion_sums_exactly_and_is_close():
    for total in (7, 100, 301, 12345):
        for k in (1, 2, 4, 6, 12):
            for sched in ("equal", "prop-1", "prop-2", "prop-3", "prop-1.5"):
                fr = parse_schedule(sched, k)
                steps = apportion(total, fr)
                assert sum(steps) == total
                assert all(abs(s - total * f) < 1 for s, f in zip(steps, fr))


def test_stages_prop2_k4():
    st = make_stages("midas", 8, 2, "prop-2", 300)
    assert [s.depth for s in st] == [2, 4, 6, 8]
    assert [s.steps for s in st] == [10, 40, 90, 160]  # 300 * (1, 4, 9, 16) / 30
    assert st[0].start == 0 and st[-1].end == 300
    assert all(a.end == b.start for a, b in zip(st, st[1:]))
    assert stage_at(st, 9).index == 1 and stage_at(st, 10).index == 2 and stage_at(st, 299).index == 4
    assert make_stages("baseline", 8, 2, "prop-2", 300)[0].depth == 8


def test_explicit_fractions_and_bad_schedules():
    st = make_stages("gradstack", 4, 1, "0.1,0.2,0.3,0.4", 100)
    assert [s.steps for s in st] == [10, 20, 30, 40]
    for bad in ("prop-4", "prop-x", "0.5,0.5", "fast", "-1,1,1,1"):
        with pytest.raises(RprimError):
            parse_schedule(bad, 4)
    with pytest.raises(RprimError, match="--steps"):
        make_stages("midas", 24, 4, "prop-3", 20)


def test_flops_with_head_equal_formula_and_direct_count():
    cfg = resolve_config("tiny", overrides={"method": "midas", "steps": 300})
    fm = FlopModel.from_config(cfg)
    st = make_stages("midas", cfg.n_layers, cfg.block_size, cfg.schedule, 300)
    direct = sum(stage_flops(st, fm, cfg.tokens_per_step)) / (300 * cfg.tokens_per_step * fm.per_token(cfg.n_layers))
    rho = fm.head / (cfg.n_layers * fm.layer)
    spec = (rho + sum(s.steps / 300 * s.depth / cfg.n_layers for s in st)) / (1 + rho)
    assert ratio_to_baseline(st, cfg.n_layers, fm) == pytest.approx(direct, rel=1e-12)
    assert ratio_to_baseline(st, cfg.n_layers, fm) == pytest.approx(spec, rel=1e-12)
    assert ratio_to_baseline(st, cfg.n_layers, fm, with_head=False) == pytest.approx(1 / 1.2, rel=1e-12)
    # the head makes the speedup smaller for a small model
    assert ratio_to_baseline(st, cfg.n_layers, fm) > 1 / 1.2
    assert head_flops_per_token(cfg.d_model, cfg.vocab_size) == 6 * cfg.d_model * cfg.vocab_size


def test_paper_preset_shapes():
    p1 = resolve_config("paper-1b")
    assert (p1.n_layers, p1.d_model, p1.d_mlp, p1.n_heads) == (24, 2048, 5120, 32)
    assert resolve_config("paper-2b").n_layers == 48
    p8 = resolve_config("paper-8b")
    assert (p8.n_layers, p8.d_model, p8.d_mlp, p8.n_heads, p8.head_dim) == (72, 2048, 16384, 16, 128)
    # ~1B: 24 layers of ~48M matmul weights
    assert 1.0e9 < 24 * layer_params(2048, 32, 32, 5120) < 1.3e9
    small = resolve_config("small")
    n = small.n_layers * layer_params(small.d_model, small.n_heads, small.kv_heads, small.d_mlp) \
        + 2 * small.vocab_size * small.d_model
    assert 50e6 <= n <= 120e6
    for name in PRESETS:
        cfg = resolve_config(name)
        assert cfg.n_layers % cfg.block_size == 0 and cfg.head_dim % 8 == 0


def test_lr_schedule():
    kw = dict(lr=1.0, min_lr=0.1, warmup=10, total=110)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)
    assert lr_at(110, **kw) == pytest.approx(0.1)
    lrs = [lr_at(s, **kw) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    # re-warmup after a growth at step 50 scales the rate for 5 steps
    r = [lr_at(s, **kw, growth_steps=(50,), rewarmup=5) for s in (49, 50, 52, 55)]
    assert r[0] == lr_at(49, **kw) and r[1] == pytest.approx(lr_at(50, **kw) / 5)
    assert r[2] == pytest.approx(lr_at(52, **kw) * 3 / 5) and r[3] == lr_at(55, **kw)


def test_config_overrides_and_errors(tmp_path):
    cfg = resolve_config("tiny", overrides=parse_sets(["lr=1e-3", "n_layers=12", "compile=true",
                                                       "corpus=a,b", "n_kv_heads=none"]))
    assert (cfg.lr, cfg.n_layers, cfg.compile, cfg.corpus, cfg.n_kv_heads) == (1e-3, 12, True, ["a", "b"], None)
    f = tmp_path / "c.json"
    f.write_text('{"d_model": 256, "n_heads": 8}')
    assert resolve_config("tiny", f).head_dim == 32
    bad = [("tiny", {"method": "stack"}), ("huge", {}), ("tiny", {"block_size": 3}),
           ("tiny", {"schedule": "prop-9"}), ("tiny", {"n_heads": 5}), ("tiny", {"nope": 1})]
    for preset, ov in bad:
        with pytest.raises(RprimError):
            resolve_config(preset, overrides=ov)
    with pytest.raises(RprimError):
        parse_sets(["lr"])
    with pytest.raises(RprimError):
        parse_sets(["steps=ten"])
    assert math.isclose(resolve_config("tiny", overrides={"tokens": 4097}).total_steps,
                        -(-4097 // (16 * 128)))


def test_too_few_steps_names_the_count_from_which_every_count_works():
    """prop-2 over 4 stages works at 10 steps but not at 11-15: the hint is the true minimum."""
    import re

    from rprim.core import RprimError
    from rprim.model_zoo.schedule import make_stages

    with pytest.raises(RprimError) as e:
        make_stages("midas", 8, 2, "prop-2", 11)
    need = int(re.search(r"--steps (\d+) or more", str(e.value)).group(1))
    for t in range(need, need + 200):
        assert min(s.steps for s in make_stages("midas", 8, 2, "prop-2", t)) >= 1
    with pytest.raises(RprimError):
        make_stages("midas", 8, 2, "prop-2", need - 1)
