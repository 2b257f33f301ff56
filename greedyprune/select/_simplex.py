"""Least squares over the probability simplex: the corrective (re-weighted) step."""

from __future__ import annotations

import torch
from torch import Tensor

from greedyprune.errors import check_number, refuse

from ._checks import (
    check_finite,
    check_positive_int,
    check_same_device,
    check_same_dtype,
    check_tensor,
)

__all__ = ["project_simplex", "solve_simplex_gram", "solve_simplex_ls"]


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of v [k] onto {w >= 0, sum w = 1} (sort-based, exact)."""
    check_tensor("v", v, ndims=(1,))
    check_finite("v", v)
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1
    idx = torch.arange(1, v.numel() + 1, device=v.device, dtype=v.dtype)
    rho = int(torch.nonzero(u - css / idx > 0).max())
    theta = css[rho] / (rho + 1)
    return torch.clamp(v - theta, min=0)


def solve_simplex_ls(
    features: Tensor,
    target: Tensor,
    *,
    init: Tensor | None = None,
    max_iter: int = 5000,
    tol: float = 1e-9,
    patience: int = 30,
) -> Tensor:
    """Weights w [k] on the simplex minimising ``||sum_j w_j phi_j - target||^2`` (mean over data).

    features: [k, m] or [k, m, c]; target: [m] or [m, c]. Accelerated projected gradient on the
    k x k Gram matrix, started from ``init`` (uniform if None). The best iterate is returned, so the
    result is never worse than ``init``.
    """
    check_tensor("features", features, ndims=(2, 3))
    check_tensor("target", target, ndims=(1, 2))
    check_same_device(features=features, target=target)
    check_same_dtype(features=features, target=target)
    if tuple(target.shape) != tuple(features.shape[1:]):
        want = tuple(features.shape[1:])
        raise refuse("target.shape", tuple(target.shape), f"{want}, features' shape without k")
    check_finite("features", features)
    check_finite("target", target)
    max_iter, patience = _check_solver(init, features.shape[0], "features", max_iter, tol, patience)
    gram, lin, const = simplex_terms(features, target)
    return _solve(gram, lin, const, init, max_iter, tol, patience)


def simplex_terms(features: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The Gram form of ``||sum_j w_j phi_j - target||^2`` (mean over the m data points):
    ``(gram [k, k], lin [k], const)`` with ``gram = Phi Phi' / m``, ``lin = Phi target / m``,
    ``const = ||target||^2 / m`` (features [k, m(, c)], unchecked)."""
    k, m = features.shape[0], features.shape[1]
    flat = features.reshape(k, -1)
    gram = (flat @ flat.T) / m
    lin = (flat @ target.reshape(-1)) / m
    const = target.reshape(-1).dot(target.reshape(-1)) / m
    return gram, lin, const


def solve_simplex_gram(
    gram: Tensor,
    lin: Tensor,
    const: Tensor | float = 0.0,
    *,
    init: Tensor | None = None,
    max_iter: int = 5000,
    tol: float = 1e-9,
    patience: int = 30,
) -> Tensor:
    """Weights w [k] on the simplex minimising ``w' gram w - 2 lin' w + const``: the core of
    :func:`solve_simplex_ls` on the Gram form of the problem (``gram`` [k, k] symmetric positive
    semi-definite, ``lin`` [k]), for objectives that hold Grams instead of features. ``const``
    does not move the minimiser; it only makes the values those of the loss."""
    check_tensor("gram", gram, ndims=(2,))
    check_tensor("lin", lin, ndims=(1,))
    check_same_device(gram=gram, lin=lin)
    check_same_dtype(gram=gram, lin=lin)
    k = lin.shape[0]
    if tuple(gram.shape) != (k, k):
        raise refuse("gram.shape", tuple(gram.shape), f"({k}, {k}): lin has {k} entries")
    check_finite("gram", gram)
    check_finite("lin", lin)
    max_iter, patience = _check_solver(init, k, "gram", max_iter, tol, patience)
    return _solve(
        gram, lin, torch.as_tensor(const, dtype=gram.dtype), init, max_iter, tol, patience
    )


def _check_solver(init, k: int, rows: str, max_iter, tol, patience) -> tuple[int, int]:
    """The solver's own arguments: ``init`` [k] (one weight per row of ``rows``), the counts, tol."""
    if init is not None:
        check_tensor("init", init, ndims=(1,))
        if init.shape[0] != k:
            raise refuse("init.shape", tuple(init.shape), f"({k},), one weight per row of {rows}")
    check_number("tol", tol, minimum=0)
    return check_positive_int("max_iter", max_iter), check_positive_int("patience", patience)


def _solve(gram, lin, const, init, max_iter, tol, patience) -> Tensor:
    """Accelerated projected gradient with adaptive restart; the best iterate is returned."""
    k = lin.shape[0]

    def obj(w: Tensor) -> Tensor:
        return w @ gram @ w - 2 * lin @ w + const

    w = (
        torch.full((k,), 1.0 / k, dtype=gram.dtype, device=gram.device)
        if init is None
        else project_simplex(init.to(gram))
    )
    if k == 1:
        return w
    lip = 2 * float(torch.linalg.eigvalsh(gram)[-1])
    if lip <= 0:
        return w
    best, best_val = w, float(obj(w))
    y, t, prev, stall = w, 1.0, best_val, 0
    for _ in range(max_iter):
        w_next = project_simplex(y - (2 * (gram @ y) - 2 * lin) / lip)
        val = float(obj(w_next))
        if val > prev:
            # Adaptive restart (O'Donoghue and Candes 2015): momentum overshot, start it again.
            y, t = w, 1.0
            stall += 1
            if stall >= patience:
                break
            continue
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = w_next + ((t - 1) / t_next) * (w_next - w)
        if val < best_val - tol * max(abs(best_val), 1e-300):
            best, best_val, stall = w_next, val, 0
        else:
            stall += 1
            if stall >= patience:
                break
        w, t, prev = w_next, t_next, val
    return best
