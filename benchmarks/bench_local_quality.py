"""Per-layer quality of the local criteria on a network trained here (issue 24 part 6, first part).

A ResNet-18 (or MobileNetV2) trained on scikit-learn's digits at 32 px (``--epochs``, cached in
``runs/bench-local-quality/``), then local imitation group after group with greedy-local-refit
(1024 calibration images, or all the split has). At every internal group, on that group's *same*
layer problem (the same calibration rows, features from the network pruned so far), every
criterion chooses at 25% and 50% of the channels, and each choice gets the consumer's full refit;
its relative error ||Z - Z_hat||^2 / ||Z||^2 is recorded. Writes
``benchmarks/results/local_quality_ARCH.csv`` (one row per group, keep fraction and method) and
prints the medians and how often greedy-local-refit is at or below OSSCAR.

    python benchmarks/bench_local_quality.py --arch resnet18 --epochs 10

``l1`` here is the L1 norm of each channel's consumer weights (the data-free magnitude of the
channel's outgoing weights), ``random`` a seeded random choice: both refitted like the others.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

import greedyprune.prune as gp
from greedyprune.prune import _io
from greedyprune.prune._local import CRITERIA, calibration_set, refit_error

OUT = Path(__file__).parent / "results"
RIDGE = 1e-4


def _methods(swaps: int):
    """name -> choose(acc, G, b, weight, width, gen) -> kept."""
    base = gp.LocalSettings(ridge=RIDGE)
    with_swaps = gp.LocalSettings(ridge=RIDGE, swaps=swaps)

    def crit(name, s):
        return lambda acc, G, b, w, width, gen: CRITERIA[name].choose(acc, G, b, width, s)[0]

    methods = {name: crit(name, base) for name in CRITERIA}
    methods[f"greedy-local-refit+swaps{swaps}"] = crit("greedy-local-refit", with_swaps)
    methods["l1"] = lambda acc, G, b, w, width, gen: sorted(
        torch.argsort(-w.abs().sum((0, 2)), stable=True)[:width].tolist()
    )
    methods["random"] = lambda acc, G, b, w, width, gen: sorted(
        torch.randperm(G.shape[0], generator=gen)[:width].tolist()
    )
    return methods


def trained_problem(arch: str, epochs: float, images: int):
    """(model trained on digits at 32 px for ``epochs``, cached in runs/bench-local-quality/; the
    test split; ``images`` calibration images, or all the training split has; internal groups)."""
    torch.manual_seed(0)
    train, test, n_classes = gp.load_data("digits", 32)
    model = gp.build_model(arch, n_classes)
    cache = Path("runs/bench-local-quality") / f"{arch}-{epochs:g}.safetensors"
    if cache.is_file():
        model.load_state_dict(_io.load_state(cache))
    else:
        gp.finetune(model, train, epochs=epochs, lr=0.05, generator=0)
        _io.save_state(cache, model)
    model.eval()
    n = min(images, len(train))
    data = calibration_set(train, test, n, torch.Generator().manual_seed(0), gp.labels_of(train))
    groups = gp.find_prunable_groups(model, torch.zeros(1, 3, 32, 32), residual=False)
    return model, test, data, groups


def observe_problems(model, data, groups, observe, settings) -> None:
    """Local imitation of ``model`` (greedy-local-refit, 50% of every group, seed 0), with
    ``observe(group, acc, G, b, weight)`` seeing every group's layer problem."""
    request = gp.SelectionRequest(
        model=model,
        example=torch.zeros(1, 3, 32, 32),
        groups=groups,
        widths={g.name: max(1, g.n_channels // 2) for g in groups},
        generator=torch.Generator().manual_seed(0),
        data=data,
        options={"local": settings, "observe": observe},
    )
    gp.select_channels("greedy-local-refit", request)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--swaps", type=int, default=3)
    p.add_argument(
        "--max-channels",
        type=int,
        default=128,
        help="score every criterion only on groups of at most this many channels (OSSCAR's "
        "backward elimination and CP's bisection take minutes on a 512-channel 3x3 group); "
        "the selection itself runs on every group",
    )
    args = p.parse_args()
    model, test, data, groups = trained_problem(args.arch, args.epochs, args.images)
    acc_full = gp.evaluate(model, test)
    n = len(data)
    methods = _methods(args.swaps)
    rows = []
    gen = torch.Generator().manual_seed(0)

    path = OUT / f"local_quality_{args.arch}.csv"
    OUT.mkdir(exist_ok=True)

    def observe(g, acc, G, b, weight):
        if G.shape[0] > args.max_channels:
            return
        for frac in (0.25, 0.5):
            width = max(1, round(frac * G.shape[0]))
            for name, choose in methods.items():
                t0 = time.perf_counter()
                keep = choose(acc, G, b, weight, width, gen)
                rows.append(
                    {
                        "layer": g.name,
                        "channels": G.shape[0],
                        "taps": acc.taps,
                        "keep": frac,
                        "method": name,
                        "refit_error": refit_error(acc, keep, RIDGE),
                        "seconds": time.perf_counter() - t0,
                    }
                )
        pd.DataFrame(rows).to_csv(path, index=False)  # after every group: nothing is lost
        print(g.name, "scored", flush=True)

    observe_problems(model, data, groups, observe, gp.LocalSettings(ridge=RIDGE))
    df = pd.DataFrame(rows)
    print(f"{args.arch} trained {args.epochs:g} epochs on digits: top-1 {acc_full:.3f}; {n} images")
    table = df.pivot_table(
        index="method", columns="keep", values=["refit_error", "seconds"], aggfunc="median"
    )
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    wide = df.pivot_table(index=["layer", "keep"], columns="method", values="refit_error")
    for ours in ("greedy-local-refit", f"greedy-local-refit+swaps{args.swaps}"):
        at_or_below = (wide[ours] <= wide["osscar"] * (1 + 1e-9)).mean()
        print(
            f"{ours} at or below osscar on {100 * at_or_below:.0f}% of {len(wide)} layer problems"
        )
    full_vs_scalar = (wide["greedy-local-refit"] / wide["greedy-local-omp"]).median()
    print(f"median error ratio greedy-local-refit / greedy-local-omp: {full_vs_scalar:.3f}")


if __name__ == "__main__":
    main()
