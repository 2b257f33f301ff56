"""The knee sweep (n* against the measured knee) and the pretraining-budget measurement."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from greedyprune.select import SquaredLoss, greedy_select
from greedyprune.sims.two_layer import bounds_experiment, pretrain
from greedyprune.sims.two_layer import budget as bx
from greedyprune.sims.two_layer import sweep as sx
from greedyprune.sims.two_layer.setting import Setting

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = Setting(name="tiny", activation="tanh", m=6, d=2, m_test=5, width=60, steps=40)


# ------------------------------------------------------------------------ local slopes, knee


def _slow_local_slopes(n, e, window):
    """The definition, one polyfit per centre."""
    half = math.sqrt(window)
    cs, ss = [], []
    for c in range(int(n[0]), int(n[-1]) + 1):
        if c / half < n[0] - 1e-9 or c * half > n[-1] + 1e-9:
            continue
        keep = (n >= c / half - 1e-9) & (n <= c * half + 1e-9) & (e > 0)
        if keep.sum() < 3:
            continue
        cs.append(c)
        ss.append(np.polyfit(np.log(n[keep]), np.log(e[keep]), 1)[0])
    return np.array(cs, float), np.array(ss)


@pytest.mark.parametrize("window", [2.0, 3.0])
def test_local_slopes_match_one_polyfit_per_centre(window):
    gen = np.random.default_rng(0)
    n = np.arange(1, 301, dtype=float)
    e = n**-1.3 * np.exp(0.2 * gen.standard_normal(n.size))
    e[[40, 41, 200]] = 0.0  # unusable points are left out of every window
    c, s = sx.local_slopes(n, e, window=window)
    c0, s0 = _slow_local_slopes(n, e, window)
    np.testing.assert_array_equal(c, c0)
    np.testing.assert_allclose(s, s0, rtol=1e-8, atol=1e-10)


def test_local_slope_of_a_power_law_is_its_exponent():
    n = np.arange(1, 501, dtype=float)
    _, s = sx.local_slopes(n, 3.0 * n**-1.7)
    np.testing.assert_allclose(s, -1.7, atol=1e-10)


@pytest.mark.parametrize("n_c", [12.0, 50.0, 180.0])
def test_knee_of_the_smooth_crossover_is_its_crossover(n_c):
    """e_n = A / (n (1 + n / n_c)) has local slope -1 - (n/n_c) / (1 + n/n_c): -1.5 at n_c."""
    n = np.arange(1, 1001, dtype=float)
    k = sx.find_knee(n, 2.0 / (n * (1 + n / n_c)))
    assert k["status"] == "found"
    assert k["knee"] == pytest.approx(n_c, rel=0.03)


def test_knee_is_interpolated_between_the_centres_that_bracket_the_crossing():
    """The knee is the point between the two integer centres around the crossing where the
    straight line (in log n) through their slopes meets -1.5: recomputed from the slow slopes."""
    n = np.arange(1, 401, dtype=float)
    e = 1.0 / (n * (1 + n / 12.5))
    c, s = _slow_local_slopes(n, e, sx.SLOPE_WINDOW)
    k = int(np.flatnonzero(s <= sx.KNEE_SLOPE)[0])
    t = (sx.KNEE_SLOPE - s[k - 1]) / (s[k] - s[k - 1])
    want = math.exp(math.log(c[k - 1]) + t * math.log(c[k] / c[k - 1]))
    assert c[k - 1] < want < c[k]
    assert sx.find_knee(n, e)["knee"] == pytest.approx(want, rel=1e-9)


def test_knee_of_a_sharp_min_of_two_envelopes_is_where_they_cross():
    """min(D^2/n, C/n^2) turns at n = C / D^2; the symmetric window puts -1.5 there."""
    n = np.arange(1, 2001, dtype=float)
    D2, C = 4.0, 4.0 * 150.0
    k = sx.find_knee(n, np.minimum(D2 / n, C / n**2))
    assert k["status"] == "found"
    assert k["knee"] == pytest.approx(150.0, rel=0.05)


def test_censored_knees_say_which_side():
    n = np.arange(1, 401, dtype=float)
    steep = sx.find_knee(n, n**-2.2)
    assert steep["status"] == "steep_throughout" and math.isnan(steep["knee"])
    # the first window with 3 integers inside 1..400 is centred at 4 ([2.8, 5.7]), the last at 282
    assert steep["first"] == 4.0 and steep["last"] == 282.0
    slow = sx.find_knee(n, n**-1.0)
    assert slow["status"] == "no_knee_in_range"
    assert sx.find_knee([1.0, 2.0], [1.0, 0.5])["status"] == "too_short"


def test_a_wiggle_is_not_a_knee_and_an_early_transient_is_skipped():
    """Steep start (n < 6), a slow phase with a brief dip near n = 20, fast from n = 200."""
    n = np.arange(1, 1001, dtype=float)
    loge = np.where(n < 6, -2.5 * np.log(n), -2.5 * np.log(6) - (np.log(n) - np.log(6)))
    loge = loge - 0.6 * np.exp(-(((np.log(n) - np.log(20)) / 0.08) ** 2))  # a dip
    loge = loge - np.log1p(n / 200.0)
    c, s = sx.local_slopes(n, np.exp(loge))
    assert (s[(c > 15) & (c < 20)] < -1.5).any()  # the wiggle does cross -1.5 briefly
    k = sx.find_knee(n, np.exp(loge))
    assert k["status"] == "found"
    assert k["knee"] == pytest.approx(200.0, rel=0.1)


def test_band_status():
    f = sx.KNEE_FACTOR
    assert f == pytest.approx(4 * math.sqrt(2))
    kw = dict(first=3.0, last=700.0)
    assert sx.band_status("found", 100.0, 100.0 * f * 0.99, **kw) == "in_band"
    assert sx.band_status("found", 100.0, 100.0 * f * 1.01, **kw) == "out_of_band"
    assert sx.band_status("found", 100.0, 100.0 / f / 1.01, **kw) == "out_of_band"
    assert sx.band_status("found", 100.0, float("inf"), **kw) == "no_prediction"
    assert sx.band_status("found", 100.0, float("nan"), **kw) == "no_prediction"
    # censored: (0, first] or (last, inf) against [n*/f, n* f]
    assert sx.band_status("steep_throughout", np.nan, 3.0 * f, **kw) == "censored_compatible"
    assert sx.band_status("steep_throughout", np.nan, 3.0 * f * 1.01, **kw) == "out_of_band"
    assert sx.band_status("no_knee_in_range", np.nan, 700.0 / f * 1.01, **kw) == (
        "censored_compatible"
    )
    assert sx.band_status("no_knee_in_range", np.nan, 700.0 / f / 1.01, **kw) == "out_of_band"
    assert sx.band_status("too_short", np.nan, 10.0, **kw) == "no_knee_measured"


# ------------------------------------------------------------------------- knee experiment


def test_knee_experiment_reports_what_bounds_experiment_measured():
    rows = pd.DataFrame(sx.knee_experiment(TINY, 0, n_max=48, margin_restarts=4))
    ref = pd.DataFrame(bounds_experiment(TINY, 0, n_max=48, margin_restarts=4))
    for target in sx.TARGETS:
        r = ref[ref["target"] == target].sort_values("n")
        summ = rows[(rows["record"] == "summary") & (rows["target"] == target)].iloc[0]
        assert summ["n_star"] == pytest.approx(r["n_star"].iloc[0])
        assert summ["D"] == pytest.approx(r["D"].iloc[0])
        k = sx.find_knee(r["n"].to_numpy(float), r["e_n"].to_numpy(float))
        assert summ["knee_status"] == k["status"]
        assert summ["knee"] == pytest.approx(k["knee"], nan_ok=True)
        slope = np.polyfit(np.log(r["n"][r["n"] >= 4.8]), np.log(r["e_n"][r["n"] >= 4.8]), 1)[0]
        assert summ["slope_last_decade"] == pytest.approx(slope)
        curve = rows[(rows["record"] == "curve") & (rows["target"] == target)]
        e = dict(zip(r["n"], r["e_n"]))
        for n, v in zip(curve["n"], curve["e_n"]):
            assert v == pytest.approx(e[n])
    # toward f_N there is always a prediction (the centroid is inside); its in_hull is 1
    f_n = rows[(rows["record"] == "summary") & (rows["target"] == "f_N")].iloc[0]
    assert f_n["in_hull"] == 1.0 and f_n["r_est"] > 0


def test_no_prediction_toward_y_outside_the_hull(monkeypatch):
    real = sx.bounds_experiment

    def outside(*a, **k):
        rows = real(*a, **k)
        for r in rows:
            if r["target"] == "y":
                r["in_hull"] = 0.0
        return rows

    monkeypatch.setattr(sx, "bounds_experiment", outside)
    rows = pd.DataFrame(sx.knee_experiment(TINY, 1, n_max=32, margin_restarts=4))
    y = rows[(rows["record"] == "summary") & (rows["target"] == "y")].iloc[0]
    assert y["band"] == "no_prediction"
    table = sx.knee_table(rows)
    assert table.set_index("target").loc["y", "band"] == "no_prediction"


def test_quick_sweep_runs_resumes_and_tabulates(tmp_path):
    cfg = replace(sx.SWEEPS["quick"], ms=(5,), activations=("tanh",), n_max=32, width=50)
    done = sx.run_sweep(cfg, tmp_path / "run")
    table = done.summary
    assert sorted(table["target"]) == ["f_N", "y"]
    assert set(table["band"]) <= {
        "in_band",
        "out_of_band",
        "censored_compatible",
        "no_prediction",
        "no_knee_measured",
    }
    assert (tmp_path / "run" / "summary.csv").exists()
    again = sx.run_sweep(cfg, tmp_path / "run")
    assert len(again.results) == len(done.results)  # nothing run twice


def _summary_rows(specs):
    rows = []
    for setting, seed, knee, n_star in specs:
        rows.append(
            dict(
                experiment="knee",
                record="summary",
                target="f_N",
                setting=setting,
                seed=seed,
                activation="tanh",
                d=2,
                m=5,
                n=1000,
                knee=knee,
                knee_status="found" if np.isfinite(knee) else "no_knee_in_range",
                n_star=n_star,
                r_est=0.1,
                D=1.0,
                in_hull=1.0,
                first=2.0,
                last=707.0,
            )
        )
    return pd.DataFrame(rows)


def test_knee_table_and_verdict_by_hand():
    res = _summary_rows(
        [
            ("a", 0, 100.0, 400.0),  # ratio 1/4
            ("a", 1, 50.0, 100.0),  # ratio 1/2
            ("b", 0, 20.0, 20.0 * 8),  # ratio 1/8: out of the 5.66 band
            ("b", 1, 20.0, 20.0 * 8),
            ("c", 0, np.nan, 1e6),  # no knee, predicted far beyond the range: compatible
            ("c", 1, np.nan, 1e6),
        ]
    )
    t = sx.knee_table(res).set_index("setting")
    assert t.loc["a", "knee"] == pytest.approx(math.sqrt(100 * 50))
    assert t.loc["a", "n_star"] == pytest.approx(math.sqrt(400 * 100))
    assert t.loc["a", "ratio"] == pytest.approx(math.sqrt(0.25 * 0.5))
    assert list(t["band"]) == ["in_band", "out_of_band", "censored_compatible"]
    v = sx.knee_verdict(t.reset_index())
    assert v["verdict"] == "fails" and v["judged"] == 2 and v["in_band"] == 1
    assert v["max_off_factor"] == pytest.approx(8.0)
    ok = sx.knee_verdict(t.drop(index="b").reset_index())
    assert ok["verdict"] == "holds" and ok["fraction_in_band"] == 1.0


# ------------------------------------------------------------------------------ the budget


def _slow_steps_needed(steps, loss, target):
    """Scan every pair; the log-log line between the bracketing checkpoints."""
    for i, (s, v) in enumerate(zip(steps, loss)):
        if v <= target:
            if i == 0:
                return 0.0
            s0, v0 = steps[i - 1], loss[i - 1]
            if s0 == 0:
                return s0 + (s - s0) * (math.log(target / v0) / math.log(v / v0))
            return math.exp(
                math.log(s0) + math.log(s / s0) * math.log(target / v0) / math.log(v / v0)
            )
    return float("nan")


def test_steps_needed_is_exact_on_a_power_law_and_matches_the_scan():
    steps = np.array(bx.checkpoint_grid(30000))
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == 30000
    loss = 2.0 * np.maximum(steps, 1.0) ** -0.8  # log-log linear past step 1
    for target in (0.5, 0.01, 0.003):
        exact = (2.0 / target) ** (1 / 0.8)
        r = bx.steps_needed(steps, loss, target)
        assert r["status"] == "reached"
        assert r["steps_needed"] == pytest.approx(exact, rel=1e-9)
        assert r["grid_step"] == steps[steps >= exact][0]
        assert r["steps_needed"] == pytest.approx(_slow_steps_needed(steps, loss, target))
    gen = np.random.default_rng(1)
    wiggly = np.exp(np.cumsum(gen.normal(-0.2, 0.3, steps.size)))
    for target in (0.5, 0.1, 0.02):
        r = bx.steps_needed(steps, wiggly, target)
        assert r["steps_needed"] == pytest.approx(
            _slow_steps_needed(list(steps), list(wiggly), target), nan_ok=True
        )


def test_steps_needed_statuses():
    steps = [0, 1, 10, 100]
    assert bx.steps_needed(steps, [0.1, 0.05, 0.01, 0.001], 0.2)["status"] == "at_init"
    r = bx.steps_needed(steps, [1.0, 0.5, 0.3, 0.2], 0.1)
    assert r["status"] == "not_reached" and math.isnan(r["steps_needed"])
    r = bx.steps_needed(steps, [1.0, 0.1, 0.01, 0.001], 0.5)  # between 0 and 1: linear in steps
    assert 0 < r["steps_needed"] <= 1
    with pytest.raises(ValueError):
        bx.steps_needed([0, 5, 5], [1, 1, 1], 0.5)


def test_fits_recover_planted_forms_and_the_verdict_picks_the_right_one():
    ms = np.array([5, 16, 50, 160, 500], float)
    gen = np.random.default_rng(2)
    rows_log, rows_pow = [], []
    for seed in range(6):
        for m in ms:
            noise = math.exp(0.03 * gen.standard_normal())
            rows_log.append(
                dict(
                    m=m, seed=seed, status="reached", steps_needed=(200 + 300 * math.log(m)) * noise
                )
            )
            rows_pow.append(
                dict(m=m, seed=seed, status="reached", steps_needed=40 * m**0.6 * noise)
            )
    a, b, _ = bx.fit_log(ms, 200 + 300 * np.log(ms))
    assert (a, b) == (pytest.approx(200), pytest.approx(300))
    c, p, _ = bx.fit_power(ms, 40 * ms**0.6)
    assert (c, p) == (pytest.approx(40), pytest.approx(0.6))
    vl = bx.compare_fits(pd.DataFrame(rows_log), n_boot=300)
    vp = bx.compare_fits(pd.DataFrame(rows_pow), n_boot=300)
    assert vl["verdict"] == "log fits better" and vl["r2_log"] > vl["r2_power"]
    assert vp["verdict"] == "power fits better" and vp["r2_power"] > vp["r2_log"]
    censored = pd.DataFrame(rows_log).assign(status="not_reached")
    assert bx.compare_fits(censored)["verdict"] == "no data"


def test_fit_log_finds_a_negative_intercept():
    """The measured steps fit T = a + b log m with a < 0 (T = 0 below the smallest m)."""
    ms = np.array([5, 10, 20, 50, 100, 200, 500], float)
    a, b, rss = bx.fit_log(ms, -16.0 + 17.5 * np.log(ms))
    assert (a, b) == (pytest.approx(-16.0), pytest.approx(17.5))
    assert rss == pytest.approx(0.0, abs=1e-12)


def test_fit_log_is_the_least_squares_optimum():
    """No (a, b) on a fine grid around the answer beats it."""
    ms = np.array([5, 16, 50, 160, 500], float)
    t = np.array([300.0, 700.0, 900.0, 2000.0, 2600.0])
    a, b, rss = bx.fit_log(ms, t)
    y = np.log(t)
    for da in np.linspace(-0.2, 0.2, 21):
        for db in np.linspace(-0.2, 0.2, 21):
            aa, bb = a + abs(a) * da, b + abs(b) * db
            z = aa + bb * np.log(ms)
            if np.all(z > 0):
                assert ((y - np.log(z)) ** 2).sum() >= rss - 1e-9


def test_budget_checkpoint_is_the_pretrained_network():
    """Training in pieces to step S gives pretrain()'s network at steps=S: same greedy loss."""
    s = replace(TINY, name="ckpt", steps=30)
    rows = pd.DataFrame(bx.budget_experiment(s, 3, checkpoints=(0, 7, 30), sizes=(4, 9)))
    data, big, _ = pretrain(s, 3)
    phi = big.features(data.x_train)
    ref = greedy_select(SquaredLoss(phi, data.y_train), 9).losses
    got = rows[rows["step"] == 30].set_index("n")["loss_train"]
    assert got[4] == pytest.approx(float(ref[3]), rel=1e-10)
    assert got[9] == pytest.approx(float(ref[8]), rel=1e-10)
    dense = float(0.5 * (big(data.x_train) - data.y_train).pow(2).mean())
    assert rows[rows["step"] == 30]["dense_loss"].iloc[0] == pytest.approx(dense, rel=1e-10)
    loss0 = float(0.5 * data.y_train.pow(2).mean())
    np.testing.assert_allclose(rows["loss_rel"], rows["loss_train"] / loss0)
    # step 0 is the initialisation: greedy from the untrained features
    from greedyprune.sims.two_layer.experiments import make_data

    init = pretrain(replace(s, steps=0), 3)[1]
    ref0 = greedy_select(SquaredLoss(init.features(make_data(s, 3).x_train), data.y_train), 9)
    got0 = rows[rows["step"] == 0].set_index("n")["loss_train"]
    assert got0[9] == pytest.approx(float(ref0.losses[8]), rel=1e-10)
    assert torch.get_num_threads() == 1


def test_quick_budget_runs_and_tabulates(tmp_path):
    cfg = replace(bx.BUDGETS["quick"], ms=(5, 10), seeds=2, max_steps=30)
    done = bx.run_budget(cfg, tmp_path / "b")
    t = done.summary
    assert len(t) == 4 and set(t["m"]) == {5, 10}
    assert set(t["status"]) <= {"reached", "at_init", "not_reached"}
    assert set(done.results["step"]) == set(cfg.checkpoints)


def test_commands_run_the_quick_configs(tmp_path, capsys):
    import json

    assert sx.main(["--preset", "quick", "--out", str(tmp_path / "k")]) == 0
    v = json.loads((tmp_path / "k" / "verdict.json").read_text())
    assert set(v) == {"f_N", "y"} and v["f_N"]["factor"] == pytest.approx(sx.KNEE_FACTOR)
    assert bx.main(["--preset", "quick", "--out", str(tmp_path / "b")]) == 0
    fits = json.loads((tmp_path / "b" / "fits.json").read_text())
    assert "verdict" in fits
    assert "wall time" in capsys.readouterr().out


def test_verify_two_layer_preset_sweep_is_the_full_knee_sweep(tmp_path, monkeypatch, capsys):
    """`verify two-layer --preset sweep` runs the knee sweep's full configuration (the sweep itself
    is replaced here: it takes minutes); flags that only shape the verification are refused in
    one line, before any folder is made."""
    from greedyprune.cli import main

    seen = []
    monkeypatch.setattr(sx, "run", lambda args: seen.append(vars(args)) or 0)
    out = tmp_path / "s"
    assert main(["verify", "two-layer", "--preset", "sweep", "--out", str(out)]) == 0
    assert seen == [dict(preset="full", out=str(out), device="cpu", progress=None)]
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "two-layer", "--preset", "sweep", "--no-progress"]) == 0
    assert seen[1]["out"] == "runs/two_layer_sweep" and seen[1]["progress"] is False
    for extra in (["--set", "d=3"], ["--seeds", "0,1"], ["--strict"], ["--no-figures"]):
        capsys.readouterr()
        assert main(["verify", "two-layer", "--preset", "sweep", "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and extra[0] in err[0] and "--preset sweep" in err[0], err
    assert len(seen) == 2 and not out.exists()
    capsys.readouterr()
    assert main(["verify", "two-layer", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope' is not known" in err and "quick" in err and "sweep" in err, err


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "run-folders"


def test_the_knee_claims_are_the_knee_verdict_setting_by_setting():
    """verdicts.csv's knee claims agree with ``knee_verdict``: per target, the settings that hold
    are the ones in band, those that fail out of band, the rest inconclusive."""
    from greedyprune.theory import check

    results = pd.read_csv(FIXTURES / "two-layer-knee" / "results.csv")
    table = sx.knee_table(results)
    verdicts = check(results, sx.knee_claims(), n_boot=100)
    for target in sx.TARGETS:
        mine = verdicts[verdicts["claim"] == f"knee_near_n_star_{target}"]
        overall = sx.knee_verdict(table, target)
        assert len(mine) == overall["settings"]
        assert (mine["verdict"] == "holds").sum() == overall["in_band"]
        assert (mine["verdict"] == "fails").sum() == overall["judged"] - overall["in_band"]
        bands = table[table["target"] == target].set_index("setting")["band"]
        for row in mine.itertuples():
            expected = {"in_band": "holds", "out_of_band": "fails"}.get(bands[row.setting])
            assert row.verdict == (expected or "inconclusive"), row


def test_the_budget_claim_is_the_fit_comparison_over_every_m():
    from greedyprune.theory import check

    results = pd.read_csv(FIXTURES / "two-layer-budget" / "results.csv")
    verdicts = check(results, bx.budget_claims(), n_boot=200)
    assert list(verdicts["setting"]) == ["all"]  # pooled: one verdict over every m
    fits = bx.compare_fits(bx.steps_table(results), n_boot=200)
    expected = {"log fits better": "holds", "power fits better": "fails"}.get(fits["verdict"])
    assert verdicts["verdict"].iloc[0] == (expected or "inconclusive")
    assert verdicts["measured_slope"].iloc[0] == pytest.approx(fits["power_p"])
