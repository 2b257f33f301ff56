"""``greedyprune prune``: greedy forward selection of channels for a CNN."""

from __future__ import annotations

import argparse

from ._recipes import RECIPES


def _candidates(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--candidates {text!r}: pass a positive int (the authors use 50) or 'all'"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--candidates {value}: must be >= 1 or 'all'")
    return value


def _tol(text: str) -> float | None:
    if text == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--tol {text!r}: pass a number in [0, 1) (the authors: 0.02) or 'none'"
        ) from None


def _crop(text: str) -> tuple[float, float]:
    try:
        low = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--crop-scale {text!r}: pass the smallest crop area as a fraction, e.g. 0.2"
        ) from None
    return (low, 1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # recipe knobs: absent unless given, so the recipe's value stands
    parser.add_argument(
        "--arch", required=True, help="model name: a torchvision name or proxylessnas_mobile"
    )
    parser.add_argument(
        "--data", required=True, help="folder:PATH (ImageNet layout), digits or synthetic"
    )
    parser.add_argument("--out", required=True, help="run folder (resumes if it exists)")
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="default",
        help="every knob at once: 'authors' (their released code) or 'default'; the flags "
        "below override the recipe's values (default: %(default)s)",
    )
    parser.add_argument(
        "--weights", help="local checkpoint (.pth/.safetensors); digits/synthetic train one"
    )
    parser.add_argument(
        "--target-macs", help="whole-model MACs to reach: 220M, 1.5G, 0.5 (fraction) or 50%%"
    )
    parser.add_argument(
        "--tol", type=_tol, default=S, help="per-layer top-1 tolerance or 'none' (authors: 0.02)"
    )
    parser.add_argument(
        "--precheck",
        type=_tol,
        default=S,
        help="measure the eval set only when the step batch's top-1 is at least this fraction of "
        "the layer's start, or 'none' (authors: 0.95)",
    )
    parser.add_argument("--image-size", type=int, help="default 224 (folder), 32 (digits)")
    parser.add_argument(
        "--candidates", type=_candidates, default=S, help="channels scored per step, or 'all'"
    )
    parser.add_argument(
        "--candidate-order",
        choices=["random", "lowest-index"],
        default=S,
        help="random sample (the paper) or the lowest-index open channels (the authors' code)",
    )
    parser.add_argument("--batch-size", type=int, default=S, help="images per greedy step")
    parser.add_argument(
        "--crop-scale", type=_crop, default=S, help="smallest random crop area (authors: 0.2)"
    )
    parser.add_argument(
        "--n-eval", type=int, default=S, help="images for --tol, spread over every class"
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=S,
        help="--tol on every k-th training image (authors: 200)",
    )
    parser.add_argument(
        "--replacement", action="store_true", help="allow picking a channel again (theory)"
    )
    parser.add_argument("--loss", choices=["ce", "imitation"], default="ce")
    parser.add_argument("--mode", choices=["batched", "sequential"], default="batched")
    parser.add_argument(
        "--between-epochs", type=float, default=S, help="fine-tune between layers (authors: 0.1)"
    )
    parser.add_argument(
        "--finetune-epochs", type=float, default=S, help="final fine-tuning (authors: 150)"
    )
    parser.add_argument("--finetune-lr", type=float, default=S, help="(authors: 0.1, cosine)")
    parser.add_argument("--finetune-batch-size", type=int, default=S, help="(authors: 256)")
    parser.add_argument(
        "--train-epochs", type=float, default=20, help="training from scratch (no --weights)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument(
        "--amp", choices=["bf16", "fp16"], help="mixed precision on CUDA (scoring, fine-tuning)"
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="NHWC memory format (faster on GPUs)"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: on when stderr is a terminal)",
    )


_KNOBS = (
    "tol",
    "precheck",
    "candidates",
    "candidate_order",
    "batch_size",
    "crop_scale",
    "n_eval",
    "eval_every",
    "between_epochs",
    "finetune_epochs",
    "finetune_lr",
    "finetune_batch_size",
)


def summary_table(summary: dict, layers=None) -> str:
    """The end-of-run report: one line per measure, then the kept channels per layer."""
    rows = [
        ("recipe", summary["recipe"]),
        (
            "MACs",
            f"{summary['macs'] / 1e6:.1f}M of {summary['macs_full'] / 1e6:.1f}M "
            f"({100 * summary['macs_fraction']:.1f}%)",
        ),
        ("params", f"{summary['params'] / 1e6:.3f}M"),
        ("top-1 full", f"{100 * summary['acc_full']:.2f}%"),
        ("top-1 pruned", f"{100 * summary['acc_pruned']:.2f}%"),
        ("top-1 fine-tuned", f"{100 * summary['acc_finetuned']:.2f}%"),
        ("eval set", f"{summary['n_eval']} images over {summary['eval_classes']} classes"),
        ("selection time", f"{summary['select_s']:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if layers is not None and len(layers):
        lines.append("")
        lines.append(layers[["layer", "channels", "kept"]].to_string(index=False))
    return "\n".join(lines)


def run(args) -> int:
    import pandas as pd

    from ._pipeline import prune

    knobs = {k: getattr(args, k) for k in _KNOBS if hasattr(args, k)}
    summary = prune(
        args.arch,
        args.data,
        args.out,
        recipe=args.recipe,
        target_macs=args.target_macs,
        weights=args.weights,
        image_size=args.image_size,
        replacement=args.replacement,
        loss=args.loss,
        mode=args.mode,
        train_epochs=args.train_epochs,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        amp=args.amp,
        channels_last=args.channels_last,
        progress=args.progress,
        **knobs,
    )
    from pathlib import Path

    from greedyprune.dist import is_main

    if is_main():
        layers_csv = Path(args.out) / "layers.csv"
        layers = pd.read_csv(layers_csv) if layers_csv.is_file() else None
        print(summary_table(summary, layers))
        print(f"pruned model: {args.out}/model.safetensors + {args.out}/pruned.json")
    return 0
