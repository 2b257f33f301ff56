"""Deep teacher-student: discrepancy to the pretrained network and test loss against width.

Runs (or resumes) ``greedyprune verify deep --preset paper --data teacher`` into
runs/deep-paper-teacher and draws figures/deep_rate.png/.pdf. Prints the fitted slopes it plots.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from greedyprune.plots import apply_style, savefig
from greedyprune.sims import deep_preset, run_deep
from greedyprune.theory import fit_rate

ROOT = Path(__file__).resolve().parents[1]
COLORS = dict(
    zip(
        [
            "greedy_local",
            "greedy_global",
            "greedy_random_net",
            "random_subset",
            "magnitude",
            "gd_scratch",
            "greedy_finetuned",
            "gd_retrain",
        ],
        plt.get_cmap("tab10").colors,
    )
)
LABELS = {
    "greedy_local": "greedy, local imitation",
    "greedy_global": "greedy, global loss",
    "greedy_random_net": "greedy from random weights",
    "random_subset": "random subset",
    "magnitude": "magnitude",
    "gd_scratch": "GD from scratch (width n)",
    "greedy_finetuned": "greedy + fine-tune",
    "gd_retrain": "re-train from scratch",
}


def sizes_axis(ax, sizes) -> None:
    """Log x axis ticked at the measured sizes (plain numbers, no minor labels)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_major_formatter(FixedFormatter([str(n) for n in sizes]))
    ax.xaxis.set_minor_locator(NullLocator())


def curve(
    ax, rows: pd.DataFrame, metric: str, method: str, fit: bool, band: bool = True, ls: str = "-"
) -> str:
    """Geometric mean over seeds with the min-max band; returns the legend label."""
    g = rows[rows[metric] > 0].groupby("n")[metric]
    mid = np.exp(g.apply(lambda v: np.log(v).mean()))
    label = LABELS[method]
    if fit:
        f = fit_rate(rows["n"], rows[metric], seed=rows["seed"], n_boot=1000)
        label += f": {f.slope:.2f} [{f.ci_low:.2f}, {f.ci_high:.2f}]"
    ax.plot(
        mid.index, mid.values, marker="o", ms=3, lw=1.5, ls=ls, color=COLORS[method], label=label
    )
    if band:
        ax.fill_between(mid.index, g.min(), g.max(), color=COLORS[method], alpha=0.15, lw=0)
    return label


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    setting, seeds = deep_preset("paper", "teacher")
    results, verdicts, _ = run_deep(
        setting, seeds, ROOT / "runs" / "deep-paper-teacher", preset="paper", log=print
    )
    apply_style()
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.2))
    rate = results[results["experiment"] == "rate"]
    print("log-log slope of the discrepancy ||f_n - f_N||^2/2 (95% CI over seeds):")
    for method in ["greedy_local", "greedy_global", "random_subset", "magnitude"]:
        label = curve(a, rate[rate["method"] == method], "discrepancy", method, fit=True)
        print("  ", label)
    sizes_axis(a, setting.sizes)
    a.set(
        yscale="log",
        xlabel="neurons per hidden layer n",
        ylabel="discrepancy to the width-N network",
    )
    a.set_title("(a) imitating the pretrained network")
    a.legend(fontsize=7.5, loc="lower left")
    print("log-log slope of the test loss (95% CI over seeds):")
    for method in ["greedy_local", "greedy_global", "greedy_random_net", "gd_scratch"]:
        label = curve(b, rate[rate["method"] == method], "loss_test", method, fit=True, band=False)
        print("  ", label)
    ft = results[results["experiment"] == "finetune"]
    for method in ["greedy_finetuned", "gd_retrain"]:
        curve(b, ft[ft["method"] == method], "loss_test", method, fit=False, band=False, ls="--")
    full = results[(results["experiment"] == "reference") & (results["method"] == "full")]
    b.axhline(
        full["loss_test"].mean(), color="k", ls=":", lw=1, label=f"full network (N={setting.width})"
    )
    sizes_axis(b, setting.sizes)
    b.set(yscale="log", xlabel="neurons per hidden layer n", ylabel="test loss (squared)")
    b.set_title("(b) test loss, deep teacher (dashed: 500 more steps)")
    b.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(
        f"Layer-wise greedy selection, depth {setting.depth}, {len(seeds)} seeds", fontsize=11
    )
    fig.tight_layout()
    for p in savefig(fig, ROOT / "figures" / "deep_rate"):
        print("wrote", p.relative_to(ROOT))
    cols = ["claim", "measured_slope", "ci_low", "ci_high", "verdict"]
    print(verdicts[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
