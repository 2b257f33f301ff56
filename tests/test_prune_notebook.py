"""notebooks/prune_cnn.py runs end to end in its tiny configuration."""

import os
from pathlib import Path

import jupytext
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "prune_cnn.py"


def test_prune_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("GREEDYPRUNE_TINY", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    nb = jupytext.read(NOTEBOOK)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert (tmp_path / "pruned-resnet18" / "pruned.json").is_file()
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "max |pruned - gated|" in text
