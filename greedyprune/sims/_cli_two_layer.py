"""``greedyprune verify two-layer``: run a preset, print the verdict table, write the figures."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from ._presets import PRESETS, verify_two_layer


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        default="quick",
        help=f"which experiment set to run: {', '.join(sorted(PRESETS))} (default quick)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="run folder (default runs/two_layer_<preset>); resumes if present",
    )
    parser.add_argument(
        "--seeds", type=_positive_int, default=None, help="replicates (default: the preset's)"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default cpu")
    parser.add_argument("--no-figures", action="store_true", help="skip writing figures")


def format_verdicts(verdicts: pd.DataFrame) -> str:
    """The verdict table as fixed-width text (one line per claim and setting)."""
    if verdicts.empty:
        return "(no verdicts)"
    lines = [
        f"{'claim':<24} {'setting':<9} {'pred':>5} {'slope':>7} {'95% CI':>17} {'n range':>9}  verdict"
    ]
    for r in verdicts.itertuples():
        pred = "" if pd.isna(r.predicted_slope) else f"{r.predicted_slope:.1f}"
        slope = "" if pd.isna(r.measured_slope) else f"{r.measured_slope:.3g}"
        ci = "" if pd.isna(r.ci_low) else f"[{r.ci_low:.3g}, {r.ci_high:.3g}]"
        rng = "" if pd.isna(r.n_min) else f"{int(r.n_min)}-{int(r.n_max)}"
        lines.append(
            f"{r.claim:<24} {r.setting:<9} {pred:>5} {slope:>7} {ci:>17} {rng:>9}  {r.verdict}"
        )
    return "\n".join(lines)


def run(args) -> int:
    if args.preset not in PRESETS:
        raise ValueError(
            f"--preset {args.preset!r} is not known; pass one of {', '.join(sorted(PRESETS))}"
        )
    out = Path(args.out or f"runs/two_layer_{args.preset}")
    start = time.perf_counter()
    results, verdicts = verify_two_layer(
        args.preset, out, seeds=args.seeds, device=args.device, progress=None
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
    return 0
