"""The per-sample loss of a network's outputs: the one definition every front end uses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from greedyprune.errors import GreedypruneError, refuse

__all__ = ["PER_SAMPLE_LOSSES", "per_sample_loss"]

PER_SAMPLE_LOSSES = ("squared", "cross_entropy")


def per_sample_loss(loss: str, output: Tensor, target: Tensor) -> Tensor:
    """Per-sample loss ``[B]`` of ``output`` against ``target``.

    loss: ``"squared"``: ``||f - y||^2 / 2`` summed over the outputs, ``target`` shaped like
        ``output`` (``[B]`` or ``[B, ...]``; a shape mismatch raises instead of broadcasting);
        ``"cross_entropy"``: ``output`` logits ``[B, c]`` against integer labels ``[B]``.

    It is the ``loss_fn`` of a :class:`~greedyprune.select.StackedObjective` with the name bound
    (``functools.partial(per_sample_loss, "squared")``); the mean over the batch is the training
    loss of the mean-field networks.
    """
    if loss == "squared":
        if target.shape != output.shape:
            # broadcasting [B, 1] against [B] would silently compare every pair of samples
            raise refuse(
                "target.shape", tuple(target.shape),
                f"the outputs' {tuple(output.shape)} for the squared loss",
                "reshape y to [m, c] (e.g. y[:, None])",
            )  # fmt: skip
        return 0.5 * (output - target).pow(2).reshape(output.shape[0], -1).sum(1)
    if loss == "cross_entropy":
        return F.cross_entropy(output, target, reduction="none")
    raise GreedypruneError(f"loss={loss!r} is not known; pass 'squared' or 'cross_entropy'")
