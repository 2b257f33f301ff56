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
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from greedyprune.theory import Claim

from ._data import Dataset
from ._deep import DeepMeanFieldNet
from ._layerwise import layerwise_select, per_sample_loss
from ._realdata import load_data
from ._train import train_mean_field
from ._twolayer import activation_fn

__all__ = [
    "DEEP_METHODS",
    "SELECTION_METHODS",
    "DeepSetting",
    "deep_claims",
    "deep_preset",
    "evaluate",
    "finetune_experiment",
    "make_deep_data",
    "pretrain_deep",
    "rate_experiment",
    "reference_experiment",
    "run_deep",
    "run_unit",
    "summary_table",
    "units",
]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
SELECTION_METHODS = (
    "greedy_local",
    "greedy_global",
    "greedy_random_net",
    "random_subset",
    "magnitude",
)
DEEP_METHODS = (*SELECTION_METHODS, "gd_scratch")


@dataclass(frozen=True)
class DeepSetting:
    """One deep experimental setting: data, network, training budget and selection options.

    data: ``"teacher"``, ``"mnist1d"`` or ``"digits"``. m, m_test, d, teacher_widths: the deep
    teacher's data (ignored by the real data sets); num_samples: MNIST-1D's size.
    width: N, the width of every hidden layer of the pretrained network; depth: L.
    steps, lr, batch_size: pretraining budget (mean-field SGD; batch_size None is full batch);
    finetune_steps: the fine-tuning / re-training budget. sizes: the per-layer sizes n measured.
    replacement: greedy with (theory) or without (the authors) replacement.
    global_batch, global_candidates: data points and candidates per step of the global objective.
    """

    name: str = "teacher"
    data: str = "teacher"
    m: int = 256
    m_test: int = 1000
    d: int = 10
    teacher_widths: tuple[int, ...] = (16, 16)
    num_samples: int = 5000
    activation: str = "tanh"
    width: int = 128
    depth: int = 2
    steps: int = 1000
    lr: float = 0.5
    batch_size: int | None = None
    finetune_steps: int = 300
    sizes: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    replacement: bool = True
    global_batch: int | None = None
    global_candidates: int | None = None
    dtype: str = "float64"
    methods: tuple[str, ...] = DEEP_METHODS
    finetune: bool = True
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.data not in ("teacher", "mnist1d", "digits"):
            raise ValueError(
                f"setting {self.name!r}: data={self.data!r}; pass teacher, mnist1d or digits"
            )
        for key in ("m", "m_test", "d", "num_samples", "width", "depth", "steps", "finetune_steps"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if "steps" in key else 1):
                raise ValueError(f"setting {self.name!r}: {key}={v!r} must be a positive int")
        if not self.lr > 0:
            raise ValueError(f"setting {self.name!r}: lr={self.lr!r} must be > 0")
        if self.dtype not in _DTYPES:
            raise ValueError(f"setting {self.name!r}: dtype={self.dtype!r}; use {sorted(_DTYPES)}")
        if not self.sizes or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.sizes
        ):
            raise ValueError(f"setting {self.name!r}: sizes={self.sizes!r} must be ints >= 1")
        if max(self.sizes) > self.width:
            raise ValueError(
                f"setting {self.name!r}: sizes up to {max(self.sizes)} exceed width={self.width}"
            )
        bad = set(self.methods) - set(DEEP_METHODS)
        if bad:
            raise ValueError(
                f"setting {self.name!r}: unknown methods {sorted(bad)}; pick from {list(DEEP_METHODS)}"
            )
        activation_fn(self.activation)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def task(self) -> str:
        return "regression" if self.data == "teacher" else "multiclass"

    @property
    def loss(self) -> str:
        return "squared" if self.data == "teacher" else "cross_entropy"

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


def _seed(seed: int, *tags) -> int:
    """A reproducible sub-seed for one random draw of one replicate (independent across tags)."""
    return zlib.crc32(repr((int(seed), *tags)).encode()) & 0x7FFFFFFF


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
            seed=_seed(seed, "data"),
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
        seed=_seed(seed, "init", tag),
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
        seed=_seed(seed, "sgd", tag),
        progress=progress,
    )


_CACHE: dict = {}


def pretrain_deep(
    setting: DeepSetting, seed: int, device=None, *, progress: bool = False
) -> tuple[Dataset, DeepMeanFieldNet, DeepMeanFieldNet]:
    """Data, the pretrained width-N network and the random-weight network it started from.

    Kept in a small in-process cache (every method of a replicate sees the same networks): treat
    them as read-only.
    """
    key = (setting, int(seed), str(torch.device(device) if device is not None else "cpu"))
    if key not in _CACHE:
        data = make_deep_data(setting, seed, device)
        widths = [setting.width] * setting.depth
        init = _init(setting, data, widths, seed, "big", device)
        big = _init(setting, data, widths, seed, "big", device)
        _train(big, data, setting, setting.steps, seed, "big", progress)
        for net in (init, big):
            net.requires_grad_(False)
        while len(_CACHE) >= 2:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (data, big, init)
    return _CACHE[key]


@torch.no_grad()
def evaluate(net: DeepMeanFieldNet, data: Dataset, setting: DeepSetting, f_big: Tensor) -> dict:
    """Losses, discrepancy to ``f_big [m, c]`` (the big network on the training inputs), accuracy."""
    out_train, out_test = net(data.x_train), net(data.x_test)
    rec = dict(
        loss_train=float(per_sample_loss(setting.loss, out_train, data.y_train).mean()),
        loss_test=float(per_sample_loss(setting.loss, out_test, data.y_test).mean()),
        discrepancy=float(0.5 * (out_train - f_big).pow(2).sum(1).mean()),
        kept=int(sum(net.widths)),
        widths="-".join(str(w) for w in net.widths),
    )
    if setting.task == "multiclass":
        rec["acc_train"] = float((out_train.argmax(1) == data.y_train).double().mean())
        rec["acc_test"] = float((out_test.argmax(1) == data.y_test).double().mean())
    return rec


def _select(setting: DeepSetting, method: str, n: int, data, big, init, seed: int):
    common = dict(sizes=n, generator=_seed(seed, "select", method, n))
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
    if method not in DEEP_METHODS:
        raise ValueError(f"method={method!r} is not known; pass one of {list(DEEP_METHODS)}")
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
            res = _select(setting, method, n, data, big, init, seed)
            net = res.network
            extra["evaluations"] = sum(s.evaluations for s in res.selections)
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
        sub = _select(setting, "greedy_local", n, data, big, init, seed).network
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


def deep_claims(setting: DeepSetting) -> list[Claim]:
    """The claims checked by ``greedyprune verify deep`` for one setting (see docs/deep.md)."""
    big = max(setting.sizes)
    upper = (max(min(setting.sizes), big / 4), big)
    test_metric = "loss_test"
    claims = [
        Claim(
            "deep_local_rate",
            "layer-wise greedy (local imitation): discrepancy to f_N falls at least like 1/n",
            "rate",
            "greedy_local",
            metric="discrepancy",
            predicted_slope=-1.0,
            tolerance=0.25,
            direction="at_most",
            source="Proposition A applied layer by layer (docs/theory.md); Ye et al. 2020",
        ),
        Claim(
            "deep_global_rate",
            "layer-wise greedy (global loss): discrepancy to f_N falls at least like 1/n",
            "rate",
            "greedy_global",
            metric="discrepancy",
            predicted_slope=-1.0,
            tolerance=0.25,
            direction="at_most",
            source="Proposition A applied layer by layer (docs/theory.md)",
        ),
        Claim(
            "deep_random_rate",
            "random subsets per layer: discrepancy falls like 1/n (Monte Carlo)",
            "rate",
            "random_subset",
            metric="discrepancy",
            predicted_slope=-1.0,
            tolerance=0.25,
            direction="about",
            source="random subsets (docs/theory.md); without replacement it can be faster",
        ),
        Claim(
            "deep_gd_scratch_rate",
            "GD from scratch at the same budget: training loss falls no faster than ~1/n",
            "rate",
            "gd_scratch",
            predicted_slope=-1.0,
            tolerance=0.3,
            direction="at_least",
            source="mean-field rates, the paper's contrast (docs/theory.md)",
        ),
        Claim(
            "deep_local_faster_than_gd",
            "greedy (local)'s training-loss slope is steeper than GD from scratch's",
            "rate",
            "greedy_local",
            form="faster_than",
            versus="gd_scratch",
            source="the authors' toy figure, here for deep networks",
        ),
        Claim(
            "deep_local_beats_gd_large_n",
            f"greedy (local) has lower test loss than GD from scratch for n in {upper[0]:g}..{big}",
            "rate",
            "greedy_local",
            metric=test_metric,
            form="less_than",
            versus="gd_scratch",
            n_range=upper,
            source="the paper: pruning a large network beats training the small one",
        ),
        Claim(
            "deep_local_beats_random",
            "greedy (local) has lower test loss than random subsets",
            "rate",
            "greedy_local",
            metric=test_metric,
            form="less_than",
            versus="random_subset",
            source="the paper's baselines",
        ),
        Claim(
            "deep_local_beats_magnitude",
            "greedy (local) has lower test loss than magnitude pruning",
            "rate",
            "greedy_local",
            metric=test_metric,
            form="less_than",
            versus="magnitude",
            source="the paper's baselines",
        ),
        Claim(
            "deep_global_beats_local",
            "greedy with the global loss has lower test loss than local imitation",
            "rate",
            "greedy_global",
            metric=test_metric,
            form="less_than",
            versus="greedy_local",
            source="Ye, Wu, Liu 2020 (global vs local objectives)",
        ),
        Claim(
            "deep_pretrained_beats_random_net",
            "greedy (global) from the pretrained net beats greedy from its random initialisation",
            "rate",
            "greedy_global",
            metric=test_metric,
            form="less_than",
            versus="greedy_random_net",
            source="docs/theory.md, random-weight networks",
        ),
        Claim(
            "deep_finetune_beats_retrain",
            "fine-tuning the greedy subnetwork beats re-training its widths from scratch",
            "finetune",
            "greedy_finetuned",
            metric=test_metric,
            form="less_than",
            versus="gd_retrain",
            source="the paper's advice",
        ),
    ]
    return claims


def deep_preset(preset: str, data: str = "teacher") -> tuple[DeepSetting, tuple[int, ...]]:
    """The setting and seeds of ``greedyprune verify deep --preset PRESET --data DATA``.

    quick: minutes on two CPU cores, one or two seeds, small widths (a smoke test of every
    method and claim). paper: the numbers quoted in docs/deep.md (3 seeds, width 128; a few
    minutes per data set on two CPU cores).
    """
    if preset not in ("quick", "paper"):
        raise ValueError(f"preset={preset!r} is not known; pass quick or paper")
    if data not in ("teacher", "mnist1d", "digits"):
        raise ValueError(f"data={data!r} is not known; pass teacher, mnist1d or digits")
    quick = preset == "quick"
    if data == "teacher":
        if quick:
            s = DeepSetting(name="teacher", width=96, m=256, steps=800, sizes=(2, 4, 8, 16, 32, 48))
            return s, (0, 1)
        s = DeepSetting(
            name="teacher",
            width=128,
            m=256,
            steps=1500,
            finetune_steps=500,
            sizes=(2, 4, 8, 16, 32, 64),
            global_candidates=32,
        )
        return s, (0, 1, 2)
    common = dict(
        name=data,
        data=data,
        dtype="float32",
        replacement=False,
        batch_size=128,
        lr=0.5,
        global_batch=512,
    )
    if quick:
        s = DeepSetting(
            **common,
            num_samples=2000,
            width=96,
            steps=1500,
            finetune_steps=300,
            sizes=(4, 8, 16, 32, 64),
            global_candidates=32,
        )
        return s, (0,)
    s = DeepSetting(
        **common,
        width=128,
        steps=3000 if data == "mnist1d" else 2000,
        finetune_steps=500,
        sizes=(2, 4, 8, 16, 32, 64),
        global_candidates=32,
    )
    return s, (0, 1, 2)


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


def run_deep(
    setting: DeepSetting,
    seeds,
    out,
    *,
    preset: str = "custom",
    device=None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    n_boot: int = 1000,
):
    """Run every unit of ``setting`` for ``seeds`` into the run folder ``out`` (resuming).

    Writes ``results.csv`` (one row per measurement), ``verdicts.csv``, ``summary.csv`` and
    ``manifest.json``; returns ``(results, verdicts, summary)`` as DataFrames. n_boot: bootstrap
    re-samples behind each verdict's interval.
    """
    from greedyprune.runs import RunDir, unique
    from greedyprune.theory import check

    if not isinstance(setting, DeepSetting):
        raise TypeError(f"setting must be a DeepSetting, got {type(setting).__name__}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 10:
        raise ValueError(f"n_boot={n_boot!r} must be an int >= 10 (1000 for reported intervals)")
    seeds = tuple(unique(int(s) for s in seeds))
    if not seeds:
        raise ValueError("seeds is empty; pass at least one seed")
    config = dict(kind="deep", preset=preset, seeds=list(seeds), setting=setting.as_dict())
    run = RunDir(out, config)
    done = run.done_units()
    t0 = time.perf_counter()
    todo = units(setting, seeds)
    for i, (unit, fn) in enumerate(todo):
        if unit in done:
            continue
        t = time.perf_counter()
        records = run_unit(lambda fn=fn: fn(device, progress), setting)
        run.append(unit, records)
        if log is not None:
            log(f"[{i + 1}/{len(todo)}] {unit}: {time.perf_counter() - t:.1f}s")
    results = run.read()
    verdicts = check(results, deep_claims(setting), n_boot=n_boot)
    summary = summary_table(results, setting)
    run.write_table(verdicts, "verdicts")
    run.write_table(summary, "summary")
    run.write_json(
        "manifest.json",
        dict(
            config=config,
            units=len(todo),
            seconds_this_call=time.perf_counter() - t0,
            torch=torch.__version__,
        ),
    )
    return results, verdicts, summary
