"""Rate fits with bootstrap confidence intervals over seeds.

A *curve* is given in long format: one row per (n, seed) with a loss. The fitted curve is the mean
of ``log loss`` over seeds at each n (a geometric mean, the natural average for a log-log plot);
the slope comes from least squares over the stated n range; its confidence interval from
re-sampling whole seeds with replacement (so the interval reflects seed-to-seed variation, not
the spread of the points along one curve). With a single seed the points themselves are
re-sampled, and the result says so.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from greedyprune.errors import GreedypruneError, check_choice, check_int, check_number, refuse

__all__ = ["RateFit", "fit_rate", "slope_difference_interval"]

_FORMS = ("power", "exponential")


@dataclass(frozen=True)
class RateFit:
    """A fitted rate.

    form: ``"power"`` (``log loss = intercept + slope * log n``) or ``"exponential"``
        (``log loss = intercept + slope * n``; the linear rate is ``-slope`` per neuron).
    slope, intercept: least-squares fit to the seed-averaged ``log loss``.
    ci_low, ci_high: bootstrap percentile interval of the slope at ``level``.
    n_min, n_max: the smallest and largest n actually used; n_points: distinct n used.
    n_seeds: seeds in the fit; ci_method: ``"seeds"`` or ``"points"`` (one seed only).
    r2: coefficient of determination of the fit on the averaged curve.
    n_dropped: rows left out because their loss was not positive and finite.
    """

    form: str
    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    level: float
    n_min: int
    n_max: int
    n_points: int
    n_seeds: int
    ci_method: str
    r2: float
    n_dropped: int

    def predict(self, n) -> np.ndarray:
        """The fitted loss at ``n`` (array-like)."""
        n = np.asarray(n, dtype=float)
        x = np.log(n) if self.form == "power" else n
        return np.exp(self.intercept + self.slope * x)

    def as_dict(self) -> dict:
        return asdict(self)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    xm, ym = x.mean(), y.mean()
    sxx = ((x - xm) ** 2).sum()
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    ss_tot = ((y - ym) ** 2).sum()
    resid = y - intercept - slope * x
    r2 = float(1 - (resid**2).sum() / ss_tot) if ss_tot > 0 else 1.0
    return slope, intercept, r2


def fit_rate(
    n,
    loss,
    *,
    seed=None,
    n_range: tuple[float, float] | None = None,
    form: str = "power",
    n_boot: int = 2000,
    level: float = 0.95,
    rng: int = 0,
) -> RateFit:
    """Fit ``loss ~ C n^slope`` (or ``C exp(slope n)``) with a bootstrap interval over seeds.

    Parameters
    ----------
    n: subnetwork sizes, array-like ``[R]`` (one entry per row).
    loss: the measured losses ``[R]``; rows with a loss that is not positive and finite cannot be
        put on a log scale and are left out (counted in ``n_dropped``).
    seed: the replicate each row belongs to ``[R]`` (None: all rows are one replicate).
    n_range: ``(low, high)``: use rows with ``low <= n <= high`` (None: all rows).
    form: ``"power"`` or ``"exponential"``.
    n_boot: bootstrap re-samples; level: confidence level of the interval; rng: its seed.

    Returns a ``RateFit``. Raises ``ValueError`` when fewer than two distinct n remain.
    """
    check_choice("form", form, _FORMS)
    n = np.asarray(n, dtype=float).reshape(-1)
    loss = np.asarray(loss, dtype=float).reshape(-1)
    if n.shape != loss.shape:
        raise GreedypruneError(f"n has {n.size} rows but loss has {loss.size}; pass one loss per n")
    seed = np.zeros(n.size, dtype=np.int64) if seed is None else np.asarray(seed).reshape(-1)
    if seed.shape != n.shape:
        raise GreedypruneError(
            f"seed has {seed.size} rows but n has {n.size}; pass one seed per row"
        )
    check_int("n_boot", n_boot, minimum=1)
    check_number("level", level, above=0, below=1)
    if np.any(~np.isfinite(n)) or np.any(n <= 0):
        raise GreedypruneError("n must be positive and finite")
    if n_range is not None:
        lo, hi = n_range
        if not lo <= hi:
            raise GreedypruneError(f"n_range={n_range!r} must be (low, high) with low <= high")
        keep = (n >= lo) & (n <= hi)
        n, loss, seed = n[keep], loss[keep], seed[keep]
    ok = np.isfinite(loss) & (loss > 0)
    n_dropped = int((~ok).sum())
    n, loss, seed = n[ok], loss[ok], seed[ok]
    grid = np.unique(n)
    if grid.size < 2:
        raise refuse(
            "n_range", n_range, f"a range holding two distinct n or more to fit a rate ({grid.size} "
            "here)", "widen n_range or measure more sizes",
        )  # fmt: skip
    _check_unique(n, seed)
    seeds = np.unique(seed)
    # table [n_seeds, n_points] of log losses; NaN where a seed lacks an n
    col = np.searchsorted(grid, n)
    row = np.searchsorted(seeds, seed)
    table = np.full((seeds.size, grid.size), np.nan)
    table[row, col] = np.log(loss)
    x = np.log(grid) if form == "power" else grid

    def fit_table(t: np.ndarray) -> tuple[float, float, float]:
        y = np.nanmean(t, axis=0)
        good = np.isfinite(y)
        if good.sum() < 2:
            return np.nan, np.nan, np.nan
        return _ols(x[good], y[good])

    # a re-sample may lack every seed at some n (nanmean of all-NaN); that column is skipped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        slope, intercept, r2 = fit_table(table)
        gen = np.random.default_rng(rng)
        if seeds.size >= 2:
            ci_method = "seeds"
            picks = gen.integers(0, seeds.size, size=(n_boot, seeds.size))
            boots = np.array([fit_table(table[p])[0] for p in picks])
        else:
            ci_method = "points"
            y = table[0]
            picks = gen.integers(0, grid.size, size=(n_boot, grid.size))
            boots = np.array(
                [_ols(x[p], y[p])[0] if np.unique(p).size >= 2 else np.nan for p in picks]
            )
    boots = boots[np.isfinite(boots)]
    alpha = (1 - level) / 2
    ci_low, ci_high = (
        (float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha)))
        if boots.size
        else (np.nan, np.nan)
    )
    return RateFit(
        form=form,
        slope=slope,
        intercept=intercept,
        ci_low=ci_low,
        ci_high=ci_high,
        level=level,
        n_min=int(grid.min()),
        n_max=int(grid.max()),
        n_points=int(grid.size),
        n_seeds=int(seeds.size),
        ci_method=ci_method,
        r2=r2,
        n_dropped=n_dropped,
    )


def _check_unique(n: np.ndarray, seed: np.ndarray) -> None:
    """One row per (seed, n): a second row would silently replace the first in the fit's table."""
    dup = pd.DataFrame({"seed": seed, "n": n}).duplicated()
    if dup.any():
        k = int(np.argmax(dup.to_numpy()))
        label = seed[k].item() if isinstance(seed[k], np.generic) else seed[k]
        raise GreedypruneError(
            f"more than one row has n={n[k]:g} and seed={label!r}; a rate fit takes one row "
            "per (seed, n): pass seed= to tell replicates apart, or average them first"
        )


def _log_table(n, loss, seed, n_range, form):
    n = np.asarray(n, dtype=float).reshape(-1)
    loss = np.asarray(loss, dtype=float).reshape(-1)
    seed = np.asarray(seed).reshape(-1)
    keep = np.isfinite(loss) & (loss > 0)
    if n_range is not None:
        keep &= (n >= n_range[0]) & (n <= n_range[1])
    n, loss, seed = n[keep], loss[keep], seed[keep]
    _check_unique(n, seed)
    grid, seeds = np.unique(n), np.unique(seed)
    table = np.full((seeds.size, grid.size), np.nan)
    table[np.searchsorted(seeds, seed), np.searchsorted(grid, n)] = np.log(loss)
    return seeds, (np.log(grid) if form == "power" else grid), table


def slope_difference_interval(
    a,
    b,
    *,
    n_range=None,
    form: str = "power",
    n_boot: int = 1000,
    level: float = 0.95,
    rng: int = 0,
) -> tuple[float, float]:
    """Interval for ``slope(a) - slope(b)`` by re-sampling the seeds the two curves share.

    a, b: ``(n, loss, seed)`` triples of array-likes, as for :func:`fit_rate`. Pairing by seed
    removes the variation the two methods share (the same data and pretrained network).
    Returns ``(low, high)``; NaNs when fewer than two seeds are shared.
    """
    check_choice("form", form, _FORMS)
    sa, xa, ta = _log_table(*a, n_range, form)
    sb, xb, tb = _log_table(*b, n_range, form)
    shared = np.intersect1d(sa, sb)
    if shared.size < 2 or xa.size < 2 or xb.size < 2:
        return np.nan, np.nan
    ta = ta[np.searchsorted(sa, shared)]
    tb = tb[np.searchsorted(sb, shared)]
    gen = np.random.default_rng(rng)
    diffs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for p in gen.integers(0, shared.size, size=(n_boot, shared.size)):
            ya, yb = np.nanmean(ta[p], 0), np.nanmean(tb[p], 0)
            ga, gb = np.isfinite(ya), np.isfinite(yb)
            if ga.sum() < 2 or gb.sum() < 2:
                continue
            diffs.append(_ols(xa[ga], ya[ga])[0] - _ols(xb[gb], yb[gb])[0])
    if not diffs:
        return np.nan, np.nan
    alpha = (1 - level) / 2
    return float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))
