"""``greedyprune prune``: greedy forward selection of channels for a torchvision CNN."""

from __future__ import annotations

import argparse
import json


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, help="torchvision model name, e.g. mobilenet_v2")
    parser.add_argument(
        "--data", required=True, help="folder:PATH (ImageNet layout), digits or synthetic"
    )
    parser.add_argument("--out", required=True, help="run folder (resumes if it exists)")
    parser.add_argument(
        "--weights", help="local checkpoint (.pth/.safetensors); digits/synthetic train one"
    )
    parser.add_argument(
        "--target-macs", help="whole-model MACs to reach: 220M, 1.5G, 0.5 (fraction) or 50%%"
    )
    parser.add_argument(
        "--tol", type=float, help="per-layer accuracy tolerance (the authors: 0.02)"
    )
    parser.add_argument("--image-size", type=int, help="default 224 (folder), 32 (digits)")
    parser.add_argument(
        "--candidates", type=_candidates, default=50, help="channels scored per step, or 'all'"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per greedy step")
    parser.add_argument("--n-eval", type=int, default=6400, help="training images for --tol")
    parser.add_argument(
        "--replacement", action="store_true", help="allow picking a channel again (theory)"
    )
    parser.add_argument("--loss", choices=["ce", "imitation"], default="ce")
    parser.add_argument("--mode", choices=["batched", "sequential"], default="batched")
    parser.add_argument(
        "--between-epochs", type=float, default=0.0, help="fine-tune between layers (0.1)"
    )
    parser.add_argument("--finetune-epochs", type=float, default=0.0)
    parser.add_argument("--finetune-lr", type=float, default=0.01)
    parser.add_argument(
        "--train-epochs", type=float, default=20, help="training from scratch (no --weights)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def run(args) -> int:
    from ._pipeline import prune

    summary = prune(
        args.arch,
        args.data,
        args.out,
        target_macs=args.target_macs,
        tol=args.tol,
        weights=args.weights,
        image_size=args.image_size,
        candidates=args.candidates,
        batch_size=args.batch_size,
        n_eval=args.n_eval,
        replacement=args.replacement,
        loss=args.loss,
        mode=args.mode,
        between_epochs=args.between_epochs,
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        train_epochs=args.train_epochs,
        seed=args.seed,
        device=args.device,
        progress=None,
    )
    print(json.dumps(summary, indent=1))
    print(f"pruned model: {args.out}/model.safetensors + {args.out}/pruned.json")
    return 0
