"""Layer-wise greedy forward selection of channels (Ye et al. 2020), input to output.

For each prunable group in forward order, channels are added one at a time by
``greedyprune.select.greedy_select``; the objective is the kernel's ``StackedObjective``: the gate
of the group is ``D * w`` (D the group's channel count, w the Frank-Wolfe mixing weights, updated
by the 1/(k+1) step), and K candidates are scored by running the rest of the network once on K
stacked copies of the cached activation below the group. ``mode="sequential"`` is the authors'
reference: one full forward pass of the whole model per candidate. Each step draws a fresh batch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from greedyprune.select import StackedObjective, greedy_select

from ._gates import GatedModel
from ._macs import MacsModel, parse_macs, profile_layers

__all__ = ["GreedyPruneResult", "LayerRecord", "greedy_prune", "loss_per_sample"]

Batch = tuple[Tensor, Tensor]


def loss_per_sample(loss: str) -> Callable[[Tensor, Tensor], Tensor]:
    """``"ce"``: cross-entropy against labels [B]; ``"imitation"``: 0.5 * squared error to the
    unpruned network's logits [B, c], summed over classes (the follow-up's global imitation)."""
    if loss == "ce":
        return lambda out, y: F.cross_entropy(out, y, reduction="none")
    if loss == "imitation":
        return lambda out, t: 0.5 * (out - t).pow(2).sum(1)
    raise ValueError(f"loss={loss!r} must be 'ce' (labels) or 'imitation' (unpruned logits)")


@dataclass
class LayerRecord:
    """One group's selection: ``order`` (picks in order, repeats possible with replacement),
    ``kept`` (distinct channels), ``gate`` [D] (D * w), losses per step, accuracies if measured."""

    name: str
    n_channels: int
    order: list[int]
    kept: list[int]
    gate: list[float]
    losses: list[float]
    acc_before: float | None = None
    acc_after: float | None = None
    evaluations: int = 0


@dataclass
class GreedyPruneResult:
    layers: list[LayerRecord] = field(default_factory=list)
    planned_macs: int | None = None

    def kept(self) -> dict[str, list[int]]:
        return {r.name: r.kept for r in self.layers}

    def gates(self) -> dict[str, list[float]]:
        return {r.name: r.gate for r in self.layers}


class _LayerObjective(StackedObjective):
    """StackedObjective whose batch can be replaced between steps (the authors draw a fresh
    mini-batch per step); the mixing weights w are kept."""

    def set_batch(self, inputs: Tensor, target: Tensor) -> None:
        self.inputs, self.target, self.batch = (inputs,), target, int(inputs.shape[0])


@torch.no_grad()
def _accuracy(suffix: nn.Module, h: Tensor, y: Tensor, chunk: int = 256) -> float:
    correct = 0
    for a in range(0, h.shape[0], chunk):
        correct += int((suffix(h[a : a + chunk]).argmax(1) == y[a : a + chunk]).sum())
    return correct / max(1, h.shape[0])


def check_selection_settings(*, candidates=None, loss="ce", tol=None, mode="batched") -> None:
    """The arguments of :func:`greedy_prune` that can be checked without a model (the front ends
    call it before any folder is made or model trained)."""
    # a tuple such as ("eps", 0.1) is the kernel's stochastic-greedy rule, checked there
    if not isinstance(candidates, (tuple, type(None))) and (
        isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1
    ):
        raise ValueError(
            f"candidates={candidates!r} must be an int >= 1 (the authors: 50), None (all) or "
            "('eps', e) (stochastic greedy)"
        )
    loss_per_sample(loss)
    if tol is not None and (
        isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1
    ):
        raise ValueError(f"tol={tol!r} must be in [0, 1), e.g. 0.02")
    if mode not in ("batched", "sequential"):
        raise ValueError(f"mode={mode!r} must be 'batched' or 'sequential'")


def _check_batches(batches) -> Callable[[], Batch]:
    if callable(batches):
        return batches
    if isinstance(batches, Iterator):
        return lambda: next(batches)
    raise TypeError(
        "batches must be a callable returning (x [B, C, H, W], y [B]) or an iterator of such pairs"
    )


def greedy_prune(
    model: nn.Module,
    batches,
    example_input: Tensor,
    *,
    target_macs: int | float | str | None = None,
    widths: dict[str, int] | None = None,
    tol: float | None = None,
    eval_batch: Batch | None = None,
    candidates: int | None = 50,
    replacement: bool = False,
    loss: str = "ce",
    mode: str = "batched",
    groups=None,
    generator: torch.Generator | int | None = 0,
    chunk_size: int | None = None,
    max_bytes: int | None = None,
    between_layers: Callable[[nn.Module], None] | None = None,
    progress: bool = False,
) -> tuple[GatedModel, GreedyPruneResult]:
    """Select channels of every prunable group, input to output; the model is gated in place.

    model: in eval mode during selection; its modules get gate hooks (``GatedModel``).
    batches: callable or iterator giving ``(x [B, C, H, W], y [B])`` on the model's device; one
        batch per greedy step (the authors' fresh mini-batch).
    example_input: [1, C, H, W] (tracing and MACs counting).
    target_macs: MACs of the whole model (see ``count_macs``) to end at, absolute (an int, "220M")
        or a fraction (0.5, "50%"), see ``parse_macs``; each group in
        turn keeps ``round(r * D)`` channels with the one ratio r that makes the groups still to
        prune meet the target given the ones already pruned (met up to rounding).
    widths: channels to keep per group name (instead of a MACs target; groups not named stay
        whole).
    tol: the authors' per-layer stop: a group stops growing once the accuracy on ``eval_batch``
        reaches (1 - tol) times its accuracy before this group was pruned. With ``target_macs``
        too, a group stops at whichever comes first.
    candidates: channels scored per step (random sample; the authors use 50); None scores all.
    replacement: False (default, the authors) never picks a channel twice; True is the theory's
        multiset (the gate of a channel picked j times out of n is D * j / n).
    loss: "ce" against the labels or "imitation" of the unpruned network's logits.
    mode: "batched" (cached prefix, K stacked copies through the suffix) or "sequential" (one full
        forward pass per candidate; the reference, same selections given the same batches).
    between_layers: called with the model after each group (e.g. a short fine-tune).
    Returns the gated model and the per-group records.
    """
    check_selection_settings(candidates=candidates, loss=loss, tol=tol, mode=mode)
    if target_macs is None and tol is None and widths is None:
        raise ValueError("pass target_macs (e.g. 0.5 or '220M'), widths or tol (e.g. 0.02)")
    if target_macs is not None and widths is not None:
        raise ValueError("pass target_macs or widths, not both")
    if tol is not None and eval_batch is None:
        raise ValueError("tol needs eval_batch=(x, y): the images the accuracy is measured on")
    loss_fn = loss_per_sample(loss)
    next_batch = _check_batches(batches)
    gen = generator
    if not isinstance(gen, torch.Generator):
        gen = torch.Generator().manual_seed(0 if gen is None else int(gen))
    model.eval()
    reference = copy.deepcopy(model) if loss == "imitation" else None
    gm = GatedModel(model, example_input, groups)
    macs_model = MacsModel(profile_layers(model, example_input), gm.groups)
    if target_macs is not None:
        target_macs = parse_macs(target_macs, macs_model.full_macs)
    result = GreedyPruneResult()
    done: dict[str, int] = {}
    if target_macs is not None:
        result.planned_macs = macs_model.macs(macs_model.plan(target_macs))
    extra = {} if max_bytes is None else {"max_bytes": max_bytes}

    def target_of(x: Tensor, y: Tensor) -> Tensor:
        if reference is None:
            return y
        with torch.no_grad():
            return reference(x)

    for g in tqdm(gm.groups, desc="layers", disable=not progress):
        gate = gm.gates[g.name]
        d = g.n_channels
        cap = d
        if target_macs is not None:
            cap = macs_model.plan(target_macs, fixed=done)[g.name]
        elif widths is not None:
            cap = int(widths.get(g.name, d))
            if not 1 <= cap <= d:
                raise ValueError(f"widths[{g.name!r}]={cap} must be in 1..{d}")
        if cap >= d and tol is None:
            done[g.name] = d
            result.layers.append(LayerRecord(g.name, d, [], list(range(d)), [1.0] * d, []))
            continue
        prefix, suffix = gm.split(g.name)
        acc_before, h_eval = None, None
        if tol is not None:
            with torch.no_grad():
                h_eval = prefix(eval_batch[0])
            acc_before = _accuracy(suffix, h_eval, eval_batch[1])
        x, y = next_batch()

        def run_suffix(xs: Tensor, gates: Tensor, suffix=suffix, gate=gate) -> Tensor:
            gate.stacked = gates
            try:
                return suffix(xs)
            finally:
                gate.stacked = None

        def run_full(xs: Tensor, gates: Tensor, gate=gate) -> Tensor:
            gate.stacked = gates
            try:
                return model(xs)
            finally:
                gate.stacked = None

        with torch.no_grad():
            inputs = prefix(x) if mode == "batched" else x
        obj = _LayerObjective(
            inputs,
            run_suffix if mode == "batched" else run_full,
            loss_fn,
            d,
            target=target_of(x, y),
            scale=float(d),
            chunk_size=1 if mode == "sequential" else chunk_size,
            **extra,
        )
        state = {"acc": None}

        def stop(
            step: int,
            loss_value: float,
            obj=obj,
            prefix=prefix,
            suffix=suffix,
            gate=gate,
            state=state,
            h_eval=h_eval,
            acc_before=acc_before,
            cap=cap,
        ):
            distinct = int((obj.w > 0).sum())
            if tol is not None:
                gate.value = obj.gates()
                state["acc"] = _accuracy(suffix, h_eval, eval_batch[1])
                gate.value = None
                if state["acc"] >= (1 - tol) * acc_before:
                    return True
            if distinct >= cap:
                return True
            xb, yb = next_batch()
            with torch.no_grad():
                obj.set_batch(prefix(xb) if mode == "batched" else xb, target_of(xb, yb))
            return False

        n_steps = cap if not replacement else 64 * d
        sel = greedy_select(
            obj,
            n_steps,
            replacement=replacement,
            candidates=candidates,
            stop=stop,
            generator=gen,
        )
        gate.value = obj.gates().detach().clone()
        kept = sorted(int(i) for i in torch.nonzero(obj.w > 0).flatten())
        done[g.name] = len(kept)
        result.layers.append(
            LayerRecord(
                g.name,
                d,
                [int(i) for i in sel.order],
                kept,
                [float(v) for v in gate.value.cpu()],
                [float(v) for v in sel.losses],
                acc_before,
                state["acc"],
                int(sel.evaluations),
            )
        )
        if between_layers is not None:
            between_layers(model)
            model.eval()
    return gm, result
