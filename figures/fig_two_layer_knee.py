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

from greedyprune.plots import apply_style, plot_knee, savefig
from greedyprune.sims.two_layer.sweep import KNEE_FACTOR, KNEE_SLOPE, knee_table, run_sweep

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "runs" / "two_layer_knee_full"


def main() -> None:
    done = run_sweep("full", RUN, progress=True)
    results = done.results
    table = knee_table(results)
    apply_style()
    fig = plot_knee(results, table, factor=KNEE_FACTOR, slope=KNEE_SLOPE)
    for path in savefig(fig, ROOT / "figures" / "two_layer_knee"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
