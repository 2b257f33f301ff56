"""Saving and loading pruned models: a safetensors state dict and a JSON record of kept channels."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from greedyprune.runs import atomic_write_text

from ._models import build_model
from ._surgery import prune_channels

__all__ = ["load_pruned", "save_pruned"]

FORMAT = "greedyprune-pruned/1"


def save_pruned(
    folder: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    image_size: int,
    kept: dict[str, list[int]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``pruned.json`` (arch, classes, kept channels per group)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = folder / ".model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    record = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": int(num_classes),
        "image_size": int(image_size),
        "kept": {k: [int(i) for i in v] for k, v in kept.items()},
        **(extra or {}),
    }
    atomic_write_text(folder / "pruned.json", json.dumps(record, indent=1) + "\n")
    return folder


def load_pruned(folder: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the architecture from ``pruned.json``, cut it to the kept channels, load the weights.

    Nothing is unpickled. Returns (model in eval mode on the CPU, the record).
    """
    folder = Path(folder)
    rec_path, w_path = folder / "pruned.json", folder / "model.safetensors"
    for p in (rec_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{str(p)!r} is missing; pass a folder written by save_pruned")
    try:
        record = json.loads(rec_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(rec_path)!r} is not valid JSON ({exc})") from None
    if record.get("format") != FORMAT:
        raise ValueError(f"{str(rec_path)!r} is not a greedyprune record (format {FORMAT!r})")
    model = build_model(record["arch"], int(record["num_classes"]))
    size = int(record["image_size"])
    prune_channels(model, torch.zeros(1, 3, size, size), record["kept"])
    try:
        state = load_file(str(w_path))
    except Exception as exc:
        raise ValueError(f"{str(w_path)!r} is not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"{str(w_path)!r} does not match the architecture in {str(rec_path)!r} "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None
    return model.eval(), record
