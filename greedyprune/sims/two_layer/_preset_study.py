"""The skeleton the knee sweep and the budget study share: a configuration chosen by name from
its table (or given whole), turned into a :class:`~greedyprune.study.Study` and run into a folder,
and the command around it (``--preset``, ``--out``, ``--device``, ``--progress``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from greedyprune.errors import check_type
from greedyprune.study import Study, StudyResult, run_study

__all__ = ["preset_arguments", "resolve_config", "run_preset"]


def resolve_config(config, table: Mapping[str, Any], cls: type, what: str):
    """``table[config]`` for a name, ``config`` itself for an instance of ``cls``."""
    cfg = table[config] if isinstance(config, str) and config in table else config
    names = ", ".join(repr(n) for n in sorted(table))
    check_type("config", cfg, cls, f"one of {names} or a {cls.__name__} ({what})")
    return cfg


def preset_arguments(parser: argparse.ArgumentParser, table: Mapping, help_: str, out: str) -> None:
    """The command's options: ``--preset`` (a name of ``table``), ``--out`` (default ``out``,
    ``<preset>`` filled in), ``--device``, ``--progress``."""
    from greedyprune.cli import add_device, add_out, add_progress

    parser.add_argument("--preset", default="quick", choices=sorted(table), help=help_)
    add_out(parser, out)
    add_device(parser)
    add_progress(parser)


def run_preset(
    args, table: Mapping, make_study: Callable[[Any, str], Study], out: str, n_boot=None
) -> tuple[Any, StudyResult, Path, float]:
    """The command's run: the preset's configuration, its study run (or resumed) into ``--out``
    (default ``out`` with ``<preset>`` filled in) with a line per unit; returns the
    configuration, the result, the folder and the start time (for the wall time printed last).
    ``n_boot``: a function of the configuration giving the verdicts' re-samples (None: 1000)."""
    from greedyprune.cli import resolve_progress

    folder = Path(args.out or out.replace("<preset>", args.preset))
    t0 = time.perf_counter()
    cfg = table[args.preset]
    done = run_study(
        make_study(cfg, args.device),
        folder,
        device=args.device,
        progress=resolve_progress(args.progress),
        log=lambda line: print(line, flush=True),
        n_boot=1000 if n_boot is None else n_boot(cfg),
    )
    return cfg, done, folder, t0
