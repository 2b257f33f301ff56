"""greedyprune.theory: rate fits, bound constants and the verdict logic on curves of known slope."""

import math
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from greedyprune.select import SquaredLoss, greedy_select
from greedyprune.theory import (
    Claim,
    b_n,
    bound_constants,
    check,
    fast_rate_envelope,
    fit_rate,
    hull_membership,
    margin_estimate,
    slope_difference_interval,
    two_layer_claims,
)

# ---------------------------------------------------------------- fit_rate


@settings(max_examples=40)
@given(
    slope=st.floats(-3.0, 0.5),
    log_c=st.floats(-10.0, 5.0),
    form=st.sampled_from(["power", "exponential"]),
)
def test_fit_rate_recovers_an_exact_law(slope, log_c, form):
    n = np.arange(5, 60, dtype=float)
    x = np.log(n) if form == "power" else n / 20
    scale = 1.0 if form == "power" else 1 / 20
    loss = np.exp(log_c + slope * x)
    fit = fit_rate(n, loss, form=form, n_boot=50)
    assert fit.slope == pytest.approx(slope * scale, abs=1e-9)
    assert fit.ci_low == pytest.approx(fit.slope, abs=1e-9)
    assert fit.ci_high == pytest.approx(fit.slope, abs=1e-9)
    assert fit.predict([7.0])[0] == pytest.approx(loss[2], rel=1e-9)


def test_fit_rate_interval_covers_the_slope_across_noisy_seeds():
    gen = np.random.default_rng(0)
    n = np.geomspace(10, 1000, 25).round()
    rows = []
    for seed in range(8):
        # per-seed constant and per-point noise, both multiplicative
        c = math.exp(gen.normal(0, 0.3))
        for v in n:
            rows.append((v, c * v**-1.5 * math.exp(gen.normal(0, 0.05)), seed))
    a = np.array(rows)
    fit = fit_rate(a[:, 0], a[:, 1], seed=a[:, 2], n_boot=500)
    assert fit.ci_method == "seeds" and fit.n_seeds == 8
    assert fit.ci_low < -1.5 < fit.ci_high
    assert fit.ci_high - fit.ci_low < 0.1


def test_fit_rate_uses_only_the_range_and_drops_nonpositive_losses():
    n = np.arange(1, 101, dtype=float)
    loss = np.where(n <= 50, n**-1.0, 50.0 * n**-2.0)
    loss[70] = 0.0
    fit = fit_rate(n, loss, n_range=(51, 100), n_boot=10)
    assert fit.slope == pytest.approx(-2.0, abs=1e-9)
    assert (fit.n_min, fit.n_max, fit.n_dropped) == (51, 100, 1)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(form="cubic"), "form"),
        (dict(n_range=(10, 5)), "n_range"),
        (dict(n_boot=0), "n_boot"),
        (dict(level=1.5), "level"),
        (dict(n_range=(1, 1)), "two distinct n"),
    ],
)
def test_fit_rate_rejects_bad_input(kwargs, word):
    with pytest.raises(ValueError, match=word):
        fit_rate([1, 2, 3], [1.0, 0.5, 0.3], **kwargs)


def test_slope_difference_interval_pairs_seeds():
    n = np.geomspace(10, 100, 10)
    rows_a, rows_b = [], []
    gen = np.random.default_rng(1)
    for seed in range(6):
        c = math.exp(gen.normal(0, 1.0))  # shared per seed: pairing cancels it
        rows_a += [(v, c * v**-2.0, seed) for v in n]
        rows_b += [(v, c * v**-1.0, seed) for v in n]
    a, b = np.array(rows_a).T, np.array(rows_b).T
    lo, hi = slope_difference_interval(tuple(a), tuple(b), n_boot=200)
    assert lo == pytest.approx(-1.0, abs=1e-9) and hi == pytest.approx(-1.0, abs=1e-9)


# ---------------------------------------------------------------- bound constants


def _slow_constants(phi, t):
    m = phi.shape[1]
    dists = [float(((phi[i] - t) ** 2).sum() / m) for i in range(phi.shape[0])]
    mean = phi.mean(0)
    return max(dists) ** 0.5, sum(dists) / len(dists), float(((mean - t) ** 2).sum() / m)


@settings(max_examples=25)
@given(
    N=st.integers(1, 12), m=st.integers(1, 6), c=st.sampled_from([None, 2]), s=st.integers(0, 99)
)
def test_bound_constants_match_loops(N, m, c, s):
    g = torch.Generator().manual_seed(s)
    shape = (N, m) if c is None else (N, m, c)
    phi = torch.randn(*shape, generator=g, dtype=torch.float64)
    t = torch.randn(*shape[1:], generator=g, dtype=torch.float64)
    D, B, dist = _slow_constants(phi, t)
    got = bound_constants(phi, t)
    assert got["D"] == pytest.approx(D, rel=1e-12)
    assert got["B"] == pytest.approx(B, rel=1e-12)
    assert got["dist_mean2"] == pytest.approx(dist, rel=1e-12, abs=1e-15)


@settings(max_examples=25)
@given(
    N=st.integers(1, 12), m=st.integers(1, 6), c=st.sampled_from([None, 2]), s=st.integers(0, 99)
)
def test_bound_constants_identities(N, m, c, s):
    """B = B_var + dist_mean2 (the bias-variance split of the mean squared distance to t), the
    mean never exceeds the max (B <= D^2), and toward t = f_N the bias vanishes: B = B_var.
    B_var is also recomputed here from its definition."""
    g = torch.Generator().manual_seed(s)
    shape = (N, m) if c is None else (N, m, c)
    phi = torch.randn(*shape, generator=g, dtype=torch.float64)
    t = torch.randn(*shape[1:], generator=g, dtype=torch.float64)
    got = bound_constants(phi, t)
    mean = phi.mean(0)
    b_var = sum(float(((phi[i] - mean) ** 2).sum() / m) for i in range(N)) / N
    assert got["B_var"] == pytest.approx(b_var, rel=1e-12, abs=1e-15)
    assert got["B"] == pytest.approx(got["B_var"] + got["dist_mean2"], rel=1e-12)
    assert got["B"] <= got["D"] ** 2 * (1 + 1e-12)
    toward_mean = bound_constants(phi, mean)
    assert toward_mean["dist_mean2"] == pytest.approx(0.0, abs=1e-15)
    assert toward_mean["B"] == pytest.approx(toward_mean["B_var"], rel=1e-12, abs=1e-15)
    assert toward_mean["B_var"] == pytest.approx(got["B_var"], rel=1e-12, abs=1e-15)


@settings(max_examples=30)
@given(N=st.integers(2, 30), m=st.integers(1, 8), s=st.integers(0, 10_000))
def test_proposition_a_greedy_toward_the_mean_obeys_d2_over_n(N, m, s):
    """Proposition A (docs/theory.md): e_n <= D^2 / n for every n when t = f_N (in the hull)."""
    g = torch.Generator().manual_seed(s)
    phi = torch.randn(N, m, generator=g, dtype=torch.float64) * 3
    t = phi.mean(0)
    sel = greedy_select(SquaredLoss(phi, t), 40)
    e_n = 2 * sel.losses
    D2 = bound_constants(phi, t)["D"] ** 2
    n = torch.arange(1, 41, dtype=torch.float64)
    assert bool((e_n <= D2 / n * (1 + 1e-9) + 1e-12).all())


def test_hull_membership_inside_and_outside():
    # the square with corners (+-1, +-1): (0.5, 0.2) is inside, (1.5, 0) is outside by 0.5
    phi = torch.tensor([[1.0, 1], [1, -1], [-1, 1], [-1, -1]], dtype=torch.float64)
    inside = hull_membership(phi, torch.tensor([0.5, 0.2], dtype=torch.float64))
    outside = hull_membership(phi, torch.tensor([1.5, 0.0], dtype=torch.float64))
    assert inside["in_hull"] == 1.0 and inside["lp_residual"] <= 1e-9
    assert outside["in_hull"] == 0.0
    # entrywise residual 0.5, scaled by the largest entry (1.5)
    assert outside["lp_residual"] == pytest.approx(0.5 / 1.5, rel=1e-6)


@pytest.mark.parametrize(
    ("point", "residual"),
    [
        # the square with corners (+-1, +-1): the residual is the L-inf distance to it over the
        # largest entry of the features and t
        ((1.5, 0.0), 0.5 / 1.5),
        ((2.0, 3.0), 2.0 / 3.0),
        ((-1.2, 1.1), 0.2 / 1.2),
        ((0.3, -0.999), 0.0),
    ],
)
def test_hull_membership_residual_is_the_scaled_linf_distance(point, residual):
    phi = torch.tensor([[1.0, 1], [1, -1], [-1, 1], [-1, -1]], dtype=torch.float64)
    got = hull_membership(phi, torch.tensor(point, dtype=torch.float64))
    assert got["in_hull"] == float(residual == 0.0)
    assert got["lp_residual"] == pytest.approx(residual, rel=1e-6, abs=1e-9)


def test_hull_membership_scales_by_the_largest_feature_entry():
    """The triangle (10, 0), (0, 1), (0, -1) lies in x >= 0, so t = (-1, 0) is at L-inf distance 1
    from it; the largest entry is the feature's 10, not t's 1: residual 1 / 10."""
    phi = torch.tensor([[10.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    got = hull_membership(phi, torch.tensor([-1.0, 0.0], dtype=torch.float64))
    assert got["in_hull"] == 0.0
    assert got["lp_residual"] == pytest.approx(0.1, rel=1e-6)
    vertex = hull_membership(phi, phi[1].clone())
    assert vertex["in_hull"] == 1.0 and vertex["lp_residual"] <= 1e-9


def test_hull_membership_edge_cases():
    """A hull away from the origin ((1, 1)--(2, 2), t = (1.5, 1.5) inside), features and target
    all zero (nothing to scale by), and entries all below 1 (the scale is the largest entry, not 1:
    the square with corners (+-0.1, +-0.1) and t = (0.15, 0) gives 0.05 / 0.15)."""
    f64 = torch.float64
    seg = hull_membership(
        torch.tensor([[1.0, 1.0], [2.0, 2.0]], dtype=f64), torch.tensor([1.5, 1.5], dtype=f64)
    )
    assert seg["in_hull"] == 1.0 and seg["lp_residual"] <= 1e-9
    zero = hull_membership(torch.zeros(3, 2, dtype=f64), torch.zeros(2, dtype=f64))
    assert zero == {"in_hull": 1.0, "lp_residual": pytest.approx(0.0, abs=1e-12)}
    # in_hull means residual <= tol: an exact zero residual is in the hull even at tol = 0
    exact = hull_membership(torch.zeros(3, 2, dtype=f64), torch.zeros(2, dtype=f64), tol=0.0)
    assert exact == {"in_hull": 1.0, "lp_residual": 0.0}
    small = 0.1 * torch.tensor([[1.0, 1], [1, -1], [-1, 1], [-1, -1]], dtype=f64)
    got = hull_membership(small, torch.tensor([0.15, 0.0], dtype=f64))
    assert got["in_hull"] == 0.0 and got["lp_residual"] == pytest.approx(1 / 3, rel=1e-6)


@pytest.mark.parametrize("x", [None, np.array([0.5, 0.5, 0.0])])
def test_hull_membership_unfinished_solve_is_nan(monkeypatch, x):
    """A solve that does not finish (time limit, numerical trouble) gives NaN for both entries,
    whether or not the solver returned an iterate."""
    import scipy.optimize

    class Result:
        status, message = 1, "time limit reached"

    Result.x = x
    monkeypatch.setattr(scipy.optimize, "linprog", lambda *a, **k: Result())
    phi = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    got = hull_membership(phi, torch.tensor([0.5, 0.0], dtype=torch.float64))
    assert set(got) == {"in_hull", "lp_residual"}
    assert math.isnan(got["in_hull"]) and math.isnan(got["lp_residual"])


@pytest.mark.parametrize(
    ("features", "target", "exc", "message"),
    [
        ([[1.0, 2.0]], torch.zeros(2), TypeError, "features and target must be tensors"),
        (torch.zeros(2, 2), [0.0, 0.0], TypeError, "features and target must be tensors"),
        (
            torch.zeros(3),
            torch.zeros(3),
            ValueError,
            r"^features\.shape=\(3,\) must be \(N, m\) or \(N, m, c\)$",
        ),
        (
            torch.zeros(2, 3),
            torch.zeros(4),
            ValueError,
            r"^target\.shape=\(4,\) must be \(3,\), features' \(m\(, c\)\)$",
        ),
    ],
)
def test_bound_constants_rejects_bad_input(features, target, exc, message):
    with pytest.raises(exc, match=f"^{message}$"):
        bound_constants(features, target)


def test_margin_estimate_of_a_triangle():
    """An asymmetric hull: inside the triangle (0, 0), (4, 0), (0, 4) the point (1, 1) is at
    distance 1 from the two legs and sqrt(2) from the hypotenuse; with m = 2 the margin is
    1 / sqrt(2). Its mirror image (-1, -1) lies outside."""
    phi = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    r = margin_estimate(phi, torch.tensor([1.0, 1.0], dtype=torch.float64), restarts=16)
    assert r == pytest.approx(1 / math.sqrt(2), rel=0.02)
    assert margin_estimate(phi, torch.tensor([-1.0, -1.0], dtype=torch.float64), restarts=8) < 0


def test_margin_estimate_stays_in_the_affine_hull_and_is_seeded():
    """Collinear features (0, 1), (2, 1), (4, 1): the margin is measured within their line, where
    t = (1, 1) is 1 from the nearer end (1 / sqrt(2) with m = 2); a direction off the line (where
    every feature is level with t) must not count. The same seed gives the same estimate, even
    when the search is cut short."""
    phi = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert margin_estimate(phi, t, restarts=8) == pytest.approx(1 / math.sqrt(2), rel=0.02)
    tri = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [3.0, 3.0]], dtype=torch.float64)
    a = margin_estimate(tri, t, restarts=3, steps=4, seed=5)
    assert a == margin_estimate(tri, t, restarts=3, steps=4, seed=5)


def test_margin_estimate_of_a_square():
    """The centre of the square [-1, 1]^2 is at distance 1 from its sides; with m = 2 the norm
    ||h||^2 = (1/2) sum h_j^2 shrinks that distance to 1/sqrt(2)."""
    phi = torch.tensor([[1.0, 1], [1, -1], [-1, 1], [-1, -1]], dtype=torch.float64)
    r = margin_estimate(phi, torch.zeros(2, dtype=torch.float64), restarts=16, steps=300)
    assert r == pytest.approx(1 / math.sqrt(2), rel=0.02)
    r_edge = margin_estimate(phi, torch.tensor([0.0, 0.9], dtype=torch.float64), restarts=16)
    assert r_edge == pytest.approx(0.1 / math.sqrt(2), rel=0.05)
    r_out = margin_estimate(phi, torch.tensor([0.0, 1.5], dtype=torch.float64), restarts=16)
    assert r_out < 0


@settings(max_examples=40)
@given(
    D=st.floats(0.1, 10.0),
    r=st.floats(0.01, 5.0),
    b1=st.floats(0.0, 20.0),
)
def test_fast_rate_envelope_bounds_the_worst_case_recurrence(D, r, b1):
    """Proposition B: b_{n+1}^2 <= b_n^2 - 2 r b_n + D^2. Run that recurrence with equality (the
    worst case) from b_1; e_n = (b_n / n)^2 stays under the envelope, which is
    max(b_1^2, (D^2 / 2r)^2 + D^2) / n^2 exactly."""
    n = np.arange(1, 200)
    env = fast_rate_envelope(n, D=D, r=r, b1=b1)
    top = max(b1**2, (D**2 / (2 * r)) ** 2 + D**2)
    assert np.allclose(env * n**2, top, rtol=1e-12)
    b = b1
    for k in n:
        assert (b / k) ** 2 <= env[k - 1] * (1 + 1e-9)
        b = math.sqrt(max(0.0, b * b - 2 * r * b + D * D))


@pytest.mark.parametrize("r", [0.0, -0.5, math.nan])
def test_fast_rate_envelope_needs_a_positive_margin(r):
    with pytest.raises(ValueError, match="r="):
        fast_rate_envelope([1, 2], D=1.0, r=r, b1=1.0)


def test_b_n_and_its_checks():
    assert np.allclose(b_n([1, 4], [4.0, 1.0]), [2.0, 4.0])
    # e_n below 1 (the usual case) and a rounding-negative e_n, clipped to 0 rather than NaN
    assert np.array_equal(b_n([2, 3, 10], [0.25, -1e-18, 0.0]), [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="same shape"):
        b_n([1, 2], [1.0])


# ---------------------------------------------------------------- verdicts


def _curve(method, slope, *, seeds=4, noise=0.02, experiment="rate", c=1.0, extra=None):
    # A stable seed: Python's str hash changes between processes.
    gen = np.random.default_rng(zlib.crc32(f"{method}/{slope}".encode()))
    rows = []
    for seed in range(seeds):
        cs = c * math.exp(gen.normal(0, 0.2))
        for n in np.geomspace(10, 1000, 20).round():
            loss = cs * n**slope * math.exp(gen.normal(0, noise))
            rows.append(
                dict(
                    experiment=experiment,
                    method=method,
                    n=int(n),
                    seed=seed,
                    loss_train=loss,
                    discrepancy=loss,
                    **(extra or {}),
                )
            )
    return rows


def _bounds_rows(b_slope, in_hull=1.0):
    rows = []
    for seed in range(4):
        for n in range(1, 1001, 7):
            rows.append(
                dict(
                    experiment="bounds",
                    method="greedy",
                    target="y",
                    n=n,
                    seed=seed,
                    b_n=3.0 * n**b_slope,
                    in_hull=in_hull,
                    lp_residual=0.0 if in_hull else 1e-3,
                )
            )
    return rows


def _verdict(df, claim_id):
    claims = [c for c in two_layer_claims() if c.id == claim_id]
    v = check(df, claims, n_range=(90, 1000), n_boot=300)
    assert len(v) == 1
    return v.iloc[0]


def test_fast_rate_holds_on_a_slope_minus_two_curve_with_bounded_b_n():
    df = pd.DataFrame(_curve("greedy_pretrained", -2.0) + _bounds_rows(0.0))
    row = _verdict(df, "greedy_fast_rate")
    assert row.verdict == "holds"
    assert row.ci_low < -2.0 < row.ci_high


def test_fast_rate_fails_on_a_slope_minus_one_curve_whose_conditions_hold():
    df = pd.DataFrame(_curve("greedy_pretrained", -1.0) + _bounds_rows(0.0))
    assert _verdict(df, "greedy_fast_rate").verdict == "fails"


def test_fast_rate_reports_which_condition_is_not_met():
    df = pd.DataFrame(_curve("greedy_pretrained", -1.0) + _bounds_rows(0.5))
    row = _verdict(df, "greedy_fast_rate")
    assert row.verdict == "conditions not met"
    assert "b_n_bounded" in row.reason and "target_in_hull" not in row.reason.split("|")[0]
    assert row.measured_slope == pytest.approx(-1.0, abs=0.05)
    df = pd.DataFrame(_curve("greedy_pretrained", -1.0) + _bounds_rows(0.0, in_hull=0.0))
    row = _verdict(df, "greedy_fast_rate")
    assert row.verdict == "conditions not met" and "outside the hull" in row.reason


def test_inconclusive_when_the_interval_straddles_the_threshold():
    # -1.6 is the threshold of the fast-rate claim (-2 + 0.4): half the seeds fall with slope
    # -1.3 and half with -1.9, so resampling seeds gives an interval on both sides of it.
    steep = [dict(r, seed=r["seed"] + 2) for r in _curve("greedy_pretrained", -1.9, seeds=2)]
    df = pd.DataFrame(_curve("greedy_pretrained", -1.3, seeds=2) + steep + _bounds_rows(0.0))
    assert _verdict(df, "greedy_fast_rate").verdict == "inconclusive"


def test_faster_than_and_less_than():
    df = pd.DataFrame(_curve("greedy_pretrained", -2.0) + _curve("gd_scratch", -0.7))
    assert _verdict(df, "greedy_faster_than_gd").verdict == "holds"
    df = pd.DataFrame(_curve("greedy_pretrained", -0.7) + _curve("gd_scratch", -2.0))
    assert _verdict(df, "greedy_faster_than_gd").verdict == "fails"
    ft = _curve("greedy_finetuned", -1.0, experiment="finetune", c=0.1)
    rt = _curve("gd_retrain", -1.0, experiment="finetune", c=1.0)
    for r in ft + rt:
        r["loss_test"] = r["loss_train"]
    assert _verdict(pd.DataFrame(ft + rt), "finetune_beats_retrain").verdict == "holds"
    assert (
        _verdict(
            pd.DataFrame(
                [dict(r, method="gd_retrain") for r in ft]
                + [dict(r, method="greedy_finetuned") for r in rt]
            ),
            "finetune_beats_retrain",
        ).verdict
        == "fails"
    )


def test_bound_claim_is_a_deterministic_inequality():
    rows = [
        dict(
            experiment="bounds",
            method="greedy",
            target="f_N",
            n=n,
            seed=0,
            e_n=1.0 / n,
            bound_D2_over_n=2.0 / n,
        )
        for n in range(1, 50)
    ]
    assert _verdict(pd.DataFrame(rows), "prop_a_bound_fN").verdict == "holds"
    rows[10]["e_n"] = 3.0 / rows[10]["n"]
    assert _verdict(pd.DataFrame(rows), "prop_a_bound_fN").verdict == "fails"


def test_exponential_claim_prefers_a_linear_log_curve():
    claim = Claim("exp", "exponential", "rate", "greedy_corrective", form="exponential")
    rows = [
        dict(
            experiment="rate",
            method="greedy_corrective",
            n=n,
            seed=s,
            loss_train=math.exp(-0.5 * n + 0.1 * s),
        )
        for n in range(1, 20)
        for s in range(3)
    ]
    assert check(pd.DataFrame(rows), [claim], n_boot=100).iloc[0].verdict == "holds"
    rows = [dict(r, loss_train=r["n"] ** -1.0 * (1 + 0.1 * r["seed"])) for r in rows]
    assert check(pd.DataFrame(rows), [claim], n_boot=100).iloc[0].verdict == "fails"


def test_settings_are_judged_apart_and_absent_methods_skipped():
    a = pd.DataFrame(_curve("greedy_pretrained", -2.0) + _bounds_rows(0.0)).assign(setting="a")
    b = pd.DataFrame(_curve("greedy_pretrained", -1.0) + _bounds_rows(0.5)).assign(setting="b")
    v = check(pd.concat([a, b]), two_layer_claims(), n_range=(90, 1000), n_boot=200)
    fast = v[v.claim == "greedy_fast_rate"].set_index("setting").verdict
    assert fast.to_dict() == {"a": "holds", "b": "conditions not met"}
    # gd_scratch, random subsets etc. were not run: no rows for them
    assert set(v.claim) == {"greedy_fast_rate", "prop_a_bound_y"}


def test_check_rejects_bad_input():
    with pytest.raises(TypeError, match="DataFrame"):
        check([1, 2], two_layer_claims())
    with pytest.raises(ValueError, match="lacks the columns"):
        check(pd.DataFrame({"n": [1]}), two_layer_claims())
    bad = Claim("x", "x", "rate", "m", predicted_slope=-1.0, conditions=("nope",))
    with pytest.raises(ValueError, match="unknown condition"):
        check(pd.DataFrame(_curve("m", -1.0)), [bad])
    with pytest.raises(ValueError, match="predicted_slope"):
        Claim("x", "x", "rate", "m")


def test_margin_estimate_of_a_single_point_hull_is_zero():
    # all features equal: the hull is one point, with no margin (this used to raise)
    feats = torch.ones(5, 4, dtype=torch.float64)
    assert margin_estimate(feats, torch.ones(4, dtype=torch.float64)) == 0.0


def test_register_condition_gates_the_claims_that_name_it():
    from greedyprune.theory import CONDITIONS, register_condition

    seen = []

    def never(rows, n_range):
        seen.append((len(rows), n_range))
        return False, "never holds here"

    claim = Claim(
        "custom",
        "a claim under a registered condition",
        "rate",
        "greedy",
        predicted_slope=-1.0,
        tolerance=0.25,
        conditions=("never_holds",),
    )
    rows = pd.DataFrame(_curve("greedy", -1.0))
    register_condition("never_holds", never)
    try:
        (v,) = check(rows, [claim], n_range=(10, 1000), n_boot=50).to_dict("records")
    finally:
        CONDITIONS.pop("never_holds")
    assert v["verdict"] == "conditions not met"
    assert "never holds here" in v["reason"] and "holds" in v["reason"].split("|")[1]
    assert seen == [(len(rows), (10, 1000))]
    for bad in [(3, never), ("x", 3)]:
        with pytest.raises(TypeError, match=r"^register_condition\(name: str, fn: callable\)$"):
            register_condition(*bad)


def test_b_n_bounded_condition_reads_the_growth_of_b_n():
    from greedyprune.theory import CONDITIONS

    cond = CONDITIONS["b_n_bounded"]
    assert cond(pd.DataFrame(_curve("greedy", -1.0)), None) == (None, "no b_n rows toward y")
    rows = []
    for growth in (0.0, 0.5):  # interior: b_n flat; boundary: b_n ~ sqrt(n)
        rows = [
            dict(experiment="bounds", target="y", method="greedy", n=n, seed=s, b_n=n**growth)
            for s in range(3)
            for n in (1, 2, 4, 8, 16, 32, 64)
        ]
        ok, why = cond(pd.DataFrame(rows), None)
        assert ok is (growth == 0.0)
        assert why.startswith(f"b_n = n ||f_n - y|| grows like n^{growth:.2f} over n=1..64")
        assert why.endswith(
            " (bounded: interior)" if ok else " (unbounded: y on or near the hull's boundary)"
        )


def test_fast_rate_envelope_takes_integer_sizes_beyond_int64_squares():
    n = np.array([10**10, 2 * 10**10])  # n^2 overflows int64: the envelope computes in floats
    env = fast_rate_envelope(n, D=1.0, r=0.5, b1=1.0)
    np.testing.assert_allclose(env, 2.0 / n.astype(float) ** 2, rtol=1e-12)


# ------------------------------------------- verdict rows in detail (what mutation testing found)


def _row(rows, claim, **kw):
    out = check(pd.DataFrame(rows), [claim], n_boot=200, **kw).to_dict("records")
    return out[0] if out else None


def _rate_claim(direction, **kw):
    return Claim(
        "c", "s", "rate", "greedy", predicted_slope=-1.0, tolerance=0.25, direction=direction, **kw
    )


def test_power_verdict_reasons_state_the_rule():
    rows = _curve("greedy", -1.0)
    for direction, rule in [
        ("at_most", "interval <= -0.75 ("),
        ("at_least", "interval >= -1.25 ("),
        ("about", "interval within -1.25..-0.75 ("),
    ]:
        v = _row(rows, _rate_claim(direction))
        assert v["verdict"] == "holds" and v["reason"].startswith(rule), (direction, v)
        assert v["setting"] == "default" and v["n_seeds"] == 4
        assert (v["n_min"], v["n_max"]) == (10, 1000)
    # an interval across the threshold, from below: inconclusive, in so many words
    # (two seeds with slopes -1.0 and -1.5: the seed bootstrap's interval is [-1.5, -1.0])
    rows = [
        dict(experiment="rate", method="greedy", n=n, seed=s, loss_train=n ** (-1.0 - 0.5 * s))
        for s in range(2)
        for n in (10, 20, 40, 80, 160)
    ]
    v = _row(rows, _rate_claim("at_least"))
    assert v["verdict"] == "inconclusive", v


def test_no_data_rows_carry_every_column():
    v = _row(_curve("greedy", -1.0), _rate_claim("at_most", metric="no_such_column"))
    assert v["verdict"] == "no data" and v["reason"] == "no rows for rate/greedy"
    assert all(np.isnan(v[k]) for k in ("measured_slope", "ci_low", "ci_high", "n_min", "n_max"))
    # a fit range holding one n: the fit's error becomes the reason
    v = _row(_curve("greedy", -1.0), _rate_claim("at_most"), n_range=(10, 10))
    assert v["verdict"] == "no data" and v["reason"]
    # a filter on a column the table lacks selects nothing: no verdict row at all
    assert _row(_curve("greedy", -1.0), _rate_claim("at_most", where={"nope": 1})) is None


def test_exponential_verdict_needs_a_falling_log_loss():
    ns = np.arange(1, 41)
    claim = Claim("e", "s", "rate", "greedy", form="exponential")
    for rate, want in [(-0.2, "holds"), (0.2, "fails")]:
        rows = [
            dict(
                experiment="rate",
                method="greedy",
                n=int(n),
                seed=s,
                loss_train=math.exp(rate * n + 0.01 * s),
            )
            for s in range(3)
            for n in ns
        ]
        v = _row(rows, claim)
        assert v["verdict"] == want, (rate, v)
        assert v["reason"].startswith("log-loss slope per neuron; R^2 exponential ")
        assert " vs power " in v["reason"]


def test_bound_verdict_reports_the_fit_range_and_all_rows():
    rows = [
        dict(
            experiment="bounds",
            method="greedy",
            n=n,
            seed=0,
            e_n=(0.5 if n <= 100 else 2.0),
            bound=1.0,
        )
        for n in (10, 30, 100, 300)
    ]
    claim = Claim("b", "s", "bounds", "greedy", metric="e_n", form="bound", bound_column="bound")
    v = _row(rows, claim, n_range=(10, 100))
    assert v["verdict"] == "fails"
    assert v["reason"] == "max e_n/bound = 2 over all 4 rows (0.5 in the fit range)"
    v = _row(rows, claim, n_range=(1000, 2000))
    assert v["reason"].endswith("(none in range)")


def test_less_than_verdict_is_a_ratio_below_one():
    base = _curve("gd", -1.0)
    claim = Claim("l", "s", "rate", "greedy", form="less_than", versus="gd")
    for factor, want in [(math.exp(-0.5), "holds"), (math.exp(0.5), "fails")]:
        rows = base + [dict(r, method="greedy", loss_train=r["loss_train"] * factor) for r in base]
        v = _row(rows, claim)
        assert v["verdict"] == want
        assert v["reason"].startswith(f"loss_train ratio greedy/gd = {factor:.3g} ")
    # no (n, seed) in common: no data
    rows = base + [dict(r, method="greedy", seed=r["seed"] + 10) for r in base]
    v = _row(rows, claim)
    assert v["verdict"] == "no data" and v["reason"] == "no paired rows with gd"


def test_rate_fit_as_dict():
    fit = fit_rate([1, 2, 4, 8], [1.0, 0.5, 0.25, 0.125], n_boot=20)
    d = fit.as_dict()
    assert d["slope"] == pytest.approx(-1.0) and set(d) >= {"slope", "ci_low", "ci_high", "n_min"}
