"""MNIST-1D and digits: test accuracy against the number of kept hidden neurons, 3 seeds.

Runs (or resumes) ``greedyprune verify deep --preset paper --data mnist1d|digits`` into
runs/deep-paper-<data> and draws figures/deep_accuracy.png/.pdf. Prints the accuracy tables
(mean +- std over seeds) it plots.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from greedyprune.plots import apply_style, savefig
from greedyprune.sims import deep_preset, run_deep

ROOT = Path(__file__).resolve().parents[1]
METHODS = [
    "greedy_local",
    "greedy_global",
    "random_subset",
    "magnitude",
    "gd_scratch",
    "greedy_finetuned",
    "gd_retrain",
]
COLORS = dict(zip(METHODS, plt.get_cmap("tab10").colors))
LABELS = {
    "greedy_local": "greedy, local imitation",
    "greedy_global": "greedy, global loss",
    "random_subset": "random subset",
    "magnitude": "magnitude",
    "gd_scratch": "GD from scratch (same budget)",
    "greedy_finetuned": "greedy local + fine-tune",
    "gd_retrain": "re-train kept widths from scratch",
}
NAMES = {"mnist1d": "MNIST-1D", "digits": "digits (sklearn)"}


def table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of the test accuracy (%) and of the kept neurons, per method and n."""
    rows = results[results["method"].isin(METHODS)]
    g = rows.groupby(["method", "n"])
    out = g.agg(
        kept=("kept", "mean"),
        acc=("acc_test", "mean"),
        std=("acc_test", "std"),
        seeds=("seed", "nunique"),
    )
    return out.reset_index()


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    apply_style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, data in zip(axes, ["mnist1d", "digits"]):
        setting, seeds = deep_preset("paper", data)
        results, _, _ = run_deep(
            setting, seeds, ROOT / "runs" / f"deep-paper-{data}", preset="paper", log=print
        )
        tab = table(results)
        for method in METHODS:
            t = tab[tab["method"] == method].sort_values("kept")
            ax.errorbar(
                t["kept"],
                100 * t["acc"],
                yerr=100 * t["std"].fillna(0),
                marker="o",
                ms=3,
                lw=1.4,
                capsize=2,
                color=COLORS[method],
                label=LABELS[method],
                ls="--" if method in ("greedy_finetuned", "gd_retrain") else "-",
            )
        ref = results[results["method"] == "full"]
        full = 100 * ref["acc_test"].mean()
        ax.axhline(
            full,
            color="k",
            ls=":",
            lw=1,
            label=f"full network ({setting.width * setting.depth} neurons)",
        )
        ticks = sorted({round(float(k)) for k in tab["kept"]})
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter([str(k) for k in ticks]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set(xlabel="kept hidden neurons (all layers)", ylabel="test accuracy (%)")
        ax.set_title(
            f"{NAMES[data]}: depth {setting.depth}, width {setting.width}, {len(seeds)} seeds"
        )
        ax.set_ylim(0, 100)
        print(
            f"\n{NAMES[data]} test accuracy % (mean +- std over {len(seeds)} seeds); "
            f"full network {full:.1f} +- {100 * ref['acc_test'].std():.1f}"
        )
        wide = tab.assign(
            cell=[
                f"{100 * a:.1f}+-{100 * s:.1f} ({k:.0f})"
                for a, s, k in zip(tab["acc"], tab["std"].fillna(0), tab["kept"])
            ]
        ).pivot(index="n", columns="method", values="cell")[METHODS]
        print("cells: accuracy+-std (mean kept neurons); n = steps per layer")
        print(wide.to_string())
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    for p in savefig(fig, ROOT / "figures" / "deep_accuracy"):
        print("wrote", p.relative_to(ROOT))


if __name__ == "__main__":
    main()
