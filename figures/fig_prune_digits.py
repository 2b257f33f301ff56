"""Accuracy vs MACs on digits: greedy forward selection against Torch-Pruning's criteria and
uniform width, ResNet-18 and MobileNetV2 (16 px), 3 seeds, at 50% and 25% of the MACs.

Runs (or resumes, through the run folders under runs/) the same job as

    greedyprune compare --arch ARCH --data digits --target-macs 0.5,0.25 --seeds 0,1,2 \
        --methods greedy,l1,taylor,bn,random,uniform --image-size 16 --train-epochs 10 \
        --finetune-epochs 1 --candidates 8 --batch-size 8 --out runs/compare-digits-ARCH

A fresh run takes 10-25 minutes for ResNet-18 and about an hour for MobileNetV2 on 2 CPU cores;
a finished one is only read. Writes figures/prune_digits.png and .pdf with
:func:`greedyprune.plots.plot_prune_compare` and prints the table it plots.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import greedyprune.prune as gp
from greedyprune.plots import apply_style, plot_prune_compare, savefig

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("resnet18", "mobilenet_v2")
METHODS = ("greedy", "l1", "taylor", "bn", "random", "uniform")
TITLES = {
    "resnet18": "ResNet-18, digits 16 px",
    "mobilenet_v2": "MobileNetV2, digits 16 px",
}


def results(arch: str) -> pd.DataFrame:
    return gp.compare(
        arch,
        "digits",
        ROOT / "runs" / f"compare-digits-{arch}",
        targets=[0.5, 0.25],
        methods=METHODS,
        seeds=[0, 1, 2],
        image_size=16,
        train_epochs=10,
        finetune_epochs=1,
        candidates=8,
        greedy_batch=8,
    )


def main() -> None:
    apply_style()
    frames = [results(arch) for arch in ARCHS]
    df = pd.concat(frames, ignore_index=True)
    table = gp.summarize(df)
    cols = ["arch", "target", "method", "macs_fraction_mean", "acc_pruned_mean"]
    cols += ["acc_finetuned_mean", "acc_finetuned_std", "latency_ms_mean", "seeds"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    full = {arch: float(df[df["arch"] == arch]["acc_full"].iloc[0]) for arch in ARCHS}
    ylabel = "test accuracy after 1 epoch of fine-tuning (%)"
    fig = plot_prune_compare(table, full, titles=TITLES, ylabel=ylabel)
    for p in savefig(fig, ROOT / "figures" / "prune_digits"):
        print("wrote", p.relative_to(ROOT))


if __name__ == "__main__":
    main()
