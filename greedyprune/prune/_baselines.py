"""Baseline channel choices at given widths: Torch-Pruning's importances, random, uniform.

Each baseline keeps, in every prunable group, the ``widths[name]`` channels it ranks highest; the
widths come from the same MACs plan as greedy's, so every method is compared at equal MACs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import Tensor, nn

from ._gates import PrunableGroup

__all__ = ["BASELINES", "baseline_channels"]

# name -> what it ranks by (Torch-Pruning importance classes, read in torch_pruning 1.6.1).
BASELINES = {
    "l1": "group L1 norm of the weights (tp.importance.MagnitudeImportance, p=1)",
    "taylor": "first-order Taylor |w * dL/dw| on one batch (tp.importance.TaylorImportance)",
    "bn": "batch-norm scale |gamma| (tp.importance.BNScaleImportance, network slimming); "
    "groups without batch norm (squeeze-excitation convolutions) are ranked by L1",
    "random": "uniformly random channels (seeded)",
    "uniform": "the first channels, weights re-initialised: a thinner network trained from scratch",
}


def baseline_channels(
    method: str,
    model: nn.Module,
    example_input: Tensor,
    groups: list[PrunableGroup],
    widths: dict[str, int],
    *,
    batch: tuple[Tensor, Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, list[int]]:
    """Channels to keep per group (sorted) for a baseline ``method`` (see :data:`BASELINES`).

    example_input: [1, C, H, W]; batch: ``(x [B, C, H, W], y [B])`` for ``taylor`` (the gradients
    of the cross-entropy on it); generator: for ``random``. Does not change the model's weights
    (``taylor`` leaves gradients in ``.grad``, which are cleared).
    """
    if method not in BASELINES:
        raise ValueError(f"method={method!r} is not a baseline; use one of {', '.join(BASELINES)}")
    for g in groups:
        w = widths.get(g.name, g.n_channels)
        if not 1 <= w <= g.n_channels:
            raise ValueError(f"widths[{g.name!r}]={w} must be in 1..{g.n_channels}")
    if method == "uniform":
        return {g.name: list(range(widths.get(g.name, g.n_channels))) for g in groups}
    if method == "random":
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        return {
            g.name: sorted(
                int(i) for i in torch.randperm(g.n_channels, generator=gen)[: widths[g.name]]
            )
            for g in groups
        }
    imp = {
        "l1": lambda: tp.importance.MagnitudeImportance(p=1, normalizer=None),
        "taylor": lambda: tp.importance.TaylorImportance(normalizer=None),
        "bn": lambda: tp.importance.BNScaleImportance(normalizer=None),
    }[method]()
    l1 = tp.importance.MagnitudeImportance(p=1, normalizer=None)
    mods = dict(model.named_modules())
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
            if method == "taylor":
                if batch is None:
                    raise ValueError("method='taylor' needs batch=(x, y) to take gradients on")
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(batch[0]), batch[1]).backward()
        kept = {}
        for g in groups:
            d = g.n_channels
            group = dg.get_pruning_group(
                mods[g.name], tp.prune_conv_out_channels, idxs=list(range(d))
            )
            scores = imp(group)
            if scores is None and method == "bn":
                # No batch norm in the group (squeeze-excitation convolutions): rank by L1.
                scores = l1(group)
            if scores is None or scores.numel() != d:
                raise ValueError(f"{method} importance could not score group {g.name!r}")
            # Ties broken toward the lower index so the choice is reproducible.
            order = sorted(range(d), key=lambda i: (-float(scores[i]), i))
            kept[g.name] = sorted(order[: widths.get(g.name, d)])
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return kept
