"""The ``prune`` job: one model pruned by layer-wise greedy selection, fine-tuned and saved."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Subset

from greedyprune.dist import barrier, init_from_env, is_main, local_slice, rank, world_size
from greedyprune.errors import (
    SEED_MAX,
    GreedypruneError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_type,
)
from greedyprune.runs import RunDir, open_run

from . import _finetune, _greedy_prune
from ._data import class_count, eval_indices, labels_of, seeded_draws
from ._finetune import batch_stream, evaluate, stream_batches
from ._greedy_prune import GreedySettings, check_selection_settings
from ._io import load_pruned, save_pruned, state_hash
from ._local import (
    LocalSettings,
    calibration_set,
    check_local,
    internal_groups,
)
from ._macs import MacsModel, count_macs, count_params, profile_layers
from ._prepare import (
    Prepared,
    auto_progress,
    check_settings,
    prepare,
    resolve_settings,
    train_base,
)
from ._recipes import RECIPES, Recipe
from ._registry import SelectionRequest, apply_choice, select_channels
from ._surgery import fold_and_prune

__all__ = ["PruneSettings", "Runtime", "prune"]


@dataclass(frozen=True)
class Runtime:
    """How a job runs, not what it computes (never in ``config.json``; a rerun may change it).

    workers: DataLoader workers; amp: "bf16"/"fp16" autocast on CUDA; channels_last: NHWC memory.
    eval_cache_mb: memory (MiB) for keeping the evaluation set's activations at the group being
        selected, so that ``tol``'s evaluations run only the rest of the network (0: off; see
        ``greedy_prune``'s ``eval_cache_bytes``).
    keep_checkpoints: keep the training checkpoints (``base-train.pt``, ``finetune.pt``: model
        and optimizer state after every epoch, for resuming) once the run has finished; by
        default they are removed then.
    progress: bars on the layers, steps and epochs; None: on when stderr is a terminal.
    """

    device: str = "cpu"
    workers: int = 0
    amp: str | None = None
    channels_last: bool = False
    eval_cache_mb: int = 1024
    keep_checkpoints: bool = False
    progress: bool | None = None


@dataclass(frozen=True)
class PruneSettings:
    """What a :func:`prune` run computes (its ``config.json`` with the model and data), checked
    when made, before anything is read or written.

    recipe: a resolved :class:`Recipe` (``resolve_recipe("authors", candidates=8)``) or the name
        of one of :data:`RECIPES` taken as it is: every knob of the selection and fine-tuning.
    target_macs: "220M", "1.5G", 0.5 or "50%" (see ``parse_macs``); the recipe's ``tol``: the
        authors' per-layer top-1 tolerance, measured on every ``eval_every``-th training image (or
        ``n_eval`` images spread over the whole set). At least one of them.
    replacement, loss, mode: greedy's (see :class:`GreedySettings`).
    train_epochs: the base model's training when no ``weights`` are given.
    seed: every random draw of the run.
    local: None (the global objective: greedy on the whole network's loss) or the settings of
        local imitation (:class:`LocalSettings`: each internal group's consumer imitates the dense
        one on a calibration set, then is refitted; the recipe's selection knobs are not used).
    """

    recipe: Recipe | str = "default"
    target_macs: str | float | None = None
    replacement: bool = False
    loss: str = "ce"
    mode: str = "batched"
    train_epochs: float = 20
    seed: int = 0
    local: LocalSettings | None = None

    def __post_init__(self):
        recipe = self.recipe
        if isinstance(recipe, str):
            recipe = RECIPES[check_choice("recipe", recipe, RECIPES)]
        check_type("recipe", recipe, Recipe, "a Recipe (see resolve_recipe) or its name")
        object.__setattr__(self, "recipe", recipe)  # its knobs were checked when it was made
        check_int("seed", self.seed, minimum=0, maximum=SEED_MAX)  # a generator's seed
        check_bool("replacement", self.replacement)
        check_selection_settings(loss=self.loss, mode=self.mode)
        check_number("train_epochs", self.train_epochs, minimum=0)
        if self.target_macs is None and recipe.tol is None:
            raise GreedypruneError("pass target_macs=0.5 (or 220M, 50%) or tol=0.02")
        if recipe.tol is not None and recipe.n_eval is None and recipe.eval_every is None:
            raise GreedypruneError(
                "tol needs n_eval or eval_every: the images top-1 is measured on"
            )
        if self.local is not None:
            _check_local_recipe(recipe, self.local)

    def config(self, arch: str, data: str, weights, image_size) -> dict:
        """The run's ``config.json``; the local keys only for local runs, so that the global
        folders made before them match."""
        config = {
            "job": "prune",
            "arch": arch,
            "data": data,
            "target_macs": self.target_macs,
            "weights": weights,
            "image_size": image_size,
            "recipe": self.recipe.as_dict(),
            "replacement": self.replacement,
            "loss": self.loss,
            "mode": self.mode,
            "train_epochs": self.train_epochs,
            "seed": self.seed,
        }
        if self.local is not None:
            config["objective"] = "local"
            config["local"] = self.local.as_dict()
        return config

    def greedy(self, target: int | None, runtime: Runtime) -> GreedySettings:
        """The global selection's settings (checked when made) for the absolute MACs target."""
        r = self.recipe
        return GreedySettings(
            target_macs=target,
            tol=r.tol,
            precheck=r.precheck,
            candidates=r.candidates,
            candidate_order=r.candidate_order,
            replacement=self.replacement,
            loss=self.loss,
            mode=self.mode,
            generator=self.seed,
            eval_cache_bytes=runtime.eval_cache_mb << 20,
        )


def prune(
    arch: str,
    data: str,
    out: str | os.PathLike,
    settings: PruneSettings | Recipe | str | None = None,
    *,
    weights: str | None = None,
    image_size: int | None = None,
    runtime: Runtime | None = None,
    **knobs,
) -> dict:
    """Prune ``arch`` by layer-wise greedy forward selection, fine-tune, save into ``out``.

    settings: what the run computes, a :class:`PruneSettings` (None: its defaults; a
        :class:`Recipe` or a recipe's name: the defaults with that recipe), checked when made;
        runtime: how it runs, a :class:`Runtime` (default: one CPU process). Any field of either
        may be given as a keyword instead (``prune(arch, data, out, target_macs=0.5, seed=1)``);
        it replaces that field.
    weights: a local checkpoint; without one (digits, synthetic) a model is trained here for
        ``train_epochs`` and cached in ``out``.
    Every value but ``runtime`` is recorded in ``out/config.json``. A finished run is not redone:
    its summary is returned. Returns the summary (also in ``out/summary.json``). The pruned model
    is ``out/model.safetensors`` + ``out/pruned.json`` (see ``load_pruned``).
    """
    if isinstance(settings, (Recipe, str)):  # prune(arch, data, out, recipe): the older form
        settings, knobs = None, {"recipe": settings, **knobs}
    st, rt = resolve_settings("prune", PruneSettings, settings, Runtime, runtime, knobs)
    r = st.recipe
    check_settings(
        device=rt.device,
        amp=rt.amp,
        non_negative_ints=[("workers", rt.workers), ("eval_cache_mb", rt.eval_cache_mb)],
        positive=[("train_epochs", st.train_epochs)] if weights is None else [],
    )
    device = init_from_env(rt.device)
    workers, amp, channels_last = rt.workers, rt.amp, rt.channels_last
    local_slice(r.batch_size)  # the step batch must split evenly over the processes
    progress = auto_progress(rt.progress)
    seed, local = st.seed, st.local
    prep = prepare(
        arch,
        data,
        image_size,
        weights,
        device,
        [st.target_macs],
        crop_scale=tuple(r.crop_scale),
        workers=workers,
        progress=progress,
        seed=seed,
    )
    target = prep.targets[0] if prep.targets else None
    plan = _plan_local(prep, local, seed) if local is not None else None
    # the global selection's whole settings, checked before the folder
    greedy = st.greedy(target, rt) if local is None else None
    config = st.config(arch, data, weights, image_size)
    run = open_run(out, config)  # rank 0 writes; the other ranks read
    if (run.path / "summary.json").is_file() and (run.path / "model.safetensors").is_file():
        return run.read_json("summary.json")  # finished: nothing to redo
    loader = {"num_workers": workers, "amp": amp, "channels_last": channels_last}
    if weights is None:
        train_base(prep, run.path, st.train_epochs, seed, progress, **loader)
    model, example, train = prep.model, prep.example, prep.train
    if channels_last:
        model.to(memory_format=torch.channels_last)
    idx = eval_indices(len(train), n_eval=r.n_eval, every=r.eval_every)
    eval_set = Subset(train, idx[rank() :: world_size()])  # this rank's share
    job = _Job(prep, r, config, rt, device, progress, run, loader, plan, greedy)
    summary = {
        "arch": arch,
        "recipe": r.name,
        "macs_full": count_macs(model, example),
        "macs_target": target,
        "acc_full": evaluate(model, prep.test, batch_size=256, **loader),
        "n_eval": len(idx),
        "eval_classes": class_count(labels_of(Subset(train, idx))),
        "classes": prep.n_classes,
        "base_hash": state_hash(model),
    }
    model, kept, summary["select_s"] = _select_or_load(job, target, eval_set, summary["base_hash"])
    return _finish(job, model, kept, summary)


def _finish(job: _Job, model: nn.Module, kept: dict, summary: dict) -> dict:
    """Measure, fine-tune, measure again; save the model and ``summary.json`` (``summary``: what
    the run measured before the selection, completed here); drop the resume checkpoints."""
    prep, r, run = job.prep, job.recipe, job.run
    eval_loader = {"batch_size": 256, **job.loader}
    summary["acc_pruned"] = evaluate(model, prep.test, **eval_loader)
    if r.final.epochs:
        _finetune.finetune(
            model,
            prep.train,
            r.final,
            generator=job.config["seed"],
            checkpoint=run.path / "finetune.pt",
            progress=job.progress,
            **job.loader,
        )
    summary["acc_finetuned"] = evaluate(model, prep.test, **eval_loader)
    summary["macs"] = count_macs(model, prep.example)
    summary["macs_fraction"] = summary["macs"] / summary["macs_full"]
    summary["params"] = count_params(model)
    if is_main():
        save_pruned(
            run.path,
            model,
            arch=job.config["arch"],
            num_classes=prep.n_classes,
            image_size=prep.size,
            kept=kept,
            extra=summary,
        )
    run.write_json("summary.json", summary)
    if is_main() and not job.runtime.keep_checkpoints:
        for name in ("base-train.pt", "finetune.pt"):  # only needed to resume an unfinished run
            (run.path / name).unlink(missing_ok=True)
    barrier()
    return summary


@dataclass
class _Job:
    """One prune run's checked pieces, passed to its phases together."""

    prep: Prepared
    recipe: Recipe
    config: dict
    runtime: Runtime
    device: torch.device
    progress: bool
    run: RunDir
    loader: dict
    local: _LocalPlan | None = None
    greedy: GreedySettings | None = None  # the global selection's settings (None: local)


@dataclass
class _LocalPlan:
    """Local imitation's checked pieces: settings, internal groups, their widths, the
    calibration set."""

    settings: LocalSettings
    groups: list
    widths: dict[str, int]
    data: object


def _check_local_recipe(r: Recipe, local: LocalSettings) -> None:
    """Local imitation against the recipe: what a cached prefix cannot honour is refused."""
    if not isinstance(local, LocalSettings):
        raise GreedypruneError(f"local={local!r} must be a LocalSettings or None")
    check_local(local)
    if r.name == "authors":
        raise GreedypruneError(
            "recipe=authors needs objective=global: its tolerance stop and between-layer "
            "fine-tuning change the network while the local objective reads a cached prefix; "
            "pass --recipe default with --objective local"
        )
    if r.tol is not None:
        raise GreedypruneError(
            "tol is the global objective's stop; with objective=local pass target_macs"
        )
    if r.between.epochs:
        raise GreedypruneError(
            f"between_epochs={r.between.epochs!r}: between-layer fine-tuning needs objective=global"
        )


def _plan_local(prep: Prepared, local: LocalSettings, seed: int) -> _LocalPlan:
    """The internal groups, their widths for the MACs target, the calibration set and the memory
    check: every failure before the run folder exists."""
    if not prep.targets:
        raise GreedypruneError("objective=local needs target_macs (e.g. 0.5 or 220M)")
    groups = internal_groups(prep.model, prep.example, local, len(prep.train))
    widths = MacsModel(profile_layers(prep.model, prep.example), groups).plan(prep.targets[0])
    gen = torch.Generator().manual_seed(seed)
    data = calibration_set(
        prep.train, prep.test, local.calibration_images, gen, labels_of(prep.train)
    )
    return _LocalPlan(local, groups, widths, data)


def _select_local(job: _Job) -> tuple[nn.Module, dict, float]:
    """Local imitation: every internal group, consumers refitted, surgery; ``layers.csv``."""
    plan, prep = job.local, job.prep
    t0 = time.perf_counter()
    request = SelectionRequest(
        model=prep.model,
        example=prep.example,
        groups=plan.groups,
        widths=plan.widths,
        generator=torch.Generator().manual_seed(job.config["seed"]),
        data=plan.data,
        seed=job.config["seed"],
        device=job.device,
        options={"local": plan.settings, "progress": job.progress},
    )
    choice = select_channels(plan.settings.method, request)
    model = apply_choice(prep.model, prep.example, plan.groups, choice)
    return model, choice.kept, time.perf_counter() - t0, pd.DataFrame(choice.info["layers"])


def _select_or_load(
    job: _Job, target: int | None, eval_set, base_hash: str
) -> tuple[nn.Module, dict, float]:
    """The selection (saved in ``selected/`` with ``layers.csv`` and the base model's hash), or
    the selection a previous call saved there from the same base model; returns (the pruned
    model, kept channels, seconds)."""
    prep, run, device = job.prep, job.run, job.device
    selected = run.path / "selected"
    if (selected / "pruned.json").is_file():
        model, record = load_pruned(selected, model=prep.model)
        saved = record.get("base_hash", base_hash)  # a folder made before the hash: this one
        if saved != base_hash:
            raise GreedypruneError(
                f"{str(selected)!r} holds a selection from base model {saved}, but this run's "
                f"base model is {base_hash} (the weights file changed); pass another --out, or "
                "delete that folder to select again"
            )
        return model.to(device), record["kept"], float(record.get("select_s", 0.0))
    if job.local is not None:
        model, kept, select_s, table = _select_local(job)
    else:
        with seeded_draws(job.config["seed"], device):  # crops and flips of the step batches
            model, kept, select_s, table = _select_global(job, eval_set)
    run.write_table(table, "layers")
    if is_main():
        save_pruned(
            selected,
            model,
            arch=job.config["arch"],
            num_classes=prep.n_classes,
            image_size=prep.size,
            kept=kept,
            extra={"select_s": select_s, "base_hash": base_hash},
        )
    barrier()
    return model, kept, select_s


def _select_global(job: _Job, eval_set):
    """Layer-wise greedy on the whole network's loss, with the recipe."""
    prep, r, rt, loader = job.prep, job.recipe, job.runtime, job.loader
    device, train, seed = job.device, prep.train, job.config["seed"]
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    # one shuffling stream for all between-layer steps: each layer's 0.1 epoch sees new images
    between_gen = torch.Generator().manual_seed(seed + 1)

    def between(m: nn.Module) -> None:
        _finetune.finetune(m, train, r.between, generator=between_gen, **loader)

    gm, result = _greedy_prune.greedy_prune(
        prep.model,
        batch_stream(
            train,
            r.batch_size,
            generator=gen,
            device=device,
            num_workers=rt.workers,
            channels_last=rt.channels_last,
        ),
        prep.example,
        job.greedy,
        eval_data=stream_batches(
            eval_set,
            64,
            device=device,
            num_workers=rt.workers,
            channels_last=rt.channels_last,
        )
        if r.tol is not None
        else None,
        amp=rt.amp,
        between_layers=between if r.between.epochs > 0 else None,
        progress=job.progress,
    )
    model, kept = fold_and_prune(gm)
    return model, kept, time.perf_counter() - t0, _layers_table(result)


def _layers_table(result) -> pd.DataFrame:
    """``layers.csv``: one row per group of greedy's selection."""
    return pd.DataFrame(
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
    )
