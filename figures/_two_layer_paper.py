"""Shared by the fig_two_layer_*.py scripts: the two-layer ``paper`` preset's results, run or
resumed into runs/two_layer_paper (a finished run is only read; a fresh one takes about 9 minutes
of CPU, 18 minutes wall on a busy 2-core machine), and the house style."""

from pathlib import Path

from greedyprune.plots import apply_style, savefig
from greedyprune.sims import PRESETS, verify_two_layer

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "runs" / "two_layer_paper"
FIT_RANGE = PRESETS["paper"].fit_range


def results():
    """The results table; runs the missing units of the preset first."""
    results, _ = verify_two_layer("paper", RUN, progress=True)
    apply_style()
    return results


def save(fig, name: str) -> None:
    for path in savefig(fig, ROOT / "figures" / name):
        print(f"wrote {path}")
