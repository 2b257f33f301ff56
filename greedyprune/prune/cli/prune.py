"""``greedyprune prune``: greedy forward selection of channels for a CNN."""

from __future__ import annotations

import argparse

from greedyprune.errors import GreedypruneError

from .._recipes import RECIPES


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


def _fraction_or_none(flag: str, example: str, interval: str):
    """The argparse type of a fraction flag that also takes 'none' (``--tol``, ``--precheck``)."""

    def parse(text: str) -> float | None:
        if text == "none":
            return None
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} {text!r}: pass a number in {interval} (the authors: {example}) or 'none'"
            ) from None

    parse.__name__ = flag.lstrip("-")
    return parse


_tol = _fraction_or_none("--tol", "0.02", "[0, 1)")
_precheck = _fraction_or_none("--precheck", "0.95", "(0, 1]")


def _crop(text: str) -> tuple[float, float]:
    try:
        low = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--crop-scale {text!r}: pass the smallest crop area as a fraction, e.g. 0.2"
        ) from None
    return (low, 1.0)


def _one_seed(text: str) -> int:
    """``prune --seeds S``: the same comma-list grammar as the other commands, one seed only."""
    from greedyprune.cli import seeds_type

    seeds = seeds_type(text)
    if len(seeds) != 1:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r}: prune takes one seed (run it once per seed, each with its --out)"
        )
    return seeds[0]


def _recipe_values(knob: str) -> str:
    """``(default: from --recipe: authors X, default Y)`` for a recipe knob's help."""
    phase, field = {
        "between_epochs": ("between", "epochs"),
        "finetune_epochs": ("final", "epochs"),
        "finetune_lr": ("final", "lr"),
        "finetune_batch_size": ("final", "batch_size"),
    }.get(knob, (None, knob))

    def show(recipe) -> str:
        value = getattr(getattr(recipe, phase), field) if phase else getattr(recipe, field)
        if knob == "crop_scale":
            value = value[0]
        return "none" if value is None else str(value)

    shown = ", ".join(f"{name} {show(r)}" for name, r in sorted(RECIPES.items()))
    return f"(default: from --recipe: {shown})"


# Library argument names that differ from their flags (for error messages; see greedyprune.cli).
FLAG_NAMES = {"seed": "--seeds"}

# --objective local's flags -> LocalSettings fields
_LOCAL_FLAGS = {
    "method": "method",
    "positions": "positions",
    "calibration_images": "calibration_images",
    "ridge": "ridge",
    "swaps": "swaps",
    "memory_budget": "memory_budget",
}


def local_settings(args, enabled: bool, need: str):
    """LocalSettings from the flags, or None where local imitation is not ``enabled`` (then any
    local flag given is refused: it needs ``need``)."""
    from .._local import LocalSettings

    given = {k: getattr(args, k) for k in _LOCAL_FLAGS if hasattr(args, k)}
    if not enabled:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise GreedypruneError(f"{flags}: only with {need}")
        return None
    values = {_LOCAL_FLAGS[k]: v for k, v in given.items()}
    if "memory_budget" in values:
        mib = values["memory_budget"]
        if isinstance(mib, int) and mib >= 1:
            values["memory_budget"] = mib << 20
        else:
            raise GreedypruneError(f"--memory-budget {mib!r} must be an int >= 1 (MiB)")
    return LocalSettings(**values)


def add_local_flags(parser: argparse.ArgumentParser, when: str):
    """Local imitation's settings flags (LocalSettings but its method), in an argument group
    titled ``when``; returns the group."""
    S = argparse.SUPPRESS  # absent unless given: LocalSettings' defaults stand
    local = parser.add_argument_group(f"local imitation ({when})")
    local.add_argument("--positions", type=int, default=S, help="output positions per image (10)")
    local.add_argument(
        "--calibration-images",
        type=int,
        default=S,
        help="training images, evaluation transform, spread over the classes (1024)",
    )
    local.add_argument("--ridge", type=float, default=S, help="refit ridge / mean(diag) (1e-4)")
    local.add_argument("--swaps", type=int, default=S, help="rounds of swap search (0)")
    local.add_argument(
        "--memory-budget",
        type=int,
        default=S,
        metavar="MIB",
        help="cached activations kept in memory; the rest spills to disk, exactly (1024)",
    )
    return local


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from greedyprune.cli import add_device, add_out, add_progress

    S = argparse.SUPPRESS  # recipe knobs: absent unless given, so the recipe's value stands

    def knob(flag: str, help_: str, **kwargs) -> None:
        dest = flag[2:].replace("-", "_")
        parser.add_argument(flag, default=S, help=f"{help_} {_recipe_values(dest)}", **kwargs)

    parser.add_argument(
        "--arch", required=True, help="model name: a torchvision name or proxylessnas_mobile"
    )
    parser.add_argument(
        "--data", required=True, help="folder:PATH (ImageNet layout), digits or synthetic"
    )
    add_out(parser, "runs/prune-<data kind>-<arch>, e.g. runs/prune-digits-resnet18")
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
    knob("--tol", "per-layer top-1 tolerance or 'none'", type=_tol)
    knob(
        "--precheck",
        "measure the eval set only when the step batch's top-1 is at least this fraction of "
        "the layer's start, or 'none'",
        type=_precheck,
    )
    parser.add_argument(
        "--image-size", type=int, help="input size in pixels (default: 224 folder, 32 digits)"
    )
    knob("--candidates", "channels scored per step, or 'all'", type=_candidates)
    knob(
        "--candidate-order",
        "random sample (the paper) or the lowest-index open channels (the authors' code)",
        choices=["random", "lowest-index"],
    )
    knob("--batch-size", "images per greedy step", type=int)
    knob("--crop-scale", "smallest random crop area, a fraction", type=_crop)
    knob("--n-eval", "images for --tol, spread over every class", type=int)
    knob("--eval-every", "--tol on every k-th training image", type=int)
    parser.add_argument(
        "--replacement", action="store_true", help="allow picking a channel again (theory)"
    )
    parser.add_argument(
        "--loss",
        choices=["ce", "imitation"],
        default="ce",
        help="greedy objective: cross-entropy on the labels or imitation of the full model",
    )
    parser.add_argument(
        "--mode",
        choices=["batched", "sequential"],
        default="batched",
        help="score the candidates of a step together (batched) or one at a time",
    )
    parser.add_argument(
        "--objective",
        choices=["global", "local"],
        default="global",
        help="global: greedy on the whole network's loss (the paper); local: each internal "
        "group's consumer imitates the dense one on a calibration set, in Gram form, then is "
        "refitted by least squares (docs/prune.md) (default: %(default)s)",
    )
    local = add_local_flags(parser, "with --objective local")
    local.add_argument(
        "--method",
        default=S,
        help="greedy-local (the 1/k average), greedy-local-omp (one scale per channel), "
        "greedy-local-refit (the consumer's full refit), or the peers thinet, cp, osscar "
        "(default: greedy-local-refit)",
    )
    knob("--between-epochs", "fine-tuning epochs between layers", type=float)
    knob("--finetune-epochs", "final fine-tuning epochs", type=float)
    knob("--finetune-lr", "final fine-tuning learning rate", type=float)
    knob("--finetune-batch-size", "final fine-tuning batch size", type=int)
    parser.add_argument(
        "--train-epochs",
        type=float,
        default=20,
        help="epochs of training from scratch (without --weights)",
    )
    parser.add_argument(
        "--seeds",
        type=_one_seed,
        default=0,
        metavar="S",
        help="the run's seed (one; the same comma-list flag as compare's, which takes several)",
    )
    parser.add_argument("--seed", type=_one_seed, dest="seeds", default=S, help=S)  # old name
    add_device(parser)
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader worker processes (0: the main one)"
    )
    parser.add_argument(
        "--amp", choices=["bf16", "fp16"], help="mixed precision on CUDA (scoring, fine-tuning)"
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="NHWC memory format (faster on GPUs)"
    )
    parser.add_argument(
        "--eval-cache-mb",
        type=int,
        default=1024,
        metavar="MIB",
        help="memory for the evaluation set's activations at the group being selected: --tol's "
        "evaluations then run only the rest of the network (0: off; default: %(default)s)",
    )
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the training checkpoints (model + optimizer state, for resuming) after the run "
        "finishes; by default they are removed then",
    )
    add_progress(parser)


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

    from .._prune_job import PruneSettings, Runtime, prune
    from .._recipes import resolve_recipe

    knobs = {k: getattr(args, k) for k in _KNOBS if hasattr(args, k)}
    out = args.out or f"runs/prune-{args.data.split(':')[0]}-{args.arch}"
    settings = PruneSettings(
        recipe=resolve_recipe(args.recipe, **knobs),
        target_macs=args.target_macs,
        replacement=args.replacement,
        loss=args.loss,
        mode=args.mode,
        train_epochs=args.train_epochs,
        seed=args.seeds,
        local=local_settings(
            args,
            args.objective == "local",
            "--objective local (the global objective has no such setting)",
        ),
    )
    summary = prune(
        args.arch,
        args.data,
        out,
        settings,
        weights=args.weights,
        image_size=args.image_size,
        runtime=Runtime(
            device=args.device,
            workers=args.workers,
            amp=args.amp,
            channels_last=args.channels_last,
            eval_cache_mb=args.eval_cache_mb,
            keep_checkpoints=args.keep_checkpoints,
            progress=args.progress,
        ),
    )
    from pathlib import Path

    from greedyprune.dist import is_main

    if is_main():
        layers_csv = Path(out) / "layers.csv"
        layers = pd.read_csv(layers_csv) if layers_csv.is_file() else None
        print(summary_table(summary, layers))
        print(f"pruned model: {out}/model.safetensors + {out}/pruned.json")
    return 0
