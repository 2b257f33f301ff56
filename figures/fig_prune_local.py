"""Accuracy vs MACs on digits with local imitation: every method prunes the *internal* groups
(one consumer each, the groups local imitation handles) to the same widths, ResNet-18 and
MobileNetV2 (16 px), 3 seeds, at 50% and 25% of the MACs, before and after 1 epoch of fine-tuning.

Runs (or resumes, through the run folders under runs/) the same job as

    greedyprune compare --arch ARCH --data digits --target-macs 0.5,0.25 --seeds 0,1,2 \
        --groups internal --methods greedy,greedy-local,greedy-local-omp,greedy-local-refit,\
thinet,cp,osscar,ispasp-seq,taylor --image-size 16 --train-epochs 10 --finetune-epochs 1 \
        --candidates 8 --batch-size 8 --calibration-images 1024 --out runs/compare-local-digits-ARCH

``--seeds 0`` first, then ``--seeds 0,1`` and ``--seeds 0,1,2`` add seeds to the same folder;
``--seeds S --methods M --targets T`` runs one unit a call (an OSSCAR unit takes 5-8 minutes on
2 cores, so a whole seed does not fit one 10-minute call), and the table and figure are drawn
from every unit the folder holds. ``--arch`` picks
one architecture (default: both). Writes figures/prune_local.png and .pdf with
:func:`greedyprune.plots.plot_prune_compare` (accuracy after fine-tuning) and prints the table,
with each method's selection seconds and its accuracy before fine-tuning.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import greedyprune.prune as gp
from greedyprune.plots import apply_style, plot_prune_compare, savefig

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("resnet18", "mobilenet_v2")
METHODS = (
    "greedy",
    "greedy-local",
    "greedy-local-omp",
    "greedy-local-refit",
    "thinet",
    "cp",
    "osscar",
    "ispasp-seq",
    "taylor",
)
TARGETS = (0.5, 0.25)
TITLES = {
    "resnet18": "ResNet-18, digits 16 px, internal groups",
    "mobilenet_v2": "MobileNetV2, digits 16 px, internal groups",
}


def results(arch: str, seeds, methods=METHODS, targets=TARGETS) -> pd.DataFrame:
    return gp.compare(
        arch,
        "digits",
        ROOT / "runs" / f"compare-local-digits-{arch}",
        targets=list(targets),
        methods=list(methods),
        seeds=seeds,
        image_size=16,
        train_epochs=10,
        finetune_epochs=1,
        candidates=8,
        greedy_batch=8,
        local=gp.LocalSettings(calibration_images=1024),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=ARCHS, action="append", help="default: both")
    p.add_argument("--seeds", default="0,1,2", help="comma list (default: 0,1,2)")
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma list, a subset of the study's (default: all); with --targets, one unit a call",
    )
    p.add_argument("--targets", default="0.5,0.25", help="comma list of MACs fractions")
    p.add_argument(
        "--plot-only",
        action="store_true",
        help="plot the units the run folders hold now (an unfinished study), running none",
    )
    args = p.parse_args()
    archs = args.arch or ARCHS
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    targets = [float(t) for t in args.targets.split(",")]
    if not set(methods) <= set(METHODS) or not set(targets) <= set(TARGETS):
        p.error(f"--methods must come from {','.join(METHODS)} and --targets from 0.5,0.25")
    apply_style()
    if not args.plot_only:
        for arch in archs:
            results(arch, seeds, methods, targets)
    folders = [ROOT / "runs" / f"compare-local-digits-{arch}" for arch in archs]
    folders = [f for f in folders if (f / "results.csv").exists()]
    df = pd.concat([pd.read_csv(f / "results.csv") for f in folders], ignore_index=True)
    archs = list(df["arch"].unique())
    table = gp.summarize(df)
    cols = ["arch", "target", "method", "macs_fraction_mean", "acc_pruned_mean"]
    cols += ["acc_finetuned_mean", "acc_finetuned_std", "select_s_mean", "seeds"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    full = {arch: float(df[df["arch"] == arch]["acc_full"].iloc[0]) for arch in archs}
    ylabel = "test accuracy after 1 epoch of fine-tuning (%)"
    fig = plot_prune_compare(table, full, titles=TITLES, ylabel=ylabel)
    for path in savefig(fig, ROOT / "figures" / "prune_local"):
        print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
