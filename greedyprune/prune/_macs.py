"""One MACs counter (multiply-accumulates of Conv2d and Linear layers) and a width planner.

``count_macs`` is the counter every number in this package is reported with: the sum over
``nn.Conv2d`` and ``nn.Linear`` layers of (output elements per sample) x (inputs per output), for one
sample. Batch norm, activations and pooling are not counted (they are a few percent of a CNN's
work and are not MACs). The planner predicts the same count for any choice of widths of the
prunable groups, so a MACs target can be met without building the pruned model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from greedyprune.errors import GreedypruneError, refuse

__all__ = ["LayerCost", "MacsModel", "count_macs", "count_params", "parse_macs", "profile_layers"]


@dataclass(frozen=True)
class LayerCost:
    """A Conv2d/Linear layer's cost: ``positions`` output positions per sample (H*W, or the
    product of the leading dims for Linear), ``kernel`` taps, channels and groups."""

    name: str
    positions: int
    kernel: int
    in_channels: int
    out_channels: int
    groups: int

    @property
    def macs(self) -> int:
        return self.positions * self.kernel * (self.in_channels // self.groups) * self.out_channels


@torch.no_grad()
def profile_layers(model: nn.Module, example_input: torch.Tensor) -> list[LayerCost]:
    """The cost of every Conv2d/Linear layer for one sample; ``example_input: [1, C, H, W]``."""
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        raise refuse("example_input", example_input, "a tensor [1, C, H, W]")
    costs: list[LayerCost] = []
    handles = []
    names = {m: n for n, m in model.named_modules()}

    def hook(mod, args, out):
        per_sample = out[:1]
        if isinstance(mod, nn.Conv2d):
            positions = per_sample.shape[-1] * per_sample.shape[-2]
            kernel = mod.kernel_size[0] * mod.kernel_size[1]
            costs.append(
                LayerCost(
                    names[mod], positions, kernel, mod.in_channels, mod.out_channels, mod.groups
                )
            )
        else:
            positions = per_sample.numel() // mod.out_features
            costs.append(LayerCost(names[mod], positions, 1, mod.in_features, mod.out_features, 1))

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        model(example_input[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return costs


def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Conv2d + Linear multiply-accumulates for one sample of ``example_input: [1, C, H, W]``."""
    return int(sum(c.macs for c in profile_layers(model, example_input)))


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}


def parse_macs(value: str | float | int, full_macs: int) -> int:
    """A MACs target: ``"220M"``, ``"1.5G"``, ``"3e8"`` (absolute), or ``0.5`` / ``"50%"`` (fraction).

    A bare number <= 1 is a fraction of ``full_macs``. Raises ``ValueError`` when the target is not
    positive or above the model's MACs.
    """
    text = str(value).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMG%]?)", text, re.IGNORECASE)
    if not m:
        raise GreedypruneError(
            f"target_macs={value!r} is not a MACs target; use e.g. 220M, 1.5G, 0.5 or 50%"
        )
    number, unit = float(m.group(1)), m.group(2).upper()
    if unit == "%":
        target = number / 100 * full_macs
    elif unit == "" and number <= 1:
        target = number * full_macs
    else:
        target = number * _UNITS[unit]
    if target <= 0:
        raise GreedypruneError(f"target_macs={value!r} must be positive")
    if target > full_macs:
        raise GreedypruneError(
            f"target_macs={value!r} ({target / 1e6:.2f}M) is above the model's {full_macs / 1e6:.2f}M "
            "MACs; pass a smaller target (or a fraction like 0.5)"
        )
    return round(target)


class MacsModel:
    """Predicts ``count_macs`` of the model after its prunable groups are cut to given widths.

    costs: from :func:`profile_layers` on the unpruned model. groups: the prunable groups (objects
    with ``name``, ``n_channels``, ``producers``, ``consumers``; depthwise producers are recognised by
    ``groups == in_channels == out_channels``).
    """

    def __init__(self, costs: list[LayerCost], groups):
        self.costs = list(costs)
        self.full = {g.name: int(g.n_channels) for g in groups}
        self._out: dict[str, str] = {}
        self._in: dict[str, str] = {}
        for g in groups:
            for p in g.producers:
                self._out[p] = g.name
            for c in g.consumers:
                self._in[c] = g.name
        self.full_macs = int(sum(c.macs for c in self.costs))

    def macs(self, widths: dict[str, int]) -> int:
        """Predicted MACs; ``widths`` maps group name -> kept channels (missing groups stay whole)."""
        total = 0
        for c in self.costs:
            out_g = self._out.get(c.name)
            out_ch = widths.get(out_g, c.out_channels) if out_g else c.out_channels
            if c.groups > 1 and c.groups == c.in_channels == c.out_channels:
                total += c.positions * c.kernel * out_ch
                continue
            in_g = self._in.get(c.name)
            in_ch = widths.get(in_g, c.in_channels) if in_g else c.in_channels
            total += c.positions * c.kernel * (in_ch // c.groups) * out_ch
        return int(total)

    def uniform_widths(self, ratio: float, names) -> dict[str, int]:
        return {n: max(1, min(self.full[n], round(ratio * self.full[n]))) for n in names}

    def plan(self, target: int, fixed: dict[str, int] | None = None) -> dict[str, int]:
        """Widths for the groups not in ``fixed``: one keep ratio for all of them (the largest whose
        predicted MACs stay at or below ``target``). Raises ``ValueError`` if even one channel per
        free group exceeds the target."""
        fixed = dict(fixed or {})
        free = [n for n in self.full if n not in fixed]
        lo_w = {**fixed, **self.uniform_widths(0.0, free)}
        if self.macs(lo_w) > target:
            raise GreedypruneError(
                f"target_macs={target / 1e6:.3f}M is below the smallest reachable "
                f"{self.macs(lo_w) / 1e6:.3f}M (one channel per prunable group); pass a larger target"
            )
        lo, hi = 0.0, 1.0
        if self.macs({**fixed, **self.uniform_widths(1.0, free)}) <= target:
            return {**fixed, **self.uniform_widths(1.0, free)}
        for _ in range(40):
            mid = (lo + hi) / 2
            if self.macs({**fixed, **self.uniform_widths(mid, free)}) <= target:
                lo = mid
            else:
                hi = mid
        return {**fixed, **self.uniform_widths(lo, free)}
