"""Building classifiers offline (torchvision's and this package's own) and loading user
checkpoints safely."""

from __future__ import annotations

import difflib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from greedyprune.errors import GreedypruneError, check_int, check_path

from ._proxyless import proxylessnas_mobile

__all__ = ["build_model", "list_archs", "load_checkpoint", "load_into"]

# Models defined in this package, by name: a builder taking the number of classes.
_OWN_MODELS: dict[str, Callable[[int], nn.Module]] = {
    "proxylessnas_mobile": lambda num_classes: proxylessnas_mobile(num_classes=num_classes),
}


# Listed by torchvision but refused here, by name prefix, with why (checked before any folder).
_REFUSED = {
    "googlenet": "its training forward returns auxiliary outputs (a tuple), not logits",
    "inception_v3": "its training forward returns auxiliary outputs (a tuple), not logits",
    "vit_": "a vision transformer (fixed 224 px input, no convolution channels to select)",
    "swin_": "a vision transformer (no convolution channel groups to select)",
    "maxvit": "a vision transformer (fixed 224 px input)",
}


def list_archs() -> list[str]:
    """Names ``build_model`` knows: the torchvision classification models
    (``torchvision.models.get_model`` names) and this package's own (``proxylessnas_mobile``)."""
    return sorted({*torchvision.models.list_models(module=torchvision.models), *_OWN_MODELS})


def _weight_names(arch: str) -> set[str]:
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        return set()
    names = set()
    for w in enum:
        names.add(w.name)
        names.add(f"{enum.__name__}.{w.name}")
    names.add("DEFAULT")
    names.add(f"{enum.__name__}.DEFAULT")
    return names


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.pt`` file (``torch.load(weights_only=True)``) or ``.safetensors``.

    Checkpoints that wrap the state dict (``{"state_dict": ...}`` or ``{"model": ...}``) are unwrapped
    and a ``module.`` prefix (DataParallel) is stripped. Anything that is not a readable state dict
    raises :class:`~greedyprune.errors.GreedypruneError` (never unpickles arbitrary objects).
    """
    path = check_path("weights", path)  # a missing file is bad input
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure of a user file is bad input, not a bug
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GreedypruneError(
            f"weights={str(path)!r} is not a readable checkpoint ({first[:160]}); pass a state dict "
            "saved with torch.save(model.state_dict(), path) or a .safetensors file"
        ) from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GreedypruneError(
            f"weights={str(path)!r} does not hold a state dict of tensors; save one with "
            "torch.save(model.state_dict(), path)"
        )
    out = OrderedDict((k.removeprefix("module."), v) for k, v in state.items())
    meta = getattr(state, "_metadata", None)  # the module versions torch.save kept, if any
    if meta is not None:
        out._metadata = OrderedDict(
            ("" if k == "module" else k.removeprefix("module."), v) for k, v in meta.items()
        )
    return out


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """``model.load_state_dict(state)``, with the module versions of ``model``'s own code where
    ``state`` carries none: safetensors files, and state dicts rebuilt key by key, carry none, and
    torchvision's MNASNet refuses a state without its version ("version should be set to 1 or 2")."""
    if getattr(state, "_metadata", None) is None:
        state = OrderedDict(state)
        state._metadata = model.state_dict()._metadata
    model.load_state_dict(state)
    return model


def build_model(arch: str, num_classes: int, weights: str | os.PathLike | None = None) -> nn.Module:
    """The classifier ``arch`` (a name from :func:`list_archs`) with ``num_classes`` outputs, in
    eval mode.

    weights: None (random initialisation) or a local checkpoint file. Nothing is downloaded: a
        torchvision weight name (``IMAGENET1K_V1``, ``DEFAULT``, ...) raises ``ValueError`` asking
        for a local file.
    """
    if not isinstance(arch, str) or arch not in list_archs():
        near = difflib.get_close_matches(str(arch), list_archs(), n=6, cutoff=0.6)
        hint = f" (did you mean one of {', '.join(near)}?)" if near else ""
        raise GreedypruneError(
            f"arch={arch!r} is not a torchvision classification model nor proxylessnas_mobile"
            f"{hint}; see greedyprune.prune.list_archs()"
        )
    for prefix, why in _REFUSED.items():
        if arch.startswith(prefix):
            raise GreedypruneError(
                f"arch={arch!r} is not supported: {why}; pick a CNN", name="arch"
            )
    check_int("num_classes", num_classes, minimum=2)
    if arch in _OWN_MODELS:
        model = _OWN_MODELS[arch](num_classes)
    else:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if weights is not None:
        w = str(weights)
        if not Path(w).exists() and w in _weight_names(arch):
            raise GreedypruneError(
                f"weights={w!r} is a torchvision weight name, which would need a download; nothing is "
                "downloaded here: save the state dict to a local file and pass its path"
            )
        state = load_checkpoint(w)
        try:
            load_into(model, state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            detail = " ".join(s.strip() for s in first[:2])[:200]
            raise GreedypruneError(
                f"weights={w!r} does not fit {arch} with {num_classes} classes ({detail}); check "
                "--arch and the number of classes of the data"
            ) from None
    return model.eval()
