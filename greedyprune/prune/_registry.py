"""One registry of channel-selection methods, and how a choice is applied to a model.

A selection method is one function registered by name with :func:`register_method`. It gets one
:class:`SelectionRequest` (the model, its prunable groups, the widths or MACs target, the data,
a seeded generator) and returns a :class:`Choice`: the channels kept per group, plus, where the
method has them, per-channel scales folded into the group's consumers (greedy's gates). The jobs
(``compare``, and later ``prune``) look methods up here, never by an if-chain, so adding a method
is one function in one file and a line in the docs' table.

Methods that set widths or a training budget rather than choose channels (uniform width,
Torch-Pruning's MetaPruner, training greedy's widths from scratch) are *width rules*, a second
small registry in :mod:`~greedyprune.prune._width_rules`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from greedyprune.errors import GreedypruneError, check_choice, check_int

from ._finetune import batch_stream
from ._gates import PrunableGroup
from ._surgery import fold_into_consumers, prune_channels

__all__ = [
    "SELECTION_METHODS",
    "Choice",
    "MethodSpec",
    "SelectionRequest",
    "apply_choice",
    "register_method",
    "select_channels",
]

Batch = tuple[Tensor, Tensor]


@dataclass
class SelectionRequest:
    """Everything a selection method may read (one call: request in, :class:`Choice` out).

    model: the network to choose in (eval mode; a method leaves its weights as they were);
    example: [1, 3, H, W] on the model's device (tracing, MACs); groups: the prunable groups;
    widths: channels to keep per group name (the MACs plan); target_macs: the whole model's MACs
    target (absolute) for methods that plan their own widths (greedy re-plans after each group);
    data: the training split; batch_size: images per greedy step (the criteria read one batch of
    ``8 * batch_size`` images, :meth:`one_batch`); batch: that batch, when given directly;
    generator: seeded from the run's seed, the only source of randomness; seed: the run's seed
    (for code that seeds its own generators from it); options: method settings (greedy's
    ``candidates`` and ``loss``; the local methods' ``local`` (LocalSettings), ``progress`` and ``observe``,
    called with each group's layer problem); on_images: called with the number of images each forward pass
    of the selection sends through the classifier (greedy's count, for scratch-B's budget).
    """

    model: nn.Module
    example: Tensor
    groups: list[PrunableGroup]
    widths: dict[str, int]
    generator: torch.Generator
    target_macs: int | None = None
    data: Dataset | None = None
    batch_size: int = 8
    batch: Batch | None = None
    seed: int = 0
    device: str | torch.device = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    on_images: Callable[[int], None] | None = None

    def one_batch(self, method: str) -> Batch:
        """The one batch the criteria read: ``batch`` if given, else ``8 * batch_size`` images
        drawn from ``data`` with ``generator`` (the whole batch on every rank, so every rank
        keeps the same channels)."""
        if self.batch is None:
            if self.data is None:
                raise GreedypruneError(
                    f"method={method!r} needs batch=(x, y) or data to draw one from"
                )
            self.batch = batch_stream(
                self.data,
                self.batch_size * 8,
                generator=self.generator,
                device=self.device,
                shard=False,
            )()
        return self.batch


@dataclass
class Choice:
    """What a method chose. kept: sorted channel indices per group name (groups not named stay
    whole); scales: per group, a [C] factor per channel folded into the group's consumers before
    the surgery (``W[:, c] *= s_c``; zero for a removed channel), where the method reweights;
    weights: new weights (full, unpruned shape) of consumer modules by name, written before the
    scales and the surgery (a refit); info: the method's records (e.g. per-layer errors)."""

    kept: dict[str, list[int]]
    scales: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, one line saying what it does (the docs' table and
    ``compare --methods``), and the function ``select(request) -> Choice``."""

    name: str
    description: str
    select: Callable[[SelectionRequest], Choice]


SELECTION_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, description: str):
    """Decorator: register ``fn(request) -> Choice`` as the selection method ``name``."""

    def add(fn: Callable[[SelectionRequest], Choice]):
        if name in SELECTION_METHODS:
            raise GreedypruneError(f"a selection method named {name!r} is registered already")
        SELECTION_METHODS[name] = MethodSpec(name, description, fn)
        return fn

    return add


def select_channels(method: str, request: SelectionRequest) -> Choice:
    """Run the registered ``method`` on ``request``, after checking its widths."""
    check_choice("method", method, SELECTION_METHODS)
    for g in request.groups:
        w = request.widths.get(g.name, g.n_channels)
        check_int(f"widths[{g.name!r}]", w, minimum=1, maximum=g.n_channels)
    return SELECTION_METHODS[method].select(request)


def apply_choice(
    model: nn.Module, example: Tensor, groups: list[PrunableGroup], choice: Choice
) -> nn.Module:
    """Fold ``choice.scales`` into each group's consumers, then cut the channels not kept
    (:func:`prune_channels`, Torch-Pruning's dependency graph), after writing ``choice.weights``
    into their modules. In place; returns the model."""
    mods = dict(model.named_modules())
    with torch.no_grad():
        for name, w in choice.weights.items():
            mods[name].weight.copy_(w.to(mods[name].weight))
    fold_into_consumers(model, groups, choice.scales)
    return prune_channels(model, example, choice.kept)
