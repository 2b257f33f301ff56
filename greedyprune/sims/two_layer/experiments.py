"""Two-layer experiments: each is a function of (setting, seed, sizes) returning tidy records.

A record is one measurement: ``experiment, setting, method, n, seed, loss_train, loss_test,
discrepancy`` plus experiment-specific columns. Losses are ``||f - y||^2 / 2`` with
``||h||^2 = (1/m) sum_j h(x_j)^2`` on the training or the test set; ``discrepancy`` is
``||f - f_N||^2 / 2`` on the training inputs, the distance to the big (pretrained or random)
network the subnetwork was taken from.

Methods: ``greedy_pretrained`` (greedy with replacement from the pretrained width-N network, toward
the labels), ``gd_scratch`` (a width-n network trained from a fresh initialisation with the same
data and budget), ``random_subset`` (uniform with replacement), ``magnitude`` (largest feature
norms), ``greedy_corrective`` (re-weighted greedy), ``greedy_random`` (greedy from a random-weight
network), ``greedy_finetuned`` / ``gd_retrain`` (fine-tune the greedy subnetwork vs re-train the
same width from scratch with the same budget).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from greedyprune.errors import GreedypruneError, check_int
from greedyprune.select import (
    SquaredLoss,
    greedy_select,
    magnitude,
    random_subset,
)
from greedyprune.theory import bound_constants, hull_membership, margin_estimate

from .._common import PretrainCache, sub_seed
from .._data import Dataset, make_dataset
from .._mean_field_net import TwoLayerNet
from .._train import train_many_mean_field, train_mean_field
from .setting import Setting

__all__ = [
    "EXPERIMENTS",
    "METHODS",
    "PRETRAINED",
    "bounds_experiment",
    "finetune_experiment",
    "make_data",
    "pretrain",
    "random_weights_experiment",
    "rate_experiment",
    "regime_experiment",
]


def make_data(setting: Setting, seed: int, device=None) -> Dataset:
    """The data set of ``setting`` for replicate ``seed`` (train and test)."""
    common = dict(m=setting.m, d=setting.d, m_test=setting.m_test, seed=sub_seed(seed, "data"))
    if setting.data == "teacher_student":
        kw = dict(common, teacher_width=setting.teacher_width, activation=setting.activation)
    else:
        kw = dict(common, delta=setting.delta)
    return make_dataset(setting.data, dtype=setting.torch_dtype, device=device, **kw)


def _student(setting: Setting, width: int, seed: int, tag, device) -> TwoLayerNet:
    return TwoLayerNet.random(
        width,
        setting.d,
        activation=setting.activation,
        b_std=setting.init_b_std,
        seed=sub_seed(seed, "init", tag),
        dtype=setting.torch_dtype,
        device=device,
    )


def _train_kwargs(setting: Setting, steps: int | None = None) -> dict:
    return dict(
        steps=setting.steps if steps is None else steps,
        lr=setting.lr,
        weight_decay=setting.weight_decay,
    )


def _train(nets: list[TwoLayerNet], data: Dataset, setting: Setting, steps=None, progress=False):
    if setting.noise:
        for i, net in enumerate(nets):
            train_mean_field(
                net,
                data.x_train,
                data.y_train,
                noise=setting.noise,
                seed=i,
                progress=progress,
                **_train_kwargs(setting, steps),
            )
        return
    train_many_mean_field(
        nets, data.x_train, data.y_train, progress=progress, **_train_kwargs(setting, steps)
    )


# the width-N networks of the last few (setting, seed, device): see ``pretrain``
PRETRAINED = PretrainCache(4)

# Every name the ``method`` column of the two-layer records takes (rate: the first five; bounds:
# "greedy"; random_weights: "greedy_random"; finetune: "greedy_pretrained" and the last two;
# regime: "greedy_pretrained", "gd_scratch"). Each has a style in greedyprune.plots.
METHODS = (
    "greedy_pretrained",
    "gd_scratch",
    "random_subset",
    "magnitude",
    "greedy_corrective",
    "greedy",
    "greedy_random",
    "greedy_finetuned",
    "gd_retrain",
)


def pretrain(
    setting: Setting,
    seed: int,
    device=None,
    *,
    extra_widths: tuple[int, ...] = (),
    progress: bool = False,
) -> tuple[Dataset, TwoLayerNet, list[TwoLayerNet]]:
    """Data, the width-N network trained with the setting's budget, and width-n nets from scratch.

    The width-N network is trained alone (so every experiment of a replicate sees the same one,
    whatever else it trains) and kept in a small in-process cache (:data:`PRETRAINED`): treat it
    as read-only. The networks in ``extra_widths`` are trained on the same data with the same
    budget from their own initialisations, batched together (same result as training each alone).
    """

    def build():
        data = make_data(setting, seed, device)
        big = _student(setting, setting.width, seed, "big", device)
        _train([big], data, setting, progress=progress)
        big.requires_grad_(False)
        return data, big

    data, big = PRETRAINED.get(setting, seed, device, build)
    small = [_student(setting, w, seed, ("scratch", w), device) for w in extra_widths]
    if small:
        _train(small, data, setting, progress=progress)
    return data, big, small


def _sq(f: Tensor, t: Tensor) -> Tensor:
    """``||f - t||^2 / 2`` along the last data axis: ``[..., m] -> [...]``."""
    return 0.5 * (f - t).pow(2).mean(-1)


def _prefix_curve(order: Tensor, phi_train, phi_test, data: Dataset, f_big, grid) -> list[dict]:
    """Losses of the uniform averages over ``order[:k]`` for k in grid (one cumulative sum)."""
    order = order.to(phi_train.device)
    k = torch.as_tensor(grid, device=phi_train.device)
    denom = k.to(phi_train.dtype)[:, None]
    f_tr = torch.cumsum(phi_train[order], 0)[k - 1] / denom
    f_te = torch.cumsum(phi_test[order], 0)[k - 1] / denom
    return _records(grid, f_tr, f_te, data, f_big)


def _records(grid, f_tr: Tensor, f_te: Tensor, data: Dataset, f_big: Tensor) -> list[dict]:
    lt, le, disc = _sq(f_tr, data.y_train), _sq(f_te, data.y_test), _sq(f_tr, f_big)
    rows = []
    for i, n in enumerate(grid):
        row = dict(
            n=int(n),
            loss_train=float(lt[i]),
            loss_test=float(le[i]),
            discrepancy=float(disc[i]),
        )
        if data.task == "classification":
            row["error_test"] = float((torch.sign(f_te[i]) != data.y_test).double().mean())
        rows.append(row)
    return rows


def _tag(records: list[dict], **cols) -> list[dict]:
    return [dict(cols, **r) for r in records]


def _check_grid(name: str, grid) -> list[int]:
    """The distinct sizes of ``grid``, sorted (each an int >= 1, checked by the shared checker)."""
    out = sorted({check_int(f"{name}[{i}]", v, minimum=1) for i, v in enumerate(grid)})
    if not out:
        raise GreedypruneError(f"{name}={grid!r} must hold at least one size")
    return out


def rate_experiment(
    setting: Setting,
    seed: int,
    *,
    grid,
    gd_widths,
    corrective_max: int = 0,
    random_draws: int = 32,
    methods: tuple[str, ...] = (
        "greedy_pretrained",
        "gd_scratch",
        "random_subset",
        "magnitude",
        "greedy_corrective",
    ),
    device=None,
    progress: bool = False,
) -> list[dict]:
    """Loss against n for subnetworks of a pretrained width-N net and width-n nets from scratch.

    grid: sizes n at which subnetworks are measured (greedy runs to ``max(grid)`` once).
    gd_widths: widths n trained from scratch with the same data and budget (``gd_scratch``).
    corrective_max: steps of the re-weighted greedy (0 skips it); it is measured at every n.
    random_draws: independent random subsets per seed; ``random_subset`` rows are their mean
    (an estimate of the expected loss, the quantity Proposition A's random version bounds).
    Returns records with ``experiment="rate"`` and column ``N`` (the pretrained width).
    """
    grid = _check_grid("grid", grid)
    gd_widths = _check_grid("gd_widths", gd_widths) if "gd_scratch" in methods else []
    data, big, scratch = pretrain(
        setting, seed, device, extra_widths=tuple(gd_widths), progress=progress
    )
    phi_tr, phi_te = big.features(data.x_train), big.features(data.x_test)
    f_big = phi_tr.mean(0)
    n_max = grid[-1]
    common = dict(experiment="rate", setting=setting.name, seed=int(seed), N=setting.width)
    out: list[dict] = []

    def add(method: str, records: list[dict]) -> None:
        out.extend(_tag(records, method=method, **common))

    if "greedy_pretrained" in methods:
        sel = greedy_select(SquaredLoss(phi_tr, data.y_train), n_max, progress=progress)
        add("greedy_pretrained", _prefix_curve(sel.order, phi_tr, phi_te, data, f_big, grid))
    if "random_subset" in methods:
        # Proposition A's random version is about the expectation E e_n: average the curves of
        # independent draws (one draw's prefix curve is a random walk, too noisy to fit a slope).
        obj = SquaredLoss(phi_tr, data.y_train)
        gen = torch.Generator().manual_seed(sub_seed(seed, "random"))
        curves = []
        for _ in range(random_draws):
            obj.reset()
            sel = random_subset(obj, n_max, replacement=True, generator=gen)
            curves.append(_prefix_curve(sel.order, phi_tr, phi_te, data, f_big, grid))
        mean = [
            {k: float(np.mean([c[i][k] for c in curves])) for k in curves[0][i]}
            for i in range(len(grid))
        ]
        add("random_subset", [dict(r, n=int(r["n"]), draws=random_draws) for r in mean])
    if "magnitude" in methods:
        sel = magnitude(SquaredLoss(phi_tr, data.y_train), min(n_max, setting.width))
        g = [n for n in grid if n <= sel.n]
        add("magnitude", _prefix_curve(sel.order, phi_tr, phi_te, data, f_big, g))
    if "gd_scratch" in methods:
        with torch.no_grad():
            f_tr = torch.stack([net(data.x_train) for net in scratch])
            f_te = torch.stack([net(data.x_test) for net in scratch])
        add("gd_scratch", _records(gd_widths, f_tr, f_te, data, f_big))
    if "greedy_corrective" in methods and corrective_max > 0:
        # past exact interpolation (about m + 1 picks) the loss is rounding noise: stop there
        floor = 1e-12 * float(_sq(torch.zeros_like(data.y_train), data.y_train))
        obj = SquaredLoss(phi_tr, data.y_train)
        preds: list[Tensor] = []

        def watch(step: int, loss: float) -> bool:
            preds.append(obj.prediction().clone())  # the re-weighted subnetwork on x_train
            return loss <= floor

        sel = greedy_select(
            obj, corrective_max, weights="corrective", stop=watch, progress=progress
        )
        f_tr = torch.stack(preds)
        # the kernel keeps only the last weights: the test loss is known at the last size only
        f_te = torch.full(
            (sel.n, data.y_test.shape[0]), float("nan"), dtype=f_tr.dtype, device=f_tr.device
        )
        f_te[-1] = sel.weights.to(phi_te) @ phi_te
        recs = _records(list(range(1, sel.n + 1)), f_tr, f_te, data, f_big)
        add("greedy_corrective", recs)
    return out


def bounds_experiment(
    setting: Setting,
    seed: int,
    *,
    n_max: int,
    margin_restarts: int = 32,
    device=None,
    progress: bool = False,
) -> list[dict]:
    """Greedy toward ``f_N`` and toward ``y`` with the constants of docs/theory.md, at every n <= n_max.

    Columns: ``target`` (``"f_N"`` or ``"y"``), ``e_n = ||f_n - t||^2``, ``bound_D2_over_n``,
    ``b_n = n sqrt(e_n)``, the constants ``D, B, r_est`` (upper estimate of the interior margin;
    negative: t outside the hull), ``n_star = (D / r_est)^2`` and ``in_hull, lp_residual``.
    """
    check_int("n_max", n_max, minimum=1)
    data, big, _ = pretrain(setting, seed, device, progress=progress)
    phi_tr = big.features(data.x_train)
    f_big = phi_tr.mean(0)
    out = []
    for target_name, target in (("f_N", f_big), ("y", data.y_train)):
        sel = greedy_select(SquaredLoss(phi_tr, target), n_max, progress=progress)
        e_n = 2.0 * sel.losses.numpy()
        const = bound_constants(phi_tr, target)
        if target_name == "f_N":
            hull = {"in_hull": 1.0, "lp_residual": 0.0}
        else:
            hull = hull_membership(phi_tr, target)
        r = margin_estimate(phi_tr, target, restarts=margin_restarts, seed=sub_seed(seed, "margin"))
        n = np.arange(1, sel.n + 1)
        D2 = const["D"] ** 2
        n_star = D2 / r**2 if r > 0 else float("inf")
        for i in range(sel.n):
            out.append(
                dict(
                    experiment="bounds",
                    setting=setting.name,
                    method="greedy",
                    target=target_name,
                    n=int(n[i]),
                    seed=int(seed),
                    N=setting.width,
                    e_n=float(e_n[i]),
                    loss_train=float(e_n[i] / 2) if target_name == "y" else np.nan,
                    discrepancy=float(e_n[i] / 2) if target_name == "f_N" else np.nan,
                    bound_D2_over_n=D2 / n[i],
                    b_n=float(n[i] * np.sqrt(max(e_n[i], 0.0))),
                    D=const["D"],
                    B=const["B"],
                    r_est=r,
                    n_star=n_star,
                    **hull,
                )
            )
    return out


def random_weights_experiment(
    setting: Setting,
    seed: int,
    *,
    widths,
    grid,
    device=None,
    progress: bool = False,
) -> list[dict]:
    """Greedy toward y from untrained networks of several widths N (``greedy_random``).

    The networks are drawn like the students' initialisation. The hull grows with N, so the
    floor of the curve falls with N. Column ``N`` holds the width.
    """
    grid = _check_grid("grid", grid)
    widths = _check_grid("widths", widths)
    data = make_data(setting, seed, device)
    out = []
    for N in widths:
        net = _student(setting, N, seed, ("random", N), device)
        phi_tr, phi_te = net.features(data.x_train), net.features(data.x_test)
        sel = greedy_select(SquaredLoss(phi_tr, data.y_train), grid[-1], progress=progress)
        recs = _prefix_curve(sel.order, phi_tr, phi_te, data, phi_tr.mean(0), grid)
        out.extend(
            _tag(
                recs,
                experiment="random_weights",
                setting=setting.name,
                method="greedy_random",
                seed=int(seed),
                N=N,
            )
        )
    return out


def finetune_experiment(
    setting: Setting,
    seed: int,
    *,
    sizes,
    steps: int,
    device=None,
    progress: bool = False,
) -> list[dict]:
    """Fine-tune the greedy subnetwork vs re-train the same width from scratch, same budget.

    For each n in ``sizes``: the greedy subnetwork of the pretrained net (method
    ``greedy_pretrained``, before fine-tuning), the same after ``steps`` GD steps
    (``greedy_finetuned``), and a width-n network trained ``steps`` steps from a new random
    initialisation (``gd_retrain``). All with the setting's mean-field step size.
    """
    sizes = _check_grid("sizes", sizes)
    check_int("steps", steps, minimum=1)
    data, big, _ = pretrain(setting, seed, device, progress=progress)
    phi_tr, phi_te = big.features(data.x_train), big.features(data.x_test)
    f_big = phi_tr.mean(0)
    sel = greedy_select(SquaredLoss(phi_tr, data.y_train), sizes[-1], progress=progress)
    pruned = [big.subnetwork(sel.order[:n]) for n in sizes]
    fresh = [_student(setting, n, seed, ("retrain", n), device) for n in sizes]
    before = _prefix_curve(sel.order, phi_tr, phi_te, data, f_big, sizes)
    _train([*pruned, *fresh], data, setting, steps=steps, progress=progress)
    out = _tag(before, method="greedy_pretrained")
    for name, nets in (("greedy_finetuned", pruned), ("gd_retrain", fresh)):
        with torch.no_grad():
            f_tr = torch.stack([net(data.x_train) for net in nets])
            f_te = torch.stack([net(data.x_test) for net in nets])
        out.extend(_tag(_records(sizes, f_tr, f_te, data, f_big), method=name))
    return _tag(
        out,
        experiment="finetune",
        setting=setting.name,
        seed=int(seed),
        N=setting.width,
        steps=steps,
    )


def regime_experiment(
    setting: Setting,
    seed: int,
    *,
    ms,
    budgets,
    n: int,
    device=None,
    progress: bool = False,
) -> list[dict]:
    """Where greedy beats GD: greedy from a width-N net vs GD at width n, over (m, budget).

    For each data size m in ``ms`` and training budget (GD steps) in ``budgets``, the width-N net
    and a width-n net are trained with that budget; greedy picks n neurons from the former.
    Records ``greedy_pretrained`` and ``gd_scratch`` rows with columns ``m`` and ``budget``.
    """
    ms, budgets = _check_grid("ms", ms), _check_grid("budgets", budgets)
    out = []
    for m in ms:
        for budget in budgets:
            s = replace(setting, m=m, steps=budget)
            data, big, (small,) = pretrain(s, seed, device, extra_widths=(n,), progress=progress)
            phi_tr, phi_te = big.features(data.x_train), big.features(data.x_test)
            f_big = phi_tr.mean(0)
            sel = greedy_select(SquaredLoss(phi_tr, data.y_train), n)
            g = _prefix_curve(sel.order, phi_tr, phi_te, data, f_big, [n])
            with torch.no_grad():
                gd = _records([n], small(data.x_train)[None], small(data.x_test)[None], data, f_big)
            cols = dict(
                experiment="regime",
                setting=setting.name,
                seed=int(seed),
                N=setting.width,
                m=m,
                budget=budget,
            )
            out.extend(_tag(g, method="greedy_pretrained", **cols))
            out.extend(_tag(gd, method="gd_scratch", **cols))
    return out


EXPERIMENTS = {
    "rate": rate_experiment,
    "bounds": bounds_experiment,
    "random_weights": random_weights_experiment,
    "finetune": finetune_experiment,
    "regime": regime_experiment,
}
