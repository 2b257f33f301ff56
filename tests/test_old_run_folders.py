"""Run folders made by an earlier version still resume: nothing redone, renamed or rewritten.

``tests/fixtures/run-folders`` holds finished folders made with the commands in its README: a
``prune`` and a ``compare`` folder (code of commit cc62914; their training caches
``base.safetensors`` and ``base-train.pt`` left out: a finished run never reads them), and one
folder of each study, ``verify two-layer``, ``verify deep``, ``verify two-layer-knee`` and
``verify two-layer-budget`` (code of commit 009297b). Every later change to the jobs must keep
these folders working: the same command in the same folder is accepted (the same config keys),
finds every unit done (the same unit ids), runs no selection, no training and no study unit, and
leaves every result file byte for byte as it was; for the studies that includes the verdicts and
summaries judged again from the old rows.
"""

import csv
import json
import shutil
from pathlib import Path

import pytest

from greedyprune.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "run-folders"
COMMON = ["--data", "synthetic", "--arch", "mnasnet0_5", "--image-size", "16"]
COMMON += ["--train-epochs", "0.05", "--candidates", "2", "--batch-size", "2"]
COMMON += ["--finetune-epochs", "0.05", "--no-progress"]
ARGV = {
    "prune": ["prune", *COMMON, "--target-macs", "0.25"],
    "compare": [
        "compare",
        *COMMON,
        "--methods",
        "greedy,l1,random,uniform",
        "--target-macs",
        "0.5",
    ],
}
STUDIES = {
    "two-layer": ["verify", "two-layer", "--preset", "quick", "--seeds", "0", "--no-figures"],
    "deep": ["verify", "deep", "--preset", "quick", "--seeds", "0"],
    "two-layer-knee": ["verify", "two-layer-knee", "--preset", "quick"],
    "two-layer-budget": ["verify", "two-layer-budget", "--preset", "quick"],
}
ARGV |= {job: [*argv, "--no-progress"] for job, argv in STUDIES.items()}
# Written by every session that opens the folder (software versions, the call's seconds).
SESSION_FILES = {"versions.json", "manifest.json", ".lock"}  # .lock: one writer at a time
# Written by a later version into an old folder when it judges it again: the knee and budget
# studies' verdicts became claims (verdicts.csv) after these folders were made.
ADDED = {"two-layer-knee": {"verdicts.csv"}, "two-layer-budget": {"verdicts.csv"}}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in SESSION_FILES
    }


def _units(folder: Path) -> list[str]:
    with open(folder / "results.csv", newline="") as f:
        return [row["unit"] for row in csv.DictReader(f)]


@pytest.fixture
def forbid_work(monkeypatch):
    """Any training or selection fails the test: a finished folder must need neither."""

    def refuse(*_a, **_k):
        raise AssertionError("a finished fixture run selected or trained again")

    import greedyprune.prune._finetune as ft
    import greedyprune.prune._greedy_prune as lw

    monkeypatch.setattr(ft, "finetune", refuse)
    monkeypatch.setattr(lw, "greedy_prune", refuse)
    import greedyprune.runs as runs

    monkeypatch.setattr(runs.RunDir, "append", refuse)  # a study unit's rows (run_study)
    for module in _job_modules():
        for name in ("finetune", "greedy_prune"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)


def _job_modules():
    """Every module of ``greedyprune.prune`` that may have imported the two names."""
    import importlib
    import pkgutil

    import greedyprune.prune as gp

    for info in pkgutil.walk_packages(gp.__path__, gp.__name__ + "."):
        yield importlib.import_module(info.name)


@pytest.mark.parametrize("job", list(ARGV))
def test_a_finished_fixture_run_resumes_unchanged(job, tmp_path, capsys, forbid_work):
    out = tmp_path / job
    shutil.copytree(FIXTURES / job, out)
    before = _files(out)
    config = json.loads((out / "config.json").read_text())
    units = _units(out) if (out / "results.csv").exists() else None
    assert main([*ARGV[job], "--out", str(out)]) == 0, capsys.readouterr().err
    after = _files(out)
    assert set(after) - set(before) == ADDED.get(job, set())
    assert {name: after[name] for name in before} == before
    assert sorted(json.loads((out / "config.json").read_text())) == sorted(config)
    if units is not None:
        assert _units(out) == units
    if job == "compare":
        assert (
            _units(out) == units == [f"{m}-0.5-s0" for m in ("greedy", "l1", "random", "uniform")]
        )


def test_the_fixture_folders_are_what_the_readme_says():
    """The commands in the README are the ones the test runs (so the fixture can be remade)."""
    readme = (FIXTURES / "README.md").read_text()
    for job, argv in ARGV.items():
        command = " ".join(["greedyprune", *argv, "--out", f"tests/fixtures/run-folders/{job}"])
        assert command in readme, command


def test_a_broken_summary_in_a_finished_prune_folder_is_named(tmp_path, capsys, forbid_work):
    out = tmp_path / "prune"
    shutil.copytree(FIXTURES / "prune", out)
    (out / "summary.json").write_text("{broken")
    assert main([*ARGV["prune"], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "summary.json' is damaged" in err and err.count("\n") == 1
