"""Run folders: config guard, atomic appends keyed by unit, resume without loss or duplicates."""

import json

import pandas as pd
import pytest

from greedyprune.runs import RunDir, atomic_write_text


def test_config_written_and_guarded(tmp_path):
    run = RunDir(tmp_path / "r", {"preset": "quick", "seeds": 2})
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == {
        "preset": "quick",
        "seeds": 2,
    }
    RunDir(tmp_path / "r", {"preset": "quick", "seeds": 2})  # same settings: resume is allowed
    with pytest.raises(ValueError, match="seeds"):
        RunDir(tmp_path / "r", {"preset": "quick", "seeds": 3})
    assert run.read().empty


def test_out_must_be_a_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        RunDir(f, {})


def test_append_by_unit_replaces_and_never_duplicates(tmp_path):
    run = RunDir(tmp_path, {})
    run.append("a", [{"n": 1, "loss": 0.5}, {"n": 2, "loss": 0.25}])
    run.append("b", [{"n": 1, "loss": 0.4}])
    assert run.done_units() == {"a", "b"}
    # Re-running a unit (for example after a crash between its work and the next unit) replaces it.
    run.append("a", [{"n": 1, "loss": 0.5}, {"n": 2, "loss": 0.25}])
    df = run.read()
    assert len(df) == 3
    assert sorted(df["unit"]) == ["a", "a", "b"]
    # A fresh RunDir on the same folder sees the same finished units (resume).
    assert RunDir(tmp_path, {}).done_units() == {"a", "b"}


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    p = tmp_path / "x.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [q.name for q in tmp_path.iterdir()] == ["x.txt"]


def test_write_table_roundtrip(tmp_path):
    run = RunDir(tmp_path, {})
    df = pd.DataFrame({"claim": ["a"], "measured_slope": [-1.9]})
    run.write_table(df, "verdicts")
    assert run.read("verdicts").equals(df)


def test_finished_rows_are_kept_byte_for_byte(tmp_path):
    """Resume keeps what is done: later units (and a fresh RunDir on the folder) never rewrite the
    text of a finished unit's rows, floats included."""
    rows = [{"x": 0.1 + 0.2, "y": 1 / 3, "z": 2.5e-17, "name": "a,b", "n": 3}]
    run = RunDir(tmp_path, {"seeds": 2})
    run.append("u0", rows)
    first = run.table_path().read_text().splitlines()
    run.append("u1", [{"x": 1e300, "y": -0.0, "z": float("nan"), "name": "c", "n": 4}])
    resumed = RunDir(tmp_path, {"seeds": 2})
    assert resumed.done_units() == {"u0", "u1"}
    resumed.append("u2", [{"x": 7.0, "y": 0.7, "z": 0.07, "name": "d", "n": 5}])
    assert resumed.table_path().read_text().splitlines()[:2] == first
    assert resumed.read().loc[0, "x"] == 0.1 + 0.2


def test_a_later_unit_with_other_columns_leaves_finished_rows_as_written(tmp_path):
    run = RunDir(tmp_path / "r", {"a": 1})
    run.append("u0", [{"n": 3, "x": 0.5}])
    first = (tmp_path / "r" / "results.csv").read_text().splitlines()[1]
    run.append("u1", [{"x": 0.25}])
    # the int 3 must not come back as 3.0 because u1 left its column empty
    assert (tmp_path / "r" / "results.csv").read_text().splitlines()[1] == first
    assert run.done_units() == {"u0", "u1"}
