"""Deep experiments: each is a function of (setting, seed) returning tidy records.

A record is one measurement of one network: ``experiment, setting, method, n, seed, kept,
widths, loss_train, loss_test, discrepancy`` (plus ``acc_train, acc_test`` on classification
data). ``n`` is the size budget per hidden layer (greedy steps, or the width trained from
scratch); ``kept`` the number of distinct hidden neurons actually kept (all layers together;
with replacement greedy keeps fewer than ``n`` per layer); ``widths`` the kept widths, e.g.
``"16-11"``. Losses are the training loss of the data set (squared ``||f - y||^2 / 2`` or
cross-entropy) on the training or the test set; ``discrepancy`` is ``||f - f_N||^2 / 2`` on the
training inputs (outputs or logits), the distance to the network the subnetwork was taken from.

Methods (experiment ``"rate"``): ``greedy_local`` and ``greedy_global`` (layer-wise greedy from
the pretrained width-N network), ``greedy_random_net`` (layer-wise greedy with the global loss
from the random-weight network the pretraining started from), ``random_subset`` and
``magnitude`` (per-layer baselines, without replacement), ``gd_scratch`` (width n per layer
trained from a fresh initialisation with the pretraining budget). Experiment ``"finetune"``:
``greedy_finetuned`` (the greedy-local subnetwork trained further for ``finetune_steps``) and
``gd_retrain`` (the same widths from a fresh initialisation, the same ``finetune_steps``).
Experiment ``"reference"``: ``full`` (the pretrained network itself, at n = N).
``greedy_local`` rows selected with replacement also carry ``bound_local`` and ``bound_K``
(Proposition C of docs/theory.md, :func:`local_bound`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from greedyprune.errors import check_choice
from greedyprune.select import per_sample_loss

from .._common import PretrainCache, sub_seed
from .._data import Dataset
from .._train import train_mean_field
from ._data import load_data
from ._net import DeepMeanFieldNet
from ._neuron_select import layerwise_select
from .setting import DEEP_METHODS, DeepSetting

__all__ = [
    "PRETRAINED",
    "RECORD_METHODS",
    "evaluate",
    "finetune_experiment",
    "local_bound",
    "make_deep_data",
    "pretrain_deep",
    "rate_experiment",
    "reference_experiment",
    "run_unit",
    "select_subnetwork",
    "summary_table",
    "units",
]

# Every name the ``method`` column of the deep records takes: the rate experiment's DEEP_METHODS,
# the finetune experiment's two and the reference experiment's two. Each has a style in
# greedyprune.plots.
RECORD_METHODS = (*DEEP_METHODS, "greedy_finetuned", "gd_retrain", "full", "random_init")


def make_deep_data(setting: DeepSetting, seed: int, device=None) -> Dataset:
    """The data of ``setting``: the teacher's depends on ``seed``; MNIST-1D and digits are fixed
    data sets (MNIST-1D's standard generator seed 42, digits' split seed 0), so seeds vary the
    networks only."""
    dtype = setting.torch_dtype
    if setting.data == "teacher":
        return load_data(
            "teacher",
            m=setting.m,
            d=setting.d,
            m_test=setting.m_test,
            widths=tuple(setting.teacher_widths),
            activation=setting.activation,
            seed=sub_seed(seed, "data"),
            dtype=dtype,
            device=device,
        )
    if setting.data == "mnist1d":
        return load_data("mnist1d", num_samples=setting.num_samples, dtype=dtype, device=device)
    return load_data("digits", dtype=dtype, device=device)


def _n_outputs(data: Dataset) -> int:
    return int(data.y_train.shape[1]) if data.task == "regression" else 10


def _init(setting: DeepSetting, data: Dataset, widths, seed: int, tag, device) -> DeepMeanFieldNet:
    # Teacher inputs have variance 4/d per coordinate (pre-activations of variance ~4 with unit
    # weights, as in the two-layer setting); the real data sets are standardised, so the first
    # layer's weights get variance 1/d to keep pre-activations O(1).
    input_std = 1.0 if setting.data == "teacher" else data.dim**-0.5
    return DeepMeanFieldNet.random(
        data.dim,
        list(widths),
        _n_outputs(data),
        activation=setting.activation,
        input_std=input_std,
        seed=sub_seed(seed, "init", tag),
        dtype=setting.torch_dtype,
        device=device,
    )


def _train(net, data: Dataset, setting: DeepSetting, steps: int, seed: int, tag, progress=False):
    if steps == 0:
        return
    train_mean_field(
        net,
        data.x_train,
        data.y_train,
        steps=steps,
        lr=setting.lr,
        loss=setting.loss,
        batch_size=setting.batch_size,
        seed=sub_seed(seed, "sgd", tag),
        progress=progress,
    )


# the pretrained and random-weight networks of the last few (setting, seed, device)
PRETRAINED = PretrainCache(2)


def pretrain_deep(
    setting: DeepSetting, seed: int, device=None, *, progress: bool = False
) -> tuple[Dataset, DeepMeanFieldNet, DeepMeanFieldNet]:
    """Data, the pretrained width-N network and the random-weight network it started from.

    Kept in a small in-process cache (:data:`PRETRAINED`; every method of a replicate sees the
    same networks): treat them as read-only.
    """

    def build():
        data = make_deep_data(setting, seed, device)
        widths = [setting.width] * setting.depth
        init = _init(setting, data, widths, seed, "big", device)
        big = _init(setting, data, widths, seed, "big", device)
        _train(big, data, setting, setting.steps, seed, "big", progress)
        for net in (init, big):
            net.requires_grad_(False)
        return data, big, init

    return PRETRAINED.get(setting, seed, device, build)


@torch.no_grad()
def evaluate(net: DeepMeanFieldNet, data: Dataset, setting: DeepSetting, f_big: Tensor) -> dict:
    """Losses, discrepancy to ``f_big [m, c]`` (the big network on the training inputs), accuracy."""
    out_train, out_test = net(data.x_train), net(data.x_test)
    rec = dict(
        loss_train=float(per_sample_loss(setting.loss, out_train, data.y_train).mean()),
        loss_test=float(per_sample_loss(setting.loss, out_test, data.y_test).mean()),
        discrepancy=float(per_sample_loss("squared", out_train, f_big).mean()),
        kept=int(sum(net.widths)),
        widths="-".join(str(w) for w in net.widths),
    )
    if setting.task == "multiclass":
        rec["acc_train"] = float((out_train.argmax(1) == data.y_train).double().mean())
        rec["acc_test"] = float((out_test.argmax(1) == data.y_test).double().mean())
    return rec


# Lipschitz constants of the activations (tanh' <= 1, relu' <= 1, sigmoid' <= 1/4)
LIPSCHITZ = {"tanh": 1.0, "relu": 1.0, "sigmoid": 0.25}


@torch.no_grad()
def local_bound(net: DeepMeanFieldNet, counts, x: Tensor) -> dict:
    """Proposition C of docs/theory.md: the bound on the discrepancy of layer-wise local greedy
    (with replacement, ``n_l`` steps in layer l) to ``net``'s output on ``x``.

    counts: per hidden layer the pick counts of the selection (``LayerwiseResult.counts``).
    For layer l (0-based), with the layers below pruned: ``B_l`` is the mean squared distance of
    the neurons' features ``h_i (x) W^{l+1}_{:, i}`` to their own mean, and
    ``rho_l = Lip(act) ||W^{l+1}||_2 / N_l`` the Lipschitz constant of the map from layer l's
    pre-activations to the next layer's (the output's) through the full layer. Then
    ``||f_n - f_N|| <= K = sum_l (prod_{k > l} rho_k) sqrt(B_l / n_l)`` in the norm
    ``||A||^2 = (1/m) sum_j sum_k A_jk^2``, and the discrepancy ``||f_n - f_N||^2 / 2`` is at most
    ``bound_local = K^2 / 2``. Returns ``bound_local`` and ``bound_K``.
    """
    lip = LIPSCHITZ[net.activation]
    gates = [c.to(device=b.device, dtype=b.dtype) for c, b in zip(counts, net.biases)]
    steps = [float(g.sum()) for g in gates]
    gates = [g * (g.numel() / g.sum()) for g in gates]
    k = 0.0
    for l in range(net.depth):
        below = gates[:l] + [None] * (net.depth - l)
        h = net.hidden(x, l + 1, below)  # [m, N_l], the layers below pruned
        w = net.weights[l + 1]  # [N_{l+1} or c, N_l]
        mean = h @ w.T / net.widths[l]
        sq = h.pow(2).mean(0) * w.pow(2).sum(0)  # ||phi_i||^2
        spread = float(sq.mean() - mean.pow(2).sum(1).mean())  # B_l (variance identity)
        if l > 0:  # the error so far passes through layer l's activation and outgoing weights
            k *= lip * float(torch.linalg.matrix_norm(w, ord=2)) / net.widths[l]
        k += max(spread, 0.0) ** 0.5 / steps[l] ** 0.5
    return dict(bound_local=0.5 * k * k, bound_K=k)


def select_subnetwork(setting: DeepSetting, method: str, n: int, data, big, init, seed: int):
    """The layer-wise selection of ``method`` (a selection method, not ``gd_scratch``) with n
    steps per layer from ``big`` (``init`` for ``greedy_random_net``)."""
    common = dict(sizes=n, generator=sub_seed(seed, "select", method, n))
    if method == "greedy_local":
        return layerwise_select(
            big, data.x_train, method="local", replacement=setting.replacement, **common
        )
    if method in ("greedy_global", "greedy_random_net"):
        return layerwise_select(
            big if method == "greedy_global" else init,
            data.x_train,
            data.y_train,
            method="global",
            replacement=setting.replacement,
            loss=setting.loss,
            candidates=setting.global_candidates,
            batch_size=setting.global_batch,
            **common,
        )
    kind = "random" if method == "random_subset" else "magnitude"
    return layerwise_select(big, data.x_train, method=kind, replacement=False, **common)


def rate_experiment(
    setting: DeepSetting, seed: int, method: str, device=None, *, progress: bool = False
) -> list[dict]:
    """Loss against the per-layer size n for one method (experiment ``"rate"``)."""
    check_choice("method", method, DEEP_METHODS)
    data, big, init = pretrain_deep(setting, seed, device, progress=progress)
    with torch.no_grad():
        f_big = big(data.x_train)
    records = []
    for n in setting.sizes:
        t0 = time.perf_counter()
        extra = {}
        if method == "gd_scratch":
            net = _init(setting, data, [n] * setting.depth, seed, ("scratch", n), device)
            _train(net, data, setting, setting.steps, seed, ("scratch", n), progress)
        else:
            res = select_subnetwork(setting, method, n, data, big, init, seed)
            net = res.network
            extra["evaluations"] = sum(s.evaluations for s in res.selections)
            if method == "greedy_local" and setting.replacement:
                extra.update(local_bound(big, res.counts, data.x_train))
        rec = dict(
            experiment="rate", method=method, n=n, seed=seed, **evaluate(net, data, setting, f_big)
        )
        rec.update(extra, seconds=time.perf_counter() - t0)
        records.append(rec)
    return records


def finetune_experiment(
    setting: DeepSetting, seed: int, device=None, *, progress: bool = False
) -> list[dict]:
    """Fine-tune the greedy-local subnetwork vs re-train its widths from scratch, same budget."""
    data, big, init = pretrain_deep(setting, seed, device, progress=progress)
    with torch.no_grad():
        f_big = big(data.x_train)
    records = []
    for n in setting.sizes:
        sub = select_subnetwork(setting, "greedy_local", n, data, big, init, seed).network
        sub.requires_grad_(True)
        _train(sub, data, setting, setting.finetune_steps, seed, ("finetune", n), progress)
        fresh = _init(setting, data, sub.widths, seed, ("retrain", n), device)
        _train(fresh, data, setting, setting.finetune_steps, seed, ("retrain", n), progress)
        for method, net in (("greedy_finetuned", sub), ("gd_retrain", fresh)):
            rec = evaluate(net, data, setting, f_big)
            records.append(dict(experiment="finetune", method=method, n=n, seed=seed, **rec))
    return records


def reference_experiment(
    setting: DeepSetting, seed: int, device=None, *, progress=False
) -> list[dict]:
    """The pretrained network itself (n = N) and the random-weight network it started from."""
    data, big, init = pretrain_deep(setting, seed, device, progress=progress)
    with torch.no_grad():
        f_big = big(data.x_train)
    return [
        dict(
            experiment="reference",
            method=name,
            n=setting.width,
            seed=seed,
            **evaluate(net, data, setting, f_big),
        )
        for name, net in (("full", big), ("random_init", init))
    ]


def units(setting: DeepSetting, seeds) -> list[tuple[str, Callable[..., list[dict]]]]:
    """The resumable units of a run: ``(unit_id, fn(device, progress) -> records)``."""
    out = []
    for seed in seeds:
        out.append(
            (f"{setting.name}/seed{seed}/reference", _bind(reference_experiment, setting, seed))
        )
        for method in setting.methods:
            out.append(
                (
                    f"{setting.name}/seed{seed}/{method}",
                    _bind(rate_experiment, setting, seed, method),
                )
            )
        if setting.finetune:
            out.append(
                (f"{setting.name}/seed{seed}/finetune", _bind(finetune_experiment, setting, seed))
            )
    return out


def _bind(fn, *args):
    def call(device=None, progress=False):
        return fn(*args, device=device, progress=progress)

    return call


def run_unit(fn, setting: DeepSetting) -> list[dict]:
    """Run one unit and tag its records with the setting's name and data."""
    return [dict(r, setting=setting.name, data=setting.data) for r in fn()]


def summary_table(results, setting: DeepSetting):
    """Mean and std over seeds per (experiment, method, n): test accuracy (classification) or test
    loss (regression), with the mean kept neurons. A DataFrame in long format."""
    metric = "acc_test" if setting.task == "multiclass" else "loss_test"
    df = results[results["setting"] == setting.name]
    g = df.groupby(["experiment", "method", "n"], sort=True)
    out = g.agg(
        kept=("kept", "mean"),
        mean=(metric, "mean"),
        std=(metric, "std"),
        seeds=("seed", "nunique"),
    ).reset_index()
    out.insert(3, "metric", metric)
    return out
