"""Fine-tune against re-train on digits (ResNet-18, 16 px, 3 seeds): test accuracy after every
epoch of fine-tuning greedy's pruned network, Taylor's and Torch-Pruning's MetaPruner's, against
greedy's architecture trained from scratch for the same E epochs (scratch-E) and for the whole
compute budget of pre-training + selection + fine-tuning (scratch-B).

Runs (or resumes, through runs/compare-finetune-digits-resnet18) the same job as

    greedyprune compare --arch resnet18 --data digits --image-size 16 --train-epochs 10 \
        --target-macs 0.5,0.25 --methods greedy,taylor,metapruner,scratch-E,scratch-B \
        --seeds 0,1,2 --finetune-epochs 10 --finetune-lr 0.01 --curves --latency-runs 30 \
        --out runs/compare-finetune-digits-resnet18

Each curve is the mean over the 3 seeds, its band the lowest to the highest seed; x is the
number of epochs trained after pruning (log scale, so scratch-B's long budget fits).

A fresh run took 23 minutes on 2 CPU cores shared with other jobs (scratch-B's long training
and greedy's selection most of it); a finished one is only read. Writes figures/prune_finetune.png and .pdf and prints the table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import greedyprune.prune as gp
from greedyprune.plots import apply_style, plot_prune_finetune, savefig

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "compare-finetune-digits-resnet18"
METHODS = ("greedy", "taylor", "metapruner", "scratch-E", "scratch-B")
TARGETS = (0.5, 0.25)
LABELS = {  # what each curve is, in this figure
    "greedy": "greedy, fine-tuned",
    "taylor": "Taylor, fine-tuned",
    "metapruner": "MetaPruner (global), fine-tuned",
}


def results() -> pd.DataFrame:
    return gp.compare(
        "resnet18",
        "digits",
        OUT,
        targets=list(TARGETS),
        methods=METHODS,
        seeds=[0, 1, 2],
        image_size=16,
        train_epochs=10,
        finetune_epochs=10,
        finetune_lr=0.01,
        candidates=8,
        greedy_batch=8,
        curves=True,
        latency_runs=30,
    )


def main() -> None:
    apply_style()
    df = results()
    table = gp.summarize(df)
    cols = ["target", "method", "macs_fraction_mean", "acc_finetuned_mean", "acc_finetuned_std"]
    print(table[[*cols, "seeds"]].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    fig = plot_prune_finetune(df, METHODS, labels=LABELS, title="ResNet-18, digits 16 px, ")
    for p in savefig(fig, ROOT / "figures" / "prune_finetune"):
        print("wrote", p.relative_to(ROOT))


if __name__ == "__main__":
    main()
