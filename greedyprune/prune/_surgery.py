"""Surgery with Torch-Pruning: fold the gates into the consumers, remove unselected channels."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import Tensor, nn

from ._gates import GatedModel

__all__ = ["fold_and_prune", "prune_channels"]


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
            raise ValueError(f"kept names {name!r}, which is not a convolution of this model")
        d = mods[name].out_channels
        keep_set = {int(i) for i in keep}
        if not keep_set or min(keep_set) < 0 or max(keep_set) >= d:
            raise ValueError(
                f"kept[{name!r}] must be a non-empty subset of range({d}), got {keep!r}"
            )
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
    model = gated.model
    mods = dict(model.named_modules())
    kept = {}
    gated.detach()
    for g in gated.groups:
        value = gated.gates[g.name].value
        if value is None:
            continue
        for c in g.consumers:
            w = mods[c].weight
            w.mul_(value.to(w).reshape(1, -1, *([1] * (w.dim() - 2))))
        kept[g.name] = [int(i) for i in torch.nonzero(value != 0).flatten()]
    prune_channels(model, gated.example_input, kept)
    return model, kept
