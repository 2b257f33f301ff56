"""The two jobs behind the CLI: ``prune`` (one model, saved) and ``compare`` (methods at equal MACs).

Both write into a :class:`greedyprune.runs.RunDir` and resume: ``prune`` keeps the selected model
before fine-tuning and a fine-tuning checkpoint; ``compare`` records one unit per (method, target,
seed) and skips finished ones.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from greedyprune.runs import RunDir

from ._baselines import BASELINES, baseline_channels
from ._data import load_data, parse_data
from ._finetune import batch_stream, evaluate, finetune, fixed_batch, latency_ms
from ._gates import find_prunable_groups
from ._io import load_pruned, save_pruned
from ._layerwise import check_selection_settings, greedy_prune
from ._macs import MacsModel, count_macs, count_params, parse_macs, profile_layers
from ._models import build_model, load_checkpoint
from ._surgery import fold_and_prune, prune_channels

__all__ = ["METHODS", "compare", "prune", "summarize"]

METHODS = ("greedy", *BASELINES)
_DEFAULT_SIZE = {"folder": 224, "digits": 32, "synthetic": 64}


def _precheck(arch, data, image_size, weights, targets) -> list[int]:
    """Check the cheap arguments before any folder is created or model trained; absolute targets."""
    spec = parse_data(data)
    size = _DEFAULT_SIZE[spec.kind] if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {size!r}")
    model = build_model(arch, 10)
    if weights is not None:
        # A missing path may be a torchvision weight name: build_model says how to fix either.
        _ = (
            load_checkpoint(weights)
            if Path(str(weights)).exists()
            else build_model(arch, 10, weights)
        )
    full = count_macs(model, torch.zeros(1, 3, size, size))
    return [parse_macs(t, full) for t in targets if t is not None]


def _check_settings(
    *,
    candidates=None,
    loss="ce",
    tol=None,
    mode="batched",
    device="cpu",
    positive_ints=(),
    positive=(),
    non_negative=(),
):
    """The cheap checks of ``prune``/``compare``: all before a folder is made or a model trained."""
    check_selection_settings(candidates=candidates, loss=loss, tol=tol, mode=mode)
    for name, value in positive_ints:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an int >= 1")
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


def _setup(arch, data, image_size, weights, device, train_epochs, out, seed, progress):
    spec = parse_data(data)
    size = _DEFAULT_SIZE[spec.kind] if image_size is None else image_size
    train, test, n_classes = load_data(spec, size, num_classes=10)
    model = build_model(arch, n_classes, weights).to(device)
    trained_here = False
    if weights is None:
        if spec.kind == "folder":
            raise ValueError(
                "data=folder:... needs weights=PATH (a trained checkpoint); only digits and "
                "synthetic models are trained here from scratch"
            )
        base = Path(out) / "base.safetensors"
        if base.is_file():
            model.load_state_dict(load_file(str(base)))
        else:
            finetune(
                model,
                train,
                epochs=train_epochs,
                lr=0.05,
                generator=seed,
                checkpoint=Path(out) / "base-train.pt",
                progress=progress,
            )
            state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            save_file(state, str(base))
        trained_here = True
    model.eval()
    example = torch.zeros(1, 3, size, size, device=device)
    return spec, size, train, test, n_classes, model, example, trained_here


def _between(train, epochs, seed):
    if not epochs:
        return None

    def step(model: nn.Module) -> None:
        finetune(model, train, epochs=epochs, lr=2.5e-3, weight_decay=4e-5, generator=seed)

    return step


def prune(
    arch: str,
    data: str,
    out: str | os.PathLike,
    *,
    target_macs: str | float | None = None,
    tol: float | None = None,
    weights: str | None = None,
    image_size: int | None = None,
    candidates: int | None = 50,
    batch_size: int = 128,
    n_eval: int = 6400,
    replacement: bool = False,
    loss: str = "ce",
    mode: str = "batched",
    between_epochs: float = 0.0,
    finetune_epochs: float = 0.0,
    finetune_lr: float = 0.01,
    train_epochs: float = 20,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> dict:
    """Prune ``arch`` by layer-wise greedy forward selection, fine-tune, save into ``out``.

    target_macs: "220M", "1.5G", 0.5 or "50%" (see ``parse_macs``); tol: the authors' per-layer
    accuracy tolerance (on the first ``n_eval`` training images). At least one of them.
    weights: a local checkpoint; without one (digits, synthetic) a model is trained here for
    ``train_epochs`` and cached in ``out``. Returns the summary (also in ``out/summary.json``).
    The pruned model is ``out/model.safetensors`` + ``out/pruned.json`` (see ``load_pruned``).
    """
    config = {
        "job": "prune",
        "arch": arch,
        "data": data,
        "target_macs": target_macs,
        "tol": tol,
        "weights": weights,
        "image_size": image_size,
        "candidates": candidates,
        "batch_size": batch_size,
        "n_eval": n_eval,
        "replacement": replacement,
        "loss": loss,
        "mode": mode,
        "between_epochs": between_epochs,
        "finetune_epochs": finetune_epochs,
        "finetune_lr": finetune_lr,
        "train_epochs": train_epochs,
        "seed": seed,
    }
    _check_settings(
        candidates=candidates,
        loss=loss,
        tol=tol,
        mode=mode,
        device=device,
        positive_ints=[("batch_size", batch_size), ("n_eval", n_eval)],
        positive=[("train_epochs", train_epochs)] if weights is None else [],
        non_negative=[("between_epochs", between_epochs), ("finetune_epochs", finetune_epochs)],
    )
    _precheck(arch, data, image_size, weights, [target_macs])
    if target_macs is None and tol is None:
        raise ValueError("pass target_macs (e.g. 220M or 0.5) or tol (e.g. 0.02)")
    run = RunDir(out, config)
    _, size, train, test, n_classes, model, example, _ = _setup(
        arch, data, image_size, weights, device, train_epochs, run.path, seed, progress
    )
    full_macs = count_macs(model, example)
    target = None if target_macs is None else parse_macs(target_macs, full_macs)
    acc_full = evaluate(model, test)
    selected = run.path / "selected"
    t0 = time.perf_counter()
    if (selected / "pruned.json").is_file():
        model, record = load_pruned(selected)
        model.to(device)
        select_s = float(record.get("select_s", 0.0))
    else:
        gen = torch.Generator().manual_seed(seed)
        gm, result = greedy_prune(
            model,
            batch_stream(train, batch_size, generator=gen, device=device),
            example,
            target_macs=target,
            tol=tol,
            eval_batch=fixed_batch(train, n_eval, device) if tol is not None else None,
            candidates=candidates,
            replacement=replacement,
            loss=loss,
            mode=mode,
            generator=seed,
            between_layers=_between(train, between_epochs, seed),
            progress=progress,
        )
        model, kept = fold_and_prune(gm)
        select_s = time.perf_counter() - t0
        run.write_table(
            pd.DataFrame(
                [
                    {
                        "layer": r.name,
                        "channels": r.n_channels,
                        "kept": len(r.kept),
                        "evaluations": r.evaluations,
                        "loss_last": r.losses[-1] if r.losses else float("nan"),
                        "acc_before": r.acc_before,
                        "acc_after": r.acc_after,
                    }
                    for r in result.layers
                ]
            ),
            "layers",
        )
        save_pruned(
            selected,
            model,
            arch=arch,
            num_classes=n_classes,
            image_size=size,
            kept=kept,
            extra={"select_s": select_s},
        )
    acc_pruned = evaluate(model, test)
    if finetune_epochs:
        finetune(
            model,
            train,
            epochs=finetune_epochs,
            lr=finetune_lr,
            generator=seed,
            checkpoint=run.path / "finetune.pt",
            progress=progress,
        )
    acc_final = evaluate(model, test)
    macs = count_macs(model, example)
    summary = {
        "arch": arch,
        "macs_full": full_macs,
        "macs_target": target,
        "macs": macs,
        "macs_fraction": macs / full_macs,
        "params": count_params(model),
        "acc_full": acc_full,
        "acc_pruned": acc_pruned,
        "acc_finetuned": acc_final,
        "select_s": select_s,
    }
    kept = json.loads((selected / "pruned.json").read_text())["kept"]
    save_pruned(
        run.path, model, arch=arch, num_classes=n_classes, image_size=size, kept=kept, extra=summary
    )
    run.write_json("summary.json", summary)
    return summary


def _one_method(method, base, example, groups, widths, target, train, cfg, seed, device):
    model = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    if method == "greedy":
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
        model, _ = fold_and_prune(gm)
    else:
        batch = batch_stream(train, cfg["greedy_batch"] * 8, generator=gen, device=device)()
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
    progress: bool = False,
) -> pd.DataFrame:
    """Greedy against the baselines (:data:`BASELINES`) at equal MACs and fine-tuning budget.

    Every method keeps the same number of channels per group (one keep ratio planned for each
    target), then fine-tunes ``finetune_epochs`` at ``finetune_lr``. ``uniform``, re-initialised,
    trains from scratch at the base model's learning rate 0.05 for the whole budget the others
    had: ``train_epochs`` (when the base model is trained here) + ``finetune_epochs``. One row per
    (method, target, seed) in ``out/results.csv``; finished rows are skipped on a rerun.
    targets: MACs targets (fractions or absolute, see ``parse_macs``).
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods={bad or methods!r}: choose from {', '.join(METHODS)}")
    targets = [targets] if isinstance(targets, (str, int, float)) else list(targets)
    seeds = [int(s) for s in ([seeds] if isinstance(seeds, int) else seeds)]
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
    _check_settings(
        candidates=candidates,
        loss=loss,
        device=device,
        positive_ints=[("greedy_batch", greedy_batch)],
        positive=[("finetune_epochs", finetune_epochs)]
        + ([("train_epochs", train_epochs)] if weights is None else []),
    )
    _precheck(arch, data, image_size, weights, targets)
    run = RunDir(out, config)
    _, size, train, test, _, base, example, _ = _setup(
        arch, data, image_size, weights, device, train_epochs, run.path, 0, progress
    )
    groups = find_prunable_groups(base, example)
    macs_model = MacsModel(profile_layers(base, example), groups)
    full_macs = macs_model.full_macs
    abs_targets = [parse_macs(t, full_macs) for t in targets]
    acc_full = evaluate(base, test)
    lat_example = torch.zeros(32, 3, size, size, device=device)
    lat_full = latency_ms(base, lat_example)
    done = run.done_units()
    # Seed-major order: an interrupted run has every method at every target for the first seeds.
    units = [(m, t, a, s) for s in seeds for t, a in zip(targets, abs_targets) for m in methods]
    for method, t, target, seed in tqdm(units, desc="compare", disable=not progress):
        unit = f"{method}-{t}-s{seed}"
        if unit in done:
            continue
        widths = macs_model.plan(target)
        model, select_s = _one_method(
            method, base, example, groups, widths, target, train, config, seed, device
        )
        acc_pruned = evaluate(model, test)
        t0 = time.perf_counter()
        # uniform is a thinner network trained from scratch: it gets the whole budget the
        # pruned networks had (the base model's training plus the fine-tuning)
        finetune(
            model,
            train,
            epochs=config["uniform_epochs"] if method == "uniform" else finetune_epochs,
            lr=0.05 if method == "uniform" else finetune_lr,
            generator=seed,
        )
        ft_s = time.perf_counter() - t0
        macs = count_macs(model, example)
        row = {
            "arch": arch,
            "method": method,
            "target": str(t),
            "seed": seed,
            "macs_target": target,
            "macs": macs,
            "macs_full": full_macs,
            "macs_fraction": macs / full_macs,
            "params": count_params(model),
            "acc_full": acc_full,
            "acc_pruned": acc_pruned,
            "acc_finetuned": evaluate(model, test),
            "latency_ms": latency_ms(model, lat_example),
            "latency_full_ms": lat_full,
            "select_s": select_s,
            "finetune_s": ft_s,
        }
        run.append(unit, [row])
    df = run.read()
    run.write_table(summarize(df), "summary")
    return df


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
