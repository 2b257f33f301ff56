"""What the two-layer and the deep experiments share: the dtype names, sub-seeds, the checks of a
setting's fields, the in-process cache of pretrained networks and the printed verdict table."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable
from typing import Any

import pandas as pd
import torch

__all__ = [
    "DTYPES",
    "PretrainCache",
    "check_dtype",
    "device_key",
    "format_verdicts",
    "sub_seed",
]

# a setting's ``dtype`` field -> the torch dtype
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def check_dtype(name: str, dtype: str) -> None:
    """Refuse a setting's ``dtype`` that is not a key of :data:`DTYPES`."""
    if dtype not in DTYPES:
        raise ValueError(f"setting {name!r}: dtype={dtype!r}; use {sorted(DTYPES)}")


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


def format_verdicts(verdicts: pd.DataFrame) -> str:
    """The verdict table as fixed-width text (one line per claim and setting).

    Slope claims show the predicted and the measured log-log slope with its 95% interval; level
    and other ratio claims (form ``less_than``) show ``<1`` and the measured ratio (geometric mean
    over n and seeds) with its 95% interval, over the paired n range.
    """
    if verdicts.empty:
        return "(no verdicts)"
    w = max(26, *(len(str(c)) for c in verdicts["claim"]))
    ws = max(9, *(len(str(c)) for c in verdicts["setting"]))
    lines = [
        f"{'claim':<{w}} {'setting':<{ws}} {'pred':>5} {'slope|ratio':>11} {'95% CI':>17} "
        f"{'n range':>9}  verdict"
    ]
    for r in verdicts.itertuples():
        pred = "" if pd.isna(r.predicted_slope) else f"{r.predicted_slope:.1f}"
        value = "" if pd.isna(r.measured_slope) else f"{r.measured_slope:.3g}"
        ci = "" if pd.isna(r.ci_low) else f"[{r.ci_low:.3g}, {r.ci_high:.3g}]"
        ratio = getattr(r, "ratio", float("nan"))
        if getattr(r, "form", None) == "less_than" and not pd.isna(ratio):
            pred, value = "<1", f"{ratio:.3g}"
            ci = f"[{r.ratio_low:.3g}, {r.ratio_high:.3g}]"
        rng = "" if pd.isna(r.n_min) else f"{int(r.n_min)}-{int(r.n_max)}"
        lines.append(
            f"{r.claim:<{w}} {r.setting:<{ws}} {pred:>5} {value:>11} {ci:>17} {rng:>9}  {r.verdict}"
        )
    return "\n".join(lines)
