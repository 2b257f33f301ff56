"""Accuracy vs MACs on digits: greedy forward selection against Torch-Pruning's criteria and
uniform width, ResNet-18 and MobileNetV2 (16 px), 3 seeds, at 50% and 25% of the MACs.

Runs (or resumes, through the run folders under runs/) the same job as

    greedyprune compare --arch ARCH --data digits --target-macs 0.5,0.25 --seeds 0,1,2 \
        --methods greedy,l1,taylor,bn,random,uniform --image-size 16 --train-epochs 10 \
        --finetune-epochs 1 --candidates 8 --batch-size 8 --out runs/compare-digits-ARCH

A fresh run takes 10-25 minutes per architecture on 2 CPU cores; a finished one is
only read. Writes figures/prune_digits.png and .pdf and prints the table it plots.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import greedyprune.prune as gp
from greedyprune.plots import apply_style, savefig

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("resnet18", "mobilenet_v2")
METHODS = ("greedy", "l1", "taylor", "bn", "random", "uniform")
LABELS = {
    "greedy": "greedy forward selection",
    "l1": "L1 magnitude",
    "taylor": "Taylor",
    "bn": "BN scale",
    "random": "random channels",
    "uniform": "uniform width, trained from scratch (11 epochs)",
}
MARKERS = {"greedy": "o", "l1": "s", "taylor": "^", "bn": "v", "random": "x", "uniform": "D"}


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
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(10, 4), sharey=True)
    for ax, arch in zip(axes, ARCHS):
        rows = table[table["arch"] == arch]
        full = float(df[df["arch"] == arch]["acc_full"].iloc[0])
        ax.axhline(100 * full, color="0.4", ls="--", lw=1, label="unpruned")
        for i, method in enumerate(METHODS):
            r = rows[rows["method"] == method].sort_values("macs_fraction_mean")
            if r.empty:
                continue
            ax.errorbar(
                100 * r["macs_fraction_mean"] * (1 + 0.012 * (i - 2.5)),
                100 * r["acc_finetuned_mean"],
                yerr=100 * r["acc_finetuned_std"].fillna(0),
                marker=MARKERS[method],
                capsize=3,
                label=LABELS[method],
            )
        ax.set_title(f"{arch}, digits 16 px")
        ax.set_xlabel("MACs kept (% of the unpruned model)")
    axes[0].set_ylabel("test accuracy after 1 epoch of fine-tuning (%)")
    axes[-1].legend(loc="lower right", fontsize=8)
    savefig(fig, ROOT / "figures" / "prune_digits")


if __name__ == "__main__":
    main()
