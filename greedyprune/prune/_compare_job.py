"""The ``compare`` job: every method at equal MACs and fine-tuning budget, one unit per (method,
target, seed), run by :func:`greedyprune.study.run_study` (resumable)."""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch

from greedyprune.dist import init_from_env, is_main, local_slice
from greedyprune.errors import (
    GreedypruneError,
    check_bool,
    check_seeds,
)
from greedyprune.runs import unique
from greedyprune.study import Study, run_study

from . import _baselines, _finetune, _io, _local  # noqa: F401  (register the criteria and the local methods)
from ._data import labels_of, seeded_draws
from ._finetune import evaluate, latency_ms
from ._gates import find_prunable_groups
from ._greedy_prune import check_selection_settings
from ._latency import latency_phase
from ._macs import MacsModel, count_macs, count_params, profile_layers
from ._prepare import (
    Prepared,
    auto_progress,
    check_settings,
    prepare,
    resolve_settings,
    train_base,
)
from ._prune_job import Runtime
from ._registry import SELECTION_METHODS, SelectionRequest, apply_choice, select_channels
from ._width_rules import META_STEPS, SCRATCH_LR, WIDTH_RULES, RuleContext

__all__ = ["METHODS", "CompareSettings", "compare", "summarize"]

# compare's methods when this module was imported: the selection methods (channel choices), then
# the width rules (compare itself reads the registries when called)
METHODS = (*SELECTION_METHODS, *WIDTH_RULES)
# what a run compares unless told: greedy, the criteria of Torch-Pruning's importances, random,
# and the thinner network trained from scratch (the command's default too)
DEFAULT_METHODS = ("greedy", "l1", "taylor", "bn", "random", "uniform")


@dataclass(frozen=True)
class CompareSettings:
    """What a :func:`compare` run computes (the knobs of its ``config.json``), normalised and
    checked when made, before anything is read or written: ``targets`` (MACs targets, fractions
    or absolute, see ``parse_macs``), ``methods`` (names of :data:`SELECTION_METHODS` and
    :data:`WIDTH_RULES`; a width rule's prerequisite is run first), ``seeds``, ``train_epochs``
    (the base model's, when it is trained here), ``finetune_epochs`` / ``finetune_lr``,
    ``candidates`` / ``greedy_batch`` / ``loss`` (global greedy's), ``curves``, ``latency_runs``
    and ``local`` (local imitation's settings, or None). How it runs (device, loader workers,
    autocast, progress bars) is a :class:`~greedyprune.prune.Runtime`."""

    targets: tuple = (0.5,)
    methods: tuple = DEFAULT_METHODS
    seeds: tuple = (0,)
    train_epochs: float = 20
    finetune_epochs: float = 3
    finetune_lr: float = 0.01
    candidates: int | None = 8
    greedy_batch: int = 8
    loss: str = "ce"
    curves: bool = False
    latency_runs: int = 0
    local: _local.LocalSettings | None = None

    def __post_init__(self):
        targets, methods, seeds, local, curves = (
            self.targets, self.methods, self.seeds, self.local, self.curves
        )  # fmt: skip
        check_selection_settings(candidates=self.candidates, loss=self.loss)  # global greedy's
        methods = unique([methods] if isinstance(methods, str) else methods)
        known = (*SELECTION_METHODS, *WIDTH_RULES)  # read now: a method registered later counts
        bad = [m for m in methods if m not in known]
        if bad or not methods:
            raise GreedypruneError(f"methods={bad or methods!r}: choose from {', '.join(known)}")
        local_methods = [m for m in methods if m in _local.CRITERIA]
        if local is None and local_methods:
            raise GreedypruneError(
                f"methods={','.join(local_methods)}: local imitation handles internal groups only; "
                "pass --groups internal (local=LocalSettings(...)) so every method prunes those"
            )
        if local is not None:
            if not isinstance(local, _local.LocalSettings):
                raise GreedypruneError(f"local={local!r} must be a LocalSettings or None")
            _local.check_local(local)
        for m in methods:
            for need in WIDTH_RULES[m].needs if m in WIDTH_RULES else ():
                if need not in methods:
                    raise GreedypruneError(
                        f"methods={m} needs {need} too: its budget counts {need}'s selection"
                    )
        targets = [targets] if isinstance(targets, (str, int, float)) else list(targets)
        seeds = check_seeds("seeds", seeds)
        targets = unique(targets)
        needed = {n for m in methods if m in WIDTH_RULES for n in WIDTH_RULES[m].needs}
        methods = [*(m for m in methods if m in needed), *(m for m in methods if m not in needed)]
        check_bool("curves", curves)
        object.__setattr__(self, "targets", tuple(targets))
        object.__setattr__(self, "methods", tuple(methods))
        object.__setattr__(self, "seeds", tuple(seeds))

    def config(self, arch: str, data: str, weights, image_size) -> dict:
        """The run's ``config.json``: these settings with the model and data they run on. Keys of
        options added later appear only when used, so folders made before them still match."""
        config = {
            "job": "compare",
            "arch": arch,
            "data": data,
            "weights": weights,
            "image_size": image_size,
            "train_epochs": self.train_epochs,
            "finetune_epochs": self.finetune_epochs,
            "finetune_lr": self.finetune_lr,
            "uniform_epochs": (self.train_epochs if weights is None else 0) + self.finetune_epochs,
            "candidates": self.candidates,
            "greedy_batch": self.greedy_batch,
            "loss": self.loss,
        }
        if self.curves:
            config["curves"] = True
        if "metapruner" in self.methods:
            config["metapruner_steps"] = META_STEPS
        if any(m.startswith("scratch-") for m in self.methods):
            config["scratch_lr"] = SCRATCH_LR
        if self.local is not None:
            config["groups"] = "internal"
            config["local"] = self.local.as_dict()
        return config


_RUNTIME_FIELDS = ("device", "workers", "amp", "progress")  # what compare reads of a Runtime


def compare(
    arch: str,
    data: str,
    out: str | os.PathLike,
    settings: CompareSettings | None = None,
    *,
    weights: str | None = None,
    image_size: int | None = None,
    runtime: Runtime | None = None,
    **knobs,
) -> pd.DataFrame:
    """Greedy against the other methods (:data:`METHODS`) at equal MACs and fine-tuning budget.

    settings: what the run computes, a :class:`CompareSettings` (None: its defaults), checked
    when made; runtime: how it runs, a :class:`~greedyprune.prune.Runtime` (device, workers,
    amp, progress). Any field of either may be given as a keyword instead
    (``compare(arch, data, out, methods=["l1"], seeds=[0, 1])``); it replaces that field.

    Every method keeps the same number of channels per group (one keep ratio planned for each
    target), then fine-tunes ``finetune_epochs`` at ``finetune_lr``. ``uniform``, re-initialised,
    trains from scratch at the base model's learning rate 0.05 for the whole budget the others
    had: ``train_epochs`` (when the base model is trained here) + ``finetune_epochs``. One row per
    (method, target, seed) in ``out/results.csv`` (unit ``METHOD-TARGET-sSEED``), the means over
    seeds in ``out/summary.csv`` (:func:`summarize`); finished units are skipped on a rerun, and a
    finished run loads and trains nothing. The job is a :class:`~greedyprune.study.Study` run by
    :func:`greedyprune.study.run_study`; under ``torchrun`` every rank runs each unit (distributed
    fine-tuning and selection) and rank 0 writes.

    Fine-tune against re-train (the width rules, :data:`WIDTH_RULES`): ``metapruner`` is Torch-Pruning's own
    global pruner at the same MACs target (its own widths), fine-tuned like the others;
    ``scratch-E`` and ``scratch-B`` are greedy's architecture (the planned widths) with fresh
    weights, trained at lr 0.05 for ``finetune_epochs`` (E) and for the budget B. B counts compute
    as epochs x MACs per image, one training epoch (forward + backward) costing 3 forward passes
    of every training image: B = (train_epochs * M_full + S / (3 N) * M_full + E * M) / M epochs,
    with M the pruned MACs, M_full the full model's, N the training images and S the images
    greedy's selection sent through the classifier (each counted at the full model's MACs, an
    upper bound); train_epochs counts 0 with ``weights``. scratch-B needs greedy in ``methods``
    (it runs after it and reads its S). Their units add the columns ``epochs`` (trained after
    pruning) and ``select_images`` (S, greedy's rows; 0 for the others).
    curves: record test accuracy after every epoch of fine-tuning / training (column
        ``acc_curve``, a JSON list of ceil(epochs) numbers whose last is ``acc_finetuned``).
    latency_runs: when > 0, every unit's final model is kept in ``out/models/UNIT.safetensors``
        and, once all units are done, timed in one paired phase: every model (and the full one)
        in turn, one batch of 32 per turn, ``latency_runs`` turns after a warm-up; the samples in
        ``out/latency_samples.csv``, the median and quartiles per unit in ``out/latency.csv``.
        The ``latency_ms`` column is measured mid-run, under whatever load there is then.
    local: None (every method on all the prunable groups, residual streams included) or local
        imitation's settings: every method then prunes the internal groups only (one consumer
        each, ``find_prunable_groups(residual=False)``), the widths planned over them, and the
        local methods (:data:`~greedyprune.prune._local.CRITERIA`) may be compared; each local
        unit draws its calibration set and positions from its seed. Its ``method`` is not used.
    New options add config keys (``curves``, ``metapruner_steps``, ``scratch_lr``, ``groups``
    and ``local``) only when used, so folders made without them resume unchanged.
    Returns the results table (every unit of the folder, this call's and earlier ones').
    """
    st, rt = resolve_settings(
        "compare", CompareSettings, settings, Runtime, runtime, knobs, how=_RUNTIME_FIELDS
    )
    check_settings(
        device=rt.device,
        amp=rt.amp,
        positive_ints=[("greedy_batch", st.greedy_batch)],
        non_negative_ints=[("workers", rt.workers), ("latency_runs", st.latency_runs)],
        positive=[("finetune_epochs", st.finetune_epochs), ("finetune_lr", st.finetune_lr)]
        + ([("train_epochs", st.train_epochs)] if weights is None else []),
    )
    device = init_from_env(rt.device)
    local_slice(st.greedy_batch)
    progress = auto_progress(rt.progress)
    # every check that reads the data, the model or the targets: before the folder exists
    prep = prepare(
        arch, data, image_size, weights, device, st.targets, workers=rt.workers, progress=progress
    )
    if st.local is not None:
        _local.internal_groups(prep.model, prep.example, st.local, len(prep.train))
    loader = {"num_workers": rt.workers, "amp": rt.amp}
    study = _compare_study(
        prep,
        out,
        st.config(arch, data, weights, image_size),
        st,
        loader,
        progress,
    )
    results = run_study(study, out, device=device, progress=progress).results
    if is_main():  # every unit is done: the base model's training checkpoint is not needed again
        (Path(out) / "base-train.pt").unlink(missing_ok=True)
    if st.latency_runs > 0:
        latency_phase(out, prep, st.latency_runs, device)
    return results


class _CompareUnits:
    """The units of one :func:`compare` run (see :func:`_compare_study`): the base model, built
    once per device when the first unit left to do starts, and one unit per (method, target,
    seed)."""

    def __init__(self, prep: Prepared, out, config: dict, st: CompareSettings, loader, progress):
        self.prep, self.out, self.config, self.st = prep, Path(out), config, st
        self.loader, self.progress = loader, progress
        self.extended = any(
            k in config for k in ("curves", "metapruner_steps", "scratch_lr", "local")
        )
        self.local = st.local  # the settings given (config.json leaves the memory budget out)
        self.seen_by_greedy: dict[tuple[str, int], int] = {}  # (target, seed) -> S, scratch-B
        self._bases: dict[str, SimpleNamespace] = {}

    def greedy_images(self, t, seed: int) -> int:
        """S of greedy's unit at (target, seed): counted in this call or read from its row."""
        if (str(t), seed) in self.seen_by_greedy:
            return self.seen_by_greedy[(str(t), seed)]
        done = pd.read_csv(self.out / "results.csv")  # greedy finished in an earlier call
        row = done[done["unit"] == f"greedy-{t}-s{seed}"]
        return int(row["select_images"].iloc[0])

    def base(self, device: str) -> SimpleNamespace:
        """The base model's groups, MACs model, accuracy and latency (the run folder is open),
        made once per device."""
        if device not in self._bases:
            self._bases[device] = self._make_base(device)
        return self._bases[device]

    def _make_base(self, device: str) -> SimpleNamespace:
        if self.config["weights"] is None:
            train_base(
                self.prep, self.out, self.config["train_epochs"], 0, self.progress, **self.loader
            )
        model = self.prep.model
        base_hash = _io.state_hash(model)
        _check_one_base(self.out / "results.csv", base_hash)
        groups = find_prunable_groups(model, self.prep.example, residual=self.local is None)
        lat_example = torch.zeros(32, 3, self.prep.size, self.prep.size, device=device)
        return SimpleNamespace(
            model=model,
            base_hash=base_hash,
            groups=groups,
            macs=MacsModel(profile_layers(model, self.prep.example), groups),
            acc_full=evaluate(model, self.prep.test),
            lat_example=lat_example,
            lat_full=latency_ms(model, lat_example),
        )

    def pruned(self, b, device: str, method: str, t, target: int, seed: int, seen: list):
        """The unit's pruned model and, for a width rule, its context (None otherwise); ``seen``
        counts the images greedy's selection sends through the classifier."""
        widths = b.macs.plan(target)
        ctx = None
        if method in WIDTH_RULES:
            rule = WIDTH_RULES[method]
            prep = self.prep
            ctx = RuleContext(
                b.model, prep.example, widths, target, seed, self.config, len(prep.train),
                greedy_images=lambda: self.greedy_images(t, seed),
            )  # fmt: skip
            model = rule.build(ctx)
        else:
            model = copy.deepcopy(b.model)
            request = SelectionRequest(
                model=model,
                example=self.prep.example,
                groups=b.groups,
                widths=widths,
                generator=torch.Generator().manual_seed(seed),
                target_macs=target,
                data=self.prep.train,
                batch_size=self.config["greedy_batch"],
                seed=seed,
                device=device,
                options={"candidates": self.config["candidates"], "loss": self.config["loss"]},
                on_images=lambda k: seen.__setitem__(0, seen[0] + k),
            )
            if method in _local.CRITERIA:
                request.data = _local.calibration_set(
                    self.prep.train,
                    self.prep.test,
                    self.local.calibration_images,
                    torch.Generator().manual_seed(seed),
                    labels_of(self.prep.train),
                )
                request.options["local"] = self.local
            elif method != "greedy":
                # drawn first for every criterion, as before the registry, so that a seed's
                # random channels are those of folders made then
                request.one_batch(method)
            apply_choice(model, self.prep.example, b.groups, select_channels(method, request))
        return model, ctx

    def unit(self, device: str, method: str, t, target: int, seed: int) -> list[dict]:
        b = self.base(device)
        seen = [0]
        t0 = time.perf_counter()
        model, ctx = self.pruned(b, device, method, t, target, seed, seen)
        select_s = time.perf_counter() - t0
        if method == "greedy":
            self.seen_by_greedy[(str(t), seed)] = seen[0]
        acc_pruned = evaluate(model, self.prep.test, **self.loader)
        macs = count_macs(model, self.prep.example)
        full_macs = b.macs.full_macs
        if method in WIDTH_RULES:
            epochs, lr = WIDTH_RULES[method].budget(ctx, macs, full_macs)
        else:
            epochs, lr = self.config["finetune_epochs"], self.config["finetune_lr"]
        curve: list[float] = []
        t0 = time.perf_counter()
        _finetune.finetune(
            model,
            self.prep.train,
            epochs=epochs,
            lr=lr,
            generator=seed,
            progress=self.progress,
            on_epoch=(lambda _e: curve.append(evaluate(model, self.prep.test)))
            if self.config.get("curves")
            else None,
            **self.loader,
        )
        ft_s = time.perf_counter() - t0
        if self.st.latency_runs > 0 and is_main():  # the latency phase times every unit's model
            _io.save_state(self.out / "models" / f"{method}-{t}-s{seed}.safetensors", model)
        row = {
            "arch": self.config["arch"],
            "method": method,
            "target": str(t),
            "seed": seed,
            "macs_target": target,
            "macs": macs,
            "macs_full": full_macs,
            "macs_fraction": macs / full_macs,
            "params": count_params(model),
            "acc_full": b.acc_full,
            "acc_pruned": acc_pruned,
            "acc_finetuned": evaluate(model, self.prep.test),
            "latency_ms": latency_ms(model, b.lat_example),
            "latency_full_ms": b.lat_full,
            "select_s": select_s,
            "finetune_s": ft_s,
            "base_hash": b.base_hash,
        }
        if self.extended:
            row["epochs"] = epochs
            row["select_images"] = seen[0]
        if self.config.get("curves"):
            row["acc_curve"] = json.dumps(curve)
        return [row]

    def seeded_unit(self, device: str, method: str, t, target: int, seed: int) -> list[dict]:
        with seeded_draws(seed, device):  # crops, flips, dropout: from the unit's seed
            return self.unit(device, method, t, target, seed)

    def units(self, device: str):
        return [
            (f"{m}-{t}-s{s}", functools.partial(self.seeded_unit, device, m, t, a, s))
            for s in self.st.seeds
            for t, a in zip(self.st.targets, self.prep.targets)
            for m in self.st.methods
        ]


def _compare_study(
    prep: Prepared,
    out,
    config: dict,
    st: CompareSettings,
    loader: dict,
    progress: bool,
) -> Study:
    """The :class:`~greedyprune.study.Study` of :func:`compare` (its checked settings, the
    prepared data and model, the ``config.json`` naming the run): one unit per (method, target,
    seed) in seed-major order, so an interrupted run has every method at every target for its
    first seeds, and the summary (:func:`summarize`). The base model is trained (or loaded from
    ``out/base.safetensors``) and measured once, when the first unit left to do starts."""
    units = _CompareUnits(prep, out, config, st, loader, progress)
    name = f"compare {config['arch']}"
    return Study(
        name=name, config=config, units=units.units, summary=summarize, belongs=_is_compare_unit
    )


def _is_compare_unit(unit: str) -> bool:
    """Whether ``unit`` is a compare unit id, ``METHOD-TARGET-sSEED`` with a known method: the
    units of a folder vary from call to call (other seeds, methods, targets), their form not."""
    for method in (*SELECTION_METHODS, *WIDTH_RULES):
        if unit.startswith(f"{method}-"):
            target, sep, seed = unit[len(method) + 1 :].rpartition("-s")
            if sep and target and seed.isdigit():
                return True
    return False


def _check_one_base(results: Path, base_hash: str) -> None:
    """Refuse to add rows of the base model ``base_hash`` to a ``results.csv`` that holds rows of
    another (the file behind --weights changed, or another torch trained it); rows written
    before the hash was recorded count as one base model, this one."""
    if not results.is_file():
        return
    try:
        rows = pd.read_csv(results, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return  # the study's reader names a damaged file
    if "base_hash" not in rows.columns:
        return
    other = sorted({h for h in rows["base_hash"] if h and h != base_hash})
    if other:
        line = int((rows["base_hash"] == other[0]).to_numpy().nonzero()[0][0]) + 2
        raise GreedypruneError(
            f"{str(results)!r} line {line} holds results of base model {other[0]}, but this run's "
            f"base model is {base_hash} (the weights file changed, or the base model was trained "
            "again); pass another --out, or move the folder's results away"
        )


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (arch, target, method)."""
    if df.empty:
        return df
    cols = ["macs_fraction", "params", "acc_pruned", "acc_finetuned", "latency_ms", "select_s"]
    g = df.groupby(["arch", "target", "method"], sort=False)
    out = g[cols].mean().add_suffix("_mean")
    out = out.join(g[["acc_pruned", "acc_finetuned"]].std(ddof=1).add_suffix("_std"))
    out["seeds"] = g.size()
    return out.reset_index()
