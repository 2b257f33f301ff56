"""How much pretraining is enough: GD steps before greedy at fixed n reaches a target loss, against m.

Wolfe, Liao, Wang, Kim and Kyrillidis ("How much pre-training is enough to discover a good
subnetwork?", arXiv 2108.00259; TMLR 2024) bound the number of gradient-descent pretraining
iterations of a two-layer network (in the NTK regime) after which greedy forward selection finds a
subnetwork with good training error, and the bound grows logarithmically in the data set size m.
This module measures that threshold in this project's mean-field setting and asks which form fits
it better, ``a + b log m`` or ``c m^p``.

For each m and seed, :func:`budget_experiment` trains the width-N network by full-batch GD and
stops at a geometric grid of step counts (checkpoints); at each it runs greedy with replacement
toward the labels and records the training loss of the size-n subnetwork (the prefix losses at
every recorded n come from one greedy run). :func:`steps_needed` finds the first step count at
which that loss reaches the target; :func:`compare_fits` fits both forms and judges which fits
better.

Fixed before measuring (derivations in docs/two_layer_sweep.md):

- the target: ``TARGET_REL``, a fraction of ``L(0) = ||y||^2 / 2``, the training loss of the zero
  function. It is a per-point quantity (``||.||^2`` is the mean over the m points), so it asks for
  the same quality of fit at every m, and dividing by ``L(0)`` removes the scale of the labels.
  Its value and the subnetwork size ``N_SUB`` were chosen on a pilot seed (100) that is not among
  the measured seeds (0-4), only so that the target is reached within the step grid at every m
  and not already at initialisation; the measured seeds were run after they were fixed.
- the comparison: both forms have two parameters and are fitted by least squares on ``log T``
  (the checkpoint grid is geometric, so the error of a measured T is a constant *factor*); the
  better form has the smaller residual sum of squares. The verdict comes from re-sampling whole
  seeds: "log fits better" when the 95% interval of ``RSS_power - RSS_log`` lies above 0, "power
  fits better" when it lies below 0, "inconclusive" otherwise.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from greedyprune.errors import GreedypruneError, check_int
from greedyprune.select import SquaredLoss, greedy_select
from greedyprune.study import Study, StudyResult, run_study
from greedyprune.theory import Claim, ClaimCase, register_form

from .._common import sub_seed
from .._mean_field_net import TwoLayerNet
from .._train import train_many_mean_field
from ._preset_study import preset_arguments, resolve_config, run_preset
from .experiments import make_data
from .setting import Setting

__all__ = [
    "BUDGETS",
    "N_SUB",
    "SENSITIVITY",
    "TARGET_REL",
    "BudgetConfig",
    "add_arguments",
    "budget_experiment",
    "budget_study",
    "checkpoint_grid",
    "compare_fits",
    "fit_log",
    "fit_power",
    "run",
    "run_budget",
    "steps_needed",
    "steps_table",
]

# fixed on the pilot seed 100 ("pilot_small") before the measured seeds 0-4 were run: at n = 100
# greedy's relative loss levels off at 0.03-0.05 for m = 160 and 500 after about 100-200 steps, so
# 0.1 (a fit with R^2 = 0.9 against the zero function) is reached at every m, is not reached at
# initialisation, and lies a factor 2-3 above the floor (a target near the floor would measure how
# slowly a curve creeps to its floor, not how much pretraining greedy needs)
TARGET_REL = 0.1
N_SUB = 100
CI_LEVEL = 0.95
# other (n, target) pairs, judged after the measurement: how much the verdict leans on the choice
SENSITIVITY = ((100, 0.2), (100, 0.05), (30, 0.2), (30, 0.1), (10, 0.2))


def checkpoint_grid(max_steps: int, per_decade: int = 8) -> tuple[int, ...]:
    """0 and about ``per_decade`` integers per decade from 1 to ``max_steps`` (geometric)."""
    check_int("max_steps", max_steps, minimum=1)
    points = max(2, round(per_decade * math.log10(max_steps)) + 1)
    grid = {int(v) for v in np.rint(np.geomspace(1, max_steps, points))}
    return (0, *sorted(grid))


# ---------------------------------------------------------------------------- the experiment


def budget_experiment(
    setting: Setting,
    seed: int,
    *,
    checkpoints,
    sizes,
    device=None,
) -> list[dict]:
    """Greedy's training loss at the sizes ``sizes`` from the network after each checkpoint.

    The width-N network starts from the same initialisation as :func:`pretrain`'s (so its state at
    ``setting.steps`` steps is ``pretrain``'s network) and is trained by full-batch mean-field GD
    (the setting's lr and weight decay; noise must be 0) up to each step count in ``checkpoints``
    (GD keeps no state besides the weights, so training in pieces is training once). Returns one
    row per (checkpoint, size): ``step, n, loss_train`` (greedy with replacement toward y, size n),
    ``loss_rel = loss_train / loss0``, ``loss0 = ||y||^2 / 2`` and the big network's own
    ``dense_loss`` and ``dense_rel``.
    """
    if setting.noise:
        raise GreedypruneError(
            "budget_experiment trains by plain GD: the setting's noise must be 0"
        )
    steps = sorted({int(s) for s in checkpoints})
    if not steps or steps[0] < 0:
        raise GreedypruneError(f"checkpoints={checkpoints!r} must be step counts >= 0")
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 1:
        raise GreedypruneError(f"sizes={sizes!r} must be subnetwork sizes >= 1")
    data = make_data(setting, seed, device)
    x, y = data.x_train, data.y_train
    net = TwoLayerNet.random(
        setting.width,
        setting.d,
        activation=setting.activation,
        b_std=setting.init_b_std,
        seed=sub_seed(seed, "init", "big"),
        dtype=setting.torch_dtype,
        device=device,
    )
    loss0 = float(0.5 * y.pow(2).mean())
    common = dict(
        experiment="budget",
        setting=f"m{setting.m}",
        method="greedy_pretrained",
        seed=int(seed),
        m=setting.m,
        N=setting.width,
        loss0=loss0,
    )
    out: list[dict] = []
    done = 0
    for step in steps:
        if step > done:
            train_many_mean_field(
                [net], x, y, steps=step - done, lr=setting.lr, weight_decay=setting.weight_decay
            )
            done = step
        with torch.no_grad():
            phi = net.features(x)
            dense = float(0.5 * (phi.mean(0) - y).pow(2).mean())
        sel = greedy_select(SquaredLoss(phi, y), sizes[-1])
        losses = sel.losses.cpu().numpy()
        for n in sizes:
            out.append(
                dict(
                    common,
                    step=step,
                    n=n,
                    loss_train=float(losses[n - 1]),
                    loss_rel=float(losses[n - 1]) / loss0,
                    dense_loss=dense,
                    dense_rel=dense / loss0,
                )
            )
    return out


# --------------------------------------------------------------------------- steps needed


def steps_needed(steps, loss, target: float) -> dict:
    """The first step count at which ``loss`` is at or below ``target``.

    steps: increasing checkpoints (0 allowed); loss: the value at each. The crossing is placed by
    linear interpolation of ``log loss`` against ``log step`` between the last checkpoint above
    the target and the first at or below it (against ``step`` when the earlier one is 0).
    Returns ``{"status", "steps_needed", "grid_step"}``: ``"reached"`` (both set; ``grid_step`` is
    the first checkpoint at or below), ``"at_init"`` (already at step 0: ``steps_needed`` = 0),
    ``"not_reached"`` (never, up to the last checkpoint: NaN).
    """
    s = np.asarray(steps, dtype=float).reshape(-1)
    v = np.asarray(loss, dtype=float).reshape(-1)
    if s.shape != v.shape or s.size == 0:
        raise GreedypruneError("steps and loss must be non-empty and of one length")
    if np.any(np.diff(s) <= 0) or s[0] < 0:
        raise GreedypruneError("steps must be increasing and >= 0")
    if not target > 0:
        raise GreedypruneError(f"target={target!r} must be > 0")
    hit = np.flatnonzero(v <= target)
    if hit.size == 0:
        return dict(status="not_reached", steps_needed=float("nan"), grid_step=float("nan"))
    k = int(hit[0])
    if k == 0:
        return dict(status="at_init", steps_needed=0.0, grid_step=float(s[0]))
    v0, v1 = v[k - 1], v[k]
    t = (math.log(target) - math.log(v0)) / (math.log(v1) - math.log(v0)) if v1 > 0 else 1.0
    t = min(max(t, 0.0), 1.0)
    if s[k - 1] > 0:
        x = math.exp(math.log(s[k - 1]) + t * (math.log(s[k]) - math.log(s[k - 1])))
    else:
        x = s[k - 1] + t * (s[k] - s[k - 1])
    return dict(status="reached", steps_needed=float(x), grid_step=float(s[k]))


def steps_table(
    results: pd.DataFrame, *, n: int = N_SUB, target: float = TARGET_REL
) -> pd.DataFrame:
    """One row per (m, seed): :func:`steps_needed` of greedy's relative loss at size n."""
    r = results[(results["experiment"] == "budget") & (results["n"] == n)]
    if r.empty:
        raise GreedypruneError(
            f"no budget rows at n={n}; record it (BudgetConfig.sizes) or pass n="
        )
    rows = []
    for (m, seed), g in r.groupby(["m", "seed"]):
        g = g.sort_values("step")
        res = steps_needed(g["step"], g["loss_rel"], target)
        dense = steps_needed(g["step"], g["dense_rel"], target)
        rows.append(
            dict(
                m=int(m),
                seed=int(seed),
                n=n,
                target_rel=target,
                status=res["status"],
                steps_needed=res["steps_needed"],
                grid_step=res["grid_step"],
                dense_status=dense["status"],
                dense_steps_needed=dense["steps_needed"],
                final_loss_rel=float(g["loss_rel"].iloc[-1]),
                max_step=int(g["step"].iloc[-1]),
            )
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- the fits


def fit_power(m, t) -> tuple[float, float, float]:
    """``T = c m^p`` by least squares on ``log T``: returns ``(c, p, rss)`` (rss of log T)."""
    x, y = np.log(np.asarray(m, float)), np.log(np.asarray(t, float))
    p, logc = np.polyfit(x, y, 1)
    rss = float(((y - logc - p * x) ** 2).sum())
    return float(math.exp(logc)), float(p), rss


def fit_log(m, t) -> tuple[float, float, float]:
    """``T = a + b log m`` by least squares on ``log T`` (a + b log m > 0 at every m given):
    returns ``(a, b, rss)`` (rss of log T).

    Written ``T = A (1 + u log m)`` with ``A = +-exp(alpha)``: for a fixed u the best ``alpha`` is
    the mean residual, so the fit is a one-dimensional search over u, scanned as
    ``u = tan(theta)`` (covering every slope-to-intercept ratio) and refined by golden sections.
    """
    lm = np.log(np.asarray(m, float))
    y = np.log(np.asarray(t, float))

    def rss_of(u: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
        z = sign * (1.0 + np.outer(u, lm))  # [U, P]; T = exp(alpha) * z needs z > 0
        ok = np.all(z > 0, axis=1)
        r = y - np.log(np.where(z > 0, z, 1.0))
        alpha = r.mean(1)
        rss = ((r - alpha[:, None]) ** 2).sum(1)
        return np.where(ok, rss, np.inf), alpha

    best = (math.inf, math.nan, math.nan)
    thetas = np.linspace(-math.pi / 2 + 1e-6, math.pi / 2 - 1e-6, 2001)
    gold = (math.sqrt(5) - 1) / 2
    for sign in (1.0, -1.0):
        vals, _ = rss_of(np.tan(thetas), sign)
        i = int(np.argmin(vals))
        if not np.isfinite(vals[i]):
            continue
        lo, hi = thetas[max(i - 1, 0)], thetas[min(i + 1, thetas.size - 1)]
        for _ in range(60):
            c1, c2 = hi - gold * (hi - lo), lo + gold * (hi - lo)
            v, _ = rss_of(np.tan(np.array([c1, c2])), sign)
            if v[0] <= v[1]:
                hi = c2
            else:
                lo = c1
        cand = np.tan(np.array([(lo + hi) / 2, thetas[i]]))
        v, alpha = rss_of(cand, sign)
        j = int(np.argmin(v))
        if v[j] < best[0]:
            a = sign * math.exp(alpha[j])
            best = (float(v[j]), a, a * float(cand[j]))
    rss, a, b = best
    if not math.isfinite(rss):
        raise GreedypruneError("no a + b log m is positive at every m")
    return float(a), float(b), float(rss)


def _r2(y: np.ndarray, rss: float) -> float:
    tss = float(((y - y.mean()) ** 2).sum())
    return 1 - rss / tss if tss > 0 else float("nan")


def compare_fits(table: pd.DataFrame, *, n_boot: int = 2000, rng: int = 0) -> dict:
    """Fit ``a + b log m`` and ``c m^p`` to the reached (m, seed) steps and judge which fits better.

    Uses the rows with status ``"reached"``. Both fits are least squares on ``log T`` over every
    reached (m, seed) point. The interval of ``RSS_power - RSS_log`` comes from re-sampling whole
    seeds (each re-sample refits both forms). Returns the parameters, the RSS and R^2 (of log T)
    of each, the per-m mean log residuals, the interval and the verdict.
    """
    r = table[table["status"] == "reached"]
    if r["m"].nunique() < 3:
        return dict(verdict="no data", reason=f"steps reached at {r['m'].nunique()} m values (< 3)")
    m, t, seeds = r["m"].to_numpy(float), r["steps_needed"].to_numpy(float), r["seed"].to_numpy()
    y = np.log(t)
    a, b, rss_l = fit_log(m, t)
    c, p, rss_p = fit_power(m, t)
    ms = np.unique(m)
    res_l = {int(v): float(np.mean(y[m == v] - np.log(a + b * np.log(v)))) for v in ms}
    res_p = {int(v): float(np.mean(y[m == v] - np.log(c * v**p))) for v in ms}
    gen = np.random.default_rng(rng)
    uniq = np.unique(seeds)
    diffs = []
    for _ in range(n_boot):
        pick = gen.choice(uniq, size=uniq.size, replace=True)
        idx = np.concatenate([np.flatnonzero(seeds == s) for s in pick])
        if np.unique(m[idx]).size < 3:
            continue
        try:
            diffs.append(fit_power(m[idx], t[idx])[2] - fit_log(m[idx], t[idx])[2])
        except ValueError:
            continue
    alpha = (1 - CI_LEVEL) / 2
    lo, hi = (
        (float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha)))
        if diffs
        else (math.nan, math.nan)
    )
    if not diffs:
        verdict = "inconclusive"
    elif lo > 0:
        verdict = "log fits better"
    elif hi < 0:
        verdict = "power fits better"
    else:
        verdict = "inconclusive"
    return dict(
        verdict=verdict,
        points=len(r),
        ms=[int(v) for v in ms],
        log_a=a,
        log_b=b,
        rss_log=rss_l,
        r2_log=_r2(y, rss_l),
        power_c=c,
        power_p=p,
        rss_power=rss_p,
        r2_power=_r2(y, rss_p),
        rss_diff=rss_p - rss_l,
        rss_diff_lo=lo,
        rss_diff_hi=hi,
        boot=len(diffs),
        residual_log=res_l,
        residual_power=res_p,
    )


# ------------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class BudgetConfig:
    """The measurement: every m in ``ms``, ``seeds`` replicates, checkpoints up to ``max_steps``.

    base: the setting every m shares (its ``m`` and ``steps`` are replaced); sizes: subnetwork
    sizes recorded at each checkpoint (``N_SUB`` among them); per_decade: checkpoints per decade;
    first_seed: the first replicate; n_boot: seed re-samples of the fit comparison (command only).
    """

    name: str
    ms: tuple[int, ...]
    seeds: int
    max_steps: int
    sizes: tuple[int, ...]
    base: Setting
    per_decade: int = 8
    first_seed: int = 0
    n_boot: int = 2000

    def __post_init__(self):
        if len(self.ms) < 1 or min(self.ms) < 1:
            raise GreedypruneError(f"budget {self.name!r}: ms={self.ms!r} must be sizes >= 1")
        check_int("seeds", self.seeds, minimum=1, fix=f"budget {self.name!r}")
        checkpoint_grid(self.max_steps, self.per_decade)

    @property
    def checkpoints(self) -> tuple[int, ...]:
        return checkpoint_grid(self.max_steps, self.per_decade)

    def setting(self, m: int) -> Setting:
        return replace(self.base, name=f"m{m}", m=int(m), steps=self.max_steps)

    def config(self, device: str = "cpu") -> dict:
        cfg = asdict(self)
        del cfg["n_boot"]  # analysis only: it changes no row, so a run resumes whatever it is
        cfg["base"] = self.base.as_dict()
        cfg["checkpoints"] = list(self.checkpoints)
        cfg["device"] = device
        return cfg


_BASE = Setting(name="budget", activation="tanh", d=5, width=500, lr=0.05)

BUDGETS: dict[str, BudgetConfig] = {
    "quick": BudgetConfig(
        name="quick",
        ms=(5, 10, 20),
        seeds=2,
        max_steps=100,
        sizes=(10, N_SUB),
        base=replace(_BASE, width=100, m_test=10, init_b_std=0.01),
        per_decade=4,
        n_boot=100,
    ),
    # the pilots: one seed that the measurement does not use. "pilot" (the default
    # initialisation, output weights ~ N(0, 1)) showed that pretraining does not matter there
    # (docs/two_layer_sweep.md); "pilot_small" fixed TARGET_REL and N_SUB for the measurement
    "pilot": BudgetConfig(
        name="pilot",
        ms=(5, 16, 50, 160, 500),
        seeds=1,
        first_seed=100,
        max_steps=30000,
        sizes=(10, 30, 100),
        base=_BASE,
    ),
    "pilot_small": BudgetConfig(
        name="pilot_small",
        ms=(5, 16, 50, 160, 500),
        seeds=1,
        first_seed=100,
        max_steps=10000,
        sizes=(10, 30, 100),
        base=replace(_BASE, init_b_std=0.01),
    ),
    # the measurement: the pilot reached the target within about 100 steps at every m, so 1000
    # steps leave a factor 10 of headroom; 16 checkpoints per decade
    "full": BudgetConfig(
        name="full",
        ms=(5, 10, 20, 50, 100, 200, 500),
        seeds=5,
        max_steps=1000,
        sizes=(10, 30, N_SUB),
        base=replace(_BASE, init_b_std=0.01),
        per_decade=16,
    ),
}


def budget_units(config: BudgetConfig, device: str = "cpu") -> Iterable[tuple[str, object]]:
    """(unit id, thunk) pairs ``budget/m<m>/<seed>``, seed by seed."""
    for seed in range(config.first_seed, config.first_seed + config.seeds):
        for m in config.ms:
            yield (
                f"budget/m{m}/{seed}",
                lambda m=m, seed=seed: budget_experiment(
                    config.setting(m),
                    seed,
                    checkpoints=config.checkpoints,
                    sizes=config.sizes,
                    device=device,
                ),
            )


def _judge_log_growth(case: ClaimCase) -> dict:
    """A ``log_growth`` claim, pooled over the settings (each setting is one m): the steps table
    of every (m, seed) and :func:`compare_fits` with ``case.n_boot`` seed re-samples; "log fits
    better" holds, "power fits better" fails, else inconclusive. ``measured_slope`` is the power
    fit's exponent p (of T ~ c m^p), ``n_min..n_max`` the range of m."""
    fits = compare_fits(steps_table(case.df), n_boot=case.n_boot)
    if fits["verdict"] == "no data":
        raise GreedypruneError(fits["reason"])
    case.out.update(measured_slope=fits["power_p"], n_min=min(fits["ms"]), n_max=max(fits["ms"]))
    verdict = {"log fits better": "holds", "power fits better": "fails"}.get(
        fits["verdict"], "inconclusive"
    )
    reason = (
        f"{fits['verdict']}: RSS(power) - RSS(log) of log T = {fits['rss_diff']:.3g} "
        f"[{fits['rss_diff_lo']:.3g}, {fits['rss_diff_hi']:.3g}] over {fits['points']} points; "
        f"R^2 log {fits['r2_log']:.3f}, power {fits['r2_power']:.3f}"
    )
    return case.verdict(verdict, reason)


register_form("log_growth", _judge_log_growth)


def budget_claims() -> list[Claim]:
    """The budget study's one claim, judged on every m together."""
    return [
        Claim(
            "steps_grow_like_log_m",
            f"the pretraining steps greedy needs at n={N_SUB} grow like log m with the data size "
            "m (a + b log m fits log T better than c m^p)",
            "budget",
            "greedy_pretrained",
            form="log_growth",
            pooled=True,
            source="docs/theory.md: the budget study",
        )
    ]


def budget_study(config: BudgetConfig, device: str = "cpu") -> Study:
    """The :class:`~greedyprune.study.Study` of a budget measurement: its units, the claim
    (``verdicts.csv``, setting ``all``) and the steps table as summary."""
    return Study(
        name=f"two-layer budget {config.name}",
        config=config.config(device),
        units=lambda dev: budget_units(config, dev),
        claims=budget_claims(),
        summary=steps_table,
        cpu_threads=1,
    )


def run_budget(
    config: str | BudgetConfig = "quick",
    out="runs/two_layer_budget",
    *,
    device: str = "cpu",
    progress: bool | None = None,
) -> StudyResult:
    """Run (or resume) a budget measurement into ``out``; ``summary.csv`` holds :func:`steps_table`."""
    cfg = resolve_config(config, BUDGETS, BudgetConfig, "the budget study")
    study = budget_study(cfg, device)
    return run_study(study, out, device=device, progress=progress, n_boot=cfg.n_boot)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options (for ``greedyprune.cli``'s command table, or :func:`main`)."""
    help_ = "which configuration of the pretraining-budget measurement to run (quick: seconds, for tests)"
    preset_arguments(parser, BUDGETS, help_, "runs/two_layer_budget_<preset>")


def main(argv: list[str] | None = None) -> int:
    """``greedyprune verify two-layer-budget --preset full``."""
    p = argparse.ArgumentParser(description="pretraining steps greedy needs at fixed n, against m")
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args) -> int:
    """Run (or resume) the measurement of ``--preset``; print the steps table, the fits and the
    sensitivity table (also written to ``fits.json`` and ``sensitivity.csv`` in the run folder)."""
    import json

    cfg, done, out, t0 = run_preset(
        args, BUDGETS, budget_study, "runs/two_layer_budget_<preset>", n_boot=lambda c: c.n_boot
    )
    table = done.summary
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    fits = compare_fits(table, n_boot=cfg.n_boot)
    (out / "fits.json").write_text(json.dumps(fits, indent=2, default=float) + "\n")
    print(json.dumps(fits, indent=2, default=float))
    sens = []
    for n, target in SENSITIVITY:
        if n not in cfg.sizes:
            continue
        t = steps_table(done.results, n=n, target=target)
        f = compare_fits(t, n_boot=max(10, cfg.n_boot // 2))
        sens.append(
            dict(
                n=n,
                target_rel=target,
                **t["status"].value_counts().to_dict(),
                **{k: f.get(k) for k in ("verdict", "r2_log", "r2_power", "power_p")},
                rss_diff_lo=f.get("rss_diff_lo"),
                rss_diff_hi=f.get("rss_diff_hi"),
            )
        )
    if sens:
        sens = pd.DataFrame(sens)
        sens.to_csv(out / "sensitivity.csv", index=False)
        print(sens.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wall time: {time.perf_counter() - t0:.1f} s; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
