"""Where the fast rate starts: Proposition B's crossover n* = (D / r_est)^2 against the measured
knee of greedy's curve (local log-log slope -1.5), one point per setting of the sweep over the
activation, d and m (greedyprune.sims.two_layer.sweep, config "full"; run or resumed into
runs/two_layer_knee_full: about 5 minutes on 2 busy CPU cores when missing, read otherwise).

(a) toward the pretrained network f_N, (b) toward the labels y: the knee against n*, seed
min-max bars, the line knee = n* and the band of the fixed factor X = 4 sqrt(2); a setting without a
knee in range is drawn at the edge of the range with an arrow (up: the knee, if any, lies beyond
n = 1000/sqrt(2); down: the curve is steeper than -1.5 from the start). (c) the local slopes toward
f_N against n / n*: were n* the knee, every curve would cross -1.5 near 1.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from greedyprune.plots import apply_style, savefig
from greedyprune.sims.two_layer.sweep import KNEE_FACTOR, KNEE_SLOPE, knee_table, run_sweep

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "runs" / "two_layer_knee_full"

M_COLORS = dict(
    zip(
        (5, 10, 20, 50, 100, 200),
        ("#fde725", "#7ad151", "#22a884", "#2a788e", "#414487", "#440154"),
    )
)
MARKERS = {"tanh": "o", "relu": "s"}
TITLES = {"f_N": "toward the pretrained network f_N", "y": "toward the labels y"}


def _color(m: int) -> str:
    return M_COLORS.get(int(m), "0.4")


def knee_panel(ax, table: pd.DataFrame, target: str, letter: str) -> None:
    t = table[table["target"] == target]
    pred = t[np.isfinite(t["n_star"])]
    lo = min(1.0, float(pred["n_star"].min()) / 10) if len(pred) else 1.0
    hi = max(1e4, float(pred["n_star"].max()) * 10) if len(pred) else 1e4
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, color="k", lw=1.0, label="knee = n*")
    ax.fill_between(
        xs,
        xs / KNEE_FACTOR,
        xs * KNEE_FACTOR,
        color="0.5",
        alpha=0.18,
        lw=0,
        label=f"within a factor X = 4√2 ≈ {KNEE_FACTOR:.2f}",
    )
    ax.plot(xs, xs / 4, color="k", lw=0.8, ls=":", label="n*/4 (the envelopes cross)")
    for r in pred.itertuples():
        kw = dict(color=_color(r.m), marker=MARKERS[r.activation], mec="k", mew=0.5, ms=6)
        if r.status == "found":
            ax.errorbar(
                r.n_star,
                r.knee,
                xerr=[[r.n_star - r.n_star_lo], [r.n_star_hi - r.n_star]],
                yerr=[[r.knee - r.knee_lo], [r.knee_hi - r.knee]],
                ls="none",
                elinewidth=0.8,
                capsize=0,
                ecolor=_color(r.m),
                **kw,
            )
        else:
            # censored: the knee is only known to lie beyond the range (or before its start)
            up = r.status == "no_knee_in_range"
            y = r.last if up else r.first
            ax.plot(r.n_star, y, mfc="none", ls="none", **dict(kw, mec=_color(r.m), mew=1.2))
            ax.annotate(
                "",
                xy=(r.n_star, y * (2.2 if up else 1 / 2.2)),
                xytext=(r.n_star, y),
                arrowprops=dict(arrowstyle="->", color=_color(r.m), lw=1.0),
            )
    none = t[~np.isfinite(t["n_star"])]
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, hi),
        ylim=(1.5, 3e3),
        xlabel="predicted crossover n* = (D / r_est)²",
        ylabel="measured knee n (local slope −1.5)",
    )
    title = f"({letter}) {TITLES[target]}"
    if len(none):
        title += f"\n{len(none)} settings without prediction (y outside the hull)"
    ax.set_title(title, fontsize=10)


def slopes_panel(ax, results: pd.DataFrame, table: pd.DataFrame, target: str = "f_N") -> None:
    """Per setting, the mean over seeds of the local slope at each n, against n / n* (the
    setting's n*, the geometric mean over seeds)."""
    curve = results[
        (results["record"] == "curve")
        & (results["target"] == target)
        & results["local_slope"].notna()
    ]
    n_star = table[table["target"] == target].set_index("setting")["n_star"]
    for setting, g in curve.groupby("setting", sort=False):
        ns = n_star.get(setting, np.nan)
        if not np.isfinite(ns):
            continue
        mean = g.groupby("n")["local_slope"].mean()
        ax.plot(
            mean.index / ns,
            mean.to_numpy(),
            color=_color(g["m"].iloc[0]),
            lw=1.0,
            alpha=0.85,
            ls="-" if g["activation"].iloc[0] == "tanh" else "--",
        )
    ax.axhline(KNEE_SLOPE, color="k", lw=1.0, ls=":")
    ax.axvspan(1 / KNEE_FACTOR, KNEE_FACTOR, color="0.5", alpha=0.18, lw=0)
    ax.axvline(1.0, color="k", lw=1.0)
    ax.set(
        xscale="log",
        xlabel="n / n*",
        ylabel="local log-log slope of e_n (mean over seeds)",
        ylim=(-3.0, 0.0),
    )
    ax.set_title("(c) local slope toward f_N against n / n*", fontsize=10)


def legend_handles():
    from matplotlib.lines import Line2D

    hs = [
        Line2D([], [], color=c, marker="o", ls="none", mec="k", mew=0.5, label=f"m = {m}")
        for m, c in M_COLORS.items()
    ]
    hs += [
        Line2D([], [], color="0.6", marker=mk, ls="none", mec="k", mew=0.5, label=act)
        for act, mk in MARKERS.items()
    ]
    hs += [
        Line2D([], [], color="0.6", marker="o", mfc="none", ls="none", label="no knee in n ≤ 707"),
        Line2D([], [], color="k", lw=1.0, label="knee = n*"),
        Line2D([], [], color="k", lw=0.8, ls=":", label="n*/4 (the envelopes cross)"),
        plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.18, label=f"factor X ≈ {KNEE_FACTOR:.2f}"),
        Line2D([], [], color="0.3", lw=0.8, ls="-", label="(c) tanh"),
        Line2D([], [], color="0.3", lw=0.8, ls="--", label="(c) relu"),
    ]
    return hs


def main() -> None:
    done = run_sweep("full", RUN, progress=True)
    results = done.results
    table = knee_table(results)
    apply_style()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6), layout="constrained")
    knee_panel(axes[0], table, "f_N", "a")
    knee_panel(axes[1], table, "y", "b")
    slopes_panel(axes[2], results, table)
    fig.legend(
        handles=legend_handles(),
        loc="outside lower center",
        ncol=8,
        fontsize=8,
        frameon=False,
    )
    for path in savefig(fig, ROOT / "figures" / "two_layer_knee"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
