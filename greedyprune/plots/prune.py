"""The channel-pruning figures (``greedyprune.prune.compare``): accuracy against MACs."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ._style import (
    _references_last,
    axis_label,
    method_style,
)


def plot_prune_compare(
    table: pd.DataFrame, full_acc: dict[str, float] | None = None, *, titles=None, ylabel=None
):
    """Accuracy after fine-tuning against the MACs kept, one panel per architecture.

    table: ``greedyprune.prune.summarize`` of a ``compare`` (mean and std over seeds per arch,
    target and method); full_acc: the unpruned accuracy per arch (a dotted line); titles: per arch;
    ylabel: the y label (default: test accuracy after fine-tuning).
    Points of different methods at one target are spread a little along x so error bars do not
    hide each other.
    """
    archs = list(dict.fromkeys(table["arch"]))
    methods = list(dict.fromkeys(table["method"]))
    fig, axes = plt.subplots(
        1,
        len(archs),
        figsize=(5.2 * len(archs), 4.8),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, arch in zip(axes[0], archs):
        rows = table[table["arch"] == arch]
        if full_acc and arch in full_acc:
            s = method_style("full")
            ax.axhline(100 * full_acc[arch], color=s.color, ls=s.ls, lw=1, label="unpruned network")
        for i, method in enumerate(methods):
            r = rows[rows["method"] == method].sort_values("macs_fraction_mean")
            if r.empty:
                continue
            shift = 1 + 0.012 * (i - (len(methods) - 1) / 2)
            ax.errorbar(
                100 * r["macs_fraction_mean"] * shift,
                100 * r["acc_finetuned_mean"],
                yerr=100 * r["acc_finetuned_std"].fillna(0),
                capsize=3,
                ms=5,
                lw=1.4,
                **method_style(method).kwargs(),
            )
        ax.set_title((titles or {}).get(arch, arch))
        ax.set_xlabel(axis_label("macs_fraction"))
    axes[0, 0].set_ylabel(ylabel or axis_label("acc_finetuned"))
    handles, labels = _references_last(axes[0, -1])
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8.5)
    return fig


def plot_prune_finetune(df: pd.DataFrame, methods, *, labels=None, title: str = ""):
    """Accuracy curves of fine-tuning against re-training: one panel per target, test accuracy
    after each epoch of training after pruning (``compare(..., curves=True)``'s ``acc_curve``:
    the mean over seeds and their min-max band) for each of ``methods``, and the unpruned
    network's accuracy. ``labels``: method -> legend text (default: the style map's); ``title``:
    what the panels show, before the target's share of the MACs. Returns the figure."""
    labels = labels or {}
    targets = list(dict.fromkeys(df["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 3.8), squeeze=False)
    full = 100 * float(df["acc_full"].iloc[0])
    for ax, target in zip(axes[0], targets):
        for method in methods:
            rows = df[(df["target"] == target) & (df["method"] == method)]
            if rows.empty:
                continue
            curves = [json.loads(c) for c in rows["acc_curve"]]
            n = min(len(c) for c in curves)
            acc = 100 * np.array([c[:n] for c in curves])
            x = np.arange(1, n + 1)
            style = method_style(method)
            label = f"{labels.get(method, style.label)} ({len(curves)} seeds)"
            ax.plot(x, acc.mean(0), color=style.color, ls=style.ls, label=label)
            ax.fill_between(x, acc.min(0), acc.max(0), color=style.color, alpha=0.18, lw=0)
        ax.axhline(full, color="black", ls=":", lw=1, label="unpruned network")
        ax.set_xscale("log")
        ax.set_xlabel("epochs of training after pruning (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{title}{float(target):.0%} of the MACs")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
