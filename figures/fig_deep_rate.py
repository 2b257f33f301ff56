"""Deep teacher-student: discrepancy to the pretrained network and test loss against width.

Runs (or resumes) ``greedyprune verify deep --preset paper --data teacher`` into
runs/deep-paper-teacher and draws figures/deep_rate.png/.pdf with
:func:`greedyprune.plots.plot_deep_rate`. Prints the fitted slopes it plots.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from greedyprune.plots import apply_style, deep_rate_fits, method_style, plot_deep_rate, savefig
from greedyprune.sims import deep_preset, run_deep
from greedyprune.theory import format_verdicts

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    setting, seeds = deep_preset("paper", "teacher")
    results, verdicts, _ = run_deep(
        setting, seeds, ROOT / "runs" / "deep-paper-teacher", preset="paper", log=print
    )
    apply_style()
    words = {"discrepancy": "discrepancy ||f_n - f_N||^2/2", "loss_test": "test loss"}
    for metric, fits in deep_rate_fits(results).items():
        print(f"log-log slope of the {words[metric]} (95% CI over seeds):")
        for method, f in fits.items():
            label = method_style(method).label
            print(f"   {label}: {f.slope:.2f} [{f.ci_low:.2f}, {f.ci_high:.2f}]")
    title = f"Layer-wise greedy selection, deep teacher, depth {setting.depth}, {len(seeds)} seeds"
    for p in savefig(plot_deep_rate(results, title=title), ROOT / "figures" / "deep_rate"):
        print("wrote", p.relative_to(ROOT))
    print(format_verdicts(verdicts))


if __name__ == "__main__":
    main()
