"""What the two-layer and the deep experiments share: the dtype names, sub-seeds, the checks of a
setting's fields, the in-process cache of pretrained networks (the printed verdict table is
greedyprune.theory.format_verdicts)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable
from typing import Any

import torch

from greedyprune.errors import GreedypruneError

__all__ = [
    "DTYPES",
    "PretrainCache",
    "check_dtype",
    "device_key",
    "sub_seed",
]

# a setting's ``dtype`` field -> the torch dtype
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def check_dtype(name: str, dtype: str) -> None:
    """Refuse a setting's ``dtype`` that is not a key of :data:`DTYPES`."""
    if dtype not in DTYPES:
        raise GreedypruneError(f"setting {name!r}: dtype={dtype!r}; use {sorted(DTYPES)}")


def sub_seed(seed: int, *tags) -> int:
    """A reproducible sub-seed for one random draw of one replicate (independent across tags)."""
    return zlib.crc32(repr((int(seed), *tags)).encode()) & 0x7FFFFFFF


def device_key(device) -> str:
    """``device`` as a cache key: ``None`` is the CPU."""
    return str(torch.device(device) if device is not None else "cpu")


class PretrainCache:
    """The last ``size`` pretrained networks, keyed by (setting, seed, device).

    Every experiment of a replicate sees the same pretrained network, whatever else it trains:
    treat what it returns as read-only. The oldest entry is dropped first.
    """

    def __init__(self, size: int):
        self.size = int(size)
        self._items: dict[Hashable, Any] = {}

    def get(self, setting: Hashable, seed: int, device, build: Callable[[], Any]) -> Any:
        """The cached value of ``(setting, seed, device)``, made by ``build()`` if missing."""
        key = (setting, int(seed), device_key(device))
        if key not in self._items:
            value = build()
            while len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = value
        return self._items[key]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
