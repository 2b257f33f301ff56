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


@settings(max_examples=30)
@given(N=st.integers(2, 30), m=st.integers(1, 8), s=st.integers(0, 10_000))
def test_proposition_a_greedy_toward_the_mean_obeys_d2_over_n(N, m, s):
    """THEORY.md Proposition A: e_n <= D^2 / n for every n when t = f_N (in the hull)."""
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


def test_b_n_and_its_checks():
    assert np.allclose(b_n([1, 4], [4.0, 1.0]), [2.0, 4.0])
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
