"""`rprim report`: the numbers on constructed results, checked by hand; files; reruns.

No model is needed: results folders are written with the evaluator's own ``Results.save`` from
constructed per-example correctness, so every count below is known exactly.
"""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rprim.evaluators.report import stats
from rprim.evaluators.results import Results
from rprim.evaluators.scoring import wilson

pytest.importorskip("matplotlib")


# ----------------------------------------------------------------------------- statistics
def test_mcnemar_exact_matches_the_binomial_by_hand():
    # b=10, c=3: 13 discordant pairs < 25 -> exact. P(X<=3), X~Bin(13, 1/2):
    # (1 + 13 + 78 + 286) / 8192 = 378/8192; two-sided: 756/8192.
    t = stats.mcnemar(10, 3, both=40, neither=47)
    assert t.method == "exact-binomial"
    assert t.p_value == pytest.approx(756 / 8192, abs=1e-15)
    assert t.n == 100 and t.statistic is None


def test_mcnemar_chi_square_with_continuity_matches_the_textbook():
    # b=30, c=12: (|30-12| - 1)^2 / 42 = 289/42 = 6.8810; P(chi2_1 >= 6.881) = 0.0087119
    # (the tail integral of the chi-square density, computed apart).
    t = stats.mcnemar(30, 12)
    assert t.method == "chi2-continuity"
    assert t.statistic == pytest.approx(289 / 42)
    assert t.p_value == pytest.approx(0.0087119, abs=2e-7)


def test_mcnemar_edges():
    assert stats.mcnemar(0, 0).p_value == 1.0
    assert stats.mcnemar(5, 5).p_value == 1.0
    assert stats.mcnemar(20, 20).p_value == 1.0         # chi-square: |b-c|-1 clamps at 0
    assert stats.mcnemar(0, 6).p_value == pytest.approx(2 / 64)
    with pytest.raises(ValueError):
        stats.mcnemar(-1, 3)


def test_paired_counts_match_by_id_and_count_the_rest():
    a = {"x1": True, "x2": True, "x3": False, "x4": False, "only-a": True}
    b = {"x1": True, "x2": False, "x3": True, "x4": False, "only-b": False}
    assert stats.paired_counts(a, b) == (1, 1, 1, 1, 2)


def test_pooled_group_and_difference_interval():
    p = stats.pooled([(5, 20), (10, 20), (15, 20)])
    assert (p.k, p.n, p.accuracy) == (30, 60, 0.5)
    assert p.ci95 == wilson(30, 60)
    lo, hi = stats.difference_interval(30, 60, 20, 60)
    d = 30 / 60 - 20 / 60
    l1, u1 = wilson(30, 60)
    l2, u2 = wilson(20, 60)
    assert lo == pytest.approx(d - math.sqrt((0.5 - l1) ** 2 + (u2 - 1 / 3) ** 2))
    assert hi == pytest.approx(d + math.sqrt((u1 - 0.5) ** 2 + (1 / 3 - l2) ** 2))
    assert lo < d < hi


def test_interpolate():
    assert stats.interpolate([3.0, 2.0, 1.0], [0.1, 0.3, 0.7], 1.5) == pytest.approx(0.5)
    assert stats.interpolate([3.0, 2.0], [0.1, 0.3], 1.0) is None
    assert stats.interpolate([2.0], [0.4], 2.0) == 0.4


# ----------------------------------------------------------------------------- constructed results
TASKS = ["varassign-basic-d0", "varassign-code-d0", "varassign-code-d1", "copying-words", "arithmetic"]


def _write(folder: Path, correct: dict[str, list[bool]], summary: dict | None = None,
           model: str = "m") -> Path:
    """A results folder whose task t has examples t/0..t/n-1 with the given correctness."""
    tasks, samples = {}, {}
    for t, row in correct.items():
        k, n = sum(row), len(row)
        tasks[t] = {"accuracy": k / n, "n": n, "ci95": list(wilson(k, n)), "flexible_accuracy": k / n,
                    "unparsable": 0.0, "chance": 0.2 if t.startswith("varassign") else None}
        samples[t] = [{"id": f"{t}/test/0/{i}", "prompt": "p", "target": "1",
                       "prediction": "1" if c else "0", "correct": c} for i, c in enumerate(row)]
    Results(tasks, samples, {"model": model, "shots": 5, "n": None}).save(folder)
    if summary is not None:
        (folder / "training_summary.json").write_text(json.dumps(summary))
    return folder


def _bits(k: int, n: int, offset: int = 0) -> list[bool]:
    return [((i + offset) % n) < k for i in range(n)]


@pytest.fixture
def two_models(tmp_path: Path) -> tuple[Path, Path]:
    base = _write(tmp_path / "baseline", {
        "varassign-basic-d0": _bits(4, 20), "varassign-code-d0": _bits(6, 20),
        "varassign-code-d1": _bits(4, 20), "copying-words": _bits(2, 10), "arithmetic": _bits(5, 10)},
        {"method": "baseline", "final_val_loss": 2.0, "tokens": 1000})
    midas = _write(tmp_path / "midas", {
        "varassign-basic-d0": _bits(10, 20), "varassign-code-d0": _bits(12, 20),
        "varassign-code-d1": _bits(5, 20), "copying-words": _bits(2, 10), "arithmetic": _bits(4, 10)},
        {"method": "midas", "final_val_loss": 2.1, "tokens": 1000, "mix": {"spec": "varassign:0.2", "fraction": 0.2004}})
    return base, midas


def test_table_pools_groups_and_gains_equal_differences(two_models):
    from rprim.evaluators import report

    rep = report.load(two_models)
    assert rep.baseline == "baseline"
    assert rep.groups() == ["copying", "varassign d0", "varassign d1", "varassign basic",
                            "varassign code", "arithmetic"]
    rows = {(r["model"], r["group"]): r for r in rep.rows()}
    d0 = rows[("midas", "varassign d0")]
    assert (d0["k"], d0["n"]) == (22, 40)                       # 10 + 12 of 20 + 20
    assert (d0["ci95_lo"], d0["ci95_hi"]) == wilson(22, 40)
    assert d0["gain"] == pytest.approx(22 / 40 - 10 / 40)
    code = rows[("midas", "varassign code")]
    assert (code["k"], code["n"]) == (17, 40)
    assert rows[("midas", "arithmetic")]["gain"] == pytest.approx(-0.1)
    assert rows[("baseline", "copying")]["gain"] == 0.0
    assert rows[("midas", "varassign d0")]["val_loss"] == 2.1
    frame = rep.frame()
    assert len(frame) == 12
    got = frame.set_index(["model", "group"]).loc[("midas", "varassign d0")]
    assert got["accuracy"] == pytest.approx(0.55) and got["k"] == 22


def test_gain_plot_draws_the_table(two_models):
    from rprim.evaluators import report
    from rprim.evaluators.report import figures

    rep = report.load(two_models)
    groups, gains, errors = rep.gains()
    rows = {(r["model"], r["group"]): r for r in rep.rows()}
    assert gains["midas"] == [rows[("midas", g)]["gain"] for g in groups]
    fig = figures.gain_bars(groups, gains, errors, rep.baseline)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([100 * rows[("midas", g)]["gain"] for g in groups])
    assert [t.get_text() for t in ax.get_xticklabels()] == groups


def test_paired_test_per_group(two_models):
    from rprim.evaluators import report

    rep = report.load(two_models)
    by = {r["group"]: r for r in rep.paired("midas", "baseline")}
    # varassign-basic-d0: midas right on ids 0..9, baseline on 0..3 -> only midas 6;
    # varassign-code-d0: 0..11 vs 0..5 -> 6 more: b = 12, c = 0 -> exact, 2 / 2^12
    assert (by["varassign d0"]["only_a"], by["varassign d0"]["only_b"]) == (12, 0)
    assert by["varassign d0"]["p_value"] == pytest.approx(2 / 2 ** 12)
    assert by["varassign d0"]["method"] == "exact-binomial"
    assert by["all tasks"]["n"] == 80 and by["all tasks"]["unmatched"] == 0


def test_write_makes_markdown_pngs_and_one_self_contained_html(two_models, tmp_path):
    from rprim.evaluators import report

    out = report.load(two_models).write(tmp_path / "rep")
    md = (out / "report.md").read_text()
    assert "| varassign d0 | 0.250 [" in md and "0.550 [" in md
    assert "+30.0 [" in md                                   # the gain of midas on d0, in points
    assert "varassign:0.2 (20.0% of training tokens)" in md                            # the mix is stated
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["accuracy.png", "gain.png", "loss_accuracy.png"]
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)   # no external assets
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == 3 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    data = json.loads((out / "report.json").read_text())
    assert {r["group"] for r in data["rows"]} >= {"varassign d0", "copying"}


def test_checkpoints_give_the_loss_curve_and_equal_loss_accuracy(tmp_path):
    from rprim.evaluators import report

    def model(name, finals, ckpts, loss):
        folder = _write(tmp_path / name, {"varassign-code-d0": _bits(finals, 10)},
                        {"final_val_loss": loss})
        for step, (k, vl) in ckpts.items():
            sub = _write(folder / "checkpoints" / f"step-{step:08d}", {"varassign-code-d0": _bits(k, 10)})
            (sub / "snapshot.json").write_text(json.dumps({"step": step, "tokens": step * 10, "val_loss": vl}))
        return folder

    base = model("baseline", 4, {10: (1, 3.0), 20: (2, 2.5)}, 2.0)
    midas = model("midas", 8, {10: (2, 3.0), 20: (4, 2.4)}, 1.8)
    rep = report.load([base, midas])
    assert rep.curve(rep.model("midas"), "varassign d0") == [(2.4, 0.4), (3.0, 0.2), (1.8, 0.8)] or \
        sorted(rep.curve(rep.model("midas"), "varassign d0")) == [(1.8, 0.8), (2.4, 0.4), (3.0, 0.2)]
    eq = {r["group"]: r for r in rep.equal_loss()}["varassign d0"]
    # midas at the baseline's final loss 2.0: between (2.4, 0.4) and (1.8, 0.8) -> 0.4 + 0.4*(0.4/0.6)
    assert eq["accuracy"] == pytest.approx(0.4 + 0.4 * (0.4 / 0.6))
    assert eq["baseline_accuracy"] == pytest.approx(0.4)
    assert eq["difference"] == pytest.approx(0.4 * (0.4 / 0.6))


def test_finetune_rows(two_models):
    from rprim.evaluators import report

    base, midas = two_models
    for folder, means in ((base, (0.2, 0.1)), (midas, (0.5, 0.3))):
        (folder / "finetune").mkdir()
        (folder / "finetune" / "results.json").write_text(json.dumps({
            "config": {"seeds": [0, 1], "tasks": ["varassign-code-d1", "varassign-code-d2"]},
            "runs": [{}, {}],
            "aggregate": {"overall": {"mean": sum(means) / 2, "std": 0.01},
                          "per_task": {"varassign-code-d1": {"mean": means[0], "std": 0.02},
                                       "varassign-code-d2": {"mean": means[1], "std": 0.03}}}}))
    rep = report.load([base, midas])
    rows = {(r["model"], r["group"]): r for r in rep.rows()}
    r = rows[("midas", "finetune varassign-code-d2")]
    assert r["kind"] == "finetune" and r["accuracy"] == 0.3 and r["std"] == 0.03 and r["seeds"] == 2
    assert r["gain"] == pytest.approx(0.2)
    assert "finetune mean" in rep.finetune_groups()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rprim", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_report_rerun_updates_and_keeps_user_files(two_models, tmp_path):
    out = tmp_path / "rep"
    r = _cli("report", *map(str, two_models), "--out", str(out))
    assert r.returncode == 0, r.stderr
    # the terminal gets the table: models as columns, a row per group with its interval
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["group", "baseline", "midas"]
    d0 = next(x for x in lines if x.startswith("varassign d0"))
    assert "0.250 [" in d0 and "0.550 [" in d0   # 10/40 and 22/40
    (out / "my-notes.txt").write_text("mine")
    r = _cli("report", *map(str, two_models), "--out", str(out), "--baseline", "midas")
    assert r.returncode == 0, r.stderr
    assert (out / "my-notes.txt").read_text() == "mine"
    assert "Gain over midas" in (out / "report.md").read_text()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_cli_report_refuses_a_folder_of_other_files(two_models, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    r = _cli("report", *map(str, two_models), "--out", str(other))
    assert r.returncode == 2 and r.stderr.startswith("rprim: error:") and "Traceback" not in r.stderr
    assert sorted(p.name for p in other.iterdir()) == ["thesis.tex"]


def test_one_model_report_has_no_gain_section_figure(two_models, tmp_path):
    from rprim.evaluators import report

    base, _ = two_models
    out = report.load([base]).write(tmp_path / "one")
    assert sorted(p.name for p in out.glob("*.png")) == ["accuracy.png", "loss_accuracy.png"]
    assert "## Gain over baseline" in (out / "report.md").read_text()


def test_missing_matplotlib_is_one_line_naming_the_extra(two_models, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from rprim.cli import main\n"
            f"main(['report', {str(two_models[0])!r}, '--out', {str(tmp_path / 'r')!r}])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("rprim: error: figures need matplotlib") and "[report]" in r.stderr
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- binding probe
@pytest.mark.parametrize("fmt", ["basic", "math", "code"])
def test_probe_sorts_answers_by_where_they_come_from(fmt):
    """On real 5-shot prompts of every format: the bound value, the first and last line's
    values, another value of the program, and a number outside it (exemplars' values do not
    count as the program's)."""
    import rprim.primitives as P
    from rprim.evaluators.report.probe import error_class, program_values

    recs = P.get(f"varassign-{fmt}-d0").generate(20, seed=0, split="test", shots=5)
    for r in recs:
        a = r["metadata"]["assignments"]
        values = [str(v) for v in a.values()]
        assert program_values(r["prompt"]) == values
        assert error_class(r["prompt"], r["target"], r["target"]) == "correct"
        others = [v for v in values if v != r["target"]]
        if values[0] != r["target"]:
            assert error_class(r["prompt"], r["target"], values[0]) == "first line"
        if values[-1] != r["target"] and values[-1] != values[0]:
            assert error_class(r["prompt"], r["target"], values[-1]) == "last line"
        for v in others[1:-1]:
            if v not in (values[0], values[-1]):
                assert error_class(r["prompt"], r["target"], v) == "other value"
        outside = next(str(x) for x in range(100, 200) if str(x) not in values)
        assert error_class(r["prompt"], r["target"], outside) == "outside"
        assert error_class(r["prompt"], r["target"], "") == "outside"


def test_report_gives_the_binding_profile_and_tokens_to_threshold(tmp_path):
    import rprim.primitives as P
    from rprim.evaluators import report

    recs = P.get("varassign-basic-d0").generate(10, seed=0, split="test", shots=5)

    def results(folder, answers):
        preds = [a(r) for r, a in zip(recs, answers)]
        k = sum(p == r["target"] for p, r in zip(preds, recs))
        tasks = {"varassign-basic-d0": {"accuracy": k / 10, "n": 10, "ci95": list(wilson(k, 10)),
                                        "flexible_accuracy": k / 10, "unparsable": 0.0, "chance": 0.2}}
        samples = {"varassign-basic-d0": [{"id": r["id"], "prompt": r["prompt"], "target": r["target"],
                                           "prediction": p, "correct": p == r["target"]}
                                          for r, p in zip(recs, preds)]}
        Results(tasks, samples, {"model": "m", "shots": 5, "n": 10}).save(folder)
        return folder

    def right(r):
        return r["target"]

    def first(r):
        return str(next(iter(r["metadata"]["assignments"].values())))

    base = results(tmp_path / "baseline", [lambda r: "999"] * 10)
    (base / "training_summary.json").write_text(json.dumps({"tokens": 300, "final_val_loss": 2.0}))
    for step, answers in ((1, [first] * 10), (2, [right] * 6 + [first] * 4)):
        sub = results(base / "checkpoints" / f"step-{step:08d}", answers)
        (sub / "snapshot.json").write_text(json.dumps({"step": step, "tokens": step * 100, "val_loss": 3.0}))
    rep = report.load([base])
    rows = {r["checkpoint"]: r for r in rep.binding_rows()}
    assert rows["final"]["outside"] == 10 and rows["final"]["n"] == 10
    firsts = sum(first(r) == r["target"] for r in recs)
    assert rows["step-00000001"]["first line"] == 10 - firsts and rows["step-00000001"]["correct"] == firsts
    assert rows["step-00000002"]["tokens"] == 200
    th = {r["group"]: r for r in rep.thresholds()}["varassign d0"]
    assert th["tokens_to_0.5"] == 200 and th["tokens_to_0.9"] is None
    out = rep.write(tmp_path / "rep")
    md = (out / "report.md").read_text()
    assert "Where variable-assignment answers come from" in md and "Tokens to threshold" in md
    data = json.loads((out / "report.json").read_text())
    assert data["binding"] == rep.binding_rows() and data["thresholds"] == rep.thresholds()


def test_mixed_shots_are_warned_about(tmp_path):
    a = _write(tmp_path / "baseline", {"varassign-code-d0": _bits(4, 20)})
    b = tmp_path / "zero"
    Results({"varassign-code-d0": {"accuracy": 0.5, "n": 20, "ci95": list(wilson(10, 20)), "chance": 0.2}},
            {"varassign-code-d0": [{"id": f"varassign-code-d0/test/0/{i}", "correct": i < 10} for i in range(20)]},
            {"model": "m", "shots": 0, "n": None}).save(b)
    r = _cli("report", str(a), str(b), "--out", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    assert "different numbers of shots (0, 5)" in r.stderr
    assert "different numbers of shots" in (tmp_path / "rep" / "report.md").read_text()
