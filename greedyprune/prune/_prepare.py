"""Prepare a job: load and check the data, build the model, resolve the MACs targets, train or load
the base model, and the checks shared by ``prune`` and ``compare``. Everything here that can fail
on bad input runs before a run folder is written."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from greedyprune.dist import barrier, is_main
from greedyprune.errors import (
    GreedypruneError,
    check_choice,
    check_device,
    check_fits,
    check_int,
    check_number,
    check_type,
    with_fields,
)

from . import _finetune, _io
from ._data import check_images, load_data, parse_data
from ._finetune import AMP_DTYPES
from ._gates import find_prunable_groups
from ._macs import MacsModel, parse_macs, profile_layers
from ._models import build_model, load_into

_DEFAULT_SIZE = {"folder": 224, "digits": 32, "synthetic": 64}


@dataclass
class Prepared:
    """What a run needs, built and checked before its folder is written."""

    kind: str
    size: int
    train: Dataset
    test: Dataset
    n_classes: int
    model: nn.Module
    example: Tensor
    targets: list[int]


def prepare(
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
    seed=0,
) -> Prepared:
    """Load the data (every image header of a folder checked), build the model with the data's
    class count, load the weights, and turn the MACs targets into reachable absolute counts: every
    check that can fail, before any folder is created or model trained. A model without
    ``weights`` is initialised from ``seed`` (torch's global generator is left as it was), so the
    same seed gives the same base model."""
    spec = parse_data(data)
    size = _DEFAULT_SIZE[spec.kind] if image_size is None else image_size
    check_int("image_size", size, minimum=8)
    # one input image in float32: a lower bound of what any forward pass holds
    check_fits("image_size", size, 3.0 * size * size * 4, "one 3-channel float32 image")
    if weights is None and spec.kind == "folder":
        raise GreedypruneError(
            "data=folder:... needs weights=PATH (a trained checkpoint); only digits and "
            "synthetic models are trained here from scratch"
        )
    train, test, n_classes = load_data(spec, size, num_classes=10, crop_scale=crop_scale)
    for dataset in (train, test):
        check_images(dataset, workers=max(4, workers), progress=progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(arch, n_classes, weights)
    example = torch.zeros(1, 3, size, size)
    try:  # the one input-dependent failure of a forward pass here is a size the model cannot take
        with torch.no_grad():
            model(example)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:160]
        raise GreedypruneError(
            f"image_size={size} is not an input size {arch} can take ({detail}); pass a larger "
            "--image-size",
            name="image_size",
        ) from None
    groups = find_prunable_groups(model, example)
    macs_model = MacsModel(profile_layers(model, example), groups)
    smallest = macs_model.macs({g.name: 1 for g in groups})
    absolute = []
    for t in targets:
        if t is None:
            continue
        target = parse_macs(t, macs_model.full_macs)
        if target < smallest:
            raise GreedypruneError(
                f"target_macs={t!r} ({target / 1e6:.3f}M) is below the smallest reachable "
                f"{smallest / 1e6:.3f}M MACs of {arch} at {size} px (one channel per prunable "
                "group); pass a larger target"
            )
        absolute.append(target)
    model = model.to(device).eval()
    return Prepared(spec.kind, size, train, test, n_classes, model, example.to(device), absolute)


def resolve_settings(job: str, cls, settings, runtime_cls, runtime, knobs: dict, how=None):
    """A job's settings and runtime (:func:`greedyprune.errors.with_fields`): ``settings`` /
    ``runtime`` (None: made from the keywords alone) with any field given as a keyword replaced,
    checked when made; ``how``: the runtime fields the job reads, default all."""
    how = set(how) if how is not None else {f.name for f in dataclasses.fields(runtime_cls)}
    st, rest = with_fields(job, cls, settings, knobs, {runtime_cls.__name__: how})
    if runtime is not None:
        check_type("runtime", runtime, runtime_cls, f"a {runtime_cls.__name__} or None")
    return st, dataclasses.replace(runtime or runtime_cls(), **rest)


def check_settings(
    *,
    device="cpu",
    amp=None,
    positive_ints=(),
    non_negative_ints=(),
    positive=(),
    non_negative=(),
):
    """The cheap checks of ``prune``/``compare`` that their settings objects leave (the runtime,
    the counts and epochs named by the job): all before a folder is made or a model trained."""
    for name, value in positive_ints:
        check_int(name, value, minimum=1)
    for name, value in non_negative_ints:
        check_int(name, value, minimum=0)
    for name, value in positive:
        check_number(name, value, above=0)  # finite: an epoch count of inf never ends
    for name, value in non_negative:
        check_number(name, value, minimum=0)
    kind = torch.device(check_device("device", device)).type
    if amp is not None:
        check_choice("amp", amp, AMP_DTYPES)
        if kind != "cuda":
            raise GreedypruneError(
                f"amp={amp!r} needs a CUDA device (device={device!r}); drop amp on the CPU"
            )


def train_base(prep: Prepared, folder: Path, train_epochs, seed, progress, **loader) -> None:
    """Train the base model when no checkpoint was given (digits, synthetic); cached in the run
    ``folder`` as ``base.safetensors`` (loaded when there), checkpointed in ``base-train.pt``."""
    base = folder / "base.safetensors"
    if base.is_file():
        try:
            load_into(prep.model, _io.load_state(base))
        except Exception:
            raise GreedypruneError(
                f"{str(base)!r} is damaged; delete it and run again to retrain the base model"
            ) from None
    else:
        with torch.random.fork_rng(devices=[]):  # dropout draws from the seeded global generator
            torch.manual_seed(seed)
            _finetune.finetune(
                prep.model,
                prep.train,
                epochs=train_epochs,
                lr=0.05,
                generator=seed,
                checkpoint=folder / "base-train.pt",
                progress=progress,
                **loader,
            )
        if is_main():
            _io.save_state(base, prep.model)
        barrier()
    prep.model.eval()


def _auto_progress(progress) -> bool:
    """Bars when asked (None: when stderr is a terminal), on rank 0 only."""
    return is_main() and (sys.stderr.isatty() if progress is None else bool(progress))


def auto_progress(progress) -> bool:
    """Bars when asked (None: when stderr is a terminal), on rank 0 only."""
    return is_main() and (sys.stderr.isatty() if progress is None else bool(progress))
