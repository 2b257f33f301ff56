"""The one figure style: the method style map (one colour, label, marker and line style per
method name, the same in every figure), axis labels in words, the rc settings, the PNG + PDF
writer, and the drawing helpers the front ends share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator


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
