"""The theory on real layers (issue 24 part 6): Proposition A and the follow-up's exponential rate
on the layer problems of a network trained here, judged by :func:`greedyprune.theory.check`.

A ResNet-18 trained on scikit-learn's digits at 32 px (the cache of ``bench_local_quality.py``,
trained here if missing), local imitation group after group (greedy-local-refit, 50%), and at
every internal group the channel Gram G of that group's layer problem (features from the network
pruned so far). On it, two forms of the problem with the D-scaled contributions
``phi_c = C * A_c`` of the kernel's 1/n average (the CNN gate ``D * w``):

- **symmetric**: the target is the sum of the contributions themselves, ``t = sum_c A_c``
  (``b = G 1``, ``||t||^2 = 1' G 1``): the dense output of these features, the average of all C
  D-scaled contributions, so t lies in their hull by construction;
- **asymmetric**: the target is the dense network's own consumer output Z (features from the
  pruned network): t need not lie in the hull; measured and reported, no claim.

On each: greedy with replacement on the 1/n average for n = 1..2C (``greedy``), with the bound
``D^2 / n``, ``D^2 = max_c ||phi_c - t||^2`` (rows-normalised), and greedy with the corrective rule
(simplex weights re-solved after every pick) for n = 1..C/2 (``greedy_corrective``).
``e_n = ||f_n - t||^2 / rows`` is the ``loss_train`` column.

Claims, fixed before measuring (derivations in docs/prune.md):

- ``prop_a_symmetric``: ``e_n <= D^2 / n`` on every row (form ``bound``): Proposition A is a
  deterministic inequality when t is in the hull, so any violation beyond float64 rounding
  (relative 1e-9 is allowed for in the bound column) refutes the code or the theory;
- ``corrective_exponential_symmetric``: log e_n falls linearly in n (form ``exponential``: the
  slope's interval below 0 and R^2 above the power law's) over n = 1..C/4, a range fixed in
  advance at half the run, before the floor of an exact fit (n = C at the latest).

Writes ``benchmarks/results/local_theory.csv`` (the curves) and ``local_theory_verdicts.csv``.

    python benchmarks/bench_local_theory.py
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pandas as pd
from bench_local_quality import observe_problems, trained_problem

import greedyprune.prune as gp
from greedyprune.select import GramLoss, greedy_select
from greedyprune.theory import Claim, check, format_verdicts

OUT = Path(__file__).parent / "results"
BOUND_SLACK = 1e-9  # float64 rounding of e_n against D^2 / n, relative


def claims() -> list[Claim]:
    return [
        Claim(
            "prop_a_symmetric",
            "real layers, target in the hull: greedy's 1/n average has e_n <= D^2/n",
            "symmetric",
            "greedy",
            form="bound",
            bound_column="bound",
            source="Proposition A (docs/theory.md)",
        ),
        Claim(
            "corrective_exponential_symmetric",
            "real layers, target in the hull: with the corrective rule log e_n falls linearly in n",
            "symmetric",
            "greedy_corrective",
            form="exponential",
            source="Ye, Wu, Liu 2020; fully-corrective Frank-Wolfe",
        ),
    ]


def curves(layer: str, form: str, G, b, const, rows: int) -> list[dict]:
    """Greedy (with replacement, n = 1..2C) and corrective greedy (n = 1..C/2) on one problem."""
    C = G.shape[0]
    s = float(C)
    d2 = float((s * s * G.diagonal() - 2 * s * b + const).max()) / rows
    out = []
    for method, steps, weights in (
        ("greedy", 2 * C, "average"),
        ("greedy_corrective", max(2, C // 2), "corrective"),
    ):
        obj = GramLoss(G, b, const, rows=rows, scale=s)
        sel = greedy_select(obj, steps, replacement=method == "greedy", weights=weights)
        for n, loss in enumerate(sel.losses.tolist(), start=1):
            out.append(
                {
                    "experiment": form,
                    "setting": f"{form}:{layer}",
                    "layer": layer,
                    "channels": C,
                    "method": method,
                    "n": n,
                    "seed": 0,
                    "loss_train": 2 * loss,
                    "bound": d2 / n * (1 + BOUND_SLACK),
                    "d2": d2,
                    "target_norm2": const / rows,
                }
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--images", type=int, default=1024)
    args = p.parse_args()
    model, _, data, groups = trained_problem("resnet18", args.epochs, args.images)
    rows: list[dict] = []

    def observe(g, acc, G, b, weight):
        sym_b = G.sum(1)
        rows.extend(curves(g.name, "symmetric", G, sym_b, float(sym_b.sum()), acc.rows))
        rows.extend(curves(g.name, "asymmetric", G, b, acc.const, acc.rows))
        print(g.name, "measured", flush=True)

    observe_problems(model, data, groups, observe, gp.LocalSettings())
    df = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    df.to_csv(OUT / "local_theory.csv", index=False)
    verdicts = []
    for (_, C), part in df[df["experiment"] == "symmetric"].groupby(
        ["setting", "channels"], sort=False
    ):
        bound, corrective = claims()
        corrective = replace(corrective, n_range=(1, max(2, C // 4)))
        verdicts.append(check(part, [bound, corrective], n_boot=200))
    verdicts = pd.concat(verdicts, ignore_index=True)
    verdicts.to_csv(OUT / "local_theory_verdicts.csv", index=False)
    print(format_verdicts(verdicts))
    print(verdicts.groupby("claim")["verdict"].value_counts().to_string())
    # the asymmetric form: measured, no claim
    asym = df[df["experiment"] == "asymmetric"]
    last = asym.sort_values("n").groupby(["layer", "method"]).tail(1)
    last = last.assign(relative=last["loss_train"] / last["target_norm2"])
    print("asymmetric form (target: the dense output), e_n / ||Z||^2 at the last n:")
    print(last.pivot(index="layer", columns="method", values="relative").to_string())


if __name__ == "__main__":
    main()
