"""One figure style for every figure, and the two-layer figures.

Everyone calls :func:`apply_style` before drawing and :func:`savefig` to write PNG and PDF. The
plotting functions read long-format result tables (see ``greedyprune.sims``); they never train.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = [
    "METHOD_COLORS",
    "apply_style",
    "plot_bounds",
    "plot_finetune",
    "plot_random_weights",
    "plot_rate",
    "plot_regime",
    "savefig",
    "two_layer_figures",
]

_PALETTE = sns.color_palette("colorblind", 10)
METHOD_COLORS = {
    "greedy_pretrained": _PALETTE[0],
    "gd_scratch": _PALETTE[1],
    "random_subset": _PALETTE[7],
    "magnitude": _PALETTE[4],
    "greedy_corrective": _PALETTE[2],
    "greedy_finetuned": _PALETTE[2],
    "gd_retrain": _PALETTE[3],
    "greedy_random": _PALETTE[0],
}
_LABELS = {
    "greedy_pretrained": "greedy (pretrained N)",
    "gd_scratch": "GD from scratch (width n)",
    "random_subset": "random subset",
    "magnitude": "magnitude",
    "greedy_corrective": "greedy, re-weighted",
    "greedy_finetuned": "greedy + fine-tune",
    "gd_retrain": "re-train from scratch",
}


def apply_style() -> None:
    """The house style: seaborn ``ticks`` with the colorblind palette, readable sizes, no top/right."""
    sns.set_theme(
        context="paper",
        style="ticks",
        palette="colorblind",
        font_scale=1.15,
        rc={
            "figure.dpi": 110,
            "savefig.dpi": 160,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.frameon": False,
            "pdf.fonttype": 42,
        },
    )


def savefig(fig, stem: str | os.PathLike) -> list[Path]:
    """Write ``fig`` to ``stem.png`` and ``stem.pdf`` (folders created) and close it."""
    stem = Path(stem)
    if stem.suffix in (".png", ".pdf"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def _geo_band(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per n: geometric mean over seeds and the min/max band."""
    r = rows[rows[metric] > 0]
    g = r.groupby("n")[metric]
    return pd.DataFrame(
        {"mid": np.exp(g.apply(lambda v: np.log(v).mean())), "lo": g.min(), "hi": g.max()}
    ).reset_index()


def _curve(ax, rows, metric, color, label, *, marker=None, band=True):
    c = _geo_band(rows, metric)
    ax.plot(c["n"], c["mid"], color=color, label=label, marker=marker, ms=3, lw=1.6)
    if band and rows["seed"].nunique() > 1:
        ax.fill_between(c["n"], c["lo"], c["hi"], color=color, alpha=0.15, lw=0)


def _fit_label(rows, metric, fit_range, label):
    from greedyprune.theory import fit_rate

    try:
        f = fit_rate(rows["n"], rows[metric], seed=rows["seed"], n_range=fit_range, n_boot=300)
    except ValueError:
        return label, None
    return f"{label}: slope {f.slope:.2f} [{f.ci_low:.2f}, {f.ci_high:.2f}]", f


def plot_rate(results: pd.DataFrame, fit_range=(90, 1000), metric: str = "loss_train"):
    """Log loss vs log n, one panel per setting, fitted slopes (95% CI over seeds) in the legend."""
    rows = results[results["experiment"] == "rate"]
    settings = list(dict.fromkeys(rows["setting"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(5.2 * len(settings), 4.2), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        sub = rows[rows["setting"] == setting]
        for method in ("greedy_pretrained", "gd_scratch", "random_subset", "magnitude"):
            m = sub[sub["method"] == method]
            if m.empty:
                continue
            label, fit = _fit_label(m, metric, fit_range, _LABELS[method])
            _curve(
                ax,
                m,
                metric,
                METHOD_COLORS[method],
                label,
                marker="o" if method == "gd_scratch" else None,
            )
            if fit is not None and method in ("greedy_pretrained", "gd_scratch"):
                nn = np.geomspace(fit.n_min, fit.n_max, 20)
                ax.plot(nn, fit.predict(nn), ls="--", color="k", lw=0.9, alpha=0.7)
        corr = sub[sub["method"] == "greedy_corrective"]
        if not corr.empty:
            _curve(
                ax, corr, metric, METHOD_COLORS["greedy_corrective"], _LABELS["greedy_corrective"]
            )
        ax.axvspan(*fit_range, color="0.5", alpha=0.07, lw=0)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="subnetwork size n (neurons)",
            ylabel=metric.replace("_", " "),
        )
        ax.set_title(f"setting: {setting}")
        ax.legend(fontsize=7.5, loc="lower left")
    fig.tight_layout()
    return fig


def plot_random_weights(results: pd.DataFrame):
    """Greedy from random-weight networks: loss vs n for each width N (the floor falls with N)."""
    rows = results[results["experiment"] == "random_weights"]
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    widths = sorted(rows["N"].unique())
    colors = sns.color_palette("viridis", len(widths))
    for color, N in zip(colors, widths):
        _curve(ax, rows[rows["N"] == N], "loss_train", color, f"random net, N = {int(N)}")
    pre = results[(results["experiment"] == "rate") & (results["method"] == "greedy_pretrained")]
    if not rows.empty and not pre.empty:
        pre = pre[pre["setting"] == rows["setting"].iloc[0]]
        _curve(ax, pre, "loss_train", "k", "pretrained net (for reference)", band=False)
    ax.set(xscale="log", yscale="log", xlabel="subnetwork size n", ylabel="loss train")
    ax.set_title("greedy selection from random-weight networks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_finetune(results: pd.DataFrame):
    """Test loss of the greedy subnetwork before and after fine-tuning vs re-training from scratch."""
    rows = results[results["experiment"] == "finetune"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.0))
    for ax, metric in zip(axes, ("loss_train", "loss_test")):
        for method, marker in (
            ("greedy_pretrained", "s"),
            ("greedy_finetuned", "o"),
            ("gd_retrain", "^"),
        ):
            m = rows[rows["method"] == method]
            if not m.empty:
                label = (
                    "greedy, before fine-tuning"
                    if method == "greedy_pretrained"
                    else _LABELS[method]
                )
                _curve(ax, m, metric, METHOD_COLORS[method], label, marker=marker)
        ax.set(
            xscale="log", yscale="log", xlabel="subnetwork size n", ylabel=metric.replace("_", " ")
        )
        ax.legend(fontsize=8)
    steps = int(rows["steps"].iloc[0]) if "steps" in rows and not rows.empty else None
    fig.suptitle(f"fine-tune the greedy subnetwork vs re-train (same budget: {steps} GD steps)")
    fig.tight_layout()
    return fig


def plot_bounds(results: pd.DataFrame):
    """Measured e_n against D^2/n (top) and the b_n = n ||f_n - t|| diagnostic (bottom)."""
    rows = results[results["experiment"] == "bounds"]
    settings = list(dict.fromkeys(rows["setting"]))
    fig, axes = plt.subplots(2, len(settings), figsize=(5.2 * len(settings), 7.4), squeeze=False)
    for j, setting in enumerate(settings):
        sub = rows[rows["setting"] == setting]
        for target, color in (("f_N", _PALETTE[0]), ("y", _PALETTE[3])):
            t = sub[sub["target"] == target]
            if t.empty:
                continue
            D = t["D"].median()
            r = t["r_est"].median()
            _curve(axes[0, j], t, "e_n", color, f"e_n toward {target}")
            b = _geo_band(t, "bound_D2_over_n")
            axes[0, j].plot(
                b["n"], b["mid"], ls="--", color=color, lw=1, label=f"D^2/n (D = {D:.2g})"
            )
            _curve(axes[1, j], t, "b_n", color, f"b_n toward {target} (r est. {r:.2g})")
        axes[0, j].set(xscale="log", yscale="log", xlabel="n", ylabel="e_n = ||f_n - t||^2")
        axes[0, j].set_title(f"setting: {setting}")
        axes[1, j].set(xscale="log", yscale="log", xlabel="n", ylabel="b_n = n ||f_n - t||")
        axes[0, j].legend(fontsize=8)
        axes[1, j].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_regime(results: pd.DataFrame):
    """log10(greedy loss / GD loss) over data size m and training budget (negative: greedy wins)."""
    rows = results[results["experiment"] == "regime"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("loss_train", "loss_test")):
        g = rows.pivot_table(index=["m", "budget", "seed"], columns="method", values=metric)
        ratio = np.log10(g["greedy_pretrained"] / g["gd_scratch"]).groupby(["m", "budget"]).mean()
        table = ratio.unstack("budget")
        lim = float(np.nanmax(np.abs(table.to_numpy()))) or 1.0
        sns.heatmap(
            table,
            ax=ax,
            cmap="RdBu_r",
            center=0,
            vmin=-lim,
            vmax=lim,
            annot=True,
            fmt=".1f",
            cbar_kws={"label": "log10(greedy / GD)"},
        )
        n = int(rows["n"].iloc[0]) if not rows.empty else 0
        ax.set_title(f"{metric.replace('_', ' ')} at n = {n} (blue: greedy wins)")
        ax.set(xlabel="training budget (GD steps)", ylabel="data size m")
    fig.tight_layout()
    return fig


def _fit_range_of(out: Path):
    cfg = out / "config.json"
    if cfg.exists():
        rng = json.loads(cfg.read_text()).get("fit_range")
        if rng:
            return tuple(rng)
    return (90, 1000)


def two_layer_figures(results: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """Write every two-layer figure the results allow into ``out`` (PNG and PDF each)."""
    out = Path(out)
    apply_style()
    written: list[Path] = []
    experiments = set(results["experiment"]) if "experiment" in results else set()
    if "rate" in experiments:
        written += savefig(plot_rate(results, _fit_range_of(out)), out / "fig_rate")
    if "random_weights" in experiments:
        written += savefig(plot_random_weights(results), out / "fig_random_weights")
    if "finetune" in experiments:
        written += savefig(plot_finetune(results), out / "fig_finetune")
    if "bounds" in experiments:
        written += savefig(plot_bounds(results), out / "fig_bounds")
    if "regime" in experiments:
        written += savefig(plot_regime(results), out / "fig_regime")
    return [p for p in written if p.suffix == ".png"]
