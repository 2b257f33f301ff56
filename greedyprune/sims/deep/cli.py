"""``greedyprune verify deep``: layer-wise greedy selection in deep mean-field networks.

Thin: parse, call :func:`greedyprune.sims.deep.run_deep`, print the verdicts and the
accuracy (or test-loss) table. Library errors propagate to ``greedyprune.cli``, which turns them
into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "run"]


# keys --set/--config may not change here, and why
_NEVER = {"data": "pick the data set with --data"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from greedyprune.cli import add_device, add_out, add_progress, add_seeds, add_settings

    from ._data import DATA_KINDS
    from .presets import PRESETS
    from .setting import DeepSetting

    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="quick",
        help="; ".join(f"{p.name}: {p.help}" for p in PRESETS.values()),
    )
    parser.add_argument(
        "--data",
        choices=DATA_KINDS,
        default="teacher",
        help="deep teacher-student regression, MNIST-1D (generated offline) or sklearn digits",
    )
    add_out(parser, "runs/deep-<preset>-<data>")
    add_seeds(parser, "comma list of seeds, each run once (default: the preset's)")
    add_device(parser)
    add_progress(parser)
    add_settings(
        parser,
        DeepSetting,
        "width=64",
        "one, named after --data: teacher.width=64",
        "teacher",
        **_NEVER,
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a claim's verdict is 'fails' (for CI); 'inconclusive', 'conditions "
        "not met' and 'no data' do not count. Without it the exit code is 0 whatever the verdicts",
    )


def run(args) -> int:
    import pandas as pd

    from greedyprune.cli import resolve_progress
    from greedyprune.overrides import apply_overrides, overrides_from_args

    from .presets import deep_preset, run_deep

    setting, seeds = deep_preset(args.preset, args.data)
    overrides = overrides_from_args(args.config, args.set)
    if overrides:
        (setting,) = apply_overrides([setting], overrides, never=_NEVER)
    if args.seeds is not None:
        seeds = args.seeds
    out = Path(args.out) if args.out else Path("runs") / f"deep-{args.preset}-{args.data}"
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    _results, verdicts, summary = run_deep(
        setting,
        seeds,
        out,
        preset=args.preset,
        device=args.device,
        progress=resolve_progress(args.progress),
        log=log,
    )
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        table = summary[summary["experiment"] != "reference"].pivot_table(
            index="n", columns="method", values="mean"
        )
        metric = summary["metric"].iloc[0] if not summary.empty else "metric"
        print(f"\n{metric} (mean over {len(seeds)} seed(s)) by size per layer n:")
        print(table.to_string(float_format=lambda v: f"{v:.4g}"))
        ref = summary[summary["experiment"] == "reference"]
        for _, row in ref.iterrows():
            print(f"{row['method']} (width {setting.width}): {metric} = {row['mean']:.4g}")
        from greedyprune.theory import format_verdicts

        print("\nverdicts:")
        print(format_verdicts(verdicts))
    print(f"\nresults in {out} ({time.perf_counter() - t0:.1f}s)")
    failed = "verdict" in verdicts and (verdicts["verdict"] == "fails").any()
    return 1 if args.strict and failed else 0
