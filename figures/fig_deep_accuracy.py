"""MNIST-1D and digits: test accuracy against the number of kept hidden neurons, 3 seeds.

Runs (or resumes) ``greedyprune verify deep --preset paper --data mnist1d|digits`` into
runs/deep-paper-<data> and draws figures/deep_accuracy.png/.pdf with
:func:`greedyprune.plots.plot_deep_accuracy`. Prints the accuracy tables (mean +- std over seeds)
it plots.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from greedyprune.plots import (
    DEEP_ACCURACY_METHODS,
    apply_style,
    deep_accuracy_table,
    plot_deep_accuracy,
    savefig,
)
from greedyprune.sims import deep_preset, run_deep

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"mnist1d": "MNIST-1D", "digits": "digits (sklearn)"}


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    apply_style()
    panels = []
    for data in ["mnist1d", "digits"]:
        setting, seeds = deep_preset("paper", data)
        results, _, _ = run_deep(
            setting, seeds, ROOT / "runs" / f"deep-paper-{data}", preset="paper", log=print
        )
        title = f"{NAMES[data]}: depth {setting.depth}, width {setting.width}, {len(seeds)} seeds"
        panels.append((title, results))
        tab = deep_accuracy_table(results)
        ref = results[results["method"] == "full"]
        print(
            f"\n{NAMES[data]} test accuracy % (mean +- std over {len(seeds)} seeds); "
            f"full network {100 * ref['acc_test'].mean():.1f} +- {100 * ref['acc_test'].std():.1f}"
        )
        wide = tab.assign(
            cell=[
                f"{100 * a:.1f}+-{100 * s:.1f} ({k:.0f})"
                for a, s, k in zip(tab["acc"], tab["std"].fillna(0), tab["kept"])
            ]
        ).pivot(index="n", columns="method", values="cell")[list(DEEP_ACCURACY_METHODS)]
        print("cells: accuracy+-std (mean kept neurons); n = steps per layer")
        print(wide.to_string())
    for p in savefig(plot_deep_accuracy(panels), ROOT / "figures" / "deep_accuracy"):
        print("wrote", p.relative_to(ROOT))


if __name__ == "__main__":
    main()
