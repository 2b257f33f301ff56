"""Where the fast rate starts: Proposition B's crossover n* = (D / r)^2 against the measured knee.

For every setting of a sweep over the activation, the input dimension d and the number of data
points m, and every seed, :func:`knee_experiment` pretrains the width-N network, runs greedy with
replacement toward a target with :func:`~greedyprune.sims.two_layer.bounds_experiment` (which
records ``e_n`` at every n, the constant ``D``, the margin estimate ``r_est`` and
``n_star = (D / r_est)^2``) and finds the *knee*: the n where the curve's local log-log slope
first falls through ``KNEE_SLOPE = -1.5`` and stays there (:func:`find_knee`).

Targets. The primary target is ``f_N``, the pretrained network's own output: it is the centroid of
the features, so it always lies in the relative interior of their hull and Proposition B's
condition (``r > 0``) holds in every setting; the sweep then tests the *prediction* n*, not the
condition. The labels ``y`` (the training loss) are recorded too; where ``y`` is outside the hull
(``r_est <= 0`` or the LP says so) there is no prediction and the setting is reported as such.

Thresholds, fixed before any measurement (their derivation is in docs/two_layer_sweep.md):

- ``KNEE_SLOPE = -1.5``: halfway between the slow rate (slope -1) and the fast rate (slope -2) on a
  log scale; for ``e_n = A / (n (1 + n / n_c))`` the local slope is -1.5 exactly at ``n = n_c``.
- ``SLOPE_WINDOW = 2``: the local slope at n is the least-squares slope of ``log e_k`` on
  ``log k`` over ``n / sqrt(2) <= k <= n sqrt(2)``.
- ``PERSIST = 2``: a crossing counts only if the slope stays at or below -1.5 from there over a
  factor 2 of n (or to the end of the range), so that a wiggle of the jagged greedy curve is not
  taken for the knee.
- ``KNEE_FACTOR = 4 sqrt(2)``: the verdict "n* predicts the knee within a factor X". The envelopes
  of Propositions A and B, ``D^2 / n`` and ``((D^2 / 2r)^2 + D^2) / n^2``, cross at
  ``n = n* / 4 + 1``; the docs' "n* ~ (D/r)^2" drops that 4. So a curve that follows the envelopes
  has its knee between ``n* / 4`` and ``n*``: a factor 4. The slope window spans a factor 2, so a
  crossing is located only to within its half-width, a factor ``sqrt(2)``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from greedyprune.errors import GreedypruneError, check_int
from greedyprune.study import Study, StudyResult, run_study
from greedyprune.theory import Claim, ClaimCase, fit_rate, format_verdicts, register_form

from ._preset_study import preset_arguments, resolve_config, run_preset
from .experiments import bounds_experiment
from .setting import Setting

__all__ = [
    "KNEE_FACTOR",
    "KNEE_SLOPE",
    "PERSIST",
    "SLOPE_WINDOW",
    "SWEEPS",
    "SweepConfig",
    "add_arguments",
    "band_status",
    "find_knee",
    "knee_experiment",
    "knee_table",
    "knee_verdict",
    "local_slopes",
    "run",
    "run_sweep",
    "sweep_study",
    "sweep_units",
]

KNEE_SLOPE = -1.5
SLOPE_WINDOW = 2.0
PERSIST = 2.0
KNEE_FACTOR = 4.0 * math.sqrt(2.0)

TARGETS = ("f_N", "y")


# ---------------------------------------------------------------------------------- the knee


def local_slopes(n, e, *, window: float = SLOPE_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """The local log-log slope of a curve measured at every integer n.

    n: consecutive sizes 1..n_max (or any increasing integers); e: the values (only positive,
    finite ones are used). At each integer centre c the slope is the least-squares slope of
    ``log e_k`` on ``log k`` over the k in ``[c / sqrt(window), c * sqrt(window)]``; a centre is
    kept when that window lies inside the measured range and holds at least 3 usable points.
    Returns ``(centres, slopes)``, both sorted by centre.
    """
    n = np.asarray(n, dtype=float).reshape(-1)
    e = np.asarray(e, dtype=float).reshape(-1)
    if n.shape != e.shape:
        raise GreedypruneError(f"n has {n.size} entries but e has {e.size}; pass one value per n")
    if not window > 1:
        raise GreedypruneError(f"window={window!r} must be > 1 (a factor of n)")
    if n.size == 0:
        return np.empty(0), np.empty(0)
    if np.any(np.diff(n) <= 0):
        raise GreedypruneError("n must be strictly increasing")
    ok = np.isfinite(e) & (e > 0) & (n > 0)
    x = np.where(ok, np.log(np.where(n > 0, n, 1.0)), 0.0)
    y = np.where(ok, np.log(np.where(ok, e, 1.0)), 0.0)
    w = ok.astype(float)
    # prefix sums over the usable points: window sums in O(1) per centre
    cs = [np.concatenate([[0.0], np.cumsum(v)]) for v in (w, x, y, x * x, x * y)]
    half = math.sqrt(window)
    lo_n, hi_n = n[0], n[-1]
    centres = np.arange(math.ceil(lo_n), math.floor(hi_n) + 1, dtype=float)
    lo = np.searchsorted(n, centres / half - 1e-9, side="left")
    hi = np.searchsorted(n, centres * half + 1e-9, side="right")
    inside = (centres / half >= lo_n - 1e-9) & (centres * half <= hi_n + 1e-9)
    k, sx, sy, sxx, sxy = (c[hi] - c[lo] for c in cs)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = k * sxx - sx * sx
        slope = (k * sxy - sx * sy) / den
    keep = inside & (k >= 3) & (den > 1e-12 * np.maximum(k * sxx, 1e-300))
    return centres[keep], slope[keep]


def find_knee(
    n,
    e,
    *,
    threshold: float = KNEE_SLOPE,
    window: float = SLOPE_WINDOW,
    persist: float = PERSIST,
) -> dict:
    """Where the local slope of a curve first falls through ``threshold`` and stays there.

    The local slopes are :func:`local_slopes`. The search starts at the first centre whose slope is
    above the threshold (the curve is in its slow phase there); the knee is the first later centre
    whose slope is at or below it and stays so at every centre up to ``persist`` times that n (or
    to the last centre), interpolated linearly in ``log n`` between it and the centre before.

    Returns ``{"status", "knee", "first", "last"}``: ``first`` / ``last`` are the smallest and
    largest centres. ``status`` is ``"found"`` (``knee`` set), ``"steep_throughout"`` (the slope
    never rises above the threshold: the knee is at or below ``first``), ``"no_knee_in_range"``
    (it never comes back down for good: the knee, if any, is above ``last``) or ``"too_short"``
    (no centre at all). ``knee`` is NaN unless found.
    """
    if not persist >= 1:
        raise GreedypruneError(f"persist={persist!r} must be >= 1 (a factor of n)")
    c, s = local_slopes(n, e, window=window)
    out = dict(status="too_short", knee=float("nan"), first=float("nan"), last=float("nan"))
    if c.size == 0:
        return out
    out.update(first=float(c[0]), last=float(c[-1]))
    above = np.flatnonzero(s > threshold)
    if above.size == 0:
        return dict(out, status="steep_throughout")
    for k in range(int(above[0]) + 1, c.size):
        if s[k] > threshold:
            continue
        span = (c >= c[k]) & (c <= c[k] * persist)
        if np.all(s[span] <= threshold):
            x0, x1 = math.log(c[k - 1]), math.log(c[k])
            t = (threshold - s[k - 1]) / (s[k] - s[k - 1])
            return dict(out, status="found", knee=float(math.exp(x0 + t * (x1 - x0))))
    return dict(out, status="no_knee_in_range")


def band_status(
    status: str,
    knee: float,
    n_star: float,
    *,
    first: float,
    last: float,
    factor: float = KNEE_FACTOR,
) -> str:
    """Does the knee lie within ``[n_star / factor, n_star * factor]``?

    ``"in_band"`` / ``"out_of_band"`` for a found knee; for a censored one (the knee is only known
    to lie in ``(0, first]`` or ``(last, inf)``): ``"out_of_band"`` when that interval misses the
    band, ``"censored_compatible"`` when it meets it. ``"no_prediction"`` when ``n_star`` is not a
    positive finite number (the margin estimate is <= 0: the target is outside the hull), and
    ``"no_knee_measured"`` for a curve too short to have local slopes.
    """
    if not (np.isfinite(n_star) and n_star > 0):
        return "no_prediction"
    lo, hi = n_star / factor, n_star * factor
    if status == "found":
        return "in_band" if lo <= knee <= hi else "out_of_band"
    if status == "steep_throughout":
        return "censored_compatible" if lo <= first else "out_of_band"
    if status == "no_knee_in_range":
        return "censored_compatible" if hi > last else "out_of_band"
    return "no_knee_measured"


# ---------------------------------------------------------------------------- the experiment


def _slope(n: np.ndarray, e: np.ndarray, lo: float, hi: float) -> float:
    keep = (n >= lo) & (n <= hi) & np.isfinite(e) & (e > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(n[keep]), np.log(e[keep]), 1)[0])


def knee_experiment(
    setting: Setting,
    seed: int,
    *,
    n_max: int,
    margin_restarts: int = 32,
    curve_points: int = 40,
    device=None,
) -> list[dict]:
    """One (setting, seed) of the sweep: Proposition B's n* against the measured knee.

    Runs :func:`bounds_experiment` (greedy with replacement toward ``f_N`` and toward ``y`` up to
    ``n_max``) and returns, per target, one ``record="summary"`` row (``D, r_est, n_star, in_hull,
    knee, knee_status, first, last, band``, ``ratio = knee / n_star`` and the OLS slope of
    ``log e_n`` over the last decade ``n_max/10..n_max``, ``slope_last_decade``) and
    ``curve_points`` ``record="curve"`` rows on a geometric n grid (``e_n`` and the local slope
    ``local_slope`` where defined), for the figure.
    """
    rows = pd.DataFrame(
        bounds_experiment(
            setting, seed, n_max=n_max, margin_restarts=margin_restarts, device=device
        )
    )
    common = dict(
        experiment="knee",
        setting=setting.name,
        method="greedy",
        seed=int(seed),
        activation=setting.activation,
        d=setting.d,
        m=setting.m,
        N=setting.width,
        steps=setting.steps,
    )
    out: list[dict] = []
    grid = np.unique(np.rint(np.geomspace(1, n_max, curve_points)).astype(int))
    for target in TARGETS:
        r = rows[rows["target"] == target].sort_values("n")
        n = r["n"].to_numpy(dtype=float)
        e = r["e_n"].to_numpy(dtype=float)
        first = r.iloc[0]
        n_star = float(first["n_star"])
        k = find_knee(n, e)
        # toward y the prediction needs y in the hull (the LP): r_est is only an upper estimate
        predicted = n_star if float(first["in_hull"]) >= 1 else float("nan")
        band = band_status(k["status"], k["knee"], predicted, first=k["first"], last=k["last"])
        out.append(
            dict(
                common,
                record="summary",
                target=target,
                n=int(n_max),
                e_n=float(e[-1]),
                D=float(first["D"]),
                r_est=float(first["r_est"]),
                n_star=n_star,
                in_hull=float(first["in_hull"]),
                lp_residual=float(first["lp_residual"]),
                knee=k["knee"],
                knee_status=k["status"],
                first=k["first"],
                last=k["last"],
                band=band,
                ratio=k["knee"] / n_star if np.isfinite(n_star) and n_star > 0 else np.nan,
                slope_last_decade=_slope(n, e, n_max / 10, n_max),
            )
        )
        c, s = local_slopes(n, e)
        local = dict(zip(c.astype(int).tolist(), s.tolist()))
        for g in grid:
            out.append(
                dict(
                    common,
                    record="curve",
                    target=target,
                    n=int(g),
                    e_n=float(e[g - 1]),
                    n_star=n_star,
                    local_slope=local.get(int(g), np.nan),
                )
            )
    return out


# ------------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class SweepConfig:
    """A settings sweep: every (activation, d, m), each with ``seeds`` replicates.

    width, steps, lr: the pretrained network and its GD budget (as in :class:`Setting`);
    n_max: greedy steps (every n is recorded); margin_restarts: of the margin estimate.
    """

    name: str
    activations: tuple[str, ...]
    dims: tuple[int, ...]
    ms: tuple[int, ...]
    seeds: int
    n_max: int
    width: int
    steps: int
    lr: float = 0.05
    margin_restarts: int = 32
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not (self.activations and self.dims and self.ms):
            raise GreedypruneError(
                f"sweep {self.name!r}: activations, dims and ms must be non-empty"
            )
        check_int("seeds", self.seeds, minimum=1, fix=f"sweep {self.name!r}")
        check_int("n_max", self.n_max, minimum=8, fix=f"sweep {self.name!r}")
        self.settings()  # Setting checks every field

    def settings(self) -> list[Setting]:
        return [
            Setting(
                name=f"{act}-d{d}-m{m}",
                activation=act,
                d=d,
                m=m,
                width=self.width,
                steps=self.steps,
                lr=self.lr,
            )
            for act in self.activations
            for d in self.dims
            for m in self.ms
        ]

    def config(self, device: str = "cpu") -> dict:
        cfg = asdict(self)
        cfg["settings"] = [s.as_dict() for s in self.settings()]
        cfg["thresholds"] = dict(
            knee_slope=KNEE_SLOPE, slope_window=SLOPE_WINDOW, persist=PERSIST, factor=KNEE_FACTOR
        )
        cfg["device"] = device
        return cfg


SWEEPS: dict[str, SweepConfig] = {
    # seconds: for tests and a smoke run
    "quick": SweepConfig(
        name="quick",
        activations=("tanh", "relu"),
        dims=(2,),
        ms=(5, 10),
        seeds=2,
        n_max=64,
        width=200,
        steps=100,
        margin_restarts=8,
    ),
    # the measured sweep (docs/two_layer_sweep.md): about 10-15 minutes on 2 busy CPU cores
    "full": SweepConfig(
        name="full",
        activations=("tanh", "relu"),
        dims=(2, 5, 10),
        ms=(5, 10, 20, 50, 100, 200),
        seeds=3,
        n_max=1000,
        width=1000,
        steps=1000,
    ),
}


def sweep_units(config: SweepConfig, device: str = "cpu") -> Iterable[tuple[str, object]]:
    """(unit id, thunk) pairs: ``knee/<setting>/<seed>``, seed by seed (so a cut run has every
    setting at its first seeds)."""
    settings = config.settings()
    for seed in range(config.seeds):
        for s in settings:
            yield (
                f"knee/{s.name}/{seed}",
                lambda s=s, seed=seed: knee_experiment(
                    s,
                    seed,
                    n_max=config.n_max,
                    margin_restarts=config.margin_restarts,
                    device=device,
                ),
            )


def _judge_knee(case: ClaimCase) -> dict:
    """A ``knee_band`` claim on one setting: the knee table's row of the claim's target;
    ``in_band`` holds, ``out_of_band`` fails (a found knee outside the band, or a censored one
    whose interval misses it), any other band is inconclusive (a censored knee compatible with
    the band, no prediction, no knee measured: the reason names it). The slope columns hold
    greedy's slope over the last decade, ``ratio`` the knee / n*, ``n_min..n_max`` where local
    slopes exist."""
    table = knee_table(case.df)
    row = table[table["target"] == case.claim.where.get("target")]
    if row.empty:
        raise GreedypruneError(
            f"no knee summary rows for target {case.claim.where.get('target')!r}"
        )
    r = row.iloc[0]
    case.out.update(measured_slope=r["slope"], ci_low=r["slope_lo"], ci_high=r["slope_hi"])
    case.out.update(ratio=r["ratio"], n_min=r["first"], n_max=r["last"])
    verdict = {"in_band": "holds", "out_of_band": "fails"}.get(r["band"], "inconclusive")
    reason = (
        f"band {r['band']}: knee {r['knee']:.3g} ({r['status']}; local slopes over "
        f"n={r['first']:g}..{r['last']:g}) against n* {r['n_star']:.3g}, factor {KNEE_FACTOR:.3g}"
    )
    return case.verdict(verdict, reason)


register_form("knee_band", _judge_knee)


def knee_claims() -> list[Claim]:
    """One claim per target (:data:`TARGETS`), judged in each setting of the sweep: n* predicts
    greedy's knee within a factor :data:`KNEE_FACTOR` (the overall verdict of
    :func:`knee_verdict` holds when every setting's holds)."""
    return [
        Claim(
            f"knee_near_n_star_{target}",
            f"Proposition B's crossover n* predicts where greedy's error curve toward {target} "
            f"bends (its knee) within a factor {KNEE_FACTOR:.3g}",
            "knee",
            "greedy",
            metric="e_n",
            form="knee_band",
            where={"target": target, "record": "summary"},
            source="docs/theory.md: Proposition B; the knee sweep",
        )
        for target in TARGETS
    ]


def sweep_study(config: SweepConfig, device: str = "cpu") -> Study:
    """The :class:`~greedyprune.study.Study` of a sweep: its units, the knee claims (one verdict
    per target and setting in ``verdicts.csv``) and the knee table as summary."""
    return Study(
        name=f"two-layer knee {config.name}",
        config=config.config(device),
        units=lambda dev: sweep_units(config, dev),
        claims=knee_claims(),
        summary=knee_table,
        cpu_threads=1,
    )


def run_sweep(
    config: str | SweepConfig = "quick",
    out="runs/two_layer_knee",
    *,
    device: str = "cpu",
    progress: bool | None = None,
) -> StudyResult:
    """Run (or resume) a sweep into the folder ``out``; ``summary.csv`` holds :func:`knee_table`."""
    cfg = resolve_config(config, SWEEPS, SweepConfig, "the knee sweep")
    return run_study(sweep_study(cfg, device), out, device=device, progress=progress)


# ------------------------------------------------------------------------------- the tables


def _geo(v: np.ndarray) -> float:
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if v.size else float("nan")


def knee_table(results: pd.DataFrame, factor: float = KNEE_FACTOR) -> pd.DataFrame:
    """One row per (target, setting): n* and the knee over seeds, and where the knee falls.

    ``n_star`` / ``knee``: geometric means over seeds (the knee over the seeds where one was
    found; ``n_star_lo``.. ``knee_hi``: their min and max); ``ratio``: the geometric mean of the
    seeds' ``knee / n_star`` (NaN unless the setting's status is found); ``seeds_found``: seeds with a knee; ``slope``: greedy's fitted slope
    over the last decade (:func:`greedyprune.theory.fit_rate`, seeds averaged in log space) with
    its seed-bootstrap interval; ``first`` / ``last``: the range of n where local slopes exist;
    ``band``: ``band_status`` of the setting (a found knee when at
    least half of the seeds found one, else the majority censoring), ``in_hull_all``: the LP put
    the target in the hull in every seed.
    """
    summ = results[(results["experiment"] == "knee") & (results["record"] == "summary")]
    curve = results[(results["experiment"] == "knee") & (results["record"] == "curve")]
    rows = []
    for (target, setting), g in summ.groupby(["target", "setting"], sort=False):
        ns = g["n_star"].to_numpy(dtype=float)
        found = g[g["knee_status"] == "found"]
        kn = found["knee"].to_numpy(dtype=float)
        n_max = int(g["n"].max())
        c = curve[(curve["target"] == target) & (curve["setting"] == setting)]
        slope = s_lo = s_hi = float("nan")
        if not c.empty and "e_n" in c:
            try:
                fit = fit_rate(
                    c["n"], c["e_n"], seed=c["seed"], n_range=(n_max / 10, n_max), n_boot=500
                )
                slope, s_lo, s_hi = fit.slope, fit.ci_low, fit.ci_high
            except ValueError:  # fewer than two n in the last decade
                pass
        in_hull = bool((g["in_hull"] >= 1).all())
        # no prediction unless every seed has one: a margin > 0 and (toward y) y in the hull
        n_star = _geo(ns) if in_hull and np.all(np.isfinite(ns) & (ns > 0)) else float("nan")
        if 2 * len(found) >= len(g):
            status, knee = "found", _geo(kn)
            first, last = float(g["first"].min()), float(g["last"].max())
        else:
            status = g["knee_status"].mode().iloc[0]
            knee, first, last = float("nan"), float(g["first"].min()), float(g["last"].max())
        ratios = (found["knee"] / found["n_star"]).to_numpy(dtype=float)
        rows.append(
            dict(
                target=target,
                setting=setting,
                activation=g["activation"].iloc[0],
                d=int(g["d"].iloc[0]),
                m=int(g["m"].iloc[0]),
                seeds=len(g),
                seeds_found=len(found),
                n_star=n_star,
                n_star_lo=float(np.nanmin(ns)) if np.isfinite(ns).any() else np.nan,
                n_star_hi=float(np.nanmax(ns)) if np.isfinite(ns).any() else np.nan,
                r_est=float(g["r_est"].median()),
                D=float(g["D"].median()),
                in_hull_all=in_hull,
                knee=knee,
                knee_lo=float(kn.min()) if kn.size else np.nan,
                knee_hi=float(kn.max()) if kn.size else np.nan,
                ratio=_geo(ratios) if status == "found" else float("nan"),
                status=status,
                first=first,
                last=last,
                band=band_status(status, knee, n_star, first=first, last=last, factor=factor),
                slope=slope,
                slope_lo=s_lo,
                slope_hi=s_hi,
            )
        )
    return pd.DataFrame(rows)


def knee_verdict(table: pd.DataFrame, target: str = "f_N", factor: float = KNEE_FACTOR) -> dict:
    """The verdict "n* predicts the knee within a factor ``factor``" on one target's settings.

    Judged on the settings whose band is ``in_band`` or ``out_of_band`` (a found knee, or a
    censored one that misses the band): ``holds`` when every one is in the band, ``fails``
    otherwise, ``no data`` when there is none. Returns the verdict with the counts of every band
    status, the fraction in band, and the median and largest ``max(ratio, 1 / ratio)`` over the
    settings with a found knee.
    """
    t = table[table["target"] == target]
    judged = t[t["band"].isin(["in_band", "out_of_band"])]
    counts = t["band"].value_counts().to_dict()
    r = t.loc[t["status"] == "found", "ratio"].to_numpy(dtype=float)
    r = r[np.isfinite(r) & (r > 0)]
    off = np.maximum(r, 1 / r) if r.size else r
    inb = int((judged["band"] == "in_band").sum())
    verdict = "no data" if judged.empty else ("holds" if inb == len(judged) else "fails")
    return dict(
        target=target,
        factor=factor,
        verdict=verdict,
        settings=len(t),
        judged=len(judged),
        in_band=inb,
        fraction_in_band=inb / len(judged) if len(judged) else float("nan"),
        median_ratio=float(np.median(r)) if r.size else float("nan"),
        median_off_factor=float(np.median(off)) if r.size else float("nan"),
        max_off_factor=float(np.max(off)) if r.size else float("nan"),
        counts=counts,
    )


# ------------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options (for ``greedyprune.cli``'s command table, or :func:`main`)."""
    help_ = "which configuration of the knee sweep to run (quick: seconds, for tests)"
    preset_arguments(parser, SWEEPS, help_, "runs/two_layer_knee_<preset>")


def main(argv: list[str] | None = None) -> int:
    """``greedyprune verify two-layer-knee --preset full``."""
    p = argparse.ArgumentParser(description="Proposition B's n* against greedy's measured knee")
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args) -> int:
    """Run (or resume) the sweep of ``--preset``, print the knee table and the verdicts."""
    _, done, out, t0 = run_preset(args, SWEEPS, sweep_study, "runs/two_layer_knee_<preset>")
    table = done.summary
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        cols = ["target", "setting", "n_star", "knee", "ratio", "status", "band", "slope"]
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    verdicts = {target: knee_verdict(table, target) for target in TARGETS}
    (out / "verdict.json").write_text(json.dumps(verdicts, indent=2, default=str) + "\n")
    for v in verdicts.values():
        print(v)
    print(format_verdicts(done.verdicts))
    print(f"wall time: {time.perf_counter() - t0:.1f} s; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
