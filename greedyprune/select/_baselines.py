"""Baselines with the same return type as greedy selection: random, magnitude, backward elimination."""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from greedyprune.errors import GreedypruneError, GreedypruneTypeError, refuse

from ._checks import check_bool, check_positive_int
from ._greedy import _check_objective, _declares, _device_of, make_generator
from ._selection import Selection

__all__ = ["backward_elimination", "magnitude", "random_subset"]


def _n_for(objective, n, replacement: bool) -> int:
    N = int(objective.n_candidates)
    n = check_positive_int("n", n)
    check_bool("replacement", replacement)
    if not replacement and n > N:
        raise GreedypruneError(f"n={n} exceeds the {N} candidates; pass n <= {N}")
    return n


def _trace(objective, order: list[int], method: str) -> Selection:
    """Add ``order`` one by one, recording the loss of every prefix."""
    losses = []
    for i in order:
        objective.add(int(i))
        losses.append(objective.current_loss())
    return Selection.from_order(
        order, losses, objective.n_candidates, evaluations=len(order), method=method
    )


def random_subset(objective, n: int, *, replacement: bool = False, generator=None) -> Selection:
    """n neurons drawn uniformly at random (with or without replacement); losses of every prefix.

    With replacement and target f_N this is the Monte Carlo subnetwork of Proposition A:
    E ||f_n - f_N||^2 = B_var / n.
    """
    _check_objective(objective)
    n = _n_for(objective, n, replacement)
    gen = make_generator(generator)
    N = objective.n_candidates
    if replacement:
        order = torch.randint(N, (n,), generator=gen)
    else:
        order = torch.randperm(N, generator=gen)[:n]
    return _trace(objective, order.tolist(), "random" + ("" if replacement else "_norepl"))


def magnitude(objective, n: int, *, scores: Tensor | None = None) -> Selection:
    """The n neurons of largest score, largest first (ties to the lowest index).

    scores: Tensor [N]; by default the feature norms ``objective.feature_norms()``.
    """
    _check_objective(objective)
    n = _n_for(objective, n, replacement=False)
    if scores is None:
        if not _declares(objective, "supports_feature_norms"):
            raise GreedypruneTypeError(
                "magnitude needs scores=... for an objective that does not declare "
                "supports_feature_norms (feature_norms())"
            )
        scores = objective.feature_norms()
    scores = torch.as_tensor(scores).detach().flatten().cpu().double()
    if scores.numel() != objective.n_candidates:
        raise refuse(
            "scores.numel()", scores.numel(), f"{objective.n_candidates}, one per candidate"
        )
    if not bool(torch.isfinite(scores).all()):
        raise GreedypruneError("scores hold NaN or inf")
    order = torch.sort(-scores, stable=True).indices[:n]
    return _trace(objective, order.tolist(), "magnitude")


def backward_elimination(objective, n: int, *, progress: bool = False) -> Selection:
    """Start from all N neurons and repeatedly remove the one whose removal raises the loss least.

    The elimination runs down to one neuron so that ``order[:k]`` is the set kept at size k for
    every k <= n (the last survivor first). Needs an objective with ``removal_losses``/``remove``.
    Cost: about N^2 / 2 candidate evaluations.
    """
    _check_objective(objective)
    n = _n_for(objective, n, replacement=False)
    if not _declares(objective, "supports_removal"):
        raise GreedypruneTypeError(
            f"backward elimination needs an objective that declares supports_removal "
            f"(removal_losses()/remove()); {type(objective).__name__} does not"
        )
    N = objective.n_candidates
    device = _device_of(objective)
    for i in range(N):
        objective.add(i)
    alive = torch.ones(N, dtype=torch.bool, device=device)
    removed: list[int] = []
    loss_at_size = {N: objective.current_loss()}
    evaluations = 0
    for size in tqdm(range(N, 1, -1), desc="backward", disable=not progress, leave=False):
        scores = objective.removal_losses(None).clone()
        scores[~alive] = torch.inf
        evaluations += size
        j = int(torch.argmin(scores))
        objective.remove(j)
        alive[j] = False
        removed.append(j)
        loss_at_size[size - 1] = float(scores[j])
    survivor = int(torch.nonzero(alive).flatten()[0])
    order = ([survivor, *reversed(removed)])[:n]
    losses = [loss_at_size[k] for k in range(1, n + 1)]
    sel = Selection.from_order(order, losses, N, evaluations=evaluations, method="backward")
    # Leave the objective holding the returned size-n subnetwork.
    objective.reset()
    for i in order:
        objective.add(i)
    return sel
