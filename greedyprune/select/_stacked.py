"""Scoring candidates of a live network by stacking gated copies along the batch axis.

A layer of width N sits inside a network. Everything below it is computed once (``inputs``: the
activation where the rest of the network can be re-run from, cached per batch); the K candidate
subnetworks differ only in the gate vector applied to that layer, so the rest of the network runs
once on K stacked copies of the inputs with per-copy gates. The CNN front end and the deep
mean-field networks both use this.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from greedyprune.errors import GreedypruneTypeError, check_int, refuse

from ._objectives import DEFAULT_MAX_BYTES

__all__ = ["CPU_MAX_BYTES", "StackedObjective"]

CPU_MAX_BYTES = 8 * 2**20


def _stack(x: Tensor, k: int) -> Tensor:
    """[B, ...] -> [k*B, ...], copy j in rows j*B..(j+1)*B-1."""
    return x.unsqueeze(0).expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])


class StackedObjective:
    """Objective over a live network whose layer of ``n_candidates`` units is gated.

    inputs: Tensor [B, ...] or a tuple of them (the cached activations below the layer).
    forward: ``forward(stacked_inputs, gates) -> outputs [K*B, ...]``; ``stacked_inputs`` are the
        inputs repeated K times along the batch axis (copy j in rows j*B..(j+1)*B-1) and
        ``gates: [K, N]`` are the gate vectors of the K candidate subnetworks.
    loss_fn: ``loss_fn(outputs [K*B, ...], stacked_target [K*B, ...]) -> [K*B]`` per-sample losses.
    target: Tensor [B, ...] or None (then ``loss_fn`` gets None).
    scale: the gate is ``scale * w`` for the mixing weights w of the subnetwork (w sums to one). The
        authors multiply by the layer's width (scale = N) so a kept channel carries N/n.
    chunk_size: candidates per forward pass; by default as many as fit ``max_bytes``, estimating a
        candidate's memory as ``activation_factor`` times the size of the inputs.
    reduce: ``reduce(per_sample [K, B]) -> [K]``, the loss of each candidate from its per-sample
        losses; None is the mean over the batch (a distributed run gathers the other ranks'
        slices of the batch first, see ``greedyprune.prune``).
    max_bytes: the memory budget of one chunk; None: ``DEFAULT_MAX_BYTES`` on an accelerator and
        ``CPU_MAX_BYTES`` on the CPU, where large stacks run slower per sample once their
        activations leave the caches (MobileNetV2 at 64 px: stacks of 1-8 copies of a 32-image
        batch were up to 2x faster than all 50 candidates at once; benchmarks/bench_prune.py).

    Declares neither optional capability (see :class:`Objective`): every step scores through
    ``losses``, and ``weights="corrective"`` is refused.
    """

    supports_fused_step = False
    supports_corrective = False
    supports_removal = False
    supports_feature_norms = False

    def __init__(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        forward: Callable[[Tensor | tuple[Tensor, ...], Tensor], Tensor],
        loss_fn: Callable[[Tensor, Tensor | None], Tensor],
        n_candidates: int,
        *,
        target: Tensor | None = None,
        scale: float = 1.0,
        chunk_size: int | None = None,
        max_bytes: int | None = None,
        activation_factor: float = 4.0,
        reduce: Callable[[Tensor], Tensor] | None = None,
    ):
        self._tuple = isinstance(inputs, (tuple, list))
        self.inputs = tuple(inputs) if self._tuple else (inputs,)
        if not self.inputs or not all(isinstance(t, Tensor) for t in self.inputs):
            raise GreedypruneTypeError("inputs must be a torch.Tensor [B, ...] or a tuple of them")
        batch = self.inputs[0].shape[0]
        if any(t.shape[0] != batch for t in self.inputs):
            shapes = [tuple(t.shape) for t in self.inputs]
            raise refuse("inputs' shapes", shapes, f"of one batch size, {batch}", argument="inputs")
        if target is not None and not isinstance(target, Tensor):
            raise refuse("target", target, "a torch.Tensor [B, ...] or None", wrong_type=True)
        if target is not None and target.shape[0] != batch:
            raise refuse("target.shape", tuple(target.shape), f"({batch}, ...): the inputs' batch")
        if not callable(forward) or not callable(loss_fn):
            raise GreedypruneTypeError("forward and loss_fn must be callables")
        n_candidates = check_int("n_candidates", n_candidates, minimum=1)
        if chunk_size is not None:
            chunk_size = check_int("chunk_size", chunk_size, minimum=1)
        if reduce is not None and not callable(reduce):
            raise GreedypruneTypeError("reduce must be None or a callable([K, B]) -> [K]")
        self.forward, self.loss_fn, self.target, self.reduce = forward, loss_fn, target, reduce
        self.n_candidates, self.scale, self.batch = int(n_candidates), float(scale), int(batch)
        x0 = self.inputs[0]
        self.device = x0.device
        self.dtype = x0.dtype if x0.is_floating_point() else torch.get_default_dtype()
        if chunk_size is None:
            if max_bytes is None:
                max_bytes = CPU_MAX_BYTES if self.device.type == "cpu" else DEFAULT_MAX_BYTES
            per = sum(t.numel() * t.element_size() for t in self.inputs) * activation_factor
            chunk_size = max(1, int(max_bytes // max(1.0, per)))
        self.chunk_size = chunk_size
        self.reset()

    @property
    def size(self) -> int:
        return self._size

    def reset(self) -> None:
        self.w = torch.zeros(self.n_candidates, dtype=self.dtype, device=self.device)
        self._size = 0

    def gates(self) -> Tensor:
        """Tensor [N]: the gate vector of the current subnetwork (zeros when empty)."""
        return self.scale * self.w

    def candidate_gates(self, candidates: Tensor) -> Tensor:
        """Tensor [K, N]: the gate vectors after adding each candidate with the 1/(k+1) step."""
        k = self._size
        g = (k / (k + 1)) * self.w.unsqueeze(0).repeat(candidates.numel(), 1)
        g[torch.arange(candidates.numel(), device=self.device), candidates] += 1.0 / (k + 1)
        return self.scale * g

    def _evaluate(self, gates: Tensor) -> Tensor:
        k = gates.shape[0]
        xs = tuple(_stack(t, k) for t in self.inputs)
        ts = None if self.target is None else _stack(self.target, k)
        out = self.forward(xs if self._tuple else xs[0], gates)
        per_sample = self.loss_fn(out, ts)
        if per_sample.numel() != k * self.batch:
            raise refuse(
                "loss_fn's output shape", tuple(per_sample.shape),
                f"({k * self.batch},): one loss per stacked sample", argument="loss_fn",
            )  # fmt: skip
        per_sample = per_sample.reshape(k, self.batch)
        return per_sample.mean(1) if self.reduce is None else self.reduce(per_sample)

    @torch.no_grad()
    def losses(self, candidates: Tensor | None = None) -> Tensor:
        if candidates is None:
            candidates = torch.arange(self.n_candidates, device=self.device)
        candidates = candidates.to(self.device)
        out = [
            self._evaluate(self.candidate_gates(candidates[a : a + self.chunk_size]))
            for a in range(0, candidates.numel(), self.chunk_size)
        ]
        return torch.cat(out)

    def add(self, index: int) -> None:
        k = self._size
        self.w = (k / (k + 1)) * self.w
        self.w[int(index)] += 1.0 / (k + 1)
        self._size += 1

    @torch.no_grad()
    def current_loss(self) -> float:
        return float(self._evaluate(self.gates().unsqueeze(0))[0])
