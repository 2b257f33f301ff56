"""Presets of ``greedyprune verify two-layer`` and the study each one defines.

``quick`` is the demo (about 20 s on 2 CPU cores, small but honest: N = 1000, 1000 GD steps,
n <= 300, 3 seeds); ``paper`` reproduces the authors' toy figure (log loss vs log n for n ~
90-1000; N = 2000, 3000 GD steps, 8 seeds, about 9 minutes of CPU on one core, 18 minutes wall
on a busy 2-core machine). Both hold two settings:

- ``interior``: tanh, d = 5, teacher-student data (m = 10 points in ``quick``, 20 in ``paper``),
  float64. The labels lie inside the hull of the pretrained network's features with a margin
  that is large enough for the fast rate to show within the fitted n range (b_n stays bounded).
  With m = 20 the slow regime lasts until n ~ 100, so ``quick`` (n <= 300) uses m = 10.
  The budget decides where GD from scratch stands: with 3000 steps (``paper``) it beats greedy
  below n ~ 300 and loses above, as in the authors' figure; with 1500 steps greedy wins at every
  n >= 20 (the ``regime`` experiment maps this over m and the budget).
- ``boundary``: ReLU, d = 5, m = 200. The feature cloud is thin in most of the 200 directions:
  the labels are outside the hull or close to its boundary, Proposition B's conditions fail and
  greedy's slope is about -1 or shallower.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from greedyprune.errors import (
    GreedypruneError,
    GreedypruneFileError,
    check_choice,
    check_int,
    check_type,
    refuse,
)
from greedyprune.study import Study, run_study
from greedyprune.theory import check, halves, two_layer_claims

from .experiments import (
    bounds_experiment,
    finetune_experiment,
    random_weights_experiment,
    rate_experiment,
    regime_experiment,
)
from .setting import Setting

__all__ = [
    "PRESETS",
    "Preset",
    "claims",
    "geometric_grid",
    "get_preset",
    "grid_with",
    "judge",
    "load_results",
    "study",
    "units",
    "verify_two_layer",
    "with_overrides",
]


def geometric_grid(low: int, high: int, points: int) -> list[int]:
    """About ``points`` integers spaced evenly in log between ``low`` and ``high`` (inclusive)."""
    if not 1 <= low <= high:
        raise refuse("(low, high)", (low, high), "integers with 1 <= low <= high")
    return sorted({int(v) for v in np.rint(np.geomspace(low, high, points))})


def grid_with(grid, sizes) -> tuple[int, ...]:
    """``grid`` with ``sizes`` added, sorted, each n once: a rate grid that holds the widths GD
    is trained at, so that greedy and GD share every GD width (the level claims pair equal n)."""
    return tuple(sorted({int(n) for n in grid} | {int(n) for n in sizes}))


@dataclass(frozen=True)
class Preset:
    """Everything a verify run does. Sizes are subnetwork sizes n.

    settings: the settings (``interior`` first; extra experiments run on it only).
    seeds: replicates. grid: sizes for the rate curves (it must hold every GD width: the level
    claims pair greedy and GD at equal n); fit_range: the n range of the slope fits, cut at its
    geometric middle into the n ranges of the two level claims (``halves``).
    gd_widths: widths trained from scratch. corrective_max: steps of the re-weighted variant.
    bounds_n_max: greedy steps in the bounds experiment (every n is recorded).
    random_widths / random_grid: the random-weight experiment. finetune_sizes / finetune_steps:
    the fine-tune vs re-train experiment. regime_ms / regime_budgets / regime_n: the (m, budget)
    map (empty ``regime_ms`` skips it).
    """

    name: str
    settings: tuple[Setting, ...]
    seeds: int
    grid: tuple[int, ...]
    fit_range: tuple[int, int]
    gd_widths: tuple[int, ...]
    corrective_max: int
    bounds_n_max: int
    random_widths: tuple[int, ...]
    random_grid: tuple[int, ...]
    finetune_sizes: tuple[int, ...]
    finetune_steps: int
    regime_ms: tuple[int, ...] = ()
    regime_budgets: tuple[int, ...] = ()
    regime_n: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        missing = sorted(set(self.gd_widths) - set(self.grid))
        if missing:
            raise GreedypruneError(
                f"preset {self.name!r}: gd_widths {missing} are not on grid; the level claims "
                "compare greedy with GD at equal n, so the grid must hold every GD width (build "
                "it with grid_with(grid, gd_widths))"
            )

    def config(self, seeds: int | None = None, device: str = "cpu") -> dict:
        """The run's config.json (what must match to resume)."""
        cfg = asdict(self)
        cfg["settings"] = [s.as_dict() for s in self.settings]
        cfg["seeds"] = self.seeds if seeds is None else seeds
        cfg["device"] = device
        return cfg


def _interior(width: int, steps: int, m: int) -> Setting:
    return Setting(name="interior", activation="tanh", m=m, d=5, width=width, steps=steps)


def _boundary(width: int, steps: int) -> Setting:
    return Setting(name="boundary", activation="relu", m=200, d=5, width=width, steps=steps)


# Widths trained from scratch; each preset's grid holds them too (greedy is measured there).
_QUICK_GD = (10, 20, 30, 60, 120, 300)
# below the fit range too, so the figure shows where the curves cross
_PAPER_GD = (20, 30, 45, 65, 90, 130, 190, 270, 390, 560, 800, 1000)

PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick",
        settings=(_interior(1000, 1000, m=10), _boundary(1000, 1000)),
        seeds=3,
        grid=grid_with(geometric_grid(1, 300, 30), _QUICK_GD),
        fit_range=(30, 300),
        gd_widths=_QUICK_GD,
        corrective_max=21,
        bounds_n_max=300,
        random_widths=(100, 1000, 10000),
        random_grid=tuple(geometric_grid(1, 300, 20)),
        finetune_sizes=(10, 30, 100),
        finetune_steps=300,
    ),
    "paper": Preset(
        name="paper",
        settings=(_interior(2000, 3000, m=20), _boundary(2000, 3000)),
        seeds=8,
        grid=grid_with(geometric_grid(1, 1000, 50), _PAPER_GD),
        fit_range=(90, 1000),
        gd_widths=_PAPER_GD,
        corrective_max=21,
        bounds_n_max=1000,
        random_widths=(100, 1000, 10000, 50000),
        random_grid=tuple(geometric_grid(1, 1000, 30)),
        finetune_sizes=(10, 30, 100, 300),
        finetune_steps=500,
        regime_ms=(10, 20, 50, 100),
        regime_budgets=(300, 1500, 6000),
        regime_n=300,
    ),
}


def units(preset: Preset, seeds: int, device):
    """(unit id, thunk) pairs in run order, seed by seed: ``EXPERIMENT/SETTING/SEED``."""
    main = preset.settings[0]
    for seed in range(seeds):
        for s in preset.settings:
            yield (
                f"rate/{s.name}/{seed}",
                lambda s=s, seed=seed: rate_experiment(
                    s,
                    seed,
                    grid=preset.grid,
                    gd_widths=preset.gd_widths,
                    corrective_max=preset.corrective_max if s is main else 0,
                    device=device,
                ),
            )
            yield (
                f"bounds/{s.name}/{seed}",
                lambda s=s, seed=seed: bounds_experiment(
                    s, seed, n_max=preset.bounds_n_max, device=device
                ),
            )
        yield (
            f"random_weights/{main.name}/{seed}",
            lambda seed=seed: random_weights_experiment(
                main, seed, widths=preset.random_widths, grid=preset.random_grid, device=device
            ),
        )
        yield (
            f"finetune/{main.name}/{seed}",
            lambda seed=seed: finetune_experiment(
                main, seed, sizes=preset.finetune_sizes, steps=preset.finetune_steps, device=device
            ),
        )
        if preset.regime_ms:
            yield (
                f"regime/{main.name}/{seed}",
                lambda seed=seed: regime_experiment(
                    main,
                    seed,
                    ms=preset.regime_ms,
                    budgets=preset.regime_budgets,
                    n=preset.regime_n,
                    device=device,
                ),
            )


def get_preset(name: str) -> Preset:
    return PRESETS[check_choice("preset", name, sorted(PRESETS))]


def load_results(out: str | os.PathLike) -> pd.DataFrame:
    """The results table of a run folder."""
    p = Path(out) / "results.csv"
    if not p.exists():
        raise GreedypruneFileError(
            f"no results.csv in {str(out)!r}; run `greedyprune verify two-layer`"
        )
    return pd.read_csv(p)


def study(preset: Preset, seeds: int | None = None, device: str = "cpu") -> Study:
    """The :class:`~greedyprune.study.Study` of a preset: its units (:func:`units`) and claims,
    fitted over the preset's ``fit_range``; torch runs on one CPU thread (every tensor is tiny)."""
    k = preset.seeds if seeds is None else seeds
    return Study(
        name=f"two-layer {preset.name}",
        config=preset.config(k, device),
        units=lambda dev: units(preset, k, dev),
        claims=claims(preset),
        n_range=preset.fit_range,
        cpu_threads=1,
    )


def verify_two_layer(
    preset: str | Preset = "quick",
    out: str | os.PathLike = "runs/two_layer",
    *,
    seeds: int | None = None,
    device: str = "cpu",
    progress: bool | None = None,
    n_boot: int = 1000,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run a preset into the folder ``out`` (resuming finished units) and judge the claims.

    Writes ``out/config.json``, ``out/results.csv`` (long format, one row per measurement),
    ``out/verdicts.csv`` and ``out/manifest.json``. ``seeds`` overrides the preset's number of
    replicates; ``device`` is where tensors live (``"cpu"``, ``"cuda"`` or ``"cuda:N"``).
    Returns ``(results, verdicts)``.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    check_type("preset", p, Preset, "a preset's name or a Preset")
    if seeds is not None:
        check_int("seeds", seeds, minimum=1)
    done = run_study(study(p, seeds, device), out, device=device, progress=progress, n_boot=n_boot)
    return done.results, done.verdicts


def claims(preset: Preset) -> list:
    """The claims judged on a preset's results: the re-weighted variant's fit runs to the main
    setting's m (it interpolates after about m + 1 picks), and the level claims
    ``greedy_below_gd_n<lo>_<hi>`` cover the two halves of the fit range (``halves``), judged
    at the GD widths inside each (the grid holds them)."""
    return two_layer_claims(
        corrective_range=(1, preset.settings[0].m), level_ranges=halves(*preset.fit_range)
    )


def judge(results: pd.DataFrame, preset: Preset, *, n_boot: int = 1000) -> pd.DataFrame:
    """The verdict table of a preset's results (see ``greedyprune.theory.check``)."""
    return check(results, claims(preset), n_range=preset.fit_range, n_boot=n_boot)


def with_overrides(preset: Preset, **changes) -> Preset:
    """A copy of ``preset`` with fields replaced (for tests and notebooks)."""
    return replace(preset, **changes)
