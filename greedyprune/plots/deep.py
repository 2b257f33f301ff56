"""The deep mean-field figures (``greedyprune.sims.deep``): the rate panels and their fits, the
accuracy table and panels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ._style import (
    _curve,
    _fit,
    _legend_below,
    _references_last,
    _sizes_axis,
    _slope_text,
    axis_label,
    method_style,
)

DEEP_RATE_DISCREPANCY = ("greedy_local", "greedy_global", "random_subset", "magnitude")
DEEP_RATE_TEST = ("greedy_local", "greedy_global", "greedy_random_net", "gd_scratch")


def deep_rate_fits(results: pd.DataFrame, n_boot: int = 1000) -> dict[str, dict[str, object]]:
    """The log-log fits of :func:`plot_deep_rate`: ``{metric: {method: RateFit}}`` (discrepancy
    for the selection methods, test loss for the methods compared on it)."""
    rate = results[results["experiment"] == "rate"]
    out: dict[str, dict[str, object]] = {}
    for metric, methods in (("discrepancy", DEEP_RATE_DISCREPANCY), ("loss_test", DEEP_RATE_TEST)):
        out[metric] = {}
        for method in methods:
            m = rate[rate["method"] == method]
            fit = None if m.empty else _fit(m, metric, n_boot=n_boot)
            if fit is not None:
                out[metric][method] = fit
    return out


def plot_deep_rate(results: pd.DataFrame, *, title: str = "", n_boot: int = 1000):
    """Deep teacher-student: (a) discrepancy to the pretrained network and (b) test loss against
    the neurons per hidden layer, fitted log-log slopes (95% CI over seeds) in the legends;
    (b) also shows fine-tuning against re-training (dashed) and the full network (dotted)."""
    fits = deep_rate_fits(results, n_boot)
    rate = results[results["experiment"] == "rate"]
    sizes = sorted(rate["n"].unique())
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5.4), layout="constrained")
    for ax, metric, methods in (
        (a, "discrepancy", DEEP_RATE_DISCREPANCY),
        (b, "loss_test", DEEP_RATE_TEST),
    ):
        for method in methods:
            m = rate[rate["method"] == method]
            if m.empty:
                continue
            _curve(ax, m, metric, method, band=metric == "discrepancy")
            fit = fits[metric].get(method)
            if fit is not None:
                ax.get_lines()[-1].set_label(f"{method_style(method).label}: {_slope_text(fit)}")
    ft = results[results["experiment"] == "finetune"]
    for method in ("greedy_finetuned", "gd_retrain"):
        m = ft[ft["method"] == method]
        if not m.empty:
            _curve(b, m, "loss_test", method, band=False)
    full = results[(results["experiment"] == "reference") & (results["method"] == "full")]
    if not full.empty:
        s = method_style("full")
        b.axhline(
            full["loss_test"].mean(),
            color=s.color,
            ls=s.ls,
            lw=1,
            label=f"{s.label} (N = {int(full['n'].iloc[0])})",
        )
    for ax in (a, b):
        _sizes_axis(ax, sizes)
        ax.set_yscale("log")
        ax.set_xlabel("neurons per hidden layer n")
    a.set_ylabel(axis_label("discrepancy"))
    b.set_ylabel(axis_label("loss_test"))
    a.set_title("(a) imitating the pretrained network")
    b.set_title("(b) test loss (dashed: after more training)")
    _legend_below(a)
    _legend_below(b)
    if title:
        fig.suptitle(title)
    return fig


DEEP_ACCURACY_METHODS = (
    "greedy_local",
    "greedy_global",
    "random_subset",
    "magnitude",
    "gd_scratch",
    "greedy_finetuned",
    "gd_retrain",
)


def deep_accuracy_table(results: pd.DataFrame, methods=DEEP_ACCURACY_METHODS) -> pd.DataFrame:
    """Per method and n: mean kept neurons, mean and std over seeds of the test accuracy, seeds."""
    rows = results[results["method"].isin(methods)]
    out = rows.groupby(["method", "n"]).agg(
        kept=("kept", "mean"),
        acc=("acc_test", "mean"),
        std=("acc_test", "std"),
        seeds=("seed", "nunique"),
    )
    return out.reset_index()


def plot_deep_accuracy(panels, methods=DEEP_ACCURACY_METHODS):
    """Test accuracy against kept hidden neurons, one panel per data set.

    panels: ``(title, results)`` pairs (results of ``run_deep``, with the ``reference`` rows for
    the full network's accuracy); error bars: std over seeds.
    """
    panels = list(panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.6 * len(panels), 5.0), squeeze=False, layout="constrained"
    )
    for ax, (title, results) in zip(axes[0], panels):
        tab = deep_accuracy_table(results, methods)
        for method in methods:
            t = tab[tab["method"] == method].sort_values("kept")
            if t.empty:
                continue
            s = method_style(method)
            ax.errorbar(
                t["kept"],
                100 * t["acc"],
                yerr=100 * t["std"].fillna(0),
                ms=4,
                lw=1.4,
                capsize=2,
                **s.kwargs(),
            )
        full = results[results["method"] == "full"]
        if not full.empty:
            s = method_style("full")
            ax.axhline(
                100 * full["acc_test"].mean(),
                color=s.color,
                ls=s.ls,
                lw=1,
                label=f"{s.label} ({int(full['kept'].iloc[0])} neurons)"
                if "kept" in full and np.isfinite(full["kept"].iloc[0])
                else s.label,
            )
        _sizes_axis(ax, tab["kept"])
        ax.set(xlabel=axis_label("kept"), ylabel=axis_label("acc_test"), ylim=(0, 100))
        ax.set_title(title)
    handles, labels = _references_last(axes[0, -1])
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8.5)
    return fig


# ---------------------------------------------------------------------------------------------
# channel-pruning figures
