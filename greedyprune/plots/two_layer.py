"""The two-layer mean-field figures (``greedyprune.sims.two_layer``): rate, random weights,
fine-tuning, bounds, regime, and the set ``verify two-layer`` writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from ._style import (
    _BLUE,
    _GREEN,
    _VERMILLION,
    _blank,
    _curve,
    _fit,
    _fit_line,
    _geo_band,
    _legend_below,
    _setting_title,
    _slope_text,
    apply_style,
    axis_label,
    method_style,
    savefig,
)

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


def _m_colors(ms):
    cmap = plt.get_cmap("viridis_r")
    return {m: cmap(0.1 + 0.85 * i / max(1, len(ms) - 1)) for i, m in enumerate(ms)}


def plot_budget(results: pd.DataFrame, table: pd.DataFrame, fits: dict, *, n: int, target: float):
    """The budget study's figure: (a) the pretraining steps greedy at size ``n`` needs to reach
    ``target`` times L(0) against m (each seed, the geometric mean with the seeds' min-max) with
    the two fitted forms of ``fits`` (``budget.compare_fits``) and their R^2; (b) the curves they
    come from, greedy's relative loss at ``n`` against the steps, per m, with the dense network's
    own (dashed). ``table``: ``budget.steps_table``. Returns the figure."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12.5, 5.4), layout="constrained")
    _budget_steps_panel(ax, table, fits, n, target)
    _budget_curves_panel(bx, results, n, target)
    return fig


def _budget_steps_panel(ax, table: pd.DataFrame, fits: dict, n: int, target: float) -> None:
    """(a): the steps needed per (m, seed), their geometric mean per m, and both fits."""
    greedy = method_style("greedy_pretrained")

    reached = table[table["status"] == "reached"]
    ax.plot(
        reached["m"],
        reached["steps_needed"],
        ls="none",
        marker=".",
        color=greedy.color,
        alpha=0.45,
        label="one seed",
    )
    g = reached.groupby("m")["steps_needed"]
    mid = np.exp(g.apply(lambda v: np.log(v).mean()))
    ax.errorbar(
        mid.index,
        mid.to_numpy(),
        yerr=[mid - g.min(), g.max() - mid],
        ls="none",
        marker=greedy.marker,
        color=greedy.color,
        capsize=3,
        label=f"geometric mean over {table['seed'].nunique()} seeds (bars: min-max)",
    )
    mm = np.geomspace(reached["m"].min(), reached["m"].max(), 100)
    if fits["verdict"] != "no data":
        ax.plot(
            mm,
            fits["log_a"] + fits["log_b"] * np.log(mm),
            color=_VERMILLION,
            lw=1.6,
            label=(
                f"T = {fits['log_a']:.3g} + {fits['log_b']:.3g} log m  (R² {fits['r2_log']:.2f})"
            ),
        )
        ax.plot(
            mm,
            fits["power_c"] * mm ** fits["power_p"],
            color=_GREEN,
            lw=1.6,
            ls="--",
            label=(
                f"T = {fits['power_c']:.3g} m^{fits['power_p']:.2f}  (R² {fits['r2_power']:.2f})"
            ),
        )
    other = table[table["status"] != "reached"]
    title = f"(a) pretraining steps before greedy (n = {n}) reaches {target:g} L(0)"
    if len(other):
        title += f"\n{len(other)} (m, seed) not reached or reached at step 0 (not drawn)"
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=axis_label("m"),
        ylabel="GD steps needed, T",
        title=title,
    )
    ax.set_title(ax.get_title(), fontsize=10)
    verdict = (
        f"{fits['verdict']}: RSS(power) - RSS(log) = {fits['rss_diff']:.2f}, "
        f"95% seed interval [{fits['rss_diff_lo']:.2f}, {fits['rss_diff_hi']:.2f}]"
        if fits["verdict"] != "no data"
        else fits["reason"]
    )
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        fontsize=8,
        title=verdict,
        title_fontsize=8,
    )


def _budget_curves_panel(bx, results: pd.DataFrame, n: int, target: float) -> None:
    """(b): greedy's relative loss at ``n`` against the pretraining steps, per m."""
    rows = results[results["n"] == n]
    colors = _m_colors(sorted(rows["m"].unique()))
    for m, sub in rows.groupby("m"):
        c = sub.groupby("step")[["loss_rel", "dense_rel"]].apply(
            lambda v: np.exp(np.log(v.clip(lower=1e-300)).mean())
        )
        steps = np.maximum(c.index.to_numpy(), 0.5)  # step 0 drawn at 0.5 on the log axis
        bx.plot(steps, c["loss_rel"], color=colors[m], lw=1.6, label=f"m = {m}")
        bx.plot(steps, c["dense_rel"], color=colors[m], lw=1.0, ls="--")
    bx.axhline(target, color="k", lw=1.0, ls=":", label=f"target {target:g} L(0)")
    bx.plot([], [], color="0.4", lw=1.0, ls="--", label="the dense network itself")
    bx.set(
        xscale="log",
        yscale="log",
        ylim=(1e-3, 2),
        xlabel="pretraining GD steps (step 0 drawn at 0.5)",
        ylabel="training loss / L(0)",
    )
    bx.set_title(f"(b) greedy at n = {n} from each checkpoint", fontsize=10)
    bx.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, fontsize=8)


_KNEE_M_COLORS = dict(
    zip(
        (5, 10, 20, 50, 100, 200),
        ("#fde725", "#7ad151", "#22a884", "#2a788e", "#414487", "#440154"),
    )
)
_KNEE_MARKERS = {"tanh": "o", "relu": "s"}
_KNEE_TITLES = {"f_N": "toward the pretrained network f_N", "y": "toward the labels y"}


def _knee_color(m: int) -> str:
    return _KNEE_M_COLORS.get(int(m), "0.4")


def _knee_panel(ax, table: pd.DataFrame, target: str, letter: str, factor: float) -> None:
    t = table[table["target"] == target]
    pred = t[np.isfinite(t["n_star"])]
    lo = min(1.0, float(pred["n_star"].min()) / 10) if len(pred) else 1.0
    hi = max(1e4, float(pred["n_star"].max()) * 10) if len(pred) else 1e4
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, color="k", lw=1.0, label="knee = n*")
    ax.fill_between(
        xs,
        xs / factor,
        xs * factor,
        color="0.5",
        alpha=0.18,
        lw=0,
        label=f"within a factor X ≈ {factor:.2f}",
    )
    ax.plot(xs, xs / 4, color="k", lw=0.8, ls=":", label="n*/4 (the envelopes cross)")
    for r in pred.itertuples():
        kw = dict(
            color=_knee_color(r.m), marker=_KNEE_MARKERS[r.activation], mec="k", mew=0.5, ms=6
        )
        if r.status == "found":
            ax.errorbar(
                r.n_star,
                r.knee,
                xerr=[[r.n_star - r.n_star_lo], [r.n_star_hi - r.n_star]],
                yerr=[[r.knee - r.knee_lo], [r.knee_hi - r.knee]],
                ls="none",
                elinewidth=0.8,
                capsize=0,
                ecolor=_knee_color(r.m),
                **kw,
            )
        else:
            # censored: the knee is only known to lie beyond the range (or before its start)
            up = r.status == "no_knee_in_range"
            y = r.last if up else r.first
            ax.plot(r.n_star, y, mfc="none", ls="none", **dict(kw, mec=_knee_color(r.m), mew=1.2))
            ax.annotate(
                "",
                xy=(r.n_star, y * (2.2 if up else 1 / 2.2)),
                xytext=(r.n_star, y),
                arrowprops=dict(arrowstyle="->", color=_knee_color(r.m), lw=1.0),
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
    title = f"({letter}) {_KNEE_TITLES[target]}"
    if len(none):
        title += f"\n{len(none)} settings without prediction (y outside the hull)"
    ax.set_title(title, fontsize=10)


def _slopes_panel(
    ax, results: pd.DataFrame, table: pd.DataFrame, factor: float, slope: float, target: str = "f_N"
) -> None:
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
            color=_knee_color(g["m"].iloc[0]),
            lw=1.0,
            alpha=0.85,
            ls="-" if g["activation"].iloc[0] == "tanh" else "--",
        )
    ax.axhline(slope, color="k", lw=1.0, ls=":")
    ax.axvspan(1 / factor, factor, color="0.5", alpha=0.18, lw=0)
    ax.axvline(1.0, color="k", lw=1.0)
    ax.set(
        xscale="log",
        xlabel="n / n*",
        ylabel="local log-log slope of e_n (mean over seeds)",
        ylim=(-3.0, 0.0),
    )
    ax.set_title("(c) local slope toward f_N against n / n*", fontsize=10)


def _knee_legend(factor: float):
    from matplotlib.lines import Line2D

    hs = [
        Line2D([], [], color=c, marker="o", ls="none", mec="k", mew=0.5, label=f"m = {m}")
        for m, c in _KNEE_M_COLORS.items()
    ]
    hs += [
        Line2D([], [], color="0.6", marker=mk, ls="none", mec="k", mew=0.5, label=act)
        for act, mk in _KNEE_MARKERS.items()
    ]
    hs += [
        Line2D([], [], color="0.6", marker="o", mfc="none", ls="none", label="no knee in n ≤ 707"),
        Line2D([], [], color="k", lw=1.0, label="knee = n*"),
        Line2D([], [], color="k", lw=0.8, ls=":", label="n*/4 (the envelopes cross)"),
        plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.18, label=f"factor X ≈ {factor:.2f}"),
        Line2D([], [], color="0.3", lw=0.8, ls="-", label="(c) tanh"),
        Line2D([], [], color="0.3", lw=0.8, ls="--", label="(c) relu"),
    ]
    return hs


def plot_knee(results: pd.DataFrame, table: pd.DataFrame, *, factor: float, slope: float):
    """The knee sweep's figure: (a) toward f_N, (b) toward y, the measured knee against the
    predicted crossover n* per setting (seed min-max bars; a censored knee at the edge of the
    range with an arrow), the line knee = n* and the band of the factor ``factor``; (c) the local
    slopes toward f_N against n / n*, with the knee's ``slope``. ``table``: ``sweep.knee_table``.
    Returns the figure."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6), layout="constrained")
    _knee_panel(axes[0], table, "f_N", "a", factor)
    _knee_panel(axes[1], table, "y", "b", factor)
    _slopes_panel(axes[2], results, table, factor, slope)
    fig.legend(
        handles=_knee_legend(factor),
        loc="outside lower center",
        ncol=8,
        fontsize=8,
        frameon=False,
    )
    return fig
