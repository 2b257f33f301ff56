"""Bound constants and diagnostics of docs/theory.md: D, B, hull membership, margin r, b_n.

Norm throughout: ``||h||^2 = (1/m) sum_j |h(x_j)|^2`` (summed over outputs), the norm of the
squared loss ``L(f) = ||f - y||^2 / 2``. ``features`` are ``[N, m]`` or ``[N, m, c]``; ``target``
is ``[m]`` or ``[m, c]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from greedyprune.errors import GreedypruneError, GreedypruneTypeError, refuse

__all__ = [
    "b_n",
    "bound_constants",
    "fast_rate_envelope",
    "hull_membership",
    "margin_estimate",
]


def _flat(features: Tensor, target: Tensor) -> tuple[Tensor, Tensor, int]:
    if not isinstance(features, Tensor) or not isinstance(target, Tensor):
        raise GreedypruneTypeError("features and target must be tensors")
    if features.dim() not in (2, 3):
        raise refuse("features.shape", tuple(features.shape), "(N, m) or (N, m, c)")
    if tuple(target.shape) != tuple(features.shape[1:]):
        want = tuple(features.shape[1:])
        raise refuse("target.shape", tuple(target.shape), f"{want}, features' (m(, c))")
    m = features.shape[1]
    n = features.shape[0]
    return features.reshape(n, -1), target.reshape(-1).to(features), m


def bound_constants(features: Tensor, target: Tensor) -> dict[str, float]:
    """The constants of Propositions A and B.

    Returns ``D = max_i ||phi_i - t||`` (greedy: ``e_n <= D^2 / n`` when t is in the hull),
    ``B = mean_i ||phi_i - t||^2`` (random subsets with replacement toward ``t = f_N``:
    ``E e_n = B_var / n``), ``B_var = mean_i ||phi_i - f_N||^2`` and ``dist_mean2 = ||f_N - t||^2``.
    """
    flat, t, m = _flat(features, target)
    sq = (flat - t).pow(2).sum(1) / m
    mean = flat.mean(0)
    return {
        "D": float(sq.max().sqrt()),
        "B": float(sq.mean()),
        "B_var": float(((flat - mean).pow(2).sum(1) / m).mean()),
        "dist_mean2": float((mean - t).pow(2).sum() / m),
    }


def hull_membership(
    features: Tensor, target: Tensor, *, tol: float = 1e-9, time_limit: float = 60.0
) -> dict[str, float]:
    """Is t in the convex hull of the features? A linear program (scipy HiGHS).

    features: ``[N, m]`` or ``[N, m, c]``; target: ``[m]`` or ``[m, c]``.
    Solves ``min s`` over ``w >= 0, sum w = 1, |Phi^T w - t| <= s`` (entrywise, scaled by the
    largest entry of the features and t): s = 0 means t is in the hull. Returns
    ``{"in_hull": 0/1, "lp_residual": s}``; ``in_hull`` when ``s <= tol``. Both are NaN when the
    solver does not finish within ``time_limit`` seconds.
    """
    from scipy.optimize import linprog

    flat, t, _ = _flat(features, target)
    A = flat.detach().cpu().double().numpy().T  # [m', N]
    b = t.detach().cpu().double().numpy()
    scale = max(float(np.abs(b).max()), float(np.abs(A).max()), 1e-300)
    A, b = A / scale, b / scale
    mm, N = A.shape
    # variables [w (N), s]; |A w - b| <= s  <=>  A w - s <= b  and  -A w - s <= -b
    c = np.zeros(N + 1)
    c[-1] = 1.0
    ones = np.ones((mm, 1))
    A_ub = np.block([[A, -ones], [-A, -ones]])
    b_ub = np.concatenate([b, -b])
    A_eq = np.concatenate([np.ones((1, N)), np.zeros((1, 1))], axis=1)
    # the interior-point solver: HiGHS' dual simplex stalled for minutes on these dense,
    # degenerate programs (m = 200, N = 1000) that the interior-point method solves in seconds
    res = linprog(
        c,
        A_ub=A_ub,
        b_ub=b_ub,
        A_eq=A_eq,
        b_eq=[1.0],
        bounds=[(0, None)] * (N + 1),
        method="highs-ipm",
        options={"time_limit": float(time_limit)},
    )
    if res.status != 0 or res.x is None:
        # undecided (time limit or numerical trouble): callers treat NaN as "unknown"
        return {"in_hull": float("nan"), "lp_residual": float("nan")}
    s = float(res.x[-1])
    return {"in_hull": float(s <= tol), "lp_residual": s}


def margin_estimate(
    features: Tensor,
    target: Tensor,
    *,
    restarts: int = 64,
    steps: int = 300,
    seed: int = 0,
) -> float:
    """An estimate of the interior margin r of t in the hull M of the features.

    ``r = min over unit directions u (in the span of the features' differences) of
    max_i <phi_i - t, u>``: the distance from t to the hull's boundary when t is inside (r > 0),
    minus the distance to the hull when t is outside (r < 0; up to the non-convex search below).
    The minimum over the sphere is searched by smoothed descent from ``restarts`` random directions;
    each run gives an upper bound on the true r, and the smallest is returned, so this is an
    *upper estimate* of r (the fast-rate threshold ``(D / r)^2`` is then a lower estimate).
    """
    flat, t, m = _flat(features, target)
    g = torch.Generator().manual_seed(int(seed))
    P = (flat - t).detach().cpu().double() / math.sqrt(m)  # <u, v> = (1/m) u.v in these coordinates
    diffs = P - P.mean(0)
    # directions within the affine hull: the row space of the centred features
    _, sv, vh = torch.linalg.svd(diffs, full_matrices=False)
    basis = vh[sv > sv.max() * 1e-10]  # [r, m']
    if basis.shape[0] == 0:
        return 0.0  # every feature is the same point: the hull has no interior to have a margin in
    Q = P @ basis.T  # [N, r]
    scale = float(Q.abs().max())  # > 0: the centred features have a component along the basis
    Q = Q / scale
    U = torch.randn(basis.shape[0], restarts, generator=g, dtype=torch.float64)
    U = U / U.norm(dim=0, keepdim=True)
    U.requires_grad_(True)
    opt = torch.optim.Adam([U], lr=0.05)
    for it in range(steps):
        temp = 0.1 * (0.01 ** (it / max(1, steps - 1)))  # anneal the soft-max toward the max
        Un = U / U.norm(dim=0, keepdim=True)
        h = temp * torch.logsumexp((Q @ Un) / temp, dim=0)
        opt.zero_grad()
        h.sum().backward()
        opt.step()
    with torch.no_grad():
        Un = U / U.norm(dim=0, keepdim=True)
        return float((Q @ Un).max(0).values.min()) * scale


def b_n(n, e_n) -> np.ndarray:
    """The diagnostic ``b_n = n sqrt(e_n)`` (bounded for an interior target, ~sqrt(n) on the boundary)."""
    n = np.asarray(n, dtype=float)
    e = np.asarray(e_n, dtype=float)
    if n.shape != e.shape:
        raise GreedypruneError(f"n and e_n must have the same shape, got {n.shape} and {e.shape}")
    return n * np.sqrt(np.clip(e, 0, None))


def fast_rate_envelope(n, *, D: float, r: float, b1: float) -> np.ndarray:
    """Proposition B's envelope ``e_n <= max(b_1^2, (D^2 / 2r)^2 + D^2) / n^2`` (r > 0).

    From ``b_{n+1}^2 <= b_n^2 - 2 r b_n + D^2``: once ``b_n >= D^2 / (2r)`` it cannot grow, and a
    step from below adds at most ``D^2``. With an *estimated* r this is an estimate, not a bound.
    """
    if not r > 0:
        raise GreedypruneError(
            f"r={r!r} must be > 0 (t interior to the hull) for the fast-rate envelope"
        )
    n = np.asarray(n, dtype=float)
    top = max(b1**2, (D**2 / (2 * r)) ** 2 + D**2)
    return top / n**2
