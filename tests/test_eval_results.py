"""Results: atomic save (never half-written), DataFrame, round trip; task selection and data."""

import json

import pytest

import rprim.primitives as P
from rprim.evaluators.data import data_hash, task_names, task_records
from rprim.evaluators.results import Results


def _results(bad: bool = False) -> Results:
    rows = [{"id": "a/test/0/0", "prompt": "p", "target": "1", "prediction": "1", "correct": True},
            {"id": "a/test/0/1", "prompt": "q", "target": "2", "prediction": "3", "correct": False}]
    if bad:
        rows.append({"id": object()})  # not JSON: the save fails half-way
    tasks = {"arithmetic": {"accuracy": 0.5, "n": 2, "ci95": [0.09, 0.91], "flexible_accuracy": 0.5,
                            "unparsable": 0.0, "chance": None}}
    return Results(tasks, {"arithmetic": rows}, {"model": "m", "shots": 5})


def test_save_and_load_round_trip(tmp_path):
    out = _results().save(tmp_path / "r")
    back = Results.load(out)
    assert back.tasks == _results().tasks and back.samples == _results().samples
    assert json.loads((out / "results.json").read_text())["model"] == "m"


def test_failed_save_leaves_nothing_and_keeps_old_results(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(TypeError):
        _results(bad=True).save(out)
    assert list(tmp_path.iterdir()) == []
    _results().save(out)
    before = (out / "results.json").read_text()
    with pytest.raises(TypeError):
        _results(bad=True).save(out)
    assert (out / "results.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "mine.txt").write_text("keep me")
    with pytest.raises(P.RprimError, match="non-empty"):
        _results().save(tmp_path / "r")
    assert (tmp_path / "r" / "mine.txt").read_text() == "keep me"


def test_to_frame_and_table():
    pd = pytest.importorskip("pandas")
    df = _results().to_frame()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns[:5]) == ["task", "accuracy", "ci95_lo", "ci95_hi", "n"]
    assert "arithmetic" in _results().table() and "95% CI" in _results().table()


def test_task_names():
    assert task_names("suite") == P.suite_names()
    assert task_names("arithmetic, psm") == ["arithmetic", "psm"]
    assert task_names(["suite", "varassign-code-d3"])[-1] == "varassign-code-d3"
    with pytest.raises(P.RprimError, match="empty"):
        task_names(",")
    with pytest.raises(P.RprimError, match="unknown task"):
        task_names("aritmetic")


def test_records_are_kshot_prompts_of_the_suite_data():
    task, recs = task_records("varassign-code-d0", 5, 7, 0)
    gen = task.generate(7, seed=0, shots=5)
    assert [r["prompt"] for r in recs] == [g["prompt"] for g in gen]
    assert [r["target"] for r in recs] == [g["target"] for g in gen]
    assert recs[0]["prompt"].startswith(task.fewshot_prefix(0, 5))
    assert data_hash(recs) == data_hash(gen)
    _, other = task_records("varassign-code-d0", 5, 7, 1)
    assert data_hash(other) != data_hash(recs)
    with pytest.raises(P.RprimError):
        task_records("arithmetic", 5, 0, 0)
