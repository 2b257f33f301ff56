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

from greedyprune.plots import apply_style, plot_budget, savefig
from greedyprune.sims.two_layer.budget import (
    N_SUB,
    TARGET_REL,
    compare_fits,
    run_budget,
    steps_table,
)

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "runs" / "two_layer_budget_full"


def main() -> None:
    done = run_budget("full", RUN, progress=True)
    results = done.results
    table = steps_table(results)
    fits = compare_fits(table)
    apply_style()
    fig = plot_budget(results, table, fits, n=N_SUB, target=TARGET_REL)
    for path in savefig(fig, ROOT / "figures" / "two_layer_budget"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
