"""One figure style for every figure: the method style map, axis labels in words, and every figure.

Everyone calls :func:`apply_style` before drawing and :func:`savefig` to write PNG and PDF. A method
is drawn with :func:`method_style` (one colour, label, marker and line style per method name, the
same in every figure) and an axis is labelled with :func:`axis_label` (words, not column names).
The plotting functions read long-format result tables (see ``greedyprune.sims`` and
``greedyprune.prune.compare``); they never train. Two-layer: :func:`plot_rate`,
:func:`plot_random_weights`, :func:`plot_finetune`, :func:`plot_bounds`, :func:`plot_regime`.
Deep: :func:`plot_deep_rate`, :func:`plot_deep_accuracy`. Channel pruning: :func:`plot_prune_compare`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator, NullLocator

__all__ = [
    "AXIS_LABELS",
    "METHOD_COLORS",
    "METHOD_STYLES",
    "MethodStyle",
    "apply_style",
    "axis_label",
    "deep_accuracy_table",
    "deep_rate_fits",
    "method_style",
    "plot_bounds",
    "plot_deep_accuracy",
    "plot_deep_rate",
    "plot_finetune",
    "plot_prune_compare",
    "plot_random_weights",
    "plot_rate",
    "plot_regime",
    "savefig",
    "two_layer_figures",
]


@dataclass(frozen=True)
class MethodStyle:
    """How one method is drawn in every figure: colour, legend label, marker and line style."""

    color: str
    label: str
    marker: str = "o"
    ls: str = "-"

    def kwargs(self) -> dict:
        """Keyword arguments for ``Axes.plot`` / ``Axes.errorbar``."""
        return {"color": self.color, "label": self.label, "marker": self.marker, "ls": self.ls}


# Colours: seaborn's colorblind palette first, then Paul Tol's for the rarer methods. One family of
# methods shares a colour across the front ends (greedy from a trained network: blue; GD from
# scratch: orange; re-training the pruned widths from scratch: vermillion; random: grey; magnitude:
# pink); the names of one front end never share a colour with each other. Dashed: a network trained
# again after selection (fine-tuning or re-training); dotted: a reference network.
_BLUE, _ORANGE, _GREEN, _VERMILLION, _PINK = "#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc"
_GREY, _SKY, _INDIGO, _WINE, _OLIVE, _TEAL = (
    "#949494",
    "#56b4e9",
    "#332288",
    "#882255",
    "#999933",
    "#44aa99",
)
METHOD_STYLES: dict[str, MethodStyle] = {
    # two-layer (greedyprune.sims.two_layer) and deep (greedyprune.sims.deep) result names
    "greedy_pretrained": MethodStyle(_BLUE, "greedy from the pretrained net", "o"),
    "greedy_local": MethodStyle(_BLUE, "greedy, local imitation", "o"),
    "greedy_global": MethodStyle(_SKY, "greedy, global loss", "s"),
    "greedy_corrective": MethodStyle(_WINE, "greedy, re-weighted (corrective)", "D"),
    "greedy_random": MethodStyle(_GREEN, "greedy from random weights", "v"),
    "greedy_random_net": MethodStyle(_GREEN, "greedy from random weights", "v"),
    "greedy_finetuned": MethodStyle(_INDIGO, "greedy + fine-tuning", "P", "--"),
    "gd_scratch": MethodStyle(_ORANGE, "GD from scratch (width n)", "o"),
    "gd_retrain": MethodStyle(_VERMILLION, "re-train from scratch (same widths)", "^", "--"),
    "random_subset": MethodStyle(_GREY, "random subset", "x"),
    "magnitude": MethodStyle(_PINK, "magnitude", "*"),
    "full": MethodStyle("#000000", "full pretrained network", "", ":"),
    "random_init": MethodStyle("#555555", "random-weight network it started from", "", "-."),
    # layer-wise selection (greedyprune.sims.deep.layerwise_select method=...)
    "local": MethodStyle(_BLUE, "greedy, local imitation", "o"),
    "global": MethodStyle(_SKY, "greedy, global loss", "s"),
    # channel pruning (greedyprune.prune.SELECTION_METHODS) and the bound diagnostics
    "greedy": MethodStyle(_BLUE, "greedy forward selection", "o"),
    "l1": MethodStyle(_PINK, "L1 magnitude", "s"),
    "taylor": MethodStyle(_OLIVE, "Taylor", "^"),
    "bn": MethodStyle(_TEAL, "BN scale", "v"),
    "random": MethodStyle(_GREY, "random selection", "x"),
    "uniform": MethodStyle(_VERMILLION, "uniform width, trained from scratch", "D", "--"),
    "ispasp": MethodStyle("#ca9161", "i-SpaSP (consumers' outputs)", "h"),
    "ispasp-seq": MethodStyle("#ca9161", "i-SpaSP, group after group", "H", "--"),
    # local imitation (greedyprune.prune.LOCAL_METHODS): greedy's family, told apart by marker
    "greedy-local": MethodStyle(_SKY, "greedy, local imitation (1/k average) + refit", "s"),
    "greedy-local-omp": MethodStyle(_INDIGO, "greedy, local, per-channel scale + refit", "^"),
    "greedy-local-refit": MethodStyle(_INDIGO, "greedy, local, full refit", "D"),
    # the local peers (same layer problems)
    "thinet": MethodStyle(_OLIVE, "ThiNet (backward, dense weights) + refit", "v"),
    "cp": MethodStyle(_TEAL, "Channel Pruning (LASSO) + refit", "P"),
    "osscar": MethodStyle(_WINE, "OSSCAR (backward by refit, swaps) + refit", "X"),
    # fine-tune against re-train (compare's width rules, greedyprune.prune.WIDTH_RULES)
    "metapruner": MethodStyle(_GREEN, "Torch-Pruning MetaPruner (global)", "P"),
    "scratch-E": MethodStyle(_ORANGE, "greedy's widths from scratch, E epochs", "s", "--"),
    "scratch-B": MethodStyle(_WINE, "greedy's widths from scratch, budget B", "D", "--"),
}
METHOD_COLORS = {name: style.color for name, style in METHOD_STYLES.items()}


def method_style(method: str) -> MethodStyle:
    """The one style of ``method`` (KeyError naming the known methods if it has none)."""
    try:
        return METHOD_STYLES[method]
    except KeyError:
        raise KeyError(
            f"method {method!r} has no style in greedyprune.plots.METHOD_STYLES; add one "
            f"(known: {', '.join(METHOD_STYLES)})"
        ) from None


AXIS_LABELS = {
    "n": "subnetwork size n (neurons)",
    "N": "width N of the big network",
    "m": "number of training points m",
    "budget": "training budget (GD steps)",
    "loss_train": "training loss",
    "loss_test": "test loss",
    "acc_train": "training accuracy (%)",
    "acc_test": "test accuracy (%)",
    "discrepancy": "discrepancy to the full network",
    "e_n": "squared distance to the target, e_n",
    "b_n": "n × distance to the target, b_n",
    "kept": "kept hidden neurons (all layers)",
    "macs_fraction": "MACs kept (% of the unpruned model)",
    "acc_finetuned": "test accuracy after fine-tuning (%)",
    "acc_pruned": "test accuracy before fine-tuning (%)",
}


def axis_label(column: str) -> str:
    """An axis label in words for a result column (its name with spaces for an unknown one)."""
    return AXIS_LABELS.get(column, column.replace("_", " "))


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


# ---------------------------------------------------------------------------------------------
# shared pieces


def _geo_band(rows: pd.DataFrame, metric: str, x: str = "n") -> pd.DataFrame:
    """Per x: geometric mean over seeds and the min/max band."""
    r = rows[rows[metric] > 0]
    g = r.groupby(x)[metric]
    return pd.DataFrame(
        {"mid": np.exp(g.apply(lambda v: np.log(v).mean())), "lo": g.min(), "hi": g.max()}
    ).reset_index()


def _markevery(points: int):
    """All markers on a short curve; about ten, evenly spaced on a log axis, on a long one."""
    if points <= 25:
        return None
    return sorted({int(i) for i in np.geomspace(1, points, 10) - 1})


def _curve(ax, rows, metric, method, *, band=True, label=None, color=None, x="n"):
    """Geometric mean over seeds (and the min-max band) of ``metric`` against ``x``, in the style
    of ``method``; ``label`` / ``color`` only where a figure encodes something else (e.g. N)."""
    s = method_style(method)
    c = _geo_band(rows, metric, x)
    ax.plot(
        c[x],
        c["mid"],
        color=color or s.color,
        label=s.label if label is None else label,
        marker=s.marker or None,
        ls=s.ls,
        ms=4,
        lw=1.6,
        markevery=_markevery(len(c)),
    )
    if band and rows["seed"].nunique() > 1:
        ax.fill_between(c[x], c["lo"], c["hi"], color=color or s.color, alpha=0.15, lw=0)


def _fit(rows, metric, fit_range=None, n_boot=300):
    from greedyprune.theory import fit_rate

    try:
        return fit_rate(
            rows["n"], rows[metric], seed=rows["seed"], n_range=fit_range, n_boot=n_boot
        )
    except ValueError:
        return None


def _slope_text(fit) -> str:
    return f"slope {fit.slope:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}]"


def _darker(color, by: float = 0.45):
    return tuple(c * (1 - by) for c in to_rgb(color))


def _fit_line(ax, fit, color, label):
    """The fitted power law over the fit's n range: dashed, a darker shade of the method's colour
    so that it shows on top of the method's own curve."""
    nn = np.geomspace(fit.n_min, fit.n_max, 20)
    ax.plot(nn, fit.predict(nn), ls=(0, (3, 1.5)), color=_darker(color), lw=1.5, label=label)


def _legend_below(ax, ncol=1, **kw):
    """The legend under the axes (off the data); it travels with the axes in the layout."""
    kw.setdefault("fontsize", 8)
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, **kw)


def _references_last(ax):
    """Legend handles and labels of ``ax`` with the plain lines (reference levels) after the
    error-bar series."""
    pairs = list(zip(*ax.get_legend_handles_labels()))
    pairs.sort(key=lambda p: isinstance(p[0], Line2D))
    return [h for h, _ in pairs], [lab for _, lab in pairs]


def _blank():
    return Line2D([], [], color="none", label=" ")


def _sizes_axis(ax, sizes) -> None:
    """Log x axis ticked at the measured sizes (plain numbers, no minor labels)."""
    sizes = sorted({round(float(s)) for s in sizes})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_major_formatter(FixedFormatter([str(s) for s in sizes]))
    ax.xaxis.set_minor_locator(NullLocator())


SETTING_TITLES = {
    "interior": "labels inside the hull (interior)",
    "boundary": "labels on the hull's boundary (boundary)",
}


def _setting_title(setting: str) -> str:
    return SETTING_TITLES.get(setting, f"setting: {setting}")


# ---------------------------------------------------------------------------------------------
# two-layer figures

RATE_METHODS = ("greedy_pretrained", "gd_scratch", "random_subset", "magnitude")


def plot_rate(
    results: pd.DataFrame, fit_range=(90, 1000), metric: str = "loss_train", n_boot: int = 1000
):
    """Loss vs n (log-log), one panel per setting, with the power-law fits and the fit range in
    the legend (slope and 95% CI over seeds); re-weighted greedy, whose loss falls exponentially to
    round-off, gets a panel of its own (with greedy for reference) so it does not squeeze the rest.
    """
    rows = results[results["experiment"] == "rate"]
    settings = list(dict.fromkeys(rows["setting"]))
    corr = [
        s
        for s in settings
        if ((rows["setting"] == s) & (rows["method"] == "greedy_corrective")).any()
    ]
    ncols = len(settings) + len(corr)
    fig, axes = plt.subplots(
        1, ncols, figsize=(5.0 * ncols, 5.6), squeeze=False, layout="constrained"
    )
    letters = iter("abcdefghij")
    for ax, setting in zip(axes[0], settings):
        sub = rows[rows["setting"] == setting]
        curves, fits = [], []
        for method in RATE_METHODS:
            m = sub[sub["method"] == method]
            if m.empty:
                continue
            s = method_style(method)
            _curve(ax, m, metric, method)
            curves.append(ax.get_lines()[-1])
            fit = _fit(m, metric, fit_range, n_boot)
            if fit is not None:
                _fit_line(ax, fit, s.color, f"fit, {_slope_text(fit)}")
                fits.append(ax.get_lines()[-1])
            else:
                fits.append(_blank())
        span = ax.axvspan(*fit_range, color="0.5", alpha=0.08, lw=0)
        span.set_label(f"fit range n = {fit_range[0]}..{fit_range[1]}")
        ax.set(xscale="log", yscale="log", xlabel=axis_label("n"), ylabel=axis_label(metric))
        ax.set_title(f"({next(letters)}) {_setting_title(setting)}")
        # two columns: the methods (and the fit range) on the left, their fits on the right
        handles = [*curves, span, *fits, _blank()]
        _legend_below(ax, ncol=2, handles=handles, columnspacing=1.0, handlelength=2.2)
    for ax, setting in zip(axes[0][len(settings) :], corr):
        sub = rows[rows["setting"] == setting]
        c = sub[sub["method"] == "greedy_corrective"]
        n_top = int(c["n"].max())
        g = sub[(sub["method"] == "greedy_pretrained") & (sub["n"] <= n_top)]
        if not g.empty:
            _curve(ax, g, metric, "greedy_pretrained")
        _curve(ax, c, metric, "greedy_corrective")
        # linear n: an exponential decay is a straight line
        ax.set(yscale="log", xlabel=axis_label("n"), ylabel=axis_label(metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"({next(letters)}) re-weighted greedy, {setting} (linear n)")
        _legend_below(ax)
    return fig


def plot_random_weights(results: pd.DataFrame):
    """Greedy from random-weight networks: loss vs n for each width N (the floor falls with N)."""
    rows = results[results["experiment"] == "random_weights"]
    fig, ax = plt.subplots(figsize=(6.2, 5.4), layout="constrained")
    widths = sorted(rows["N"].unique())
    # a sequential palette away from the blue of the pretrained network's greedy curve
    colors = sns.color_palette("flare", len(widths)).as_hex()
    for color, N in zip(colors, widths):
        m = rows[rows["N"] == N]
        label = f"{method_style('greedy_random').label}, N = {int(N)}"
        _curve(ax, m, "loss_train", "greedy_random", color=color, label=label)
    pre = results[(results["experiment"] == "rate") & (results["method"] == "greedy_pretrained")]
    if not rows.empty and not pre.empty:
        pre = pre[pre["setting"] == rows["setting"].iloc[0]]
        width = pre["N"].iloc[0] if "N" in pre and not pre.empty else None
        label = method_style("greedy_pretrained").label
        if width is not None and np.isfinite(width):
            label += f", N = {int(width)}"
        _curve(ax, pre, "loss_train", "greedy_pretrained", band=False, label=label)
    ax.set(xscale="log", yscale="log", xlabel=axis_label("n"), ylabel=axis_label("loss_train"))
    ax.set_title("greedy selection from random-weight networks of width N")
    _legend_below(ax, fontsize=8.5)
    return fig


def plot_finetune(results: pd.DataFrame):
    """Train and test loss of the greedy subnetwork before and after fine-tuning, against
    re-training the same widths from scratch with the same budget."""
    rows = results[results["experiment"] == "finetune"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
    for ax, metric in zip(axes, ("loss_train", "loss_test")):
        for method in ("greedy_pretrained", "greedy_finetuned", "gd_retrain"):
            m = rows[rows["method"] == method]
            if not m.empty:
                _curve(ax, m, metric, method)
        ax.set(xscale="log", yscale="log", xlabel=axis_label("n"), ylabel=axis_label(metric))
        ax.set_title(axis_label(metric))
    steps = int(rows["steps"].iloc[0]) if "steps" in rows and not rows.empty else None
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8.5)
    fig.suptitle(
        f"fine-tune the greedy subnetwork or re-train its width (same budget: {steps} GD steps)"
    )
    return fig


def plot_bounds(results: pd.DataFrame):
    """Measured e_n against D^2/n (top) and the b_n = n ||f_n - t|| diagnostic (bottom), toward
    the big network f_N and toward the labels y.

    D = max_i ||phi_i - t|| is set by the feature farthest from the target; when the targets are
    close to each other next to that distance the two D differ by a fraction of a percent, and one
    bound line is drawn for both, its label saying by how much they differ. Otherwise each target
    has its own line (dashed toward f_N, dotted toward y)."""
    rows = results[results["experiment"] == "bounds"]
    settings = list(dict.fromkeys(rows["setting"]))
    fig, axes = plt.subplots(
        2, len(settings), figsize=(5.4 * len(settings), 8.4), squeeze=False, layout="constrained"
    )
    targets = (("f_N", "the big network f_N", _BLUE, "--"), ("y", "the labels y", _VERMILLION, ":"))
    for j, setting in enumerate(settings):
        sub = rows[rows["setting"] == setting]
        top, bottom = axes[0, j], axes[1, j]
        bounds = {}
        for target, words, color, _ in targets:
            t = sub[sub["target"] == target]
            if t.empty:
                continue
            bounds[target] = (float(t["D"].median()), _geo_band(t, "bound_D2_over_n"))
            r = float(t["r_est"].median())
            _curve(top, t, "e_n", "greedy", color=color, label=f"greedy toward {words}")
            _curve(
                bottom,
                t,
                "b_n",
                "greedy",
                color=color,
                label=f"toward {words} (margin r ≈ {r:.2g})",
            )
        Ds = [D for D, _ in bounds.values()]
        gap = (max(Ds) - min(Ds)) / max(Ds) if len(Ds) == 2 else 1.0
        if gap < 0.01:
            D, b = next(iter(bounds.values()))
            top.plot(
                b["n"],
                b["mid"],
                ls="--",
                color="k",
                lw=1.2,
                label=f"bound D²/n, D = {D:.3g} for both targets (they differ by {100 * gap:.1g}%)",
            )
        else:
            for target, words, color, bound_ls in targets:
                if target in bounds:
                    D, b = bounds[target]
                    top.plot(
                        b["n"],
                        b["mid"],
                        ls=bound_ls,
                        color=color,
                        lw=1.4,
                        label=f"bound D²/n toward {words} (D = {D:.3g})",
                    )
        top.set(xscale="log", yscale="log", xlabel=axis_label("n"), ylabel=axis_label("e_n"))
        top.set_title(_setting_title(setting))
        bottom.set(xscale="log", yscale="log", xlabel=axis_label("n"), ylabel=axis_label("b_n"))
        bottom.set_title(
            "b_n levels off if the target is inside the hull with a margin,\n"
            "grows like √n if it is on the boundary",
            fontsize=9,
        )
        _legend_below(top, fontsize=7.5)
        _legend_below(bottom, fontsize=7.5)
    return fig


def plot_regime(results: pd.DataFrame):
    """log10(greedy loss / GD loss) over data size m and training budget (negative: greedy wins)."""
    rows = results[results["experiment"] == "regime"]
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.0), layout="constrained")
    fig.get_layout_engine().set(wspace=0.12)
    n = int(rows["n"].iloc[0]) if not rows.empty else 0
    for ax, metric in zip(axes, ("loss_train", "loss_test")):
        g = rows.pivot_table(index=["m", "budget", "seed"], columns="method", values=metric)
        ratio = np.log10(g["greedy_pretrained"] / g["gd_scratch"]).groupby(["m", "budget"]).mean()
        table = ratio.unstack("budget")
        table.index = [f"{v:g}" for v in table.index]  # 10, not 10.0
        table.columns = [f"{v:g}" for v in table.columns]
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
            cbar_kws={"label": "log10(greedy loss / GD loss)"},
        )
        ax.set_title(f"{axis_label(metric)} at n = {n} (blue: greedy wins)")
        ax.set(xlabel=axis_label("budget"), ylabel=axis_label("m"))
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


# ---------------------------------------------------------------------------------------------
# deep figures

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
