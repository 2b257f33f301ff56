"""Layer-wise greedy forward selection of channels (Ye et al. 2020), input to output.

The CNN front end of the shared loop ``greedyprune.layerwise.select_layerwise``: for each prunable
group in forward order, channels are added one at a time by ``greedyprune.select.greedy_select``; the objective is the kernel's ``StackedObjective``: the gate
of the group is ``D * w`` (D the group's channel count, w the Frank-Wolfe mixing weights, updated
by the 1/(k+1) step), and K candidates are scored by running the rest of the network once on K
stacked copies of the cached activation below the group. ``mode="sequential"`` is the authors'
reference: one full forward pass of the whole model per candidate. Each step draws a fresh batch.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from greedyprune.dist import all_sum, gather_mean, is_distributed
from greedyprune.errors import (
    GreedypruneError,
    GreedypruneTypeError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    refuse,
    with_fields,
)
from greedyprune.layerwise import LayerPlan, layer_generator, select_layerwise
from greedyprune.select import StackedObjective, per_sample_loss

from ._gates import GatedModel
from ._macs import MacsModel, parse_macs, profile_layers
from ._registry import Choice, SelectionRequest, register_method

__all__ = ["GreedyPruneResult", "GreedySettings", "LayerRecord", "greedy_prune"]

Batch = tuple[Tensor, Tensor]
CANDIDATE_ORDERS = ("random", "lowest-index")


# greedy_prune's loss names -> the shared per-sample loss: "ce" against the labels [B];
# "imitation": the squared loss to the unpruned network's logits [B, c] (the follow-up's global
# imitation).
_LOSS_NAMES = {"ce": "cross_entropy", "imitation": "squared"}


def _loss_fn(loss: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The per-sample loss of ``greedy_prune(loss=...)``: ``per_sample_loss`` with its name bound."""
    if loss not in _LOSS_NAMES:
        raise GreedypruneError(
            f"loss={loss!r} must be 'ce' (labels) or 'imitation' (unpruned logits)"
        )
    return functools.partial(per_sample_loss, _LOSS_NAMES[loss])


@dataclass
class LayerRecord:
    """One group's selection: ``order`` (picks in order, repeats possible with replacement),
    ``kept`` (distinct channels), ``gate`` [D] (D * w), losses per step, accuracies if measured,
    ``evaluations`` (candidate scorings) and ``full_evaluations`` (passes over the evaluation set
    for ``tol``, the pre-check skips most), ``seconds`` of selection (between-layer tuning
    excluded)."""

    name: str
    n_channels: int
    order: list[int]
    kept: list[int]
    gate: list[float]
    losses: list[float]
    acc_before: float | None = None
    acc_after: float | None = None
    evaluations: int = 0
    full_evaluations: int = 0
    seconds: float = 0.0


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


def _chunks(x: Tensor, size: int) -> list[Tensor]:
    return [x[a : a + size] for a in range(0, x.shape[0], size)]


@torch.no_grad()
def _run_chunked(fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int) -> Tensor:
    """``fn(x)`` computed ``chunk`` samples at a time: peak memory follows the chunk, not ``x``."""
    return torch.cat([fn(c) for c in _chunks(x, chunk)])


@torch.no_grad()
def _accuracy(model: nn.Module, eval_data, chunk: int) -> float:
    """Top-1 of ``model`` on ``eval_data``: an (x, y) pair, run ``chunk`` images at a time, or a
    callable returning an iterable of (x, y) batches (streamed, e.g. a DataLoader)."""
    correct = total = 0
    batches = (
        ((xc, yc) for xc, yc in zip(_chunks(eval_data[0], chunk), _chunks(eval_data[1], chunk)))
        if isinstance(eval_data, tuple)
        else eval_data()
    )
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        total += int(y.numel())
    correct, total = all_sum(correct, total)
    return correct / max(1, total)


@torch.no_grad()
def _first_pass(prefix, suffix, eval_data, chunk: int, budget: int) -> tuple[float, list | None]:
    """Top-1 of ``suffix(prefix(x))`` (the whole model) on ``eval_data``, and the prefix outputs
    ``[(h, y), ...]`` kept for the group's later evaluations if they fit in ``budget`` bytes
    (else None: the later evaluations stream the images again). One pass either way."""
    batches = (
        zip(_chunks(eval_data[0], chunk), _chunks(eval_data[1], chunk))
        if isinstance(eval_data, tuple)
        else eval_data()
    )
    cache: list | None = [] if budget > 0 else None
    used = correct = total = 0
    for x, y in batches:
        for xc, yc in zip(_chunks(x, chunk), _chunks(y, chunk)):
            h = prefix(xc)
            correct += int((suffix(h).argmax(1) == yc).sum())
            total += int(yc.numel())
            if cache is not None:
                used += h.numel() * h.element_size()
                if used <= budget:
                    cache.append((h, yc))
                else:
                    cache = None
    correct, total = all_sum(correct, total)
    return correct / max(1, total), cache


def check_selection_settings(
    *, candidates=None, candidate_order="random", loss="ce", tol=None, mode="batched"
) -> None:
    """The arguments of :func:`greedy_prune` that can be checked without a model (the front ends
    call it before any folder is made or model trained)."""
    # a tuple such as ("eps", 0.1) is the kernel's stochastic-greedy rule, checked there
    if not isinstance(candidates, (tuple, type(None))) and (
        isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1
    ):
        raise GreedypruneError(
            f"candidates={candidates!r} must be an int >= 1 (the authors: 50), None (all) or "
            "('eps', e) (stochastic greedy)"
        )
    _loss_fn(loss)
    if tol is not None:
        check_number("tol", tol, minimum=0, below=1, fix="the top-1 drop allowed, e.g. 0.02")
    check_choice("mode", mode, ("batched", "sequential"))
    check_choice("candidate_order", candidate_order, CANDIDATE_ORDERS)


def _check_batches(batches) -> Callable[[], Batch]:
    if callable(batches):
        return batches
    if isinstance(batches, Iterator):
        return lambda: next(batches)
    raise GreedypruneTypeError(
        "batches must be a callable returning (x [B, C, H, W], y [B]) or an iterator of such pairs"
    )


class _LayerStep:
    """What happens after each greedy step of one group: ``on_step`` (the kernel's per-step hook)
    decides whether the group is done (``_done``: the tolerance test, with the authors' pre-check
    on the step batch, then the width cap) and, if it is not, draws a fresh batch for the next
    step; ``stop`` (the kernel's stop rule) only reads that decision.

    The decision is taken in the hook, not in ``stop``, because the kernel calls ``on_step`` before
    ``stop`` and the batch must be drawn only when the group goes on, after the tests that use the
    step batch: drawing it in the hook before a ``stop`` that runs the tests would evaluate the
    pre-check on the next batch and draw one batch too many at the end of each group, shifting the
    batch stream and the later picks.
    """

    def __init__(
        self,
        run: _GreedyRun,
        *,
        obj,
        labels,
        cap,
        gate,
        suffix,
        prepare,
        acc_before,
        eval_cache,
        eval_suffix,
    ):
        """``run``: the call's state (the model, the batch stream, the settings, the evaluation
        set); the rest: this group's objective, step batch labels, cap, gate and passes."""
        st = run.st
        self.obj, self.labels, self.cap, self.model, self.gate = obj, labels, cap, run.model, gate
        self.suffix, self.prepare, self.next_batch = suffix, prepare, run.next_batch
        self.tol, self.precheck, self.acc_before = st.tol, st.precheck, acc_before
        self.eval_data, self.eval_cache, self.chunk = run.eval_data, eval_cache, st.eval_chunk
        self.eval_suffix = eval_suffix
        self.acc: float | None = None
        self.full_evaluations = 0
        self.done = False

    @torch.no_grad()
    def _batch_accuracy(self) -> float:
        self.gate.value = self.obj.gates()
        try:
            out = _run_chunked(self.suffix, self.obj.inputs[0], self.chunk)
        finally:
            self.gate.value = None
        correct, total = all_sum(int((out.argmax(1) == self.labels).sum()), self.labels.numel())
        return correct / max(1, total)

    def _done(self) -> bool:
        """The group's stop test on the current subnetwork and step batch: tolerance, then cap."""
        if self.tol is not None:
            goal = (1 - self.tol) * self.acc_before
            if self.precheck is None or self._batch_accuracy() >= self.precheck * self.acc_before:
                self.gate.value = self.obj.gates()
                try:
                    if self.eval_cache is None:
                        self.acc = _accuracy(self.model, self.eval_data, self.chunk)
                    else:  # the prefix outputs of the evaluation set, kept for this group
                        cached = self.eval_cache
                        self.acc = _accuracy(self.eval_suffix, lambda: iter(cached), self.chunk)
                finally:
                    self.gate.value = None
                self.full_evaluations += 1
                if self.acc >= goal:
                    return True
        return int((self.obj.w > 0).sum()) >= self.cap

    def on_step(self, step: int, index: int, loss_value: float) -> None:
        self.done = self._done()
        if not self.done:
            x, y = self.next_batch()
            inputs, target = self.prepare(x, y)
            self.obj.set_batch(inputs, target)
            self.labels = y

    def stop(self, step: int, loss_value: float) -> bool:
        return self.done


@dataclass(frozen=True)
class GreedySettings:
    """What :func:`greedy_prune` computes, checked when made (before any model is touched or run
    folder written; each message names the field, as ``greedy_prune``'s keyword of that name).

    target_macs: MACs of the whole model (see ``count_macs``) to end at, absolute (an int, "220M")
        or a fraction (0.5, "50%"), see ``parse_macs``; each group in turn keeps ``round(r * D)``
        channels with the one ratio r that makes the groups still to prune meet the target given
        the ones already pruned (met up to rounding).
    widths: channels to keep per group name (instead of a MACs target; groups not named stay
        whole).
    tol: the authors' per-layer stop: a group stops growing once the top-1 on ``eval_data``
        reaches (1 - tol) times its top-1 before this group was pruned. With ``target_macs``
        too, a group stops at whichever comes first. A group that ends with every channel
        selected is restored whole (no gate), as the authors do. At least one of
        ``target_macs``, ``widths`` and ``tol``; not both ``target_macs`` and ``widths``.
    precheck: the authors' pre-check (0.95): after a step, the evaluation set is measured only
        when the step batch's top-1 is at least ``precheck`` times the group's starting top-1.
        None measures after every step.
    candidates: channels scored per step (the authors use 50); None scores all; ``("eps", e)``
        the kernel's stochastic-greedy count.
    candidate_order: "random" (a random sample of the open channels per step, as the paper
        describes) or "lowest-index" (the lowest-index open channels, what the authors' code
        effectively scores).
    replacement: False (default, the authors) never picks a channel twice; True is the theory's
        multiset (the gate of a channel picked j times out of n is D * j / n).
    loss: "ce" against the labels or "imitation" of the unpruned network's logits (the shared
        ``greedyprune.select.per_sample_loss``, "cross_entropy" or "squared").
    mode: "batched" (cached prefix, K stacked copies through the suffix) or "sequential" (one full
        forward pass per candidate; the reference, same selections given the same batches).
    generator: seed or generator of the candidate draws; None is seed 0 (see
        ``greedyprune.layerwise.layer_generator``).
    chunk_size, max_bytes: the kernel's ``StackedObjective`` candidates per pass and its memory
        budget (None: its defaults).
    eval_chunk: images per forward pass of every prefix and evaluation run.
    eval_cache_bytes: with ``tol``, the evaluation set's activations at the group's cut (the
        prefix outputs, which the group's selection does not change) are kept for the group's
        evaluations when they fit in this many bytes: each evaluation then runs the suffix only,
        with no image decoding, and gives the same top-1 as the whole model (the evaluation
        images must be the same at every pass, e.g. a centre crop). 0 streams every pass. Peak
        memory is bounded by this budget plus one chunk, whatever the evaluation set's size.
    """

    target_macs: int | float | str | None = None
    widths: Mapping[str, int] | None = None
    tol: float | None = None
    precheck: float | None = None
    candidates: int | tuple | None = 50
    candidate_order: str = "random"
    replacement: bool = False
    loss: str = "ce"
    mode: str = "batched"
    generator: torch.Generator | int | None = 0
    chunk_size: int | None = None
    max_bytes: int | None = None
    eval_chunk: int = 64
    eval_cache_bytes: int = 1 << 30

    def __post_init__(self):
        check_selection_settings(
            candidates=self.candidates,
            candidate_order=self.candidate_order,
            loss=self.loss,
            tol=self.tol,
            mode=self.mode,
        )
        if self.target_macs is None and self.tol is None and self.widths is None:
            raise GreedypruneError(
                "pass target_macs (e.g. 0.5 or '220M'), widths or tol (e.g. 0.02)"
            )
        if self.target_macs is not None and self.widths is not None:
            raise GreedypruneError("pass target_macs or widths, not both")
        if self.widths is not None and not isinstance(self.widths, Mapping):
            raise refuse("widths", self.widths, "a dict of group name -> channels", wrong_type=True)
        if self.precheck is not None:
            check_number("precheck", self.precheck, above=0, maximum=1)
        check_bool("replacement", self.replacement)
        for name in ("chunk_size", "max_bytes"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        check_int("eval_chunk", self.eval_chunk, minimum=1)
        check_int("eval_cache_bytes", self.eval_cache_bytes, minimum=0)


class _GreedyRun:
    """One :func:`greedy_prune` call's state: the gated model, the MACs plan, the records, and the
    two callbacks of ``select_layerwise``: :meth:`plan` (a group's objective and stop rule) and
    :meth:`apply` (its selection as the group's gate)."""

    def __init__(self, model, batches, example_input, st: GreedySettings, eval_data, groups):
        self.st, self.model, self.eval_data = st, model, eval_data
        self.loss_fn = _loss_fn(st.loss)
        self.next_batch = _check_batches(batches)
        model.eval()
        self.reference = copy.deepcopy(model) if st.loss == "imitation" else None
        self.gm = GatedModel(model, example_input, groups)
        self.macs = MacsModel(profile_layers(model, example_input), self.gm.groups)
        self.target = None
        self.result = GreedyPruneResult()
        if st.target_macs is not None:
            self.target = parse_macs(st.target_macs, self.macs.full_macs)
            self.result.planned_macs = self.macs.macs(self.macs.plan(self.target))
        self.done: dict[str, int] = {}

    def _cap(self, g) -> int:
        """Channels the group may keep: planned for the MACs target, its width, or all."""
        d, widths = g.n_channels, self.st.widths
        if self.target is not None:
            return self.macs.plan(self.target, fixed=self.done)[g.name]
        if widths is not None:
            cap = int(widths.get(g.name, d))
            if not 1 <= cap <= d:
                raise GreedypruneError(f"widths[{g.name!r}]={cap} must be in 1..{d}")
            return cap
        return d

    def plan(self, g, gen) -> LayerPlan | None:
        """The group's objective on a first batch, its step rule and cap; None: kept whole."""
        t0 = time.perf_counter()
        st, d, cap = self.st, g.n_channels, self._cap(g)
        if cap >= d and st.tol is None:
            self.done[g.name] = d
            self.result.layers.append(LayerRecord(g.name, d, [], list(range(d)), [1.0] * d, []))
            return None
        gate = self.gm.gates[g.name]
        prefix, suffix = self.gm.split(g.name)
        batched = st.mode == "batched"
        acc_before, cache = (
            (None, None)
            if st.tol is None
            else _first_pass(prefix, suffix, self.eval_data, st.eval_chunk, st.eval_cache_bytes)
        )
        prepare = functools.partial(self._prepare, prefix if batched else None)
        x, y = self.next_batch()
        inputs, target = prepare(x, y)
        extra = {} if st.max_bytes is None else {"max_bytes": st.max_bytes}
        obj = _LayerObjective(
            inputs,
            functools.partial(_gated_run, gate, suffix if batched else self.model),
            self.loss_fn,
            d,
            target=target,
            scale=float(d),
            chunk_size=st.chunk_size if batched else 1,
            reduce=gather_mean if is_distributed() else None,
            **extra,
        )
        after_step = _LayerStep(
            self,
            obj=obj,
            labels=y,
            cap=cap,
            gate=gate,
            suffix=suffix if batched else self.model,
            prepare=prepare,
            acc_before=acc_before,
            eval_cache=cache,
            eval_suffix=suffix,
        )
        return LayerPlan(
            obj,
            cap if not st.replacement else 64 * d,
            stop=after_step.stop,
            on_step=after_step.on_step,
            state=(after_step, acc_before, t0),
        )

    def _prepare(self, prefix, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """A step batch as the objective takes it: the prefix's output (batched mode) or the
        images, and the labels or the unpruned network's logits (imitation)."""
        chunk = self.st.eval_chunk
        with torch.no_grad():
            inputs = x if prefix is None else _run_chunked(prefix, x, chunk)
            target = y if self.reference is None else _run_chunked(self.reference, x, chunk)
        return inputs, target

    def apply(self, g, spec: LayerPlan, sel) -> bool:
        """Gate the group by its selection and record it; whether the group was cut."""
        after_step, acc_before, t0 = spec.state
        after_step.eval_cache = None  # free the group's activations before tuning
        obj, gate, d = spec.objective, self.gm.gates[g.name], g.n_channels
        kept = sorted(int(i) for i in torch.nonzero(obj.w > 0).flatten())
        whole = len(kept) == d
        # A group that selected every channel is restored whole (no gate), as the authors do.
        gate.value = None if whole else obj.gates().detach().clone()
        self.done[g.name] = len(kept)
        self.result.layers.append(
            LayerRecord(
                g.name,
                d,
                [int(i) for i in sel.order],
                kept,
                [1.0] * d if whole else [float(v) for v in gate.value.cpu()],
                [float(v) for v in sel.losses],
                acc_before,
                after_step.acc,
                int(sel.evaluations),
                after_step.full_evaluations,
                time.perf_counter() - t0,
            )
        )
        return not whole


def _gated_run(gate, net: nn.Module, xs: Tensor, gates: Tensor) -> Tensor:
    """``net`` on ``xs`` with the group's gate set to the stacked candidate ``gates``."""
    gate.stacked = gates
    try:
        return net(xs)
    finally:
        gate.stacked = None


def greedy_prune(
    model: nn.Module,
    batches,
    example_input: Tensor,
    settings: GreedySettings | None = None,
    *,
    eval_data=None,
    groups=None,
    between_layers: Callable[[nn.Module], None] | None = None,
    amp: str | None = None,
    progress: bool = False,
    **knobs,
) -> tuple[GatedModel, GreedyPruneResult]:
    """Select channels of every prunable group, input to output; the model is gated in place.

    model: in eval mode during selection; its modules get gate hooks (``GatedModel``).
    batches: callable or iterator giving ``(x [B, C, H, W], y [B])`` on the model's device; one
        batch per greedy step (the authors' fresh mini-batch). In a ``torch.distributed`` process
        group each rank gives its contiguous slice of the same global batch, and ``eval_data``
        its share of the evaluation set: the scores are then those of the global batch, the
        same on every rank and the same as one process (see ``batch_stream``).
    example_input: [1, C, H, W] (tracing and MACs counting).
    settings: what the selection computes, a :class:`GreedySettings` (the MACs target or widths,
        ``tol``, candidates, loss, ...; None: its defaults), checked when made. Any of its fields
        may be given as a keyword instead (``greedy_prune(m, b, x, target_macs=0.5)``); it
        replaces that field.
    eval_data: the images ``tol`` measures top-1 on: an ``(x, y)`` pair (run ``eval_chunk``
        images at a time) or a callable returning an iterable of ``(x, y)`` batches on the
        model's device (streamed: memory does not grow with the evaluation set).
    groups: the prunable groups (default: ``find_prunable_groups`` of the model).
    between_layers: called with the model after each group that was cut (e.g. a short
        fine-tune); not after a group that stayed whole.
    amp: "bf16" or "fp16" autocast for the scoring passes on CUDA (ignored on the CPU);
    progress: bars on the groups and steps (how it runs, not what it computes).
    Returns the gated model and the per-group records. The loop over the groups is
    ``greedyprune.layerwise.select_layerwise``; :class:`_GreedyRun` builds each group's
    objective and stop rule and applies its selection as the group's gate.
    """
    from ._finetune import autocast

    st, _ = with_fields("greedy_prune", GreedySettings, settings, knobs)
    if st.tol is not None and eval_data is None:
        raise GreedypruneError("tol needs eval_data: the images the top-1 is measured on")
    run = _GreedyRun(model, batches, example_input, st, eval_data, groups)
    device = example_input.device

    def tune(g) -> None:
        between_layers(model)
        model.eval()

    select_layerwise(
        run.gm.groups,
        run.plan,
        run.apply,
        replacement=st.replacement,
        candidates=st.candidates,
        candidate_order=st.candidate_order,
        generator=layer_generator(st.generator),
        between_layers=None if between_layers is None else tune,
        context=lambda g: autocast(device, amp),
        progress=progress,
    )
    return run.gm, run.result


@register_method(
    "greedy",
    "greedy forward selection (Ye et al. 2020), layer after layer: each step adds the channel "
    "that lowers the loss of the whole network on a fresh batch most (greedy_prune, the "
    "target re-planned after each group)",
)
def _greedy(req: SelectionRequest) -> Choice:
    """compare's greedy: ``greedy_prune`` to ``req.target_macs`` with ``req.options``'
    ``candidates`` and ``loss``, one fresh batch of ``req.batch_size`` images per step; the gates
    become the choice's scales (folded into the consumers, as :func:`fold_and_prune` does)."""
    from ._finetune import batch_stream
    from ._surgery import detach_gates

    model = req.model
    hooks = []
    if req.on_images is not None:
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        hooks.append(
            head.register_forward_hook(lambda _m, a, _o: req.on_images(int(a[0].shape[0])))
        )
    try:
        gm, _ = greedy_prune(
            model,
            batch_stream(req.data, req.batch_size, generator=req.generator, device=req.device),
            req.example,
            target_macs=req.target_macs,
            candidates=req.options.get("candidates", 50),
            loss=req.options.get("loss", "ce"),
            generator=req.seed,
            groups=req.groups,
        )
    finally:
        for h in hooks:
            h.remove()
    return Choice(*detach_gates(gm))
