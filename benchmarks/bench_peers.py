"""The provable peers against greedy forward selection on the two-layer setting: loss and time.

For each setting of a two-layer preset (default ``quick``: ``interior``, tanh, m = 10, and
``boundary``, ReLU, m = 200; N = 1000 neurons pretrained by mean-field GD), replicate ``--seed``:
the pretrained network's features ``phi [N, m]`` on the training inputs and the labels y. For n
in a log grid, each method selects a size-n subnetwork on ``SquaredLoss(phi, y)``:

- ``greedy``: ``greedy_select`` (with replacement, the theory's version; as ``greedy_pretrained``
  in the rate experiment), ``greedy_norepl``: the same without replacement;
- ``ispasp``: ``ispasp`` toward y (the same objective as greedy), ``ispasp_dense``: ``ispasp``
  toward the dense network's output ``f_N`` (the paper's target), measured against y;
- ``sensitivity``: ``sensitivity_sampling`` (importance weights), ``--draws`` seeds;
- ``random``: ``random_subset`` with replacement (uniform weights), ``--draws`` seeds;
- ``magnitude``: the n largest feature norms, uniform weights (context: i-SpaSP's threshold step
  keeps the neurons of largest output magnitude).

Recorded per (method, n): the training loss ``||f - y||^2 / 2`` and the discrepancy
``||f - f_N||^2 / 2`` of the selected subnetwork ``f = weights @ phi`` (medians over the draws for
the random methods), and the selection time (objective built beforehand; one call of each method
in turn per round, the order rotated from round to round, ``--repeats`` rounds, medians; round r
draws the random methods with seed r). Ratios are peer / greedy at equal n; slopes are
``greedyprune.theory.fit_rate`` fits of log loss on log n over the preset's fit range (bootstrap
interval over draws for the random methods, over points otherwise).

    .venv/bin/python benchmarks/bench_peers.py                  # quick preset, under a minute
    .venv/bin/python benchmarks/bench_peers.py --preset paper --points 16
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from greedyprune.select import (
    SquaredLoss,
    greedy_select,
    ispasp,
    magnitude,
    random_subset,
    sensitivity_sampling,
)
from greedyprune.sims.two_layer import PRESETS, geometric_grid, pretrain
from greedyprune.theory import fit_rate

METHODS = (
    "greedy",
    "greedy_norepl",
    "ispasp",
    "ispasp_dense",
    "sensitivity",
    "random",
    "magnitude",
)
RANDOM = ("sensitivity", "random")
REPORT_N = (10, 30, 100, 300)


def _select(method: str, phi, y, f_big, n: int, draw: int):
    """(selection, seconds) of one call; the objective is built before the clock starts."""
    obj = SquaredLoss(phi, f_big if method == "ispasp_dense" else y)
    t = time.perf_counter()
    if method == "greedy":
        sel = greedy_select(obj, n)
    elif method == "greedy_norepl":
        sel = greedy_select(obj, n, replacement=False)
    elif method in ("ispasp", "ispasp_dense"):
        sel = ispasp(obj, n)
    elif method == "sensitivity":
        sel = sensitivity_sampling(obj, n, generator=draw)
    elif method == "random":
        sel = random_subset(obj, n, replacement=True, generator=draw)
    else:
        sel = magnitude(obj, n)
    return sel, time.perf_counter() - t


def _half_sq(f, t) -> float:
    return float(0.5 * (f - t).pow(2).mean())


def run_setting(setting, args, grid: list[int], fit_range) -> dict:
    data, big, _ = pretrain(setting, args.seed)
    phi = big.features(data.x_train)
    y = data.y_train
    f_big = phi.mean(0)
    N = phi.shape[0]
    grid = [n for n in grid if n <= N]
    rec: dict = {
        m: {n: {"loss": [], "disc": [], "time": [], "info": None} for n in grid} for m in METHODS
    }
    for r in range(max(args.repeats, args.draws)):
        for n in grid:
            # rotate the order of the methods from round to round: no method always runs first
            k = (r + n) % len(METHODS)
            for method in METHODS[k:] + METHODS[:k]:
                sel, sec = _select(method, phi, y, f_big, n, r)
                f = sel.weights.to(phi) @ phi
                cell = rec[method][n]
                if r < args.repeats:
                    cell["time"].append(sec)
                if (method in RANDOM and r < args.draws) or r == 0:
                    cell["loss"].append(_half_sq(f, y))
                    cell["disc"].append(_half_sq(f, f_big))
                if method.startswith("ispasp") and r == 0:
                    cell["info"] = {k2: sel.info[k2] for k2 in ("iterations", "converged")}
    rows = []
    greedy = {n: rec["greedy"][n] for n in grid}
    g_loss = {n: statistics.median(greedy[n]["loss"]) for n in grid}
    g_time = {n: statistics.median(greedy[n]["time"]) for n in grid}
    for method in METHODS:
        for n in grid:
            cell = rec[method][n]
            loss, disc, sec = (statistics.median(cell[k]) for k in ("loss", "disc", "time"))
            row = {
                "method": method,
                "n": n,
                "loss_train": loss,
                "discrepancy": disc,
                "time_s": sec,
                "loss_ratio": loss / g_loss[n],
                "time_ratio": sec / g_time[n],
            }
            if method in RANDOM:
                row["loss_train_draws"] = cell["loss"]
            if cell["info"] is not None:
                row.update(cell["info"])
            rows.append(row)
    lo, hi = fit_range
    summary = {}
    for method in METHODS:
        in_range = [r for r in rows if r["method"] == method and lo <= r["n"] <= hi]
        summary[method] = {
            "loss_ratio_median": statistics.median(r["loss_ratio"] for r in in_range),
            "loss_ratio_range": [
                min(r["loss_ratio"] for r in in_range),
                max(r["loss_ratio"] for r in in_range),
            ],
            "time_ratio_median": statistics.median(r["time_ratio"] for r in in_range),
            "time_ratio_range": [
                min(r["time_ratio"] for r in in_range),
                max(r["time_ratio"] for r in in_range),
            ],
        }
    fits = {}
    for method in METHODS:
        ns, losses, discs, draws = [], [], [], []
        for n in grid:
            cell = rec[method][n]
            for d, (lo, di) in enumerate(zip(cell["loss"], cell["disc"])):
                ns.append(n)
                losses.append(lo)
                discs.append(di)
                draws.append(d)
        fits[method] = {}
        for key, vals in (("loss_train", losses), ("discrepancy", discs)):
            try:
                fit = fit_rate(ns, vals, seed=draws, n_range=fit_range, n_boot=args.n_boot)
                fits[method][key] = fit.as_dict()
            except ValueError as e:  # fewer than two n in the range
                fits[method][key] = {"error": str(e)}
    return {
        "setting": setting.as_dict(),
        "N": int(N),
        "m": int(phi.shape[1]),
        "dense_loss_train": _half_sq(f_big, y),
        "grid": grid,
        "fit_range": list(fit_range),
        "rows": rows,
        "summary_over_fit_range": summary,
        "fits": fits,
    }


def _print(res: dict) -> None:
    s = res["setting"]
    print(
        f"\n== {s['name']}: {s['activation']}, N = {res['N']}, m = {res['m']}; "
        f"dense network's training loss {res['dense_loss_train']:.3g}"
    )
    by = {(r["method"], r["n"]): r for r in res["rows"]}
    ns = [n for n in REPORT_N if n in res["grid"]] or res["grid"][-3:]
    head = "".join(f"{f'n={n}':>27}" for n in ns)
    print(f"{'method':<14}{head}{'slope (CI)':>26}")
    print(f"{'':<14}" + "".join(f"{'loss    ratio  t-ratio':>27}" for _ in ns))
    for method in METHODS:
        cells = "".join(
            f"{by[method, n]['loss_train']:>11.2e}{by[method, n]['loss_ratio']:>9.3g}"
            f"{by[method, n]['time_ratio']:>7.2f}"
            for n in ns
        )
        fit = res["fits"][method]["loss_train"]
        slope = (
            f"{fit['slope']:.2f} ({fit['ci_low']:.2f}, {fit['ci_high']:.2f})"
            if "slope" in fit
            else "-"
        )
        print(f"{method:<14}{cells}{slope:>26}")
    lo, hi = res["fit_range"]
    print(f"over {lo} <= n <= {hi}: median loss ratio, median time ratio (vs greedy)")
    for method, v in res["summary_over_fit_range"].items():
        print(f"  {method:<14}{v['loss_ratio_median']:>10.3g}{v['time_ratio_median']:>8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    p.add_argument("--settings", default="all", help="comma-separated setting names, or 'all'")
    p.add_argument("--seed", type=int, default=0, help="the replicate (data and pretraining)")
    p.add_argument("--points", type=int, default=12, help="sizes in the log grid 1..n_max")
    p.add_argument("--n-max", type=int, default=None, help="largest n (default: the preset's)")
    p.add_argument("--draws", type=int, default=5, help="seeds of the random methods")
    p.add_argument("--repeats", type=int, default=21, help="timed rounds (medians)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the slopes")
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny tensors: 1)")
    p.add_argument("--out", default="benchmarks/results/peers_two_layer.json")
    args = p.parse_args()
    for name in ("points", "draws", "repeats", "n_boot", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    n_max = args.n_max or max(preset.grid)
    if n_max < 2:
        p.error("--n-max must be >= 2")
    grid = sorted(set(geometric_grid(1, n_max, args.points)) | {n for n in REPORT_N if n <= n_max})
    names = [s.name for s in preset.settings]
    chosen = names if args.settings == "all" else args.settings.split(",")
    if not set(chosen) <= set(names):
        p.error(f"--settings {args.settings!r}: the preset has {names}")
    t0 = time.perf_counter()
    results = []
    for setting in preset.settings:
        if setting.name in chosen:
            res = run_setting(setting, args, grid, preset.fit_range)
            _print(res)
            results.append(res)
    meta = {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "preset": args.preset,
        "seed": args.seed,
        "draws": args.draws,
        "timed_rounds": args.repeats,
        "grid": grid,
        "methods": list(METHODS),
        "wall_s": round(time.perf_counter() - t0, 1),
        "note": (
            "loss_train = ||f - y||^2 / 2 and discrepancy = ||f - f_N||^2 / 2 on the training "
            "inputs, f = weights @ phi; medians over draws for sensitivity and random; "
            "loss_ratio and time_ratio are method / greedy at equal n; time_s is the median "
            "selection time (objective built beforehand)"
        ),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "settings": results}, indent=1) + "\n")
    print(f"\n{meta['wall_s']} s; wrote {out}")


if __name__ == "__main__":
    main()
