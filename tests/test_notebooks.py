"""Every notebook in notebooks/ runs top to bottom in its tiny configuration (GREEDYPRUNE_TINY=1)
and prints what it promises; an error output in any cell fails the test."""

import os
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# notebook -> phrases its outputs must contain (files it must write, relative to its folder)
EXPECTED = {
    "two_layer.py": (["greedy slope over n", "labels in the hull", "re-weighted greedy"], []),
    "deep.py": (["kept widths", "discrepancy to the full network"], []),
    "prune_cnn.py": (["max |pruned - gated|"], ["pruned-resnet18/pruned.json"]),
}


def test_every_notebook_is_covered():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("GREEDYPRUNE_TINY", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    nb = jupytext.read(NOTEBOOKS / name)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(str(o.get("text", "")) for o in outputs)
    phrases, files = EXPECTED[name]
    for phrase in phrases:
        assert phrase in text, phrase
    for f in files:
        assert (tmp_path / f).is_file(), f
