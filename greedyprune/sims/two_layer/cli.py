"""``greedyprune verify two-layer``: run a preset, print the verdict table, write the figures."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from greedyprune.errors import GreedypruneError
from greedyprune.theory import format_verdicts

from .presets import PRESETS, verify_two_layer, with_overrides
from .setting import Setting

__all__ = ["SWEEP", "add_arguments", "format_verdicts", "run"]

SWEEP = "sweep"  # --preset sweep: the knee sweep (greedyprune.sims.two_layer.sweep)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from greedyprune.cli import add_device, add_out, add_progress, add_seeds, add_settings

    parser.add_argument(
        "--preset",
        default="quick",
        metavar="|".join([*sorted(PRESETS), SWEEP]),
        help=f"which experiment set to run; '{SWEEP}' runs the knee sweep's full configuration "
        "(the same as 'verify two-layer-knee --preset full': Proposition B's n* against the "
        "measured knee over activation, d and m)",
    )
    add_out(parser, "runs/two_layer_<preset>")
    add_seeds(
        parser,
        "comma list of seeds; this command runs seeds 0 to K-1, so pass 0,1,...,K-1 (--seeds "
        "used to be the count K: --seeds 3 is now refused, pass 0,1,2). Default: the preset's, "
        + ", ".join(f"{n}: 0-{p.seeds - 1}" for n, p in sorted(PRESETS.items())),
    )
    add_device(parser)
    add_progress(parser)
    add_settings(parser, Setting, "activation=sigmoid", "interior and boundary", "interior")
    parser.add_argument("--no-figures", action="store_true", help="skip writing figures")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a claim's verdict is 'fails' (for CI); 'inconclusive', 'conditions "
        "not met' and 'no data' do not count. Without it the exit code is 0 whatever the verdicts",
    )


def _seed_count(seeds: tuple[int, ...] | None) -> int | None:
    """The library's replicate count for ``--seeds``: it runs seeds 0..K-1, so the list must be
    exactly those (in any order)."""
    if seeds is None:
        return None
    if sorted(seeds) != list(range(len(seeds))):
        shown = ",".join(map(str, seeds))
        raise GreedypruneError(
            f"--seeds {shown}: verify two-layer runs seeds 0 to K-1, so pass e.g. 0,1,2 for K=3 "
            "(--seeds is a list of seeds, no longer a count)"
        )
    return len(seeds)


def _preset(args):
    """The preset of ``--preset`` with ``--config`` and ``--set`` applied to its settings."""
    from greedyprune.overrides import apply_overrides, overrides_from_args

    from .._data import _KINDS

    preset = PRESETS[args.preset]
    overrides = overrides_from_args(args.config, args.set)
    if not overrides:
        return preset
    settings = apply_overrides(preset.settings, overrides, choices={"data": sorted(_KINDS)})
    return with_overrides(preset, settings=settings)


def _device(text: str) -> str:
    """``--device`` for the library's config, which records 'cpu' or 'cuda': 'cuda:N' (checked
    by :func:`greedyprune.study.check_device`) selects GPU N as the current CUDA device and runs
    on 'cuda'."""
    from greedyprune.study import check_device

    device = check_device(text)
    if not device.startswith("cuda:"):
        return device
    import torch

    torch.cuda.set_device(int(device.split(":", 1)[1]))
    return "cuda"


def _run_sweep(args) -> int:
    """``--preset sweep``: the knee sweep's full configuration, with --out, --device, --progress.
    The flags that shape the verification's settings, seeds or figures do not apply to it."""
    from . import sweep

    given = [
        flag
        for flag, value in (
            ("--set", args.set),
            ("--config", args.config),
            ("--seeds", args.seeds),
            ("--no-figures", args.no_figures),
            ("--strict", args.strict),
        )
        if value
    ]
    if given:
        raise GreedypruneError(
            f"--preset {SWEEP} takes --out, --device and --progress only, not {', '.join(given)}; "
            "the sweep's settings and seeds are fixed (see 'verify two-layer-knee --help')"
        )
    out = args.out or f"runs/two_layer_{SWEEP}"
    return sweep.run(
        argparse.Namespace(preset="full", out=out, device=args.device, progress=args.progress)
    )


def run(args) -> int:
    if args.preset == SWEEP:
        return _run_sweep(args)
    if args.preset not in PRESETS:
        raise GreedypruneError(
            f"--preset {args.preset!r} is not known; pass one of "
            f"{', '.join([*sorted(PRESETS), SWEEP])}"
        )
    preset = _preset(args)
    count = _seed_count(args.seeds)
    device = _device(args.device)
    out = Path(args.out or f"runs/two_layer_{args.preset}")
    k = preset.seeds if count is None else count
    print(f"seeds: {','.join(map(str, range(k)))}", flush=True)
    start = time.perf_counter()
    results, verdicts = verify_two_layer(
        preset, out, seeds=count, device=device, progress=args.progress
    )
    print(format_verdicts(verdicts))
    print("\nreasons:")
    for r in verdicts.itertuples():
        print(f"  {r.claim} [{r.setting}]: {r.reason}")
    if not args.no_figures:
        from greedyprune import plots

        written = plots.two_layer_figures(results, out)
        print(f"\nfigures: {', '.join(str(p) for p in written)}")
    print(f"results: {out / 'results.csv'} ({len(results)} rows); verdicts: {out / 'verdicts.csv'}")
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    failed = "verdict" in verdicts and (verdicts["verdict"] == "fails").any()
    return 1 if args.strict and failed else 0
