"""How much pretraining is enough: the GD steps after which greedy at n = 100 reaches a training
loss of 10% of the zero function's, against the number of data points m, with the two fitted
forms a + b log m and c m^p (greedyprune.sims.two_layer.budget, config "full"; run or resumed
into runs/two_layer_budget_full: about 1-2 minutes on 2 busy CPU cores when missing).

(a) steps needed (each seed, and the geometric mean over seeds with the seeds' min-max) and both
fits with their R^2 on log T; (b) the curves they come from: greedy's relative training loss at
n = 100 against the pretraining steps (geometric mean over seeds), the target, and the dense
network's own relative loss (dashed).
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from greedyprune.plots import apply_style, axis_label, method_style, savefig
from greedyprune.sims.two_layer.budget import (
    N_SUB,
    TARGET_REL,
    compare_fits,
    run_budget,
    steps_table,
)

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "runs" / "two_layer_budget_full"
LOG_COLOR, POWER_COLOR = "#d55e00", "#029e73"


def _m_colors(ms):
    cmap = plt.get_cmap("viridis_r")
    return {m: cmap(0.1 + 0.85 * i / max(1, len(ms) - 1)) for i, m in enumerate(ms)}


def main() -> None:
    done = run_budget("full", RUN, progress=True)
    results = done.results
    table = steps_table(results)
    fits = compare_fits(table)
    apply_style()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12.5, 5.4), layout="constrained")
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
            color=LOG_COLOR,
            lw=1.6,
            label=(
                f"T = {fits['log_a']:.3g} + {fits['log_b']:.3g} log m  (R² {fits['r2_log']:.2f})"
            ),
        )
        ax.plot(
            mm,
            fits["power_c"] * mm ** fits["power_p"],
            color=POWER_COLOR,
            lw=1.6,
            ls="--",
            label=(
                f"T = {fits['power_c']:.3g} m^{fits['power_p']:.2f}  (R² {fits['r2_power']:.2f})"
            ),
        )
    other = table[table["status"] != "reached"]
    title = f"(a) pretraining steps before greedy (n = {N_SUB}) reaches {TARGET_REL:g} L(0)"
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

    rows = results[results["n"] == N_SUB]
    colors = _m_colors(sorted(rows["m"].unique()))
    for m, sub in rows.groupby("m"):
        c = sub.groupby("step")[["loss_rel", "dense_rel"]].apply(
            lambda v: np.exp(np.log(v.clip(lower=1e-300)).mean())
        )
        steps = np.maximum(c.index.to_numpy(), 0.5)  # step 0 drawn at 0.5 on the log axis
        bx.plot(steps, c["loss_rel"], color=colors[m], lw=1.6, label=f"m = {m}")
        bx.plot(steps, c["dense_rel"], color=colors[m], lw=1.0, ls="--")
    bx.axhline(TARGET_REL, color="k", lw=1.0, ls=":", label=f"target {TARGET_REL:g} L(0)")
    bx.plot([], [], color="0.4", lw=1.0, ls="--", label="the dense network itself")
    bx.set(
        xscale="log",
        yscale="log",
        ylim=(1e-3, 2),
        xlabel="pretraining GD steps (step 0 drawn at 0.5)",
        ylabel="training loss / L(0)",
    )
    bx.set_title(f"(b) greedy at n = {N_SUB} from each checkpoint", fontsize=10)
    bx.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, fontsize=8)
    for path in savefig(fig, ROOT / "figures" / "two_layer_budget"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
