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
