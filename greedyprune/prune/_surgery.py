"""Surgery with Torch-Pruning: fold the gates into the consumers, remove unselected channels."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import Tensor, nn

from greedyprune.errors import GreedypruneError, refuse

from ._gates import GatedModel

__all__ = ["fold_and_prune", "fold_into_consumers", "prune_channels"]


def prune_channels(
    model: nn.Module, example_input: Tensor, kept: dict[str, list[int]], n_channels=None
) -> nn.Module:
    """Keep only the ``kept`` channels of each named group (named by its root convolution); every
    coupled layer (batch norms, depthwise convolutions, squeeze-excitation, consumers) is cut by
    Torch-Pruning's dependency graph. In place; returns the model.

    example_input: [1, C, H, W] on the model's device and dtype.
    """
    mods = dict(model.named_modules())
    removed = {}
    for name, keep in kept.items():
        if name not in mods or not isinstance(mods[name], nn.Conv2d):
            raise GreedypruneError(f"kept names {name!r}, which is not a convolution of this model")
        d = mods[name].out_channels
        keep_set = {int(i) for i in keep}
        if not keep_set or min(keep_set) < 0 or max(keep_set) >= d:
            raise refuse(f"kept[{name!r}]", keep, f"a non-empty subset of range({d})")
        drop = [i for i in range(d) if i not in keep_set]
        if drop:
            removed[name] = drop
    if not removed:
        return model
    was_training = model.training
    model.eval()
    # Torch-Pruning traces the graph through autograd, so this must run with gradients on.
    try:
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
        for name, drop in removed.items():
            group = dg.get_pruning_group(mods[name], tp.prune_conv_out_channels, idxs=drop)
            group.prune()
    finally:
        model.train(was_training)
    return model


@torch.no_grad()
def fold_and_prune(gated: GatedModel) -> tuple[nn.Module, dict[str, list[int]]]:
    """Turn a gated model into a smaller real one computing the same function.

    Each group's gate ``g [D]`` is folded into its consumers (``W[:, c] *= g_c``), the gate hooks are
    removed, and channels whose gate is zero are cut (:func:`prune_channels`). Groups without a gate
    stay whole. Returns (the model, modified in place; kept channels per group).
    """
    kept, scales = detach_gates(gated)
    fold_into_consumers(gated.model, gated.groups, scales)
    prune_channels(gated.model, gated.example_input, kept)
    return gated.model, kept


def detach_gates(gated: GatedModel) -> tuple[dict[str, list[int]], dict[str, Tensor]]:
    """Remove the gate hooks; return (the channels with a non-zero gate, the gate values [C]) per
    gated group (groups without a gate, kept whole, are not named)."""
    gated.detach()
    scales = {
        g.name: gated.gates[g.name].value
        for g in gated.groups
        if gated.gates[g.name].value is not None
    }
    kept = {name: [int(i) for i in torch.nonzero(v != 0).flatten()] for name, v in scales.items()}
    return kept, scales


@torch.no_grad()
def fold_into_consumers(model: nn.Module, groups, scales: dict[str, Tensor]) -> None:
    """Multiply each group's input columns in its consumers by a per-channel factor:
    ``W[:, c] *= scales[group][c]`` for every consumer of every group named in ``scales``."""
    mods = dict(model.named_modules())
    by_name = {g.name: g for g in groups}
    for name, scale in scales.items():
        for c in by_name[name].consumers:
            w = mods[c].weight
            w.mul_(scale.to(w).reshape(1, -1, *([1] * (w.dim() - 2))))
