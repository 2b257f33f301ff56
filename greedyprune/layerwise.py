"""Layer-wise greedy forward selection: the one loop over the layers, from the input to the output.

Both front ends run on it: the deep mean-field networks
(:func:`greedyprune.sims.deep.layerwise_select`) and CNN channel pruning
(:func:`greedyprune.prune.greedy_prune`). The loop knows no network. For each layer in order it

1. asks the front end for the layer's :class:`LayerPlan` (``plan(layer, generator)``): the
   objective of the layer with the layers below it already pruned, the number of steps, the stop
   rule and the per-step hook (None: the layer is not selected, e.g. a group kept whole);
2. runs the kernel's :func:`~greedyprune.select.greedy_select` on it (or the plan's own
   ``select``, for the baselines);
3. hands the :class:`~greedyprune.select.Selection` back (``apply(layer, plan, selection)``), and
   the front end gates or compacts the layer; ``apply`` says whether the layer was cut;
4. calls ``between_layers(layer)`` after each layer that was cut (e.g. a short fine-tune).

Seeding, one convention: one ``torch.Generator`` for the whole run, from
:func:`layer_generator` (a generator is used as is, an int seeds a fresh one, None is seed 0: a
run is reproducible by default). It is handed to ``plan`` (for the front end's own draws, such as
a mini-batch per layer) and then to the layer's selection, layer after layer, so the draws of one
layer shift those of the next.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from greedyprune.errors import refuse
from greedyprune.select import Objective, Selection, greedy_select

__all__ = ["LayerPlan", "layer_generator", "select_layerwise"]

L = TypeVar("L")


@dataclass
class LayerPlan:
    """What the front end asks the loop to select in one layer.

    objective: the layer's objective (empty), with the layers below already pruned.
    n: steps (the kernel's ``n``): the largest size; ``stop`` may end the layer sooner.
    stop: the kernel's stop rule: None, a loss threshold or ``callable(step, loss) -> bool``.
    on_step: the kernel's per-step hook ``callable(step, index, loss)``, or None.
    select: None runs :func:`~greedyprune.select.greedy_select` with the loop's options;
        ``select(objective, n, generator) -> Selection`` replaces it (a baseline).
    state: anything the front end needs back in ``apply`` (the loop does not read it).
    """

    objective: Objective
    n: int
    stop: Any = None
    on_step: Callable[[int, int, float], None] | None = None
    select: Callable[[Objective, int, torch.Generator], Selection] | None = None
    state: Any = None


def layer_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """The run's one generator: ``generator`` itself, a fresh one seeded by an int, or seed 0 for
    None (unlike :func:`~greedyprune.select.make_generator`, whose None is a random seed)."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        generator = 0
    if isinstance(generator, bool) or not isinstance(generator, numbers.Integral):
        what = "a torch.Generator, an int seed or None (seed 0)"
        raise refuse("generator", generator, what, wrong_type=True)
    return torch.Generator().manual_seed(int(generator))


def select_layerwise(
    layers: Iterable[L],
    plan: Callable[[L, torch.Generator], LayerPlan | None],
    apply: Callable[[L, LayerPlan, Selection], bool],
    *,
    replacement: bool = True,
    candidates=None,
    candidate_order: str = "random",
    generator: torch.Generator | int | None = None,
    between_layers: Callable[[L], None] | None = None,
    context: Callable[[L], contextlib.AbstractContextManager] | None = None,
    progress: bool = False,
) -> list[Selection | None]:
    """Select every layer of ``layers`` in order, each with the layers before it already applied.

    layers: the layers, input first, in whatever form the front end uses (indices, groups).
    plan: ``plan(layer, generator) -> LayerPlan | None``; None skips the layer (the front end
        records it itself).
    apply: ``apply(layer, plan, selection) -> bool``: apply the selection to the network (gate or
        compact the layer) and record it; returns whether the layer was cut.
    replacement, candidates, candidate_order: passed to every
        :func:`~greedyprune.select.greedy_select`.
    generator: see :func:`layer_generator`; None is seed 0.
    between_layers: called with the layer after each layer that ``apply`` reports cut.
    context: ``context(layer)``, a context manager entered around the layer's ``plan`` and
        selection (e.g. autocast); ``apply`` and ``between_layers`` run outside it.
    progress: a progress bar over the layers, and one per layer's greedy steps.
    Returns one :class:`~greedyprune.select.Selection` per layer (None where ``plan`` skipped it).
    """
    gen = layer_generator(generator)
    selections: list[Selection | None] = []
    for layer in tqdm(layers, desc="layers", disable=not progress):
        with context(layer) if context is not None else contextlib.nullcontext():
            spec = plan(layer, gen)
            if spec is None:
                selections.append(None)
                continue
            if spec.select is not None:
                sel = spec.select(spec.objective, spec.n, gen)
            else:
                sel = greedy_select(
                    spec.objective,
                    spec.n,
                    replacement=replacement,
                    candidates=candidates,
                    candidate_order=candidate_order,
                    on_step=spec.on_step,
                    stop=spec.stop,
                    generator=gen,
                    progress=progress,
                )
        cut = apply(layer, spec, sel)
        selections.append(sel)
        del spec  # the layer's objective (cached activations) is not held during between_layers
        if cut and between_layers is not None:
            between_layers(layer)
    return selections
