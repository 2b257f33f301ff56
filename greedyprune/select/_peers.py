"""Provable peers of greedy forward selection on the same features: i-SpaSP and sensitivity sampling.

Both work on an objective's cached features ``phi_i`` (each neuron's output on the m data points)
and return the kernel's :class:`Selection`, so they sit next to ``greedy_select`` and the
baselines in the same tables and rate curves. Both need a squared loss whose features and target
they can read: an objective that declares ``supports_feature_reads`` (``SquaredLoss``,
``FactoredSquaredLoss``), whose promise is ``target`` and ``feature_rows(index)``.

- :func:`ispasp`: i-SpaSP (Wolfe and Kyrillidis, "i-SpaSP: Structured Neural Pruning via Sparse
  Signal Recovery", 2022), a CoSaMP-style support iteration.
- :func:`sensitivity_sampling`: sample neurons i.i.d. in proportion to their empirical sensitivity
  and re-weight them by importance (Baykal et al. 2019, "Data-dependent coresets for compressing
  neural networks with applications to generalization bounds"; Liebenwein et al. 2020, "Provable
  Filter Pruning for Efficient Neural Networks"); :func:`empirical_sensitivity` is its score.
- :func:`losses_at_sizes`: run a method once per size n (i-SpaSP yields one subset per n, not a
  nested sequence) and collect the loss at each n, for rate curves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from greedyprune.errors import GreedypruneError, GreedypruneTypeError, refuse

from ._baselines import _n_for, _trace
from ._checks import check_positive_int
from ._greedy import _check_objective, _declares, _device_of, make_generator
from ._objectives import DEFAULT_MAX_BYTES
from ._selection import Selection

__all__ = ["empirical_sensitivity", "ispasp", "losses_at_sizes", "sensitivity_sampling"]


def _check_features_readable(objective, method: str) -> None:
    if not _declares(objective, "supports_feature_reads"):
        raise GreedypruneTypeError(
            f"{method} needs an objective that declares supports_feature_reads = True (a squared "
            f"loss with target and feature_rows), as SquaredLoss and FactoredSquaredLoss do; "
            f"{type(objective).__name__} does not declare it"
        )


def _row_chunks(objective, device: torch.device):
    """Yield ``(index [K], rows [K, m, D])``: every candidate's features, chunked to a budget."""
    N = int(objective.n_candidates)
    target = objective.target
    per_row = max(1, target.numel() * target.element_size() * 2)
    chunk = max(1, DEFAULT_MAX_BYTES // per_row)
    m = int(target.shape[0])
    for a in range(0, N, chunk):
        idx = torch.arange(a, min(N, a + chunk), device=device)
        yield idx, objective.feature_rows(idx).reshape(idx.numel(), m, -1)


def _squared_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``||pred - target||^2 / 2`` with ``||h||^2 = (1/m) sum_j |h(x_j)|^2``; pred [K, m(, c)] -> [K]."""
    d = (pred - target.unsqueeze(0)).reshape(pred.shape[0], -1)
    return d.pow(2).sum(1) / (2 * target.shape[0])


# -- i-SpaSP -----------------------------------------------------------------------------------------
def ispasp(objective, n: int, *, iterations: int = 20, expand: int = 2) -> Selection:
    """i-SpaSP: n distinct neurons found by a CoSaMP-style support iteration on the features.

    Each iteration, from the current support S (empty at first, its subnetwork then the zero
    function):

    1. residual ``R = target - f_S``, with ``f_S`` the subnetwork of S;
    2. proxy ``<phi_i, R>`` (mean over data, summed over outputs) for every neuron i;
    3. ``Omega`` = the ``expand * n`` neurons of largest proxy (``expand=2``: the paper's 2s);
    4. merge: ``T = Omega | S``;
    5. keep the n neurons of T of largest aggregated magnitude ``a_i = (1/m) sum_j |phi_i(x_j)|``
       (summed over outputs) as the new S.

    It stops after ``iterations`` (the authors' default, 20) or as soon as an iteration returns
    the support it started from (a fixed point: every later iteration would return it too). Ties
    go to the lowest index everywhere.

    Where this follows the paper: the residual between the target and the pruned network's
    output; the larger set of ``2n`` neurons that contribute most to it, merged with the current
    support; the threshold back to n by the magnitude of each neuron's own output on the data, not
    by a least-squares re-fit as in CoSaMP (the dense network's hidden representation is known, so
    nothing is estimated); and the output weights: the kept neurons keep their own parameters,
    with no re-fit. In the kernel's mean-field convention (``f_N = (1/N) sum_i phi_i``) a network
    made of the kept neurons with their parameters unchanged is their uniform average
    ``f_S = (1/n) sum_{i in S} phi_i``, the subnetwork every kernel method reports; the weights are
    ``1/n`` each (the literal standard-parameterisation reading, output weights ``1/N`` each,
    would shrink the output by ``n/N`` and is not offered). The paper prunes toward the dense
    network's output: pass ``target = f_N`` for that; any target works.

    Where it differs: the proxy is the correlation ``<phi_i, R>`` of each neuron's feature (its
    output ``phi_i = a_i w_i^T``) with the residual, CoSaMP's ``A^T r`` for the neuron
    coefficients, signed (a neuron can only enter with a positive weight, so one that points away
    from the residual cannot help; the authors rank the signed importance too). The authors take
    the gradient of ``||R||^2 / 2`` with respect to the hidden activations, summed over the data,
    i.e. ``sum_j <w_i, R(x_j)>`` without the activation ``a_i(x_j)``; with features alone only the
    correlation is available. The paper thresholds by the summed hidden activation ``sum_j
    a_i(x_j)`` (non-negative for ReLU); on features the magnitude includes the output weights
    (``|w_i| sum_j |a_i(x_j)|`` for one output) and uses absolute values, so signed activations
    (tanh) do not cancel.

    objective: an empty objective declaring ``supports_feature_reads`` (TypeError otherwise).
    n: the subnetwork's size, ``1 <= n <= N``. iterations: the most iterations (>= 1).
    expand: the proxy keeps ``expand * n`` neurons per iteration (>= 1; capped at N).

    Returns a :class:`Selection` with ``order`` the final support sorted by magnitude (largest
    first), uniform weights ``1/n`` and ``losses[k-1]`` the loss of the uniform average of
    ``order[:k]`` (as for :func:`~greedyprune.select.magnitude`; only ``losses[n-1]`` is the
    i-SpaSP subnetwork: for i-SpaSP at every size use :func:`losses_at_sizes`). ``info`` holds
    ``iterations`` (support updates made), ``converged`` (stopped at a fixed point),
    ``iteration_losses`` (the loss after each update; the last equals ``losses[n-1]`` up to
    rounding) and ``expand``. ``evaluations`` counts the proxies (N per iteration) and the n
    prefix losses. The objective is left holding the size-n subnetwork.

    Cost: one pass over the features for the magnitudes, then per iteration one pass for the
    proxies (an ``[N, m c]`` matrix-vector product) plus O(n m c) for ``f_S``, and a sort of N
    proxies: O(iterations N m c) in all, independent of n; greedy's exact steps cost n passes.
    """
    _check_objective(objective)
    n = _n_for(objective, n, replacement=False)
    iterations = check_positive_int("iterations", iterations)
    expand = check_positive_int("expand", expand)
    _check_features_readable(objective, "ispasp")
    N = int(objective.n_candidates)
    device = _device_of(objective)
    target = objective.target
    m = int(target.shape[0])

    mag = torch.cat([rows.abs().sum((1, 2)) / m for _, rows in _row_chunks(objective, device)])
    flat_target = target.reshape(-1)
    support: Tensor | None = None  # ascending
    history: list[float] = []
    converged = False
    evaluations = 0
    for _ in range(iterations):
        if support is None:
            residual = flat_target
        else:
            residual = flat_target - objective.feature_rows(support).mean(0).reshape(-1)
        proxy = torch.cat(
            [
                rows.reshape(idx.numel(), -1) @ residual / m
                for idx, rows in _row_chunks(objective, device)
            ]
        )
        evaluations += N
        # sort(-x, stable=True): descending, ties to the lowest index
        omega = torch.sort(-proxy, stable=True).indices[: min(N, expand * n)]
        merged = omega if support is None else torch.cat([omega, support])
        merged = torch.unique(merged)  # sorted ascending
        keep = merged[torch.sort(-mag[merged], stable=True).indices[:n]]
        new_support, _ = torch.sort(keep)
        if support is not None and torch.equal(new_support, support):
            converged = True
            break
        support = new_support
        f = objective.feature_rows(support).mean(0, keepdim=True)
        history.append(float(_squared_loss(f, target)[0]))
    assert support is not None
    order = support[torch.sort(-mag[support], stable=True).indices]
    sel = _trace(objective, order.tolist(), "ispasp")
    sel.evaluations = evaluations + n
    sel.info = {
        "iterations": len(history),
        "converged": converged,
        "iteration_losses": history,
        "expand": expand,
    }
    return sel


# -- sensitivity sampling ------------------------------------------------------------------------
def _check_points(points, m: int, device: torch.device) -> Tensor | None:
    if points is None:
        return None
    if not isinstance(points, Tensor) or points.dtype not in (torch.int64, torch.int32):
        raise refuse(
            "points", points,
            "None (every data point) or an integer torch.Tensor of data-point indices",
            wrong_type=True,
        )  # fmt: skip
    if points.dim() != 1 or points.numel() == 0:
        raise refuse("points.shape", tuple(points.shape), "(k,) with k >= 1: data-point indices")
    lo, hi = int(points.min()), int(points.max())
    if lo < 0 or hi >= m:
        raise refuse(
            "points", f"{lo}..{hi}", f"indices in 0..{m - 1}, the objective's {m} data points"
        )
    return points.long().to(device)


def empirical_sensitivity(objective, *, points: Tensor | None = None) -> Tensor:
    """Tensor [N] (float64): each neuron's empirical sensitivity on the data, in [0, 1].

    The network's output is ``f(x) = (1/N) sum_k phi_k(x)`` (each output unit o separately). The
    relative contribution of neuron i to output o at data point x is its share of the terms of
    its own sign::

        g_i(x, o) = phi_i(x, o)^+ / sum_k phi_k(x, o)^+   if phi_i(x, o) > 0,
                    phi_i(x, o)^- / sum_k phi_k(x, o)^-   if phi_i(x, o) < 0,   0 if it is 0,

    (``h^+ = max(h, 0)``, ``h^- = max(-h, 0)``; the 1/N cancels), and the empirical sensitivity
    is its largest value over the data points and outputs: ``s_i = max_{x, o} g_i(x, o)``. This
    is the definition of Liebenwein et al. 2020 (the maximum over a small set of data points and
    over the next layer's units of a neuron's relative contribution, positive and negative terms
    normalised separately), which extends the edge sensitivity of Baykal et al. 2019 to neurons.
    There the next layer's units are pre-activations and the terms are split by the signs of the
    weight and of the activation; here the next layer is the network's output and, with features
    alone, the terms ``phi_i = a_i w_i`` are split by their own sign. For non-negative activations
    (ReLU) the two splits agree.

    points: None (all m data points) or a LongTensor of data-point indices (the papers use a
    small random batch). A neuron whose feature is zero on every used point has sensitivity 0.
    Cost: two passes over the features.
    """
    _check_features_readable(objective, "empirical_sensitivity")
    device = _device_of(objective)
    m = int(objective.target.shape[0])
    pts = _check_points(points, m, device)

    def chunks():
        for idx, rows in _row_chunks(objective, device):
            rows = rows.double()
            yield idx, rows if pts is None else rows.index_select(1, pts)

    pos = neg = None  # [m', c]: the sums of the positive terms and of the negative terms' sizes
    for _, rows in chunks():
        p, q = rows.clamp_min(0).sum(0), rows.clamp_max(0).sum(0).neg_()
        pos, neg = (p, q) if pos is None else (pos + p, neg + q)
    assert pos is not None and neg is not None
    # a positive (negative) term makes its sign's sum positive: the placeholder 1 only divides
    # zero terms
    pos_safe = torch.where(pos > 0, pos, torch.ones_like(pos))
    neg_safe = torch.where(neg > 0, neg, torch.ones_like(neg)).neg_()
    out = []
    for idx, rows in chunks():
        # a positive term over its positive sum, a negative one over minus its negative sum
        g = rows / torch.where(rows > 0, pos_safe, neg_safe)
        # (a zero term gives -0.0; adding 0.0 makes it +0.0)
        out.append(g.reshape(idx.numel(), -1).amax(1).add_(0.0))
    return torch.cat(out).cpu()


def sensitivity_sampling(
    objective, n: int, *, points: Tensor | None = None, generator=None
) -> Selection:
    """n neurons drawn i.i.d. with probability proportional to their empirical sensitivity,
    each draw re-weighted by ``1 / (N p_i)``: an unbiased estimate of the full network ``f_N``.

    With ``s = empirical_sensitivity(objective, points=points)`` and ``p_i = s_i / sum_k s_k``,
    the draws ``i_1 .. i_n`` are i.i.d. from p (so a neuron may repeat; ``n`` may exceed N) and the
    subnetwork is the importance-sampling estimate of ``f_N = (1/N) sum_i phi_i``::

        f_hat = (1/n) sum_j phi_{i_j} / (N p_{i_j}) = sum_i w_i phi_i,   w_i = count_i / (n N p_i).

    ``E w_i = 1/N`` for every neuron with ``p_i > 0``, and a neuron with ``p_i = 0`` has a zero
    feature on the data used, so ``E f_hat = f_N`` on those data (Baykal et al. 2019; Liebenwein et
    al. 2020, who keep each sampled neuron once and scale its outgoing weights by
    ``count_i / (n p_i)``, the same estimate). The papers choose n from the sum of sensitivities
    and the wanted (epsilon, delta); here n is given, and ``info["sensitivity_sum"]`` reports the
    sum that sets the constant of their bound. The weights sum to one only in expectation (the
    kernel's other methods have weights on the simplex).

    generator: a ``torch.Generator`` or int seed for the draws (None: a fresh random seed), as for
    :func:`~greedyprune.select.random_subset`.

    Returns a :class:`Selection`: ``order`` the draws in order, ``weights`` the importance weights
    above, ``losses[k-1]`` the loss of the estimate from the first k draws,
    ``(1/k) sum_{j<=k} phi_{i_j} / (N p_{i_j})`` (so one run gives the rate curve);
    ``info["sampling_probability"]`` holds ``p_{i_j}`` for each draw (enough to rebuild any
    prefix's weights), ``info["sensitivity_sum"]`` and ``info["points"]`` (data points used). The
    objective is left holding the size-n estimate (``current_loss() == losses[n-1]``).

    Cost: two passes over the features for the sensitivities, then O(n m c) for the prefix
    losses; no search at all, so it is the cheapest peer.
    """
    _check_objective(objective)
    n = _n_for(objective, n, replacement=True)
    _check_features_readable(objective, "sensitivity_sampling")
    gen = make_generator(generator)
    N = int(objective.n_candidates)
    device = _device_of(objective)
    target = objective.target
    s = empirical_sensitivity(objective, points=points)
    total = float(s.sum())
    if not total > 0:
        raise GreedypruneError(
            "every neuron's empirical sensitivity is 0: the features are zero on the data points "
            "used; pass other points or check the features"
        )
    p = s / total
    order = torch.multinomial(p, n, replacement=True, generator=gen)
    p_order = p[order]
    counts = torch.bincount(order, minlength=N).double()
    safe_p = torch.where(p > 0, p, torch.ones_like(p))
    weights = torch.where(counts > 0, counts / (n * N * safe_p), torch.zeros_like(p))

    # prefix losses: running sum of the scaled draws, chunked
    scale = (1.0 / (N * p_order)).to(dtype=target.dtype, device=device)
    order_dev = order.to(device)
    per_row = max(1, target.numel() * target.element_size() * 3)
    chunk = max(1, DEFAULT_MAX_BYTES // per_row)
    carry = torch.zeros_like(target).unsqueeze(0)
    losses = []
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        rows = objective.feature_rows(order_dev[a:b]) * scale[a:b].reshape(
            -1, *([1] * target.dim())
        )
        cs = torch.cumsum(rows, 0) + carry
        k = torch.arange(a + 1, b + 1, device=device, dtype=target.dtype)
        losses.append(_squared_loss(cs / k.reshape(-1, *([1] * target.dim())), target))
        carry = cs[-1:]
    sel = Selection.from_order(
        order,
        torch.cat(losses).double().cpu(),
        N,
        evaluations=n,
        method="sensitivity",
        weights=weights,
    )
    sel.info = {
        "sampling_probability": p_order.tolist(),
        "sensitivity_sum": total,
        "points": int(target.shape[0]) if points is None else int(points.numel()),
    }
    # leave the objective holding the returned estimate
    for i in order.tolist():
        objective.add(i)
    support = torch.nonzero(weights > 0).flatten()
    objective.set_weights(support.to(device), weights[support])
    return sel


# -- rate curves ---------------------------------------------------------------------------------
def losses_at_sizes(
    select: Callable[..., Selection], objective, sizes: Iterable[int], **kwargs
) -> tuple[Tensor, list[Selection]]:
    """Run ``select(objective, n, **kwargs)`` once per n in ``sizes``; the loss at each n.

    For methods that give one subset per n (i-SpaSP) rather than a nested sequence (greedy,
    sampling), this is their rate curve. The objective must be empty; it is reset before each
    run and left holding the last. Returns ``(losses [len(sizes)] float64, selections)``, with
    ``losses[j] = selections[j].losses[-1]``.
    """
    if not callable(select):
        raise refuse("select", select, "a selection function", wrong_type=True)
    _check_objective(objective)
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise refuse("sizes", sizes, "an iterable of ints >= 1", wrong_type=True)
    sizes = [check_positive_int("sizes", v) for v in sizes]
    if not sizes:
        raise GreedypruneError("sizes is empty; pass at least one size n >= 1")
    selections = []
    for v in sizes:
        objective.reset()
        selections.append(select(objective, v, **kwargs))
    losses = torch.tensor([sel.losses[-1].item() for sel in selections], dtype=torch.float64)
    return losses, selections
