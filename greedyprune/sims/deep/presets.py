"""Presets of ``greedyprune verify deep`` as data, and the study a setting defines.

A preset holds, for each data set (``teacher``, ``mnist1d``, ``digits``), the setting and the
seeds. ``quick``: minutes on two CPU cores, one or two seeds, small widths (a smoke test of every
method and claim). ``paper``: the numbers quoted in docs/deep.md (3 seeds, width 128; a few
minutes per data set on two CPU cores).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from greedyprune.errors import check_choice, check_seeds, refuse
from greedyprune.study import Study, run_study
from greedyprune.theory import deep_claims

from .experiments import run_unit, summary_table, units
from .setting import DeepSetting

__all__ = ["PRESETS", "DeepPreset", "deep_preset", "run_deep", "study"]


@dataclass(frozen=True)
class DeepPreset:
    """One preset of ``verify deep``: for each data set, the setting and the seeds it runs.

    name: the preset's name. help: what it is for, in words (for ``--help``).
    settings: data set -> :class:`DeepSetting` (named after the data set).
    seeds: data set -> the seeds.
    """

    name: str
    help: str
    settings: Mapping[str, DeepSetting]
    seeds: Mapping[str, tuple[int, ...]]


def _real(data: str, **fields) -> DeepSetting:
    """A real data set's setting: float32, selection without replacement (as the authors),
    mini-batch SGD of 128 at lr 0.5, 512 points per step of the global objective."""
    common = dict(
        name=data,
        data=data,
        dtype="float32",
        replacement=False,
        batch_size=128,
        lr=0.5,
        global_batch=512,
    )
    return DeepSetting(**common, **fields)


PRESETS: dict[str, DeepPreset] = {
    "quick": DeepPreset(
        name="quick",
        help="a few minutes on 2 CPU cores",
        settings={
            "teacher": DeepSetting(
                name="teacher", width=96, m=256, steps=800, sizes=(2, 4, 8, 16, 32, 48)
            ),
            **{
                data: _real(
                    data,
                    num_samples=2000,
                    width=96,
                    steps=1500,
                    finetune_steps=300,
                    sizes=(4, 8, 16, 32, 64),
                    global_candidates=32,
                )
                for data in ("mnist1d", "digits")
            },
        },
        seeds={"teacher": (0, 1), "mnist1d": (0,), "digits": (0,)},
    ),
    "paper": DeepPreset(
        name="paper",
        help="the numbers in docs/deep.md",
        settings={
            "teacher": DeepSetting(
                name="teacher",
                width=128,
                m=256,
                steps=1500,
                finetune_steps=500,
                sizes=(2, 4, 8, 16, 32, 64),
                global_candidates=32,
            ),
            **{
                data: _real(
                    data,
                    width=128,
                    steps=steps,
                    finetune_steps=500,
                    sizes=(2, 4, 8, 16, 32, 64),
                    global_candidates=32,
                )
                for data, steps in (("mnist1d", 3000), ("digits", 2000))
            },
        },
        seeds={"teacher": (0, 1, 2), "mnist1d": (0, 1, 2), "digits": (0, 1, 2)},
    ),
}


# What a run's rows hold beyond the setting, in config.json: a folder written by code whose rows
# lack a column a claim reads is refused instead of resumed ("bound_local": the greedy_local rows
# of a setting selecting with replacement carry Proposition C's bound, judged by
# deep_local_bound; without replacement the rows and the config are as before).
RECORDS = "bound_local"


def _names(names) -> str:
    names = list(names)
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def deep_preset(preset: str, data: str = "teacher") -> tuple[DeepSetting, tuple[int, ...]]:
    """The setting and seeds of ``greedyprune verify deep --preset PRESET --data DATA``
    (``PRESETS[preset]``'s record for ``data``)."""
    p = PRESETS[check_choice("preset", preset, PRESETS)]
    check_choice("data", data, p.settings)
    return p.settings[data], tuple(p.seeds[data])


def study(setting: DeepSetting, seeds, *, preset: str = "custom", progress: bool = False) -> Study:
    """The :class:`~greedyprune.study.Study` of ``setting`` at ``seeds``: its units
    (:func:`~greedyprune.sims.deep.experiments.units`, each one's rows tagged with the setting's
    name and data), the claims of :func:`greedyprune.theory.deep_claims` and the summary table.
    progress: the units' own progress bars (training, selection)."""
    if not isinstance(setting, DeepSetting):
        raise refuse("setting", setting, "a DeepSetting", wrong_type=True)
    seeds = check_seeds("seeds", seeds)

    def bound(device):
        return [
            (unit, functools.partial(run_unit, functools.partial(fn, device, progress), setting))
            for unit, fn in units(setting, seeds)
        ]

    return Study(
        name=f"deep {preset} {setting.name}",
        config=dict(
            kind="deep",
            preset=preset,
            seeds=list(seeds),
            setting=setting.as_dict(),
            # rows selected without replacement are what they were before the bound column
            **({"records": RECORDS} if setting.replacement else {}),
        ),
        units=bound,
        claims=deep_claims(setting),
        summary=lambda results: summary_table(results, setting),
    )


def run_deep(
    setting: DeepSetting,
    seeds,
    out: str | os.PathLike,
    *,
    preset: str = "custom",
    device=None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    n_boot: int = 1000,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Run every unit of ``setting`` for ``seeds`` into the run folder ``out`` (resuming).

    Writes ``results.csv`` (one row per measurement), ``verdicts.csv``, ``summary.csv`` and
    ``manifest.json``; returns ``(results, verdicts, summary)`` as DataFrames. device: where the
    networks live (None: the CPU). log: called with one line per unit run. n_boot: bootstrap
    re-samples behind each verdict's interval.
    """
    s = study(setting, seeds, preset=preset, progress=progress)
    done = run_study(s, out, device=device, progress=False, log=log, n_boot=n_boot)
    return done.results, done.verdicts, done.summary
