"""Width rules: compare's methods that set widths or a training budget rather than choose channels.

A selection method (:mod:`~greedyprune.prune._registry`) answers "which channels of the trained
network stay?"; a width rule answers "which architecture, trained how long?". They stay apart
because their output is not a channel choice of the base model: ``uniform`` and ``scratch-E/B``
keep the planned widths but throw the trained weights away, and ``metapruner`` picks its own
widths with Torch-Pruning's global pruner. Each rule is one small class registered by name in
:data:`WIDTH_RULES`: ``build`` gives the pruned model, ``budget`` its training (epochs, lr).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch_pruning as tp
from torch import Tensor, nn

from greedyprune.errors import GreedypruneError

from ._macs import count_macs
from ._surgery import prune_channels

__all__ = ["META_STEPS", "SCRATCH_LR", "WIDTH_RULES", "RuleContext", "WidthRule", "scratch_budget"]

META_STEPS = 5  # MetaPruner's iterative_steps
SCRATCH_LR = 0.05  # the base model's learning rate: uniform, scratch-E and scratch-B train at it


@dataclass
class RuleContext:
    """What a width rule reads. base: the trained model (not changed); example: [1, 3, H, W];
    widths: the MACs plan (channels per group); target: the MACs target (absolute); seed: the
    run's seed; config: the compare run's config (``train_epochs``, ``finetune_epochs``,
    ``finetune_lr``, ``uniform_epochs``, ``weights``); n_train: training images; greedy_images:
    a function giving the images greedy's selection of the same (target, seed) sent through the
    classifier (scratch-B's budget)."""

    base: nn.Module
    example: Tensor
    widths: dict[str, int]
    target: int
    seed: int
    config: dict
    n_train: int
    greedy_images: object = None


class WidthRule:
    """A width rule: ``build(ctx) -> model`` and ``budget(ctx, macs) -> (epochs, lr)``;
    ``needs``: methods that must run before it in the same compare call or folder."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()

    def build(self, ctx: RuleContext) -> nn.Module:
        raise NotImplementedError

    def budget(self, ctx: RuleContext, macs: int, macs_full: int) -> tuple[float, float]:
        return ctx.config["finetune_epochs"], ctx.config["finetune_lr"]


WIDTH_RULES: dict[str, WidthRule] = {}


def _register(cls: type[WidthRule]) -> type[WidthRule]:
    WIDTH_RULES[cls.name] = cls()
    return cls


def _fresh_planned(ctx: RuleContext) -> nn.Module:
    """The planned widths (each group's first channels) with every weight re-initialised from
    the run's seed."""
    model = copy.deepcopy(ctx.base)
    prune_channels(model, ctx.example, {name: list(range(w)) for name, w in ctx.widths.items()})
    torch.manual_seed(ctx.seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model


class _FreshWidths(WidthRule):
    """The planned widths with fresh weights (uniform, scratch-E, scratch-B)."""

    def build(self, ctx: RuleContext) -> nn.Module:
        return _fresh_planned(ctx)


@_register
class Uniform(_FreshWidths):
    name = "uniform"
    description = (
        "the planned widths (the first channels), weights re-initialised: a thinner network "
        "trained from scratch at lr 0.05 for the whole budget the pruned ones had (the base "
        "model's training when trained here, plus the fine-tuning)"
    )

    def budget(self, ctx, macs, macs_full):
        return ctx.config["uniform_epochs"], SCRATCH_LR


@_register
class MetaPruner(WidthRule):
    name = "metapruner"
    description = (
        "Torch-Pruning's own pipeline: tp.pruner.MetaPruner, global_pruning=True, "
        f"iterative_steps={META_STEPS}, L2 magnitude importance, the classifier kept whole; its "
        "pruning ratio bisected to the MACs target"
    )

    def build(self, ctx: RuleContext) -> nn.Module:
        return metapruner(ctx.base, ctx.example, ctx.target)


@_register
class ScratchE(_FreshWidths):
    name = "scratch-E"
    description = "greedy's widths, fresh weights, trained finetune_epochs at the base model's lr"

    def budget(self, ctx, macs, macs_full):
        return ctx.config["finetune_epochs"], SCRATCH_LR


@_register
class ScratchB(_FreshWidths):
    name = "scratch-B"
    description = (
        "greedy's widths, fresh weights, trained for the compute of pre-training + greedy's "
        "selection + fine-tuning (see compare)"
    )
    needs = ("greedy",)

    def budget(self, ctx, macs, macs_full):
        pre = ctx.config["train_epochs"] if ctx.config["weights"] is None else 0
        epochs = scratch_budget(
            pre, ctx.greedy_images(), ctx.n_train, macs_full, macs, ctx.config["finetune_epochs"]
        )
        return epochs, SCRATCH_LR


def scratch_budget(
    train_epochs: float, select_images: int, n_train: int, macs_full: int, macs: int, epochs: float
) -> float:
    """scratch-B's epochs: the compute of pre-training (``train_epochs`` of the full model),
    greedy's selection (``select_images`` forward passes of the full model, 1/3 of a training
    pass each) and fine-tuning (``epochs`` of the pruned model), in epochs of the pruned model;
    compute is epochs x MACs per image."""
    selection_epochs = select_images / (3 * n_train)
    return (train_epochs * macs_full + selection_epochs * macs_full + epochs * macs) / macs


def metapruner(base: nn.Module, example: Tensor, target: int) -> nn.Module:
    """Torch-Pruning's global pruner on a copy of ``base``: ``META_STEPS`` iterative steps of
    L2-magnitude global pruning (classifier outputs kept), the final pruning ratio bisected so
    that the MACs land at or just under ``target``."""

    def run(ratio: float) -> tuple[nn.Module, int]:
        model = copy.deepcopy(base).eval()
        heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=2),
            global_pruning=True,
            pruning_ratio=ratio,
            iterative_steps=META_STEPS,
            ignored_layers=heads,
        )
        for _ in range(META_STEPS):
            pruner.step()
        return model, count_macs(model, example)

    lo, hi = 0.0, 0.95
    best = run(hi)
    if best[1] > target:
        raise GreedypruneError(
            f"metapruner cannot reach {target / 1e6:.3f}M MACs (pruning ratio {hi}); pass a "
            "larger target"
        )
    for _ in range(12):
        mid = (lo + hi) / 2
        model, macs = run(mid)
        if macs <= target:
            hi, best = mid, (model, macs)
        else:
            lo = mid
    return best[0]
