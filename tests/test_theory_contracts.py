"""What the rate fits and verdicts promise beyond the happy path: each test pins one documented
behaviour that a mutation sample showed no other test checked (the verdict table's columns on a
claim without data, reproducible intervals, the single-seed fallback, the words of each refusal)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from greedyprune.theory import (
    Claim,
    check,
    deep_claims,
    fit_rate,
    format_verdicts,
    level_claims,
    slope_difference_interval,
    two_layer_claims,
)

COLUMNS = [
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


def curve(method: str, slope: float, seeds=(0, 1, 2), ns=(10, 20, 40, 80), scale=1.0, noise=0.05):
    rng = np.random.default_rng(len(method))
    rows = []
    for s in seeds:
        for n in ns:
            loss = scale * n**slope * np.exp(noise * rng.standard_normal())
            rows.append(dict(experiment="rate", method=method, n=n, seed=s, loss_train=loss))
    return pd.DataFrame(rows)


# -- the verdict table ----------------------------------------------------------------------------
def test_a_claim_without_its_metric_gets_no_data_and_the_full_row():
    df = curve("a", -1.0)
    claim = Claim("c", "a's test loss falls", "rate", "a", metric="loss_test", predicted_slope=-1)
    v = check(df, [claim], n_boot=50)
    assert list(v.columns) == COLUMNS
    row = v.iloc[0]
    assert row["verdict"] == "no data"
    assert row["reason"] == "no rows for rate/a"
    assert np.isnan(row["n_min"]) and np.isnan(row["n_max"])


def test_level_verdict_intervals_are_reproducible():
    df = pd.concat([curve("a", -1.0, scale=0.9, noise=0.3), curve("b", -1.0, noise=0.3)])
    claim = Claim("lvl", "a below b", "rate", "a", form="less_than", versus="b")
    first, second = check(df, [claim], n_boot=200), check(df, [claim], n_boot=200)
    assert first["reason"].iloc[0] == second["reason"].iloc[0]
    # the interval is printed: two bootstrap runs with fresh randomness would differ in it
    assert "[" in first["reason"].iloc[0]


def test_a_level_claim_on_one_seed_is_inconclusive_with_its_estimate():
    df = pd.concat([curve("a", -1.0, seeds=(0,), scale=0.5), curve("b", -1.0, seeds=(0,))])
    claim = Claim("lvl", "a below b", "rate", "a", form="less_than", versus="b")
    row = check(df, [claim], n_boot=50).iloc[0]
    assert row["verdict"] == "inconclusive"
    assert row["reason"].startswith("loss_train ratio a/b = 0.5")
    assert row["n_min"] == 10 and row["n_max"] == 80


def test_a_condition_that_cannot_be_judged_is_noted_not_failed():
    df = curve("a", -2.0)
    claim = Claim(
        "fast", "a ~ n^-2", "rate", "a", predicted_slope=-2.0, conditions=("target_in_hull",)
    )
    row = check(df, [claim], n_boot=100).iloc[0]
    assert row["verdict"] == "holds"
    assert row["reason"].endswith(
        "| target_in_hull: no bounds rows toward y to test hull membership"
    )


def test_check_names_the_type_of_a_non_claim():
    with pytest.raises(TypeError, match=r"^claims=3 must be Claim objects$"):
        check(curve("a", -1.0), [3])


@pytest.mark.parametrize(
    "kw, missing",
    [
        (dict(form="faster_than"), "versus=<method>"),
        (dict(form="less_than"), "versus=<method>"),
        (dict(form="bound"), "bound_column"),
        (dict(form="decreasing"), "by=<column>"),
    ],
)
def test_a_claim_names_the_field_its_form_needs(kw, missing):
    with pytest.raises(ValueError, match=rf"form '{kw['form']}' needs {missing}"):
        Claim("x", "x", "rate", "a", **kw)


def test_claim_as_dict_round_trips():
    c = Claim("x", "s", "rate", "a", predicted_slope=-1.0, where={"target": "y"})
    assert Claim(**c.as_dict()) == c


def test_level_claims_say_training_or_test_in_plain_words():
    (train,) = level_claims("p", "a", "b", [(10, 40)], what="A")
    (test,) = level_claims("p", "a", "b", [(10, 40)], what="A", metric="loss_test")
    assert (
        train.statement
        == "A has lower training loss than GD from scratch at equal n, for n in 10..40"
    )
    assert (
        test.statement == "A has lower test loss than GD from scratch at equal n, for n in 10..40"
    )
    assert (train.id, train.method, train.versus, train.n_range) == ("p_n10_40", "a", "b", (10, 40))


def test_two_layer_level_claims_compare_greedy_with_gd():
    claims = [c for c in two_layer_claims(level_ranges=[(10, 30)]) if c.form == "less_than"]
    level = [c for c in claims if c.n_range == (10, 30)]
    assert [(c.id, c.method, c.versus) for c in level] == [
        ("greedy_below_gd_n10_30", "greedy_pretrained", "gd_scratch")
    ]


# -- rate fits ------------------------------------------------------------------------------------
def test_one_seed_falls_back_to_a_bootstrap_over_points():
    df = curve("a", -1.0, seeds=(0,), ns=(10, 20, 40))
    one = fit_rate(df["n"], df["loss_train"], seed=df["seed"], n_boot=300)
    assert one.ci_method == "points" and one.n_seeds == 1
    # three points: re-samples holding two distinct points still fit a slope, so the interval
    # is built from most re-samples and brackets the fitted slope
    assert one.ci_low <= one.slope <= one.ci_high
    many = curve("a", -1.0)
    assert (
        fit_rate(many["n"], many["loss_train"], seed=many["seed"], n_boot=50).ci_method == "seeds"
    )


def test_one_seed_interval_is_the_percentile_bootstrap_over_points():
    # the documented procedure, written out slowly: re-sample the points with replacement, fit
    # OLS on the log-log points of each re-sample holding at least two distinct n, take the 2.5%
    # and 97.5% quantiles; same generator and draws as the fit
    n = np.array([10.0, 20.0, 40.0])
    loss = np.array([0.11, 0.048, 0.026])
    fit = fit_rate(n, loss, n_boot=400, rng=7)
    x, y = np.log(n), np.log(loss)
    picks = np.random.default_rng(7).integers(0, 3, size=(400, 3))
    slopes = [np.polyfit(x[p], y[p], 1)[0] for p in picks if np.unique(p).size >= 2]
    assert fit.ci_low == pytest.approx(np.quantile(slopes, 0.025), rel=1e-9)
    assert fit.ci_high == pytest.approx(np.quantile(slopes, 0.975), rel=1e-9)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(n=[1, 2, 3], loss=[1.0, 0.5]), r"^n has 3 rows but loss has 2; pass one loss per n$"),
        (
            dict(n=[1, 2], loss=[1.0, 0.5], seed=[0]),
            r"^seed has 1 rows but n has 2; pass one seed per row$",
        ),
        (dict(n=[0, 2], loss=[1.0, 0.5]), r"^n must be positive and finite$"),
        (dict(n=[np.inf, 2], loss=[1.0, 0.5]), r"^n must be positive and finite$"),
    ],
)
def test_fit_rate_refusals_name_the_argument(kw, message):
    n, loss = kw.pop("n"), kw.pop("loss")
    with pytest.raises(ValueError, match=message):
        fit_rate(n, loss, **kw)


def test_slope_difference_skips_resamples_where_a_curve_has_one_point():
    # seed 0 measured a only at n=10, seed 1 only at n=20: a re-sample of seeds {0, 0} leaves a
    # with one point (no slope) and must be skipped, not turn the interval into NaN
    a = ([10, 20, 40, 10, 20, 40], [1.0, 0.5, 0.25, 1.1, 0.52, 0.26], [0, 0, 0, 1, 1, 1])
    b = ([10, 20], [1.0, 0.7], [0, 1])
    lo, hi = slope_difference_interval(a, b, n_boot=200)
    assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi


# -- conditions -----------------------------------------------------------------------------------
def bounds_rows(in_hull, b_n=None, ns=(10, 20)):
    rows = []
    for s, inside in enumerate(in_hull):
        for n in ns:
            r = dict(experiment="bounds", method="greedy", target="y", n=n, seed=s, lp_residual=0.3)
            r["in_hull"] = inside
            if b_n is not None:
                r["b_n"] = b_n(n)
            rows.append(r)
    return pd.DataFrame(rows)


def fast_claim(*conditions):
    return Claim("fast", "a ~ n^-2", "rate", "a", predicted_slope=-2.0, conditions=conditions)


def test_an_unfinished_hull_lp_is_noted_with_its_count():
    df = pd.concat([curve("a", -2.0), bounds_rows([1.0, np.nan, np.nan])])
    row = check(df, [fast_claim("target_in_hull")], n_boot=100).iloc[0]
    assert row["verdict"] == "holds"
    assert row["reason"].endswith("| target_in_hull: the hull LP did not finish in 2 seeds")


def test_a_target_outside_the_hull_fails_the_condition_with_the_residual():
    df = pd.concat([curve("a", -2.0), bounds_rows([1.0, 0.0, 0.0])])
    row = check(df, [fast_claim("target_in_hull")], n_boot=100).iloc[0]
    assert row["verdict"] == "conditions not met"
    assert row["reason"].startswith(
        "target_in_hull: y lies outside the hull of the features in 2 of 3 seeds "
        "(LP residual up to 0.3 of max|y|) | the measurement alone: holds"
    )


def test_b_n_that_cannot_be_fitted_is_noted():
    # one n only: no slope to fit
    df = pd.concat([curve("a", -2.0), bounds_rows([1.0, 1.0], b_n=lambda n: 2.0, ns=(10,))])
    row = check(df, [fast_claim("b_n_bounded")], n_boot=100).iloc[0]
    assert row["verdict"] == "holds"
    assert "| b_n_bounded: b_n growth could not be fitted (" in row["reason"]


@pytest.mark.parametrize("growth, ok", [(0.0, True), (0.5, False)])
def test_b_n_growth_decides_the_condition(growth, ok):
    df = pd.concat(
        [curve("a", -2.0), bounds_rows([1.0, 1.0, 1.0], b_n=lambda n: n**growth, ns=(10, 20, 40))]
    )
    row = check(df, [fast_claim("b_n_bounded")], n_boot=100).iloc[0]
    assert row["verdict"] == ("holds" if ok else "conditions not met")
    assert f"grows like n^{growth:.2f} over n=10..40" in row["reason"]


def test_an_exponential_claim_whose_interval_straddles_zero_is_inconclusive():
    # the mean log-loss is exactly linear in n (the exponential form fits better than a power
    # law), but one seed rises: the seed-bootstrap interval of the slope straddles zero
    rows = []
    for s, k in enumerate((-0.08, 0.02, -0.07)):
        for n in (5, 10, 15, 20, 25):
            rows.append(dict(experiment="rate", method="e", n=n, seed=s, loss_train=np.exp(k * n)))
    claim = Claim("exp", "log loss linear in n", "rate", "e", form="exponential")
    row = check(pd.DataFrame(rows), [claim], n_boot=300).iloc[0]
    assert row["measured_slope"] == pytest.approx(-0.13 / 3)
    assert row["ci_low"] == pytest.approx(-0.08) and row["ci_high"] == pytest.approx(0.02)
    assert row["verdict"] == "inconclusive"
    assert row["reason"].startswith("log-loss slope per neuron; R^2 exponential 1.000 vs power")


def test_slope_difference_names_a_bad_form_and_needs_two_shared_seeds():
    a = ([10, 20, 40], [1.0, 0.5, 0.25], [0, 0, 0])
    with pytest.raises(ValueError, match=r"^form='linear' must be one of 'power', "):
        slope_difference_interval(a, a, form="linear")
    lo, hi = slope_difference_interval(a, a, n_boot=20)
    assert np.isnan(lo) and np.isnan(hi)


# -- each verdict reachable from each direction ---------------------------------------------------
def test_an_at_least_claim_fails_when_the_curve_falls_too_fast():
    # GD's "no faster than ~1/n" (threshold -1 - 0.3): a curve falling like n^-2 breaks it
    df = curve("gd", -2.0, noise=0.01)
    claim = Claim(
        "gd", "no faster", "rate", "gd", predicted_slope=-1.0, tolerance=0.3, direction="at_least"
    )
    row = check(df, [claim], n_boot=200).iloc[0]
    assert row["verdict"] == "fails"
    assert row["ci_high"] < -1.3
    assert row["reason"] == "interval >= -1.30 (seeds bootstrap)"


def test_a_decreasing_claim_fails_on_a_rising_floor():
    rows = []
    for s in (0, 1, 2):
        for big_n in (100, 1000, 10000):
            for n in (5, 10):
                floor = 0.01 * big_n**0.5 * (1 + 0.01 * s) * (2 if n == 5 else 1)
                rows.append(
                    dict(experiment="rw", method="g", n=n, seed=s, N=big_n, loss_train=floor)
                )
    claim = Claim("floor", "floor falls with N", "rw", "g", form="decreasing", by="N")
    row = check(pd.DataFrame(rows), [claim], n_boot=200).iloc[0]
    assert row["measured_slope"] == pytest.approx(0.5, abs=1e-6)
    assert row["verdict"] == "fails"
    assert row["reason"] == "final loss_train ~ N^0.50 over N=100..10000"


def test_a_bound_reports_its_worst_ratio_inside_the_closed_fit_range():
    # the worst row sits exactly at the range's upper end, which belongs to the range
    rows = [  # a bound of 2, so the reported figure is e_n / bound, not e_n * bound
        dict(experiment="b", method="g", n=n, seed=0, e_n=2 * e, bound=2.0)
        for n, e in ((10, 0.2), (20, 0.3), (40, 0.9), (80, 0.1))
    ]
    claim = Claim("b", "e_n <= bound", "b", "g", metric="e_n", form="bound", bound_column="bound")
    row = check(pd.DataFrame(rows), [claim], n_range=(10, 40), n_boot=50).iloc[0]
    assert row["verdict"] == "holds"
    assert row["reason"] == "max e_n/bound = 0.9 over all 4 rows (0.9 in the fit range)"


def test_the_verdict_table_prints_level_ratios_and_slopes():
    """The printed table shows a level claim's ratio and interval (from the verdict), a slope
    claim's slope and interval, each with its n range."""
    verdicts = pd.DataFrame(
        [
            dict(
                claim="greedy_below_gd_n90_300",
                setting="interior",
                form="less_than",
                predicted_slope=np.nan,
                measured_slope=np.nan,
                ci_low=np.nan,
                ci_high=np.nan,
                n_min=90,
                n_max=270,
                ratio=0.8123,
                ratio_low=0.6,
                ratio_high=1.1,
                verdict="inconclusive",
                reason="the table does not read this text",
            ),
            dict(
                claim="greedy_fast_rate",
                setting="interior",
                form="power",
                predicted_slope=-2.0,
                measured_slope=-1.7,
                ci_low=-1.77,
                ci_high=-1.62,
                n_min=90,
                n_max=1000,
                verdict="holds",
                reason="interval <= -1.60",
            ),
        ]
    )
    level, rate = format_verdicts(verdicts).splitlines()[1:]
    assert level.split() == [
        "greedy_below_gd_n90_300",
        "interior",
        "<1",
        "0.812",
        "[0.6,",
        "1.1]",
        "90-270",
        "inconclusive",
    ]
    assert rate.split() == [
        "greedy_fast_rate",
        "interior",
        "-2.0",
        "-1.7",
        "[-1.77,",
        "-1.62]",
        "90-1000",
        "holds",
    ]


def test_the_verdict_table_says_so_when_empty_and_leaves_missing_values_blank():
    assert format_verdicts(pd.DataFrame(columns=COLUMNS)) == "(no verdicts)"
    row = dict.fromkeys(COLUMNS, np.nan)
    row.update(claim="c", setting="s", form="less_than", verdict="no data", reason="no rows")
    header, line = format_verdicts(pd.DataFrame([row])).splitlines()
    assert header.split()[:4] == ["claim", "setting", "pred", "slope|ratio"]
    assert line.split() == ["c", "s", "no", "data"]


def test_a_slope_comparison_uses_the_bootstrap_size_it_is_given():
    """The difference interval of a ``faster_than`` claim is the one ``slope_difference_interval``
    gives with check's ``n_boot`` (7 here: far from the default, so the intervals differ)."""
    a = curve("greedy", -2.0, seeds=range(5), noise=0.3)  # names of unequal length: the
    b = curve("gd", -1.0, seeds=range(5), noise=0.3)  # two curves get different noise
    claim = Claim("f", "greedy is faster", "rate", "greedy", form="faster_than", versus="gd")
    reason = check(pd.concat([a, b]), [claim], n_boot=7).iloc[0]["reason"]
    triple = [(df["n"], df["loss_train"], df["seed"]) for df in (a, b)]
    lo, hi = slope_difference_interval(*triple, n_boot=7)
    assert reason.endswith(f"difference interval [{lo:.2f}, {hi:.2f}]")
    lo_default, hi_default = slope_difference_interval(*triple)
    assert f"[{lo:.2f}, {hi:.2f}]" != f"[{lo_default:.2f}, {hi_default:.2f}]"


def test_an_older_verdict_table_without_ratio_columns_still_prints():
    """Verdict tables written before the ratio columns existed (a finished run's verdicts.csv)
    print with blanks where a ratio would go."""
    row = dict.fromkeys([c for c in COLUMNS if not c.startswith("ratio")], np.nan)
    row.update(claim="old", setting="s", form="less_than", verdict="holds", reason="...")
    line = format_verdicts(pd.DataFrame([row])).splitlines()[1]
    assert line.split() == ["old", "s", "holds"]


def test_a_rate_fit_refuses_two_rows_for_one_seed_and_n():
    """A second row with the same (seed, n) would silently replace the first in the fit's table;
    both fits refuse it and say how to fix it."""
    n, loss = [1, 1, 2, 2], [1.0, 3.0, 0.5, 1.5]
    with pytest.raises(ValueError, match=r"n=1 and seed=0; .* pass seed="):
        fit_rate(n, loss)
    assert fit_rate(n, loss, seed=[0, 1, 0, 1], n_boot=10).slope == pytest.approx(-1.0)
    with pytest.raises(ValueError, match=r"n=2 and seed='b'"):
        fit_rate([1, 2, 2], [1.0, 0.5, 0.4], seed=["a", "b", "b"])
    good = ([1, 2, 4], [1.0, 0.5, 0.25], [0, 0, 0])
    with pytest.raises(ValueError, match="more than one row has n=4"):
        slope_difference_interval(good, ([1, 2, 4, 4], [1.0, 0.3, 0.1, 0.2], [0, 0, 0, 0]))


def test_the_slope_difference_leaves_out_losses_that_cannot_be_logged():
    """A zero, negative or NaN loss is left out of the slope difference as it is of a rate fit:
    the interval is the one without those rows. They sit where the other seeds have values, so a
    kept one would poison the mean of its column (log 0 = -inf)."""
    a = curve("greedy", -2.0, seeds=range(4), noise=0.2)
    b = curve("gd", -1.0, seeds=range(4), noise=0.2)
    holes = ((a["seed"] == 0) & (a["n"] == 40)) | ((a["seed"] == 1) & (a["n"] == 20))
    base = a[~holes]
    want = slope_difference_interval(
        (base["n"], base["loss_train"], base["seed"]),
        (b["n"], b["loss_train"], b["seed"]),
        n_range=(10, 80),
        n_boot=50,
    )
    bad = pd.DataFrame(dict(n=[40, 20, 80], loss_train=[0.0, -1.0, np.nan], seed=[0, 1, 9]))
    worse = pd.concat([base, bad.assign(experiment="rate", method="greedy")])
    got = slope_difference_interval(
        (worse["n"], worse["loss_train"], worse["seed"]),
        (b["n"], b["loss_train"], b["seed"]),
        n_range=(10, 80),
        n_boot=50,
    )
    assert np.isfinite(want).all() and got == want


def test_every_claim_form_has_one_judge():
    """The claim forms are one table: each form a Claim accepts is judged, and no judge is left
    without its form."""
    from greedyprune.theory import FORMS
    from greedyprune.theory._check import JUDGES

    assert set(JUDGES) == set(FORMS)


def test_a_registered_form_judges_and_a_pooled_claim_sees_every_setting(monkeypatch):
    from greedyprune.theory import FORMS, Claim, check, register_form
    from greedyprune.theory._check import JUDGES

    # the form is this test's: the registries are as they were afterwards
    monkeypatch.setattr("greedyprune.theory._check.JUDGES", dict(JUDGES))
    forms = list(FORMS)  # one list, as the two modules share one
    monkeypatch.setattr("greedyprune.theory._claims.FORMS", forms)
    monkeypatch.setattr("greedyprune.theory._check.FORMS", forms)

    seen = []

    def judge(case):
        seen.append(sorted(case.df["setting"].unique()))
        return case.verdict("holds" if case.rows["loss"].max() < 1 else "fails", "test form")

    register_form("below_one", judge)
    results = pd.DataFrame(
        dict(experiment="e", method="m", n=[1, 2, 1, 2], seed=0, loss=[0.5, 0.2, 0.9, 2.0])
    ).assign(setting=["a", "a", "b", "b"])
    each = Claim("each", "below one", "e", "m", metric="loss", form="below_one")
    pooled = Claim("all", "below one", "e", "m", metric="loss", form="below_one", pooled=True)
    v = check(results, [each, pooled], n_boot=10)
    assert list(zip(v["claim"], v["setting"], v["verdict"])) == [
        ("each", "a", "holds"),
        ("each", "b", "fails"),
        ("all", "all", "fails"),
    ]
    assert seen == [["a"], ["b"], ["a", "b"]]
    with pytest.raises(ValueError, match="form='nope'"):
        Claim("x", "s", "e", "m", form="nope")


# ---- found against mutants that survived the tests above (make mutate-sample)


def test_fit_reads_columns_and_integers_as_flat_floats():
    n = np.array([1, 2, 4, 8, 16])
    loss = 1.0 / n**2
    flat = fit_rate(n, loss, n_boot=20)
    col = fit_rate(n.reshape(-1, 1), loss.reshape(-1, 1), seed=np.zeros((5, 1)), n_boot=20)
    assert flat.slope == pytest.approx(-2.0) and col.slope == pytest.approx(flat.slope)
    big = fit_rate(np.array([10**10, 2 * 10**10, 4 * 10**10]), [4.0, 1.0, 0.25], n_boot=20)
    assert big.slope == pytest.approx(-2.0)


def test_fit_drops_zero_losses_and_counts_them():
    n = [1, 2, 4, 8, 16, 32]
    loss = [1.0, 0.5, 0.25, 0.0, 0.0625, 1 / 32]
    fit = fit_rate(n, loss, n_boot=20)
    assert fit.n_dropped == 1 and fit.slope == pytest.approx(-1.0)


def test_exponential_fit_is_log_loss_against_n():
    n = np.arange(1, 11)
    fit = fit_rate(n, np.exp(-0.3 * n + 0.1 * np.sin(n)), form="exponential", n_boot=20)
    ref = np.polyfit(n, -0.3 * n + 0.1 * np.sin(n), 1)[0]
    assert fit.slope == pytest.approx(ref, rel=1e-12)


def test_fit_r2_is_the_coefficient_of_determination():
    n = np.array([1.0, 2, 4, 8, 16, 32])
    y = -1.0 * np.log(n) + np.array([0.1, -0.2, 0.05, 0.15, -0.1, 0.0])
    fit = fit_rate(n, np.exp(y), n_boot=20)
    slope, icpt = np.polyfit(np.log(n), y, 1)
    resid = y - (icpt + slope * np.log(n))
    r2 = 1 - (resid**2).sum() / ((y - y.mean()) ** 2).sum()
    assert fit.r2 == pytest.approx(r2, rel=1e-12)
    assert fit_rate([1, 2], [1.0, 1.0], n_boot=20).r2 == 1.0  # a flat curve: fitted exactly


def _rows(settings=("b", "a")):
    return [
        dict(experiment="rate", method="greedy", n=n, seed=s, setting=st, loss_train=n**-1.0)
        for st in settings
        for s in range(2)
        for n in (10, 20, 40, 80)
    ]


def test_verdict_table_keeps_setting_order_columns_and_the_predicted_slope():
    import pandas as pd

    claim = Claim("c", "s", "rate", "greedy", predicted_slope=-1.0, tolerance=0.25)
    out = check(pd.DataFrame(_rows()), [claim], n_boot=50)
    assert list(out["setting"]) == ["b", "a"]
    assert list(out.columns[:4]) == ["claim", "setting", "statement", "form"]
    assert list(out["predicted_slope"]) == [-1.0, -1.0]


def test_undecided_conditions_are_noted_in_the_reason():
    import pandas as pd

    claim = Claim(
        "c", "s", "rate", "greedy", predicted_slope=-1.0, tolerance=0.25, conditions=("maybe",)
    )
    out = check(
        pd.DataFrame(_rows(("x",))),
        [claim],
        n_boot=50,
        conditions={"maybe": lambda rows, rng: (None, "cannot tell")},
    )
    (row,) = out.to_dict("records")
    assert row["verdict"] == "holds" and row["reason"].endswith(" | maybe: cannot tell")


def test_a_bound_met_with_equality_up_to_the_slack_holds():
    import pandas as pd

    rows = [
        dict(experiment="bounds", method="greedy", n=n, seed=0, e_n=1 + 1e-9, bound=1.0)
        for n in (1, 2, 4)
    ]
    claim = Claim("b", "s", "bounds", "greedy", metric="e_n", form="bound", bound_column="bound")
    (row,) = check(pd.DataFrame(rows), [claim], n_boot=50).to_dict("records")
    assert row["verdict"] == "holds"
    assert math.isclose(1 + 1e-9, rows[0]["e_n"] / rows[0]["bound"])


def test_fit_settings_at_their_edges():
    n, loss = [1, 2, 4, 8], [1.0, 0.5, 0.25, 0.125]
    assert fit_rate(n, loss, n_boot=1).slope == pytest.approx(-1.0)  # one re-sample is allowed
    for level in (0.0, 1.0):  # an interval of level 0 or 1 is no interval
        with pytest.raises(ValueError, match="level"):
            fit_rate(n, loss, n_boot=10, level=level)


def test_slope_difference_interval_has_the_requested_level():
    from greedyprune.theory import slope_difference_interval

    gen = np.random.default_rng(5)
    ns = np.array([10, 20, 40, 80, 160])
    rows_a, rows_b = [], []
    for s in range(6):
        for n in ns:
            rows_a.append((n, n ** (-1.0 + gen.normal(0, 0.1)), s))
            rows_b.append((n, n ** (-0.5 + gen.normal(0, 0.1)), s))
    a = tuple(np.array(c) for c in zip(*rows_a))
    b = tuple(np.array(c) for c in zip(*rows_b))
    lo90, hi90 = slope_difference_interval(a, b, n_boot=400, level=0.90)
    lo50, hi50 = slope_difference_interval(a, b, n_boot=400, level=0.50)
    assert lo90 < lo50 < hi50 < hi90  # a higher level, a wider interval around the same draws
    assert lo90 < -0.5 < hi90


def test_theory_messages_name_the_argument_and_the_fix():
    with pytest.raises(TypeError, match=r"^results=\{\} must be a pandas DataFrame$"):
        check({}, [])
    with pytest.raises(ValueError, match=r"^deep_claims needs at least one size n$"):
        deep_claims([])
    with pytest.raises(ValueError, match=r"^Claim 'x': form='slope'; pass one of"):
        Claim("x", "s", "rate", "greedy", form="slope")
    with pytest.raises(ValueError, match=r"^Claim 'x': direction='below'; pass at_most, at_least"):
        Claim("x", "s", "rate", "greedy", predicted_slope=-1.0, direction="below")
    claim = Claim("c", "the words", "rate", "greedy", predicted_slope=-1.0, tolerance=0.25)
    (row,) = check(pd.DataFrame(_rows(("x",))), [claim], n_boot=50).to_dict("records")
    assert row["statement"] == "the words" and row["n_seeds"] == 2
