"""``greedyprune compare``: greedy against Torch-Pruning's criteria and uniform width, equal MACs."""

from __future__ import annotations

import argparse

from .prune import _candidates, add_local_flags, local_settings


def _list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: pass a comma-separated list")
    return items


# Library argument names that differ from their flags (for error messages; see greedyprune.cli).
FLAG_NAMES = {"greedy_batch": "--batch-size", "targets": "--target-macs", "seed": "--seeds"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from greedyprune.cli import add_device, add_out, add_progress, add_seeds

    parser.add_argument("--arch", required=True, help="torchvision model name, e.g. resnet18")
    parser.add_argument("--data", required=True, help="digits, synthetic or folder:PATH")
    parser.add_argument(
        "--target-macs",
        type=_list,
        default=["0.5"],
        help="comma list of whole-model MACs targets: fractions (0.5,0.25) or counts (220M) "
        "(default: 0.5)",
    )
    parser.add_argument(
        "--methods",
        type=_list,
        default=["greedy", "l1", "taylor", "bn", "random", "uniform"],  # DEFAULT_METHODS
        help="comma list of greedy,l1,taylor,bn,random,uniform, ispasp (i-SpaSP on each group's "
        "consumers, every group on the dense network), ispasp-seq (the same, group after group "
        "on the partly pruned network) and the fine-tune against "
        "re-train methods metapruner (Torch-Pruning's global pruner), scratch-E, scratch-B "
        "(greedy's widths trained from scratch for E epochs / for the whole compute budget; "
        "scratch-B needs greedy), and with --groups internal the local imitation methods "
        "greedy-local, greedy-local-omp, greedy-local-refit, thinet, cp, osscar "
        "(default: greedy,l1,taylor,bn,random,uniform)",
    )
    parser.add_argument(
        "--groups",
        choices=["all", "internal"],
        default="all",
        help="the groups every method prunes: all (residual streams included) or internal (one "
        "consumer each, as local imitation needs) (default: %(default)s)",
    )
    add_local_flags(parser, "the local methods, with --groups internal")
    add_seeds(
        parser,
        "comma list of seeds, each method and target once per seed (default: 0)",
        default=(0,),
    )
    add_out(parser, "runs/compare-<data kind>-<arch>, e.g. runs/compare-digits-resnet18")
    parser.add_argument("--weights", help="local checkpoint; digits/synthetic train one here")
    parser.add_argument(
        "--image-size", type=int, help="input size in pixels (default: 224 folder, 32 digits)"
    )
    parser.add_argument(
        "--train-epochs",
        type=float,
        default=20,
        help="epochs of training the base model from scratch (without --weights)",
    )
    parser.add_argument(
        "--finetune-epochs", type=float, default=3, help="fine-tuning epochs of each pruned model"
    )
    parser.add_argument("--finetune-lr", type=float, default=0.01, help="fine-tuning learning rate")
    parser.add_argument(
        "--candidates",
        type=_candidates,
        default=8,
        help="channels greedy scores per step, or 'all'",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="images per greedy step (as in prune)"
    )
    parser.add_argument(  # the old name of --batch-size
        "--greedy-batch",
        type=int,
        dest="batch_size",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--loss",
        choices=["ce", "imitation"],
        default="ce",
        help="greedy objective: cross-entropy on the labels or imitation of the full model",
    )
    add_device(parser)
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader worker processes (0: the main one)"
    )
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision on CUDA")
    parser.add_argument(
        "--curves",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="record test accuracy after every fine-tuning/training epoch (column acc_curve) "
        "(default: off)",
    )
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=0,
        metavar="N",
        help="keep every final model and time them all at the end in one paired phase of N "
        "turns (latency.csv; 0: off)",
    )
    add_progress(parser)


def run(args) -> int:
    from .._compare_job import CompareSettings, compare, summarize
    from .._prune_job import Runtime

    kind = args.data.split(":")[0]
    out = args.out or f"runs/compare-{kind}-{args.arch}"
    targets = [float(t) if t.replace(".", "", 1).isdigit() else t for t in args.target_macs]
    settings = CompareSettings(
        targets=targets,
        methods=args.methods,
        seeds=args.seeds,
        train_epochs=args.train_epochs,
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        candidates=args.candidates,
        greedy_batch=args.batch_size,
        loss=args.loss,
        curves=args.curves,
        latency_runs=args.latency_runs,
        local=local_settings(args, args.groups == "internal", "--groups internal"),
    )
    runtime = Runtime(
        device=args.device, workers=args.workers, amp=args.amp, progress=args.progress
    )
    df = compare(
        args.arch,
        args.data,
        out,
        settings,
        weights=args.weights,
        image_size=args.image_size,
        runtime=runtime,
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
