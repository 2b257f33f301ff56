"""Input checks shared by the kernel: each error names the argument, what came and the fix."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def check_tensor(name: str, x, *, ndims: tuple[int, ...], floating: bool = True) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}; wrap it with torch.as_tensor"
        )
    if x.dim() not in ndims:
        shapes = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {shapes}, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got {x.dtype}; convert with .float() or .double()"
        )
    if x.numel() == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(x.shape)}); pass at least one candidate and one data point"
        )
    return x


def check_finite(name: str, x: Tensor) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} holds {bad} NaN or inf values; clean or drop them before selecting"
        )


def check_same_device(**tensors: Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise ValueError(
            f"tensors must be on one device, got {listing}; move them with .to(device)"
        )


def check_same_dtype(**tensors: Tensor) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{k} is {v}" for k, v in dtypes.items())
        raise TypeError(f"tensors must share one dtype, got {listing}; convert with .to(dtype)")


def check_bool(name: str, value) -> bool:
    """``value`` as a bool; ``TypeError`` naming ``name`` unless it is a bool (or a numpy bool)."""
    # A truthy string such as "no" would otherwise silently mean True.
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} ({value!r})")
    return bool(value)


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``: ``TypeError`` naming ``name`` unless it is an int (or a
    numpy integer; a bool is refused), ``ValueError`` when it is below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise TypeError(
                f"{name} must be an int, got {type(value).__name__} ({value!r})"
            ) from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
