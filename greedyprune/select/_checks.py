"""Input checks shared by the kernel: each error names the argument, what came and the fix."""

from __future__ import annotations

import torch
from torch import Tensor

from greedyprune import errors
from greedyprune.errors import GreedypruneError, GreedypruneTypeError, refuse


def check_tensor(name: str, x, *, ndims: tuple[int, ...], floating: bool = True) -> Tensor:
    if not isinstance(x, Tensor):
        raise refuse(name, x, "a torch.Tensor", "wrap it with torch.as_tensor", wrong_type=True)
    if x.dim() not in ndims:
        shapes = " or ".join(f"{d}-D" for d in ndims)
        raise refuse(f"{name}.shape", tuple(x.shape), shapes, argument=name)
    if floating and not x.is_floating_point():
        raise refuse(
            f"{name}.dtype", x.dtype, "a floating-point dtype", "convert with .float() or .double()",
            wrong_type=True, argument=name,
        )  # fmt: skip
    if x.numel() == 0:
        raise refuse(
            f"{name}.shape", tuple(x.shape), "non-empty",
            "pass at least one candidate and one data point", argument=name,
        )  # fmt: skip
    return x


def check_finite(name: str, x: Tensor) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise GreedypruneError(
            f"{name} holds {bad} NaN or inf values; clean or drop them before selecting"
        )


def check_same_device(**tensors: Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise GreedypruneError(
            f"tensors must be on one device, got {listing}; move them with .to(device)"
        )


def check_same_dtype(**tensors: Tensor) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{k} is {v}" for k, v in dtypes.items())
        raise GreedypruneTypeError(
            f"tensors must share one dtype, got {listing}; convert with .to(dtype)"
        )


def check_bool(name: str, value) -> bool:
    """``value`` as a bool (:func:`greedyprune.errors.check_bool`)."""
    return errors.check_bool(name, value)


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (a numpy integer taken, a bool refused)."""
    return errors.check_int(name, value, minimum=minimum)
