"""The two jobs behind the CLI: ``prune`` (one model, saved) and ``compare`` (methods at equal MACs).

Both check every input before a run folder is written, write into a :class:`greedyprune.runs.RunDir`
and resume: ``prune`` keeps the selected model before fine-tuning and a fine-tuning checkpoint;
``compare`` is a :class:`greedyprune.study.Study` run by :func:`greedyprune.study.run_study`, one
unit per (method, target, seed), finished ones skipped.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch
import torch_pruning as tp
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from greedyprune.runs import open_run, unique
from greedyprune.study import Study, run_study

from ._baselines import BASELINES, baseline_channels
from ._data import check_images, class_count, eval_indices, labels_of, load_data, parse_data
from ._distributed import barrier, init_from_env, is_main, local_slice, rank, world_size
from ._finetune import AMP_DTYPES, batch_stream, evaluate, finetune, latency_ms, stream_batches
from ._gates import find_prunable_groups
from ._io import load_pruned, save_pruned
from ._layerwise import check_selection_settings, greedy_prune
from ._macs import MacsModel, count_macs, count_params, parse_macs, profile_layers
from ._models import build_model
from ._recipes import UNSET, FinetuneSettings, resolve_recipe
from ._surgery import fold_and_prune, prune_channels

__all__ = ["METHODS", "compare", "prune", "summarize"]

# compare's methods that are not a channel choice at the planned widths (see compare's docstring)
COMPARE_ONLY = {
    "metapruner": "Torch-Pruning's own pipeline: tp.pruner.MetaPruner, global_pruning=True, "
    f"iterative_steps={5}, L2 magnitude importance, the classifier kept whole; its pruning ratio "
    "bisected to the MACs target",
    "scratch-E": "greedy's widths, fresh weights, trained finetune_epochs at the base model's lr",
    "scratch-B": "greedy's widths, fresh weights, trained for the compute of pre-training + "
    "greedy's selection + fine-tuning (see compare)",
}
METHODS = ("greedy", *BASELINES, *COMPARE_ONLY)
META_STEPS = 5  # MetaPruner's iterative_steps
SCRATCH_LR = 0.05  # the base model's learning rate: uniform, scratch-E and scratch-B train at it
_DEFAULT_SIZE = {"folder": 224, "digits": 32, "synthetic": 64}


@dataclass
class _Prepared:
    """What a run needs, built and checked before its folder is written."""

    kind: str
    size: int
    train: Dataset
    test: Dataset
    n_classes: int
    model: nn.Module
    example: Tensor
    targets: list[int]


def _prepare(
    arch,
    data,
    image_size,
    weights,
    device,
    targets,
    *,
    crop_scale=(0.08, 1.0),
    workers=0,
    progress=False,
) -> _Prepared:
    """Load the data (every image header of a folder checked), build the model with the data's
    class count, load the weights, and turn the MACs targets into reachable absolute counts: every
    check that can fail, before any folder is created or model trained."""
    spec = parse_data(data)
    size = _DEFAULT_SIZE[spec.kind] if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {size!r}")
    if weights is None and spec.kind == "folder":
        raise ValueError(
            "data=folder:... needs weights=PATH (a trained checkpoint); only digits and "
            "synthetic models are trained here from scratch"
        )
    train, test, n_classes = load_data(spec, size, num_classes=10, crop_scale=crop_scale)
    for dataset in (train, test):
        check_images(dataset, workers=max(4, workers), progress=progress)
    model = build_model(arch, n_classes, weights)
    example = torch.zeros(1, 3, size, size)
    groups = find_prunable_groups(model, example)
    macs_model = MacsModel(profile_layers(model, example), groups)
    smallest = macs_model.macs({g.name: 1 for g in groups})
    absolute = []
    for t in targets:
        if t is None:
            continue
        target = parse_macs(t, macs_model.full_macs)
        if target < smallest:
            raise ValueError(
                f"target_macs={t!r} ({target / 1e6:.3f}M) is below the smallest reachable "
                f"{smallest / 1e6:.3f}M MACs of {arch} at {size} px (one channel per prunable "
                "group); pass a larger target"
            )
        absolute.append(target)
    model = model.to(device).eval()
    return _Prepared(spec.kind, size, train, test, n_classes, model, example.to(device), absolute)


def _check_settings(
    *,
    candidates=None,
    candidate_order="random",
    loss="ce",
    tol=None,
    mode="batched",
    device="cpu",
    amp=None,
    positive_ints=(),
    non_negative_ints=(),
    positive=(),
    non_negative=(),
):
    """The cheap checks of ``prune``/``compare``: all before a folder is made or a model trained."""
    check_selection_settings(
        candidates=candidates, candidate_order=candidate_order, loss=loss, tol=tol, mode=mode
    )
    for name, value in positive_ints:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an int >= 1")
    for name, value in non_negative_ints:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}={value!r} must be an int >= 0")
    for name, value in positive:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name}={value!r} must be a number > 0")
    for name, value in non_negative:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name}={value!r} must be a number >= 0")
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a torch device; pass cpu, cuda or cuda:1"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA device is available; pass cpu")
    if amp is not None:
        if amp not in AMP_DTYPES:
            raise ValueError(f"amp={amp!r} must be one of {', '.join(AMP_DTYPES)} or None")
        if kind != "cuda":
            raise ValueError(
                f"amp={amp!r} needs a CUDA device (device={device!r}); drop amp on the CPU"
            )


def _train_base(prep: _Prepared, folder: Path, train_epochs, seed, progress, **loader) -> None:
    """Train the base model when no checkpoint was given (digits, synthetic); cached in the run
    ``folder`` as ``base.safetensors`` (loaded when there), checkpointed in ``base-train.pt``."""
    base = folder / "base.safetensors"
    if base.is_file():
        try:
            prep.model.load_state_dict(load_file(str(base)))
        except Exception:
            raise ValueError(
                f"{str(base)!r} is damaged; delete it and run again to retrain the base model"
            ) from None
    else:
        finetune(
            prep.model,
            prep.train,
            epochs=train_epochs,
            lr=0.05,
            generator=seed,
            checkpoint=folder / "base-train.pt",
            progress=progress,
            **loader,
        )
        state = {k: v.detach().contiguous().cpu() for k, v in prep.model.state_dict().items()}
        if is_main():
            tmp = folder / ".base.safetensors.tmp"
            save_file(state, str(tmp))
            os.replace(tmp, base)
        barrier()
    prep.model.eval()


def _sgd(phase: FinetuneSettings) -> dict:
    """``finetune`` keywords of one recipe phase."""
    return {
        "epochs": phase.epochs,
        "lr": phase.lr,
        "batch_size": phase.batch_size,
        "momentum": phase.momentum,
        "nesterov": phase.nesterov,
        "weight_decay": phase.weight_decay,
        "decay_all": phase.decay_all,
        "label_smoothing": phase.label_smoothing,
        "schedule": phase.schedule,
    }


def _auto_progress(progress) -> bool:
    """Bars when asked (None: when stderr is a terminal), on rank 0 only."""
    return is_main() and (sys.stderr.isatty() if progress is None else bool(progress))


def prune(
    arch: str,
    data: str,
    out: str | os.PathLike,
    *,
    recipe: str = "default",
    target_macs: str | float | None = None,
    weights: str | None = None,
    image_size: int | None = None,
    candidates=UNSET,
    candidate_order=UNSET,
    batch_size=UNSET,
    crop_scale=UNSET,
    tol=UNSET,
    precheck=UNSET,
    n_eval=UNSET,
    eval_every=UNSET,
    between_epochs=UNSET,
    finetune_epochs=UNSET,
    finetune_lr=UNSET,
    finetune_batch_size=UNSET,
    replacement: bool = False,
    loss: str = "ce",
    mode: str = "batched",
    train_epochs: float = 20,
    seed: int = 0,
    device: str = "cpu",
    workers: int = 0,
    amp: str | None = None,
    channels_last: bool = False,
    eval_cache_mb: int = 1024,
    keep_checkpoints: bool = False,
    progress: bool | None = None,
) -> dict:
    """Prune ``arch`` by layer-wise greedy forward selection, fine-tune, save into ``out``.

    recipe: "default" or "authors" (see :data:`RECIPES`): every knob below left unset takes the
        recipe's value; a value given here overrides it (``recipe="authors", candidates=8``).
    target_macs: "220M", "1.5G", 0.5 or "50%" (see ``parse_macs``); tol: the authors' per-layer
        top-1 tolerance, measured on every ``eval_every``-th training image (or ``n_eval`` images
        spread over the whole set). At least one of them.
    weights: a local checkpoint; without one (digits, synthetic) a model is trained here for
        ``train_epochs`` and cached in ``out``.
    workers: DataLoader workers; amp: "bf16"/"fp16" autocast on CUDA; channels_last: NHWC memory.
    eval_cache_mb: memory (MiB) for keeping the evaluation set's activations at the group being
        selected, so that ``tol``'s evaluations run only the rest of the network (0: off; see
        ``greedy_prune``'s ``eval_cache_bytes``).
    keep_checkpoints: keep the training checkpoints (``base-train.pt``, ``finetune.pt``: model
        and optimizer state after every epoch, for resuming) once the run has finished; by
        default they are removed then. A finished run is not redone: its summary is returned.
    progress: bars on the layers, steps and epochs; None: on when stderr is a terminal.
    Returns the summary (also in ``out/summary.json``). The pruned model is
    ``out/model.safetensors`` + ``out/pruned.json`` (see ``load_pruned``).
    """
    r = resolve_recipe(
        recipe,
        candidates=candidates,
        candidate_order=candidate_order,
        batch_size=batch_size,
        crop_scale=crop_scale,
        tol=tol,
        precheck=precheck,
        n_eval=n_eval,
        eval_every=eval_every,
        between_epochs=between_epochs,
        finetune_epochs=finetune_epochs,
        finetune_lr=finetune_lr,
        finetune_batch_size=finetune_batch_size,
    )
    _check_settings(
        candidates=r.candidates,
        candidate_order=r.candidate_order,
        loss=loss,
        tol=r.tol,
        mode=mode,
        device=device,
        amp=amp,
        positive_ints=[("batch_size", r.batch_size), ("finetune_batch_size", r.final.batch_size)]
        + ([("n_eval", r.n_eval)] if r.n_eval is not None else [])
        + ([("eval_every", r.eval_every)] if r.eval_every is not None else []),
        non_negative_ints=[("workers", workers), ("eval_cache_mb", eval_cache_mb)],
        positive=[("train_epochs", train_epochs)] if weights is None else [],
        non_negative=[("between_epochs", r.between.epochs), ("finetune_epochs", r.final.epochs)],
    )
    device = init_from_env(device)
    local_slice(r.batch_size)  # the step batch must split evenly over the processes
    progress = _auto_progress(progress)
    prep = _prepare(
        arch,
        data,
        image_size,
        weights,
        device,
        [target_macs],
        crop_scale=tuple(r.crop_scale),
        workers=workers,
        progress=progress,
    )
    if target_macs is None and r.tol is None:
        raise ValueError("pass target_macs (e.g. 220M or 0.5) or tol (e.g. 0.02)")
    if r.tol is not None and r.n_eval is None and r.eval_every is None:
        raise ValueError("tol needs n_eval or eval_every: the images top-1 is measured on")
    config = {
        "job": "prune",
        "arch": arch,
        "data": data,
        "target_macs": target_macs,
        "weights": weights,
        "image_size": image_size,
        "recipe": r.as_dict(),
        "replacement": replacement,
        "loss": loss,
        "mode": mode,
        "train_epochs": train_epochs,
        "seed": seed,
    }
    run = open_run(out, config)  # rank 0 writes; the other ranks read
    if (run.path / "summary.json").is_file() and (run.path / "model.safetensors").is_file():
        return json.loads((run.path / "summary.json").read_text())  # finished: nothing to redo
    loader = {"num_workers": workers, "amp": amp, "channels_last": channels_last}
    if weights is None:
        _train_base(prep, run.path, train_epochs, seed, progress, **loader)
    model, example, train = prep.model, prep.example, prep.train
    if channels_last:
        model.to(memory_format=torch.channels_last)
    full_macs = count_macs(model, example)
    target = prep.targets[0] if prep.targets else None
    eval_loader = {"batch_size": 256, **loader}
    acc_full = evaluate(model, prep.test, **eval_loader)
    idx = eval_indices(len(train), n_eval=r.n_eval, every=r.eval_every)
    eval_set = Subset(train, idx[rank() :: world_size()])  # this rank's share
    eval_classes = class_count(labels_of(Subset(train, idx)))
    selected = run.path / "selected"
    t0 = time.perf_counter()
    if (selected / "pruned.json").is_file():
        model, record = load_pruned(selected, model=prep.model)
        model.to(device)
        select_s = float(record.get("select_s", 0.0))
        kept = record["kept"]
    else:
        gen = torch.Generator().manual_seed(seed)
        # one shuffling stream for all between-layer steps: each layer's 0.1 epoch sees new images
        between_gen = torch.Generator().manual_seed(seed + 1)

        def between(m: nn.Module) -> None:
            finetune(m, train, generator=between_gen, **_sgd(r.between), **loader)

        gm, result = greedy_prune(
            model,
            batch_stream(
                train,
                r.batch_size,
                generator=gen,
                device=device,
                num_workers=workers,
                channels_last=channels_last,
            ),
            example,
            target_macs=target,
            tol=r.tol,
            eval_data=stream_batches(
                eval_set,
                64,
                device=device,
                num_workers=workers,
                channels_last=channels_last,
            )
            if r.tol is not None
            else None,
            precheck=r.precheck,
            candidates=r.candidates,
            candidate_order=r.candidate_order,
            replacement=replacement,
            loss=loss,
            mode=mode,
            generator=seed,
            amp=amp,
            eval_cache_bytes=eval_cache_mb << 20,
            between_layers=between if r.between.epochs > 0 else None,
            progress=progress,
        )
        model, kept = fold_and_prune(gm)
        select_s = time.perf_counter() - t0
        run.write_table(
            pd.DataFrame(
                [
                    {
                        "layer": rec.name,
                        "channels": rec.n_channels,
                        "kept": len(rec.kept),
                        "evaluations": rec.evaluations,
                        "full_evaluations": rec.full_evaluations,
                        "select_s": rec.seconds,
                        "loss_last": rec.losses[-1] if rec.losses else float("nan"),
                        "acc_before": rec.acc_before,
                        "acc_after": rec.acc_after,
                    }
                    for rec in result.layers
                ]
            ),
            "layers",
        )
        if is_main():
            save_pruned(
                selected,
                model,
                arch=arch,
                num_classes=prep.n_classes,
                image_size=prep.size,
                kept=kept,
                extra={"select_s": select_s},
            )
        barrier()
    acc_pruned = evaluate(model, prep.test, **eval_loader)
    if r.final.epochs:
        finetune(
            model,
            train,
            generator=seed,
            checkpoint=run.path / "finetune.pt",
            progress=progress,
            **_sgd(r.final),
            **loader,
        )
    acc_final = evaluate(model, prep.test, **eval_loader)
    macs = count_macs(model, example)
    summary = {
        "arch": arch,
        "recipe": r.name,
        "macs_full": full_macs,
        "macs_target": target,
        "macs": macs,
        "macs_fraction": macs / full_macs,
        "params": count_params(model),
        "acc_full": acc_full,
        "acc_pruned": acc_pruned,
        "acc_finetuned": acc_final,
        "n_eval": len(idx),
        "eval_classes": eval_classes,
        "classes": prep.n_classes,
        "select_s": select_s,
    }
    if is_main():
        save_pruned(
            run.path,
            model,
            arch=arch,
            num_classes=prep.n_classes,
            image_size=prep.size,
            kept=kept,
            extra=summary,
        )
    run.write_json("summary.json", summary)
    if is_main() and not keep_checkpoints:
        for name in ("base-train.pt", "finetune.pt"):  # only needed to resume an unfinished run
            (run.path / name).unlink(missing_ok=True)
    barrier()
    return summary


def _one_method(method, base, example, groups, widths, target, train, cfg, seed, device, seen=None):
    """The pruned model of ``method`` and its selection seconds; ``seen``: a one-item list that
    greedy's selection adds to the number of images that went through the classifier (every
    forward pass of the selection, counted at the full model's MACs for scratch-B's budget)."""
    model = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    if method == "greedy":
        hooks = []
        if seen is not None:
            head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]

            def count(_m, args, _out):
                seen[0] += int(args[0].shape[0])

            hooks.append(head.register_forward_hook(count))
        try:
            gm, _ = greedy_prune(
                model,
                batch_stream(train, cfg["greedy_batch"], generator=gen, device=device),
                example,
                target_macs=target,
                candidates=cfg["candidates"],
                loss=cfg["loss"],
                generator=seed,
                groups=groups,
            )
        finally:
            for h in hooks:
                h.remove()
        model, _ = fold_and_prune(gm)
    else:
        # the criteria see the same whole batch on every rank, so every rank keeps the same channels
        batch = batch_stream(
            train, cfg["greedy_batch"] * 8, generator=gen, device=device, shard=False
        )()
        kept = baseline_channels(method, model, example, groups, widths, batch=batch, generator=gen)
        prune_channels(model, example, kept)
        if method == "uniform":
            torch.manual_seed(seed)
            for m in model.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    return model, time.perf_counter() - t0


def compare(
    arch: str,
    data: str,
    out: str | os.PathLike,
    *,
    targets=(0.5,),
    methods=METHODS,
    seeds=(0,),
    weights: str | None = None,
    image_size: int | None = None,
    train_epochs: float = 20,
    finetune_epochs: float = 3,
    finetune_lr: float = 0.01,
    candidates: int | None = 8,
    greedy_batch: int = 8,
    loss: str = "ce",
    device: str = "cpu",
    workers: int = 0,
    amp: str | None = None,
    curves: bool = False,
    latency_runs: int = 0,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Greedy against the baselines (:data:`BASELINES`) at equal MACs and fine-tuning budget.

    Every method keeps the same number of channels per group (one keep ratio planned for each
    target), then fine-tunes ``finetune_epochs`` at ``finetune_lr``. ``uniform``, re-initialised,
    trains from scratch at the base model's learning rate 0.05 for the whole budget the others
    had: ``train_epochs`` (when the base model is trained here) + ``finetune_epochs``. One row per
    (method, target, seed) in ``out/results.csv`` (unit ``METHOD-TARGET-sSEED``), the means over
    seeds in ``out/summary.csv`` (:func:`summarize`); finished units are skipped on a rerun, and a
    finished run loads and trains nothing. The job is a :class:`~greedyprune.study.Study` run by
    :func:`greedyprune.study.run_study`; under ``torchrun`` every rank runs each unit (distributed
    fine-tuning and selection) and rank 0 writes.
    targets: MACs targets (fractions or absolute, see ``parse_macs``).

    Fine-tune against re-train (:data:`COMPARE_ONLY`): ``metapruner`` is Torch-Pruning's own
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
    New options add config keys (``curves``, ``metapruner_steps``, ``scratch_lr``) only when
    used, so folders made without them resume unchanged.
    Returns the results table (every unit of the folder, this call's and earlier ones').
    """
    methods = unique([methods] if isinstance(methods, str) else methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods={bad or methods!r}: choose from {', '.join(METHODS)}")
    targets = [targets] if isinstance(targets, (str, int, float)) else list(targets)
    seeds = unique(int(s) for s in ([seeds] if isinstance(seeds, int) else seeds))
    targets = unique(targets)
    if "scratch-B" in methods:
        if "greedy" not in methods:
            raise ValueError(
                "methods=scratch-B needs greedy too: its budget counts greedy's selection"
            )
        methods = ["greedy", *(m for m in methods if m != "greedy")]  # greedy's S comes first
    if not isinstance(curves, bool):
        raise ValueError(f"curves={curves!r} must be True or False")
    _check_settings(
        candidates=candidates,
        loss=loss,
        device=device,
        amp=amp,
        positive_ints=[("greedy_batch", greedy_batch)],
        non_negative_ints=[("workers", workers), ("latency_runs", latency_runs)],
        positive=[("finetune_epochs", finetune_epochs)]
        + ([("train_epochs", train_epochs)] if weights is None else []),
    )
    device = init_from_env(device)
    local_slice(greedy_batch)
    progress = _auto_progress(progress)
    # every check that reads the data, the model or the targets: before the folder exists
    prep = _prepare(
        arch, data, image_size, weights, device, targets, workers=workers, progress=progress
    )
    config = {
        "job": "compare",
        "arch": arch,
        "data": data,
        "weights": weights,
        "image_size": image_size,
        "train_epochs": train_epochs,
        "finetune_epochs": finetune_epochs,
        "finetune_lr": finetune_lr,
        "uniform_epochs": (train_epochs if weights is None else 0) + finetune_epochs,
        "candidates": candidates,
        "greedy_batch": greedy_batch,
        "loss": loss,
    }
    # keys only when the new options are used, so the folders made before them still match
    if curves:
        config["curves"] = True
    if "metapruner" in methods:
        config["metapruner_steps"] = META_STEPS
    if any(m.startswith("scratch-") for m in methods):
        config["scratch_lr"] = SCRATCH_LR
    loader = {"num_workers": workers, "amp": amp}
    study = _compare_study(
        prep, out, config, targets, methods, seeds, loader, progress, keep_models=latency_runs > 0
    )
    results = run_study(study, out, device=device, progress=progress).results
    if latency_runs > 0:
        latency_phase(out, prep, latency_runs, device)
    return results


def scratch_budget(
    train_epochs: float, select_images: int, n_train: int, macs_full: int, macs: int, epochs: float
) -> float:
    """scratch-B's epochs: the compute of pre-training (``train_epochs`` of the full model),
    greedy's selection (``select_images`` forward passes of the full model, 1/3 of a training
    pass each) and fine-tuning (``epochs`` of the pruned model), in epochs of the pruned model;
    compute is epochs x MACs per image."""
    selection_epochs = select_images / (3 * n_train)
    return (train_epochs * macs_full + selection_epochs * macs_full + epochs * macs) / macs


def _metapruner(base: nn.Module, example: Tensor, target: int) -> nn.Module:
    """Torch-Pruning's global pruner on a copy of ``base``: ``META_STEPS`` iterative steps of
    L2-magnitude global pruning (classifier outputs kept), the final pruning ratio bisected so
    that the MACs land at or just under ``target``."""

    def run(ratio: float) -> tuple[nn.Module, int]:
        model = copy.deepcopy(base).eval()
        heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=2),
            global_pruning=True,
            pruning_ratio=ratio,
            iterative_steps=META_STEPS,
            ignored_layers=heads,
        )
        for _ in range(META_STEPS):
            pruner.step()
        return model, count_macs(model, example)

    lo, hi = 0.0, 0.95
    best = run(hi)
    if best[1] > target:
        raise ValueError(
            f"metapruner cannot reach {target / 1e6:.3f}M MACs (pruning ratio {hi}); pass a "
            "larger target"
        )
    for _ in range(12):
        mid = (lo + hi) / 2
        model, macs = run(mid)
        if macs <= target:
            hi, best = mid, (model, macs)
        else:
            lo = mid
    return best[0]


def _fit_shapes(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """``model`` (the unpruned architecture) with every convolution, batch norm and linear layer
    resized to the tensors of ``state`` (a pruned model's state dict, any widths), loaded."""
    for name, m in model.named_modules():
        w = state.get(f"{name}.weight")
        if w is None:
            continue
        if isinstance(m, nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            m.out_channels = int(w.shape[0])
            m.groups = int(w.shape[0]) if depthwise else m.groups
            m.in_channels = int(w.shape[1]) * m.groups
        elif isinstance(m, nn.BatchNorm2d):
            m.num_features = int(w.shape[0])
        elif isinstance(m, nn.Linear):
            m.out_features, m.in_features = (int(d) for d in w.shape)
        else:
            continue
        for pname in list(m._parameters):
            if m._parameters[pname] is not None:  # bias=False leaves None
                m._parameters[pname] = nn.Parameter(torch.empty_like(state[f"{name}.{pname}"]))
        for bname in list(m._buffers):
            if f"{name}.{bname}" in state:
                m._buffers[bname] = state[f"{name}.{bname}"].clone()
    model.load_state_dict(state)
    return model


def latency_phase(out, prep: _Prepared, runs: int, device, *, batch: int = 32) -> pd.DataFrame:
    """Time every final model kept in ``out/models`` and the full model in one paired phase:
    ``runs`` turns, each model once per turn (one forward pass of ``batch`` images, the order
    rotated every turn), after two warm-up passes each. Writes ``latency_samples.csv`` (every
    sample) and ``latency.csv`` (median, quartiles and IQR in ms per unit); returns the latter.
    A ``latency.csv`` of the same models with at least ``runs`` turns is kept as it is."""
    folder = Path(out)
    kept = sorted(f.stem for f in (folder / "models").glob("*.safetensors"))
    if (folder / "latency.csv").is_file():  # measured already for these models: not again
        done = pd.read_csv(folder / "latency.csv")
        if sorted(done["unit"]) == sorted(["full", *kept]) and (done["runs"] >= runs).all():
            return done
    arch = json.loads((folder / "config.json").read_text())["arch"]
    models = {"full": prep.model}
    for f in sorted((folder / "models").glob("*.safetensors")):
        models[f.stem] = _fit_shapes(build_model(arch, prep.n_classes), load_file(str(f)))
    x = torch.zeros(batch, 3, prep.size, prep.size, device=device)
    names = list(models)
    samples = {n: [] for n in names}
    with torch.no_grad():
        for n in names:
            models[n].to(device).eval()
            for _ in range(2):
                models[n](x)
        for r in range(runs):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                t = time.perf_counter()
                models[n](x)
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                samples[n].append(1000.0 * (time.perf_counter() - t))
    long = pd.DataFrame(
        [{"unit": n, "run": i, "ms": v} for n in names for i, v in enumerate(samples[n])]
    )
    q = long.groupby("unit", sort=False)["ms"].quantile([0.25, 0.5, 0.75]).unstack()
    table = pd.DataFrame(
        {
            "unit": q.index,
            "runs": [len(samples[n]) for n in q.index],
            "batch": batch,
            "median_ms": q[0.5].to_numpy(),
            "q25_ms": q[0.25].to_numpy(),
            "q75_ms": q[0.75].to_numpy(),
            "iqr_ms": (q[0.75] - q[0.25]).to_numpy(),
            "macs": [count_macs(models[n], prep.example.to(device)) for n in q.index],
        }
    )
    if is_main():
        long.to_csv(folder / "latency_samples.csv", index=False)
        table.to_csv(folder / "latency.csv", index=False)
    barrier()
    return table


def _compare_study(
    prep: _Prepared,
    out,
    config: dict,
    targets,
    methods,
    seeds,
    loader: dict,
    progress: bool,
    keep_models: bool = False,
) -> Study:
    """The :class:`~greedyprune.study.Study` of :func:`compare` (its checked arguments, the
    prepared data and model, the ``config.json`` naming the run): one unit per (method, target,
    seed) in seed-major order, so an interrupted run has every method at every target for its
    first seeds, and the summary (:func:`summarize`). The base model is trained (or loaded from
    ``out/base.safetensors``) and measured once, when the first unit left to do starts."""
    test, example = prep.test, prep.example
    extended = any(k in config for k in ("curves", "metapruner_steps", "scratch_lr"))
    seen_by_greedy: dict[tuple[str, int], int] = {}  # (target, seed) -> S, for scratch-B

    def greedy_images(t, seed: int) -> int:
        if (str(t), seed) in seen_by_greedy:
            return seen_by_greedy[(str(t), seed)]
        done = pd.read_csv(Path(out) / "results.csv")  # greedy finished in an earlier call
        row = done[done["unit"] == f"greedy-{t}-s{seed}"]
        return int(row["select_images"].iloc[0])

    @functools.cache
    def base(device: str) -> SimpleNamespace:
        """The base model's groups, MACs model, accuracy and latency (the run folder is open)."""
        if config["weights"] is None:
            _train_base(prep, Path(out), config["train_epochs"], 0, progress, **loader)
        model = prep.model
        groups = find_prunable_groups(model, example)
        lat_example = torch.zeros(32, 3, prep.size, prep.size, device=device)
        return SimpleNamespace(
            model=model,
            groups=groups,
            macs=MacsModel(profile_layers(model, example), groups),
            acc_full=evaluate(model, test),
            lat_example=lat_example,
            lat_full=latency_ms(model, lat_example),
        )

    def unit(device: str, method: str, t, target: int, seed: int) -> list[dict]:
        b = base(device)
        widths = b.macs.plan(target)
        seen = [0]
        if method == "metapruner":
            t0 = time.perf_counter()
            model = _metapruner(b.model, example, target)
            select_s = time.perf_counter() - t0
        else:
            # scratch-E/B: greedy's widths (the plan), re-initialised as uniform is
            choice = "uniform" if method.startswith("scratch-") else method
            model, select_s = _one_method(
                choice, b.model, example, b.groups, widths, target, prep.train, config, seed,
                device, seen=seen,
            )  # fmt: skip
        if method == "greedy":
            seen_by_greedy[(str(t), seed)] = seen[0]
        acc_pruned = evaluate(model, test, **loader)
        macs = count_macs(model, example)
        full_macs = b.macs.full_macs
        # uniform is a thinner network trained from scratch: it gets the whole budget the
        # pruned networks had (the base model's training plus the fine-tuning)
        epochs, lr = config["finetune_epochs"], config["finetune_lr"]
        if method == "uniform":
            epochs, lr = config["uniform_epochs"], 0.05
        elif method == "scratch-E":
            lr = SCRATCH_LR
        elif method == "scratch-B":
            pre = config["train_epochs"] if config["weights"] is None else 0
            epochs = scratch_budget(
                pre, greedy_images(t, seed), len(prep.train), full_macs, macs, epochs
            )
            lr = SCRATCH_LR
        curve: list[float] = []
        t0 = time.perf_counter()
        finetune(
            model,
            prep.train,
            epochs=epochs,
            lr=lr,
            generator=seed,
            progress=progress,
            on_epoch=(lambda _e: curve.append(evaluate(model, test)))
            if config.get("curves")
            else None,
            **loader,
        )
        ft_s = time.perf_counter() - t0
        if keep_models and is_main():
            (Path(out) / "models").mkdir(exist_ok=True)
            state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            tmp = Path(out) / "models" / f".{method}-{t}-s{seed}.tmp"
            save_file(state, str(tmp))
            os.replace(tmp, Path(out) / "models" / f"{method}-{t}-s{seed}.safetensors")
        row = {
            "arch": config["arch"],
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
            "acc_finetuned": evaluate(model, test),
            "latency_ms": latency_ms(model, b.lat_example),
            "latency_full_ms": b.lat_full,
            "select_s": select_s,
            "finetune_s": ft_s,
        }
        if extended:
            row["epochs"] = epochs
            row["select_images"] = seen[0]
        if config.get("curves"):
            row["acc_curve"] = json.dumps(curve)
        return [row]

    def units(device: str):
        return [
            (f"{m}-{t}-s{s}", functools.partial(unit, device, m, t, a, s))
            for s in seeds
            for t, a in zip(targets, prep.targets)
            for m in methods
        ]

    name = f"compare {config['arch']}"
    return Study(name=name, config=config, units=units, summary=summarize)


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
