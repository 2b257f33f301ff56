"""Saving and loading pruned models: a safetensors state dict and a JSON record of kept channels."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors.torch import load_file
from torch import nn

from greedyprune.errors import GreedypruneError, GreedypruneFileError, refuse
from greedyprune.runs import atomic_write_bytes, atomic_write_text

from ._models import build_model, list_archs, load_into
from ._surgery import prune_channels

__all__ = ["load_pruned", "load_state", "save_pruned", "save_state", "state_hash"]

FORMAT = "greedyprune-pruned/1"


def _in_channels(model: nn.Module) -> int:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else 3


def save_state(path: str | os.PathLike, model: nn.Module | dict[str, torch.Tensor]) -> Path:
    """Write a module's state dict (or a state dict) to ``path`` as safetensors, atomically
    (:func:`greedyprune.runs.atomic_write_bytes`): a reader sees the old file or the new one. The
    one safetensors writer of the package."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    # Cloned so that tensors sharing memory (tied weights) are written as separate tensors.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    atomic_write_bytes(path, safetensors.torch.save(state))
    return Path(path)


def state_hash(model: nn.Module) -> str:
    """The first 16 hex digits of the SHA-256 of ``model``'s state: every entry's name, dtype,
    shape and bytes, in the state dict's order. Equal models give equal hashes on any device; a
    run records its base model's, so that one folder never mixes the results of two."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A safetensors state dict (never a pickle)."""
    return load_file(str(path))


def save_pruned(
    folder: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    image_size: int,
    kept: dict[str, list[int]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``pruned.json`` (arch, classes, kept channels per group).

    arch: a :func:`build_model` name, so that :func:`load_pruned` rebuilds the model on its own;
        for a module of your own, any label (default: its class name), and ``load_pruned`` then
        needs the unpruned model (``model=``).
    num_classes: needed to rebuild a ``build_model`` architecture; may be None for a custom one.
    kept: group root convolution name -> kept channel indices (as from ``fold_and_prune``), the
        channels of the *unpruned* model.
    """
    if arch is None:
        arch = type(model).__name__
    if not isinstance(arch, str) or not arch:
        raise refuse("arch", arch, "a non-empty string")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_state(folder / "model.safetensors", model)
    record = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": None if num_classes is None else int(num_classes),
        "image_size": int(image_size),
        "in_channels": _in_channels(model),
        "kept": {k: [int(i) for i in v] for k, v in kept.items()},
        **(extra or {}),
    }
    atomic_write_text(folder / "pruned.json", json.dumps(record, indent=1) + "\n")
    return folder


def _read_record(rec_path: Path) -> dict[str, Any]:
    try:
        record = json.loads(rec_path.read_text())
    except json.JSONDecodeError as exc:
        raise GreedypruneError(f"{str(rec_path)!r} is not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise GreedypruneError(f"{str(rec_path)!r} is not a greedyprune record (format {FORMAT!r})")
    bad = [
        key
        for key, ok in (
            ("arch", isinstance(record.get("arch"), str)),
            ("image_size", isinstance(record.get("image_size"), int)),
            ("kept", isinstance(record.get("kept"), dict)),
        )
        if not ok
    ]
    if bad:
        raise GreedypruneError(f"{str(rec_path)!r} lacks a valid {', '.join(bad)}; it is damaged")
    return record


def load_pruned(
    folder: str | os.PathLike, model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The pruned model saved by :func:`save_pruned`: the unpruned architecture, cut to the kept
    channels of ``pruned.json`` by :func:`prune_channels`, with the weights of
    ``model.safetensors``. Nothing is unpickled.

    model: None to rebuild the architecture named in the record with :func:`build_model` (any
        :func:`list_archs` name); for a module of your own, pass the *unpruned* model built by your
        code (same class and constructor arguments as the one that was pruned; its weights do not
        matter). It is copied, not changed. Passing it for a ``build_model`` name uses it instead
        of rebuilding.
    Returns (the pruned model in eval mode, on the CPU or on ``model``'s device; the record).
    """
    folder = Path(folder)
    rec_path, w_path = folder / "pruned.json", folder / "model.safetensors"
    for p in (rec_path, w_path):
        if not p.is_file():
            raise GreedypruneFileError(
                f"{str(p)!r} is missing; pass a folder written by save_pruned"
            )
    record = _read_record(rec_path)
    arch = record["arch"]
    if model is None:
        if arch not in list_archs():
            raise GreedypruneError(
                f"{str(rec_path)!r} names arch={arch!r}, which build_model does not know (a custom "
                "module): build the unpruned model with your own code and pass it, "
                f"load_pruned({str(folder)!r}, model=YourModel(...))"
            )
        if record.get("num_classes") is None:
            raise GreedypruneError(
                f"{str(rec_path)!r} has no num_classes to rebuild {arch}; pass the unpruned model "
                "as load_pruned(folder, model=...)"
            )
        model = build_model(arch, int(record["num_classes"]))
        given = False
    elif not isinstance(model, nn.Module):
        raise refuse("model", model, "a torch.nn.Module or None", wrong_type=True)
    else:
        model = copy.deepcopy(model)
        given = True
    size, c_in = int(record["image_size"]), int(record.get("in_channels", 3))
    ref = next(iter(model.parameters()), None)
    example = torch.zeros(
        1,
        c_in,
        size,
        size,
        dtype=ref.dtype if ref is not None and ref.is_floating_point() else torch.float32,
        device=ref.device if ref is not None else "cpu",
    )
    fix = (
        f"; pass the unpruned model ({arch}) built exactly as the one that was pruned"
        if given
        else ""
    )
    try:
        prune_channels(model, example, record["kept"])
    except Exception as exc:  # a model that does not fit the record, or cannot be traced
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        what = "model=" if given else f"the rebuilt {arch}"
        raise GreedypruneError(
            f"{what} does not fit the kept channels of {str(rec_path)!r} ({first}){fix}"
        ) from None
    try:
        state = load_file(str(w_path))
    except Exception as exc:
        raise GreedypruneError(
            f"{str(w_path)!r} is not a readable safetensors file ({exc})"
        ) from None
    try:
        load_into(model, state)
    except RuntimeError as exc:
        detail = " ".join(s.strip() for s in str(exc).strip().splitlines()[:2])[:200]
        if given:
            raise GreedypruneError(
                f"model= does not fit {str(w_path)!r} once cut to the kept channels ({detail}){fix}"
            ) from None
        raise GreedypruneError(
            f"{str(w_path)!r} does not match the architecture in {str(rec_path)!r} ({detail})"
        ) from None
    return model.eval(), record
