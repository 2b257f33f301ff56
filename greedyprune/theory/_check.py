"""Turn a long-format results table and a list of claims into verdicts.

Verdicts: ``holds``, ``fails``, ``inconclusive`` (the interval straddles the threshold: more seeds
would decide), ``conditions not met`` (the claim does not apply in this setting; the reason says
which condition failed, and the measured slope is still reported) and ``no data``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from greedyprune.errors import GreedypruneError, GreedypruneTypeError, refuse

from ._claims import FORMS, Claim
from ._fit import fit_rate, slope_difference_interval

__all__ = [
    "CONDITIONS",
    "JUDGES",
    "VERDICTS",
    "ClaimCase",
    "check",
    "format_verdicts",
    "register_condition",
    "register_form",
]

VERDICTS = ("holds", "fails", "inconclusive", "conditions not met", "no data")

Condition = Callable[[pd.DataFrame, tuple[float, float] | None], tuple[bool | None, str]]


def _target_in_hull(rows: pd.DataFrame, n_range) -> tuple[bool | None, str]:
    sel = rows[(rows.get("experiment") == "bounds") & (rows.get("target") == "y")]
    if sel.empty or "in_hull" not in sel:
        return None, "no bounds rows toward y to test hull membership"
    per_seed = sel.groupby("seed")["in_hull"].min()
    if per_seed.isna().any():
        return None, f"the hull LP did not finish in {int(per_seed.isna().sum())} seeds"
    bad = int((per_seed < 1).sum())
    if bad:
        res = sel.groupby("seed")["lp_residual"].max().max()
        return False, (
            f"y lies outside the hull of the features in {bad} of {per_seed.size} seeds "
            f"(LP residual up to {res:.2g} of max|y|)"
        )
    return True, f"y inside the hull in all {per_seed.size} seeds (LP)"


def _b_n_bounded(rows: pd.DataFrame, n_range) -> tuple[bool | None, str]:
    sel = rows[
        (rows.get("experiment") == "bounds")
        & (rows.get("target") == "y")
        & (rows.get("method") == "greedy")
    ]
    if sel.empty or "b_n" not in sel:
        return None, "no b_n rows toward y"
    try:
        fit = fit_rate(sel["n"], sel["b_n"], seed=sel["seed"], n_range=n_range, n_boot=500)
    except ValueError as exc:
        return None, f"b_n growth could not be fitted ({exc})"
    # bounded b_n (interior) fits an exponent near 0; a boundary target gives about 1/2
    ok = fit.slope <= 0.25
    return ok, (
        f"b_n = n ||f_n - y|| grows like n^{fit.slope:.2f} over n={fit.n_min}..{fit.n_max}"
        + (" (bounded: interior)" if ok else " (unbounded: y on or near the hull's boundary)")
    )


CONDITIONS: dict[str, Condition] = {
    "target_in_hull": _target_in_hull,
    "b_n_bounded": _b_n_bounded,
}


def register_condition(name: str, fn: Condition) -> None:
    """Add a condition usable in ``Claim.conditions``.

    ``fn(rows, n_range) -> (ok, reason)``: ``rows`` are all result rows of one setting; ``ok`` is
    True/False, or None when the rows cannot decide (the claim is then judged anyway).
    """
    if not isinstance(name, str) or not callable(fn):
        raise GreedypruneTypeError("register_condition(name: str, fn: callable)")
    CONDITIONS[name] = fn


def _rows(df: pd.DataFrame, claim: Claim, method: str) -> pd.DataFrame:
    sel = df[(df["experiment"] == claim.experiment) & (df["method"] == method)]
    for col, val in claim.where.items():
        if col not in sel:
            return sel.iloc[0:0]
        sel = sel[sel[col] == val]
    return sel


def _judge_interval(lo: float, hi: float, threshold: float, below: bool) -> str:
    """holds if the interval lies on the wanted side of threshold, fails if on the other."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if below:
        return "holds" if hi <= threshold else ("fails" if lo > threshold else "inconclusive")
    return "holds" if lo >= threshold else ("fails" if hi < threshold else "inconclusive")


def _seed_bootstrap(values: pd.Series, seeds: pd.Series, n_boot: int, rng: int):
    """Mean over seeds of per-seed means, with a percentile interval from re-sampled seeds."""
    per_seed = values.groupby(seeds.to_numpy()).mean().to_numpy()
    est = float(per_seed.mean())
    if per_seed.size < 2:
        return est, np.nan, np.nan
    gen = np.random.default_rng(rng)
    boots = per_seed[gen.integers(0, per_seed.size, size=(n_boot, per_seed.size))].mean(1)
    return est, float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


@dataclass
class ClaimCase:
    """What a form's judge reads: the setting's rows, the claim, its method's rows, the fit range,
    the bootstrap count, and ``out``, the measurement columns (NaN until the judge fills them)."""

    df: pd.DataFrame
    claim: Claim
    rows: pd.DataFrame
    rng: tuple[float, float] | None
    n_boot: int
    out: dict

    def fit(self, rows: pd.DataFrame | None = None, form: str = "power"):
        r = self.rows if rows is None else rows
        m = self.claim.metric
        return fit_rate(
            r["n"], r[m], seed=r["seed"], n_range=self.rng, form=form, n_boot=self.n_boot
        )

    def slope(self, fit, n_min=None, n_max=None) -> None:
        """Record a fit's slope, its interval and its n range in ``out``."""
        self.out.update(measured_slope=fit.slope, ci_low=fit.ci_low, ci_high=fit.ci_high)
        self.out.update(
            n_min=fit.n_min if n_min is None else n_min, n_max=fit.n_max if n_max is None else n_max
        )

    def verdict(self, verdict: str, reason: str) -> dict:
        return dict(self.out, verdict=verdict, reason=reason)


Judge = Callable[[ClaimCase], dict]
# form -> its judge: the one table of claim forms (each form of ``theory.FORMS`` is here)
JUDGES: dict[str, Judge] = {}


def _judges(form: str) -> Callable[[Judge], Judge]:
    def add(fn: Judge) -> Judge:
        JUDGES[form] = fn
        return fn

    return add


def register_form(form: str, judge: Judge) -> None:
    """Add a claim form: ``judge(case) -> dict`` returns ``case.verdict(verdict, reason)`` (with
    ``case.out`` filled where it measures a slope or a ratio); a ``ValueError`` it raises is the
    verdict "no data". A front end registers the forms of its own claims (the knee sweep, the
    budget study) on import; registering a form twice replaces its judge."""
    if not isinstance(form, str) or not form.isidentifier() or not callable(judge):
        raise GreedypruneError(f"register_form({form!r}, ...) needs a name and a callable judge")
    JUDGES[form] = judge
    if form not in FORMS:
        FORMS.append(form)


@_judges("power")
def _power(c: ClaimCase) -> dict:
    """The fitted slope's interval on the wanted side of ``predicted_slope`` +- ``tolerance``."""
    fit = c.fit()
    c.slope(fit)
    p, tol = c.claim.predicted_slope, c.claim.tolerance
    if c.claim.direction == "at_most":
        verdict = _judge_interval(fit.ci_low, fit.ci_high, p + tol, below=True)
        rule = f"interval <= {p + tol:.2f}"
    elif c.claim.direction == "at_least":
        verdict = _judge_interval(fit.ci_low, fit.ci_high, p - tol, below=False)
        rule = f"interval >= {p - tol:.2f}"
    else:
        lo_ok = _judge_interval(fit.ci_low, fit.ci_high, p - tol, below=False)
        hi_ok = _judge_interval(fit.ci_low, fit.ci_high, p + tol, below=True)
        verdict = (
            "holds"
            if lo_ok == hi_ok == "holds"
            else "fails"
            if "fails" in (lo_ok, hi_ok)
            else "inconclusive"
        )
        rule = f"interval within {p - tol:.2f}..{p + tol:.2f}"
    return c.verdict(verdict, f"{rule} ({fit.ci_method} bootstrap)")


@_judges("exponential")
def _exponential(c: ClaimCase) -> dict:
    """A negative log-loss slope per neuron, and the exponential fitting better than the power."""
    fit = c.fit(form="exponential")
    c.slope(fit)
    pw = c.fit()
    better = fit.r2 > pw.r2
    if fit.ci_high < 0 and better:
        verdict = "holds"
    elif not better or fit.ci_low >= 0:
        verdict = "fails"
    else:
        verdict = "inconclusive"
    reason = f"log-loss slope per neuron; R^2 exponential {fit.r2:.3f} vs power {pw.r2:.3f}"
    return c.verdict(verdict, reason)


@_judges("bound")
def _bound(c: ClaimCase) -> dict:
    """Every row at or below its bound (the slope is shown when it can be fitted)."""
    claim, rows, rng = c.claim, c.rows, c.rng
    try:
        c.slope(c.fit())
    except ValueError:
        pass  # a bound is checked row by row: a slope that cannot be fitted is only not shown
    sel = rows if rng is None else rows[(rows["n"] >= rng[0]) & (rows["n"] <= rng[1])]
    ratio = (sel[claim.metric] / sel[claim.bound_column]).to_numpy()
    in_range = f"{np.nanmax(ratio):.3g} in the fit range" if ratio.size else "none in range"
    all_rows = rows[claim.metric] / rows[claim.bound_column]
    worst_all = float(np.nanmax(all_rows.to_numpy()))
    verdict = "holds" if worst_all <= 1 + 1e-9 else "fails"
    reason = (
        f"max {claim.metric}/{claim.bound_column} = {worst_all:.3g} over all {len(rows)} rows "
        f"({in_range})"
    )
    return c.verdict(verdict, reason)


@_judges("faster_than")
def _faster_than(c: ClaimCase) -> dict:
    """The slope difference to ``versus`` (seed bootstrap) below 0."""
    claim, rows = c.claim, c.rows
    other = _rows(c.df, claim, claim.versus)  # not empty: check() skips such a claim
    a, b = c.fit(), c.fit(other)
    lo, hi = slope_difference_interval(
        (rows["n"], rows[claim.metric], rows["seed"]),
        (other["n"], other[claim.metric], other["seed"]),
        n_range=c.rng,
        n_boot=c.n_boot,
    )
    c.slope(a)
    reason = (
        f"slope {a.slope:.2f} vs {claim.versus} {b.slope:.2f} [{b.ci_low:.2f}, {b.ci_high:.2f}]; "
        f"difference interval [{lo:.2f}, {hi:.2f}]"
    )
    return c.verdict(_judge_interval(lo, hi, 0.0, below=True), reason)


@_judges("less_than")
def _less_than(c: ClaimCase) -> dict:
    """The geometric mean of the paired ratio to ``versus`` (seed bootstrap) below 1."""
    claim, rng = c.claim, c.rng
    other = _rows(c.df, claim, claim.versus)
    keys = ["n", "seed"]
    merged = c.rows[[*keys, claim.metric]].merge(
        other[[*keys, claim.metric]], on=keys, suffixes=("_a", "_b")
    )
    if rng is not None:
        merged = merged[(merged["n"] >= rng[0]) & (merged["n"] <= rng[1])]
    if merged.empty:
        return c.verdict("no data", f"no paired rows with {claim.versus}")
    lr = np.log(merged[f"{claim.metric}_a"]) - np.log(merged[f"{claim.metric}_b"])
    est, lo, hi = _seed_bootstrap(lr, merged["seed"], c.n_boot, 0)
    c.out.update(n_min=int(merged["n"].min()), n_max=int(merged["n"].max()))
    c.out.update(ratio=float(np.exp(est)), ratio_low=float(np.exp(lo)))
    c.out.update(ratio_high=float(np.exp(hi)))
    reason = (
        f"{claim.metric} ratio {claim.method}/{claim.versus} = {np.exp(est):.3g} "
        f"[{np.exp(lo):.3g}, {np.exp(hi):.3g}] (geometric mean over n and seeds)"
    )
    return c.verdict(_judge_interval(lo, hi, 0.0, below=True), reason)


@_judges("decreasing")
def _decreasing(c: ClaimCase) -> dict:
    """The final metric (at each group's largest n) falling with ``by``: slope below 0."""
    claim, rows = c.claim, c.rows
    last = rows[rows["n"] == rows.groupby(claim.by)["n"].transform("max")]
    fit = fit_rate(last[claim.by], last[claim.metric], seed=last["seed"], n_boot=c.n_boot)
    c.slope(fit, n_min=int(last["n"].min()), n_max=int(last["n"].max()))
    reason = (
        f"final {claim.metric} ~ {claim.by}^{fit.slope:.2f} over {claim.by}="
        f"{int(last[claim.by].min())}..{int(last[claim.by].max())}"
    )
    return c.verdict(_judge_interval(fit.ci_low, fit.ci_high, 0.0, below=True), reason)


def _evaluate(df, claim: Claim, n_range, n_boot: int) -> dict:
    rows = _rows(df, claim, claim.method)
    out = dict(measured_slope=np.nan, ci_low=np.nan, ci_high=np.nan, n_min=np.nan, n_max=np.nan)
    out.update(ratio=np.nan, ratio_low=np.nan, ratio_high=np.nan)
    if rows.empty or claim.metric not in rows:
        return dict(out, verdict="no data", reason=f"no rows for {claim.experiment}/{claim.method}")
    out["n_seeds"] = int(rows["seed"].nunique())
    case = ClaimCase(df, claim, rows, claim.n_range or n_range, n_boot, out)
    try:
        return JUDGES[claim.form](case)
    except ValueError as exc:
        return dict(out, verdict="no data", reason=str(exc))


def check(
    results: pd.DataFrame,
    claims: Sequence[Claim],
    *,
    n_range: tuple[float, float] | None = None,
    conditions: Mapping[str, Condition] | None = None,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Verdicts for ``claims`` on ``results``, one row per (claim, setting).

    results: long format with at least ``experiment, method, n, seed`` and the claims' metric
        columns; an optional ``setting`` column splits the table (each setting judged apart).
    claims: the :class:`Claim` list. n_range: default fit range ``(low, high)`` (a claim's own
        ``n_range`` wins). conditions: extra or replacement condition functions by name.
    n_boot: bootstrap re-samples for the intervals.

    Returns a DataFrame with columns ``claim, setting, statement, form, predicted_slope,
    measured_slope, ci_low, ci_high, n_min, n_max, n_seeds, ratio, ratio_low, ratio_high, verdict,
    reason``: a slope claim fills ``measured_slope`` and its interval ``ci_low..ci_high``; a
    ``less_than`` claim fills ``ratio`` (geometric mean of ``method / versus`` over the paired rows)
    and its seed-bootstrap interval ``ratio_low..ratio_high``; ``n_min..n_max`` is the n range
    either used. A claim whose
    condition fails gets "conditions not met" and the failing conditions in ``reason``; its
    measured slope is still reported.
    """
    if not isinstance(results, pd.DataFrame):
        raise refuse("results", results, "a pandas DataFrame", wrong_type=True)
    missing = {"experiment", "method", "n", "seed"} - set(results.columns)
    if missing:
        raise GreedypruneError(
            f"results lacks the columns {sorted(missing)}; pass the long-format table"
        )
    conds = dict(CONDITIONS, **(conditions or {}))
    for c in claims:
        if not isinstance(c, Claim):
            raise refuse("claims", c, "Claim objects", wrong_type=True)
        for name in c.conditions:
            if name not in conds:
                raise GreedypruneError(
                    f"claim {c.id!r} names unknown condition {name!r}; register it"
                )
    df = results if "setting" in results else results.assign(setting="default")
    out = []
    groups = [(s, g, False) for s, g in df.groupby("setting", sort=False)]
    if any(c.pooled for c in claims):
        groups.append(("all", df, True))
    for setting, rows, pooled in groups:
        for claim in claims:
            if claim.pooled != pooled:
                continue
            # a method that was not run in this setting (by design) gets no row, not "no data"
            if _rows(rows, claim, claim.method).empty or (
                claim.versus and _rows(rows, claim, claim.versus).empty
            ):
                continue
            res = _evaluate(rows, claim, n_range, n_boot)
            failed, notes = [], []
            for name in claim.conditions:
                ok, why = conds[name](rows, claim.n_range or n_range)
                (failed if ok is False else notes).append(f"{name}: {why}")
            if failed and res["verdict"] != "no data":
                res["reason"] = (
                    "; ".join(failed)
                    + f" | the measurement alone: {res['verdict']} ({res['reason']})"
                )
                res["verdict"] = "conditions not met"
            elif notes:
                res["reason"] = res["reason"] + " | " + "; ".join(notes)
            out.append(
                dict(
                    claim=claim.id,
                    setting=setting,
                    statement=claim.statement,
                    form=claim.form,
                    predicted_slope=claim.predicted_slope,
                    n_seeds=res.pop("n_seeds", 0),
                    **res,
                )
            )
    cols = [
        "claim",
        "setting",
        "statement",
        "form",
        "predicted_slope",
        "measured_slope",
        "ci_low",
        "ci_high",
        "n_min",
        "n_max",
        "n_seeds",
        "ratio",
        "ratio_low",
        "ratio_high",
        "verdict",
        "reason",
    ]
    return pd.DataFrame(out, columns=cols)


def format_verdicts(verdicts: pd.DataFrame) -> str:
    """The verdict table as fixed-width text (one line per claim and setting).

    Slope claims show the predicted and the measured log-log slope with its 95% interval; level
    and other ratio claims (form ``less_than``) show ``<1`` and the measured ratio (geometric mean
    over n and seeds) with its 95% interval, over the paired n range.
    """
    if verdicts.empty:
        return "(no verdicts)"
    w = max(26, *(len(str(c)) for c in verdicts["claim"]))
    ws = max(9, *(len(str(c)) for c in verdicts["setting"]))
    lines = [
        f"{'claim':<{w}} {'setting':<{ws}} {'pred':>5} {'slope|ratio':>11} {'95% CI':>17} "
        f"{'n range':>9}  verdict"
    ]
    for r in verdicts.itertuples():
        pred = "" if pd.isna(r.predicted_slope) else f"{r.predicted_slope:.1f}"
        value = "" if pd.isna(r.measured_slope) else f"{r.measured_slope:.3g}"
        ci = "" if pd.isna(r.ci_low) else f"[{r.ci_low:.3g}, {r.ci_high:.3g}]"
        ratio = getattr(r, "ratio", float("nan"))
        if getattr(r, "form", None) == "less_than" and not pd.isna(ratio):
            pred, value = "<1", f"{ratio:.3g}"
            ci = f"[{r.ratio_low:.3g}, {r.ratio_high:.3g}]"
        rng = "" if pd.isna(r.n_min) else f"{int(r.n_min)}-{int(r.n_max)}"
        lines.append(
            f"{r.claim:<{w}} {r.setting:<{ws}} {pred:>5} {value:>11} {ci:>17} {rng:>9}  {r.verdict}"
        )
    return "\n".join(lines)
