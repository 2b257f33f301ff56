"""``greedyprune compare``: greedy against Torch-Pruning's criteria and uniform width, equal MACs."""

from __future__ import annotations

import argparse

from ._cli_prune import _candidates


def _list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: pass a comma-separated list")
    return items


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r}: pass comma-separated ints, e.g. 0,1,2"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, help="torchvision model name, e.g. resnet18")
    parser.add_argument("--data", required=True, help="digits, synthetic or folder:PATH")
    parser.add_argument(
        "--target-macs", type=_list, default=["0.5"], help="comma list: 0.5,0.25 or 220M"
    )
    parser.add_argument(
        "--methods",
        type=_list,
        default=["greedy", "l1", "taylor", "bn", "random", "uniform"],
        help="comma list of greedy,l1,taylor,bn,random,uniform",
    )
    parser.add_argument("--seeds", type=_seeds, default=[0], help="comma list, e.g. 0,1,2")
    parser.add_argument("--out", help="run folder (default runs/compare-<data>-<arch>)")
    parser.add_argument("--weights", help="local checkpoint; digits/synthetic train one here")
    parser.add_argument("--image-size", type=int, help="default 224 (folder), 32 (digits)")
    parser.add_argument("--train-epochs", type=float, default=20)
    parser.add_argument("--finetune-epochs", type=float, default=3)
    parser.add_argument("--finetune-lr", type=float, default=0.01)
    parser.add_argument("--candidates", type=_candidates, default=8)
    parser.add_argument("--greedy-batch", type=int, default=8, help="images per greedy step")
    parser.add_argument("--loss", choices=["ce", "imitation"], default="ce")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision on CUDA")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: on when stderr is a terminal)",
    )


def run(args) -> int:
    from ._pipeline import compare, summarize

    kind = args.data.split(":")[0]
    out = args.out or f"runs/compare-{kind}-{args.arch}"
    targets = [float(t) if t.replace(".", "", 1).isdigit() else t for t in args.target_macs]
    df = compare(
        args.arch,
        args.data,
        out,
        targets=targets,
        methods=args.methods,
        seeds=args.seeds,
        weights=args.weights,
        image_size=args.image_size,
        train_epochs=args.train_epochs,
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        candidates=args.candidates,
        greedy_batch=args.greedy_batch,
        loss=args.loss,
        device=args.device,
        workers=args.workers,
        amp=args.amp,
        progress=args.progress,
    )
    from greedyprune.dist import is_main

    if not is_main():
        return 0
    table = summarize(df)
    cols = [
        "arch",
        "target",
        "method",
        "macs_fraction_mean",
        "params_mean",
        "acc_pruned_mean",
        "acc_finetuned_mean",
        "acc_finetuned_std",
        "latency_ms_mean",
        "seeds",
    ]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"results: {out}/results.csv, summary: {out}/summary.csv")
    return 0
