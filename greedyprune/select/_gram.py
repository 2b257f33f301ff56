"""Objectives in Gram form: the layer problem of local imitation without its contributions.

A prunable group of C channels feeds a consumer; on n sampled rows, channel c's contribution to
the consumer's output is ``A_c`` [n, O] and the dense network's output is ``Z`` [n, O]. Every loss
of a weighted sum ``sum_c w_c A_c`` needs only

    G [C, C] = <A_c, A_c'>,   b [C] = <A_c, Z>,   const = ||Z||^2,

so the contributions (tens of GB for a large layer) are never held. :class:`PatchGram`
accumulates, over chunks of rows, the consumer's input patches' Gram ``H = X'X`` [CK, CK], their
cross term with the target ``U = X'Z`` [CK, O] and ``||Z||^2``; :func:`channel_gram` turns them
and the consumer's weights [O, C, K] into ``(G, b, const)``.

Four objectives on these terms, each on the kernel's :class:`~greedyprune.select.Objective`
protocol (so ``greedy_select``, stochastic greedy and ``backward_elimination`` run on them):

- :class:`GramLoss`: the kernel's 1/k average (with ``scale`` the gate ``D * w``), the same loss
  as :class:`~greedyprune.select.SquaredLoss` on the materialised features; the fused step, the
  corrective rule and removal included.
- :class:`FixedWeightLoss`: the kept channels at their dense weights, ``||Z - sum_S A_c||^2``.
- :class:`RefitLoss` with ``block=1`` on ``(G, b)``: one least-squares scale per kept channel
  (orthogonal matching pursuit over channels); with ``block=K`` on ``(H, U)``: the consumer's
  full least-squares refit on the kept channels' patch columns (El Halabi et al. 2022's
  criterion). Both maintain the inverse of the kept block of the Gram, so adding, removing and
  swapping cost a few products, never a solve from scratch.

:func:`swap_search` is the local search: one kept channel out, one open channel in, accepted
only when the loss falls.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from greedyprune.errors import (
    GreedypruneError,
    GreedypruneTypeError,
    check_int,
    check_number,
    refuse,
)

from ._checks import check_finite, check_same_device, check_same_dtype, check_tensor
from ._objectives import linesearch

__all__ = [
    "FixedWeightLoss",
    "GramLoss",
    "PatchGram",
    "RefitLoss",
    "backward_to",
    "channel_gram",
    "lasso_gram",
    "lasso_support",
    "swap_search",
]


def _check_terms(gram: Tensor, linear: Tensor, const, *, block: int = 1) -> tuple[int, float]:
    """Check (gram [N, N], linear [N] or [N, O]) and return (N blocks, const as a float)."""
    check_tensor("gram", gram, ndims=(2,))
    check_tensor("linear", linear, ndims=(1, 2))
    check_same_device(gram=gram, linear=linear)
    check_same_dtype(gram=gram, linear=linear)
    n = gram.shape[0]
    if tuple(gram.shape) != (n, n):
        raise refuse("gram.shape", tuple(gram.shape), "square, (N, N)")
    if linear.shape[0] != n:
        raise refuse("linear.shape", tuple(linear.shape), f"({n}, ...): a row per row of gram")
    if n % block:
        raise GreedypruneError(f"gram's size {n} is not a multiple of block={block}")
    check_finite("gram", gram)
    check_finite("linear", linear)
    const = float(const)
    if not const >= 0 or const == float("inf"):
        raise refuse("const", const, "||target||^2, a finite number >= 0")
    return n // block, const


class GramLoss:
    """The kernel's squared loss on features ``phi_c = scale * A_c`` in Gram form.

    ``L(f) = ||f - Z||^2 / (2 rows)`` with ``f = (1/k) sum_{c in S} phi_c`` (S a multiset of size
    k), exactly :class:`~greedyprune.select.SquaredLoss` on the features ``scale * A`` [C, rows,
    O] and the target Z, computed from gram = <A_c, A_c'>, linear = <A_c, Z> and const = ||Z||^2.
    ``scale``: the channel count D for the CNN gate ``D * w`` (the average of D-scaled
    contributions over all D channels is their sum, the dense output).

    A step costs O(N) (one column of the Gram is read on ``add``), not a product with the
    features. Supports the fused exact step, the corrective rule, removal and feature norms.
    """

    supports_fused_step = True
    supports_corrective = True
    supports_feature_reads = False
    supports_removal = True
    supports_feature_norms = True

    def __init__(self, gram: Tensor, linear: Tensor, const, *, rows: int = 1, scale: float = 1.0):
        self.n_candidates, self.const = _check_terms(gram, linear, const)
        if linear.dim() != 1:
            raise refuse("linear.shape", tuple(linear.shape), "(N,) for GramLoss")
        rows = check_int("rows", rows, minimum=1)  # the data rows m
        scale = check_number("scale", scale, above=0)
        self.gram, self.linear, self.rows, self.scale = gram, linear, rows, float(scale)
        self._diag = gram.diagonal().clone()
        self.reset()

    device = property(lambda self: self.gram.device)
    dtype = property(lambda self: self.gram.dtype)

    @property
    def size(self) -> int:
        return self._size

    def reset(self) -> None:
        """The empty subnetwork: coefficients c [N] of ``total = sum_i c_i phi_i`` all zero."""
        self._coef = torch.zeros(self.n_candidates, dtype=self.dtype, device=self.device)
        self._gc = torch.zeros_like(self._coef)  # gram @ coef
        self._cgc = 0.0  # coef' gram coef
        self._cb = 0.0  # linear' coef
        self._size = 0

    def _move(self, index: int, sign: int) -> None:
        self._cgc += 2 * sign * float(self._gc[index]) + float(self._diag[index])
        self._cb += sign * float(self.linear[index])
        self._gc += sign * self.gram[:, index]
        self._coef[index] += sign

    def add(self, index: int) -> None:
        self._move(int(index), +1)
        self._size += 1

    def remove(self, index: int) -> None:
        if self._size < 1:
            raise GreedypruneError("cannot remove from an empty subnetwork")
        self._move(int(index), -1)
        self._size -= 1

    def _sq_residual(self, k: int) -> float:
        """||total - k Z||^2 (phi-scaled)."""
        s = self.scale
        return s * s * self._cgc - 2 * k * s * self._cb + k * k * self.const

    def _scores(self, candidates: Tensor | None, sign: int) -> Tensor:
        k, s = self._size + sign, self.scale
        idx = slice(None) if candidates is None else candidates
        diag, gc, lin = self._diag[idx], self._gc[idx], self.linear[idx]
        var = s * s * diag + 2 * sign * s * s * gc - 2 * k * sign * s * lin
        return (var + self._sq_residual(k)) / (2 * self.rows * k * k)

    def losses(self, candidates: Tensor | None = None) -> Tensor:
        return self._scores(candidates, +1)

    def removal_losses(self, candidates: Tensor | None = None) -> Tensor:
        if self._size < 2:
            raise GreedypruneError("removal needs a subnetwork of at least 2 neurons")
        return self._scores(candidates, -1)

    def best_addition(self, blocked: Tensor | None = None) -> tuple[int, float]:
        """The exact step over all N candidates (see ``SquaredLoss.best_addition``); ties go to
        the lowest index."""
        k, s = self._size + 1, self.scale
        u = s * s * self._diag + 2 * s * s * self._gc - 2 * k * s * self.linear
        if blocked is not None:
            u = u + blocked
        j = int(torch.argmin(u))
        return j, (float(u[j]) + self._sq_residual(k)) / (2 * self.rows * k * k)

    def current_loss(self) -> float:
        if self._size == 0:
            return self.const / (2 * self.rows)
        return self._sq_residual(self._size) / (2 * self.rows * self._size**2)

    def feature_norms(self) -> Tensor:
        """Tensor [N]: ||phi_i|| with ||h||^2 = ||h||_F^2 / rows (as ``SquaredLoss``)."""
        return (self.scale**2 * self._diag.clamp_min(0) / self.rows).sqrt()

    def simplex_terms(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s, m = self.scale, self.rows
        g = self.gram.index_select(0, indices).index_select(1, indices)
        const = torch.tensor(self.const / m, dtype=self.dtype, device=self.device)
        return s * s * g / m, s * self.linear.index_select(0, indices) / m, const

    def set_weights(self, indices: Tensor, weights: Tensor) -> None:
        """Make the subnetwork ``sum_j weights[j] phi_{indices[j]}`` (size unchanged)."""
        w = weights.to(dtype=self.dtype, device=self.device)
        indices = indices.to(self.device)
        coef = torch.zeros_like(self._coef)
        coef.index_add_(0, indices, self._size * w)
        self._coef = coef
        self._gc = self.gram.index_select(1, indices) @ coef.index_select(0, indices)
        self._cgc = float(coef @ self._gc)
        self._cb = float(coef @ self.linear)

    def linesearch_losses(self, candidates: Tensor | None = None) -> Tensor:
        """The exact line search of each candidate from the current subnetwork f (see
        ``FeatureObjective.linesearch_losses``), from the Gram terms."""
        s, k = self.scale, max(self._size, 1)
        idx = slice(None) if candidates is None else candidates
        f_f = s * s * self._cgc / k**2
        f_z = s * self._cb / k
        r_r = f_f - 2 * f_z + self.const
        f_phi = s * s * self._gc[idx] / k
        r_phi = f_phi - s * self.linear[idx]
        sq = s * s * self._diag[idx]
        return linesearch(r_r, f_f - f_z, f_f, r_phi, f_phi, sq) / (2 * self.rows)


class _KeptSet:
    """What the set objectives share: a kept list, and the Gram's device and dtype."""

    supports_removal = True
    supports_swaps = True
    kept: list[int]
    gram: Tensor

    device = property(lambda self: self.gram.device)
    dtype = property(lambda self: self.gram.dtype)

    @property
    def size(self) -> int:
        return len(self.kept)


class FixedWeightLoss(_KeptSet):
    """``E(S) = ||Z - sum_{c in S} A_c||^2``: the kept channels at their dense weights (no refit),
    from gram, linear and const: ``const - 2 sum_S linear + sum_{S x S} gram``. S is a set: adding a
    kept channel again is refused. Supports removal (backward elimination, ThiNet's criterion) and
    :meth:`swap_losses`."""

    supports_removal = True
    supports_swaps = True

    def __init__(self, gram: Tensor, linear: Tensor, const):
        self.n_candidates, self.const = _check_terms(gram, linear, const)
        if linear.dim() != 1:
            raise refuse("linear.shape", tuple(linear.shape), "(N,)")
        self.gram, self.linear = gram, linear
        self._diag = gram.diagonal().clone()
        self.reset()

    def reset(self) -> None:
        self.kept: list[int] = []
        self._in = torch.zeros(self.n_candidates, dtype=torch.bool, device=self.device)
        self._g = torch.zeros(self.n_candidates, dtype=self.dtype, device=self.device)
        self._err = self.const

    def _add_delta(self, idx=slice(None)) -> Tensor:
        return -2 * self.linear[idx] + self._diag[idx] + 2 * self._g[idx]

    def losses(self, candidates: Tensor | None = None) -> Tensor:
        idx = slice(None) if candidates is None else candidates
        out = self._err + self._add_delta(idx)
        return torch.where(self._in[idx], torch.full_like(out, self._err), out)

    def add(self, index: int) -> None:
        i = int(index)
        if self._in[i]:
            raise GreedypruneError(f"channel {i} is kept already (a set; pass replacement=False)")
        self._err += float(self._add_delta(i))
        self._g += self.gram[:, i]
        self._in[i] = True
        self.kept.append(i)

    def removal_losses(self, candidates: Tensor | None = None) -> Tensor:
        idx = slice(None) if candidates is None else candidates
        out = self._err + 2 * self.linear[idx] - 2 * self._g[idx] + self._diag[idx]
        return torch.where(self._in[idx], out, torch.full_like(out, torch.inf))

    def remove(self, index: int) -> None:
        i = int(index)
        if not self._in[i]:
            raise GreedypruneError(f"channel {i} is not kept")
        self._err = float(self.removal_losses(torch.tensor([i], device=self.device))[0])
        self._g -= self.gram[:, i]
        self._in[i] = False
        self.kept.remove(i)

    def current_loss(self) -> float:
        return self._err

    def swap_losses(self, out: int) -> Tensor:
        """Tensor [N]: the loss after replacing the kept channel ``out`` by each channel (inf for
        the other kept ones, the current loss for ``out`` itself)."""
        i = int(out)
        base = float(self.removal_losses(torch.tensor([i], device=self.device))[0])
        g = self._g - self.gram[:, i]
        res = base - 2 * self.linear + self._diag + 2 * g
        res = torch.where(self._in, torch.full_like(res, torch.inf), res)
        res[i] = self._err
        return res


class RefitLoss(_KeptSet):
    """The least-squares refit error of a kept set: ``E(S) = const - tr(U_S' (H_SS + rho I)^-1 U_S)``.

    gram: H [N*block, N*block], symmetric positive semi-definite; cross: U [N*block] or
    [N*block, O]; const: ||Z||^2. Candidate c owns the ``block`` consecutive columns
    ``c*block .. c*block+block-1``. With ``block=1`` on the channel terms ``(G, b)`` this is one
    scale per kept channel (orthogonal matching pursuit over channels); with ``block=K`` on the
    patch terms ``(H, U)`` of a consumer with K taps, the consumer's full refit of all its weights
    on the kept channels. ``ridge``: rho = ridge * mean(diag(H)) (0: plain least squares).

    The state is the inverse M of the kept block (plus rho), ``W = M H_S:`` and ``alpha = M U_S``,
    and per candidate its K x K quadratic form against the kept set and its K x O cross term
    residualised on it, so a step's gains are one batched K x K inverse and one batched R R'
    product, and adding, removing or pricing a swap costs a few products with W. S is a set: adding a kept channel again is refused.
    """

    supports_removal = True
    supports_swaps = True

    def __init__(self, gram: Tensor, cross: Tensor, const, *, block: int = 1, ridge: float = 0.0):
        block = check_int("block", block, minimum=1)  # columns per candidate
        self.n_candidates, self.const = _check_terms(gram, cross, const, block=block)
        ridge = check_number("ridge", ridge, minimum=0)  # relative to mean(diag)
        self.block = block
        self.rho = float(ridge) * float(gram.diagonal().mean())
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        self.gram = gram + self.rho * eye  # H + rho I: the matrix whose kept block is inverted
        self.cross = cross if cross.dim() == 2 else cross.unsqueeze(1)
        K, C = block, self.n_candidates
        diag = self.gram.reshape(C, K, C, K).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
        self._diag_blocks = diag.contiguous()
        self._cross_blocks = self.cross.reshape(C, K, -1)
        self.reset()

    def reset(self) -> None:
        K, C, O = self.block, self.n_candidates, self.cross.shape[1]
        kw = {"dtype": self.dtype, "device": self.device}
        self.kept: list[int] = []
        self._in = torch.zeros(C, dtype=torch.bool, device=self.device)
        self._cap = 0  # rows allocated in the buffers behind M, W, alpha (grown by doubling)
        self._Mb = torch.zeros(0, 0, **kw)
        self._Wb = torch.zeros(0, C * K, **kw)
        self._ab = torch.zeros(0, O, **kw)
        self._cols = torch.zeros(0, dtype=torch.long, device=self.device)
        self._A = torch.zeros(C, K, K, **kw)  # H_JS M H_SJ per candidate J
        # U_J - H_JS M U_S per candidate J: its cross term residualised on the kept set
        self._R = self._cross_blocks.clone()
        self._err = self.const

    def _span(self, c: int) -> slice:
        return slice(c * self.block, (c + 1) * self.block)

    # M, W and alpha are views of the first kK rows of buffers that grow by doubling, so a step
    # writes K new rows in place instead of copying the whole state
    @property
    def _M(self) -> Tensor:
        n = len(self.kept) * self.block
        return self._Mb[:n, :n]

    @property
    def _W(self) -> Tensor:
        return self._Wb[: len(self.kept) * self.block]

    @property
    def _alpha(self) -> Tensor:
        return self._ab[: len(self.kept) * self.block]

    def _reserve(self, rows: int) -> None:
        if rows <= self._cap:
            return
        cap = max(rows, 2 * self._cap, 4 * self.block)
        n = len(self.kept) * self.block
        for name in ("_Mb", "_Wb", "_ab"):
            old = getattr(self, name)
            shape = (cap, cap) if name == "_Mb" else (cap, old.shape[1])
            new = torch.zeros(shape, dtype=self.dtype, device=self.device)
            if name == "_Mb":
                new[:n, :n] = old[:n, :n]
            else:
                new[:n] = old[:n]
            setattr(self, name, new)
        self._cap = cap

    def _set_state(self, M: Tensor, W: Tensor, alpha: Tensor) -> None:
        n = M.shape[0]
        self._Mb[:n, :n] = M
        self._Wb[:n] = W
        self._ab[:n] = alpha

    def _gains(self, A: Tensor, R: Tensor, idx) -> Tensor:
        """tr(R' D^-1 R) = <D^-1, R R'> per candidate, D = H_JJ - A_J, R = U_J - H_JS M U_S (0 where
        D is not positive definite: a channel spanned by the kept ones adds nothing). The K x K
        inverse and one batched R R' product are cheaper than a batched solve against R."""
        D = self._diag_blocks[idx] - A[idx]
        R = R[idx]
        L, info = torch.linalg.cholesky_ex(D)
        ok = info == 0
        L = torch.where(ok[:, None, None], L, torch.eye(self.block, dtype=D.dtype, device=D.device))
        gain = (torch.cholesky_inverse(L) * torch.bmm(R, R.transpose(1, 2))).sum((1, 2))
        return torch.where(ok, gain, torch.zeros_like(gain))

    def losses(self, candidates: Tensor | None = None) -> Tensor:
        idx = slice(None) if candidates is None else candidates
        out = self._err - self._gains(self._A, self._R, idx)
        return torch.where(self._in[idx], torch.full_like(out, self._err), out)

    def current_loss(self) -> float:
        return self._err

    def add(self, index: int) -> None:
        j = int(index)
        if self._in[j]:
            raise GreedypruneError(f"channel {j} is kept already (a set; pass replacement=False)")
        K, C = self.block, self.n_candidates
        J = self._span(j)
        n = len(self.kept) * K
        self._reserve(n + K)
        d = self._diag_blocks[j] - self._A[j]
        r = self._R[j].clone()
        W, M, alpha = self._W, self._M, self._alpha
        w = W[:, J].clone()  # M H_SJ  [kK, K]
        V = self.gram[J, :].clone()
        if n:
            V.sub_(self.gram[J].index_select(1, self._cols) @ W)
        d_inv = torch.linalg.inv(d)
        dV, dr = d_inv @ V, d_inv @ r
        Vb = V.reshape(K, C, K).permute(1, 0, 2)  # [C, K, K]: V restricted to each block J'
        dVb = dV.reshape(K, C, K).permute(1, 0, 2)
        self._A.baddbmm_(Vb.transpose(1, 2), dVb)
        self._R.view(C * K, -1).addmm_(V.T, dr, alpha=-1)  # R_J' -= V_J''d^-1 r: one product
        wd = w @ d_inv
        M.addmm_(wd, w.T)
        self._Mb[:n, n : n + K] = -wd
        self._Mb[n : n + K, :n] = -wd.T
        self._Mb[n : n + K, n : n + K] = d_inv
        W.addmm_(w, dV, alpha=-1)
        self._Wb[n : n + K] = dV
        alpha.addmm_(w, dr, alpha=-1)
        self._ab[n : n + K] = dr
        self._cols = torch.cat([self._cols, torch.arange(J.start, J.stop, device=self.device)])
        self._err -= float((r * dr).sum())
        self._in[j] = True
        self.kept.append(j)

    def _removal_terms(self, pos: int):
        """(rows of the kept channel at position ``pos``, M_II^-1, the loss after removing it)."""
        P = slice(pos * self.block, (pos + 1) * self.block)
        m_inv = torch.linalg.inv(self._M[P, P])
        a = self._alpha[P]
        return P, m_inv, self._err + float((a * (m_inv @ a)).sum())

    def removal_losses(self, candidates: Tensor | None = None) -> Tensor:
        out = torch.full((self.n_candidates,), torch.inf, dtype=self.dtype, device=self.device)
        for pos, c in enumerate(self.kept):
            out[c] = self._removal_terms(pos)[2]
        return out if candidates is None else out[candidates]

    def _without(self, pos: int):
        """A, R and the loss of the kept set without the channel at position ``pos``."""
        K, C = self.block, self.n_candidates
        P, m_inv, err = self._removal_terms(pos)
        WP = self._W[P].reshape(K, C, K).permute(1, 0, 2)  # [C, K(P), K(J)]
        mW = m_inv.unsqueeze(0) @ WP
        A = self._A - WP.transpose(1, 2) @ mW
        R = self._R + WP.transpose(1, 2) @ (m_inv @ self._alpha[P]).unsqueeze(0)
        return P, m_inv, A, R, err

    def remove(self, index: int) -> None:
        i = int(index)
        if not self._in[i]:
            raise GreedypruneError(f"channel {i} is not kept")
        pos = self.kept.index(i)
        P, m_inv, self._A, self._R, self._err = self._without(pos)
        keep = torch.ones(self._M.shape[0], dtype=torch.bool, device=self.device)
        keep[P] = False
        M, W, alpha = self._M, self._W, self._alpha
        MoP = M[keep][:, P] @ m_inv
        new = (
            M[keep][:, keep] - MoP @ M[P][:, keep],
            W[keep] - MoP @ W[P],
            alpha[keep] - MoP @ alpha[P],
        )
        self._cols = self._cols[keep]
        self._in[i] = False
        self.kept.pop(pos)
        self._set_state(*new)

    def swap_losses(self, out: int) -> Tensor:
        """Tensor [N]: the loss after replacing the kept channel ``out`` by each channel (inf for
        the other kept ones, the current loss for ``out`` itself)."""
        i = int(out)
        _, _, A, R, err = self._without(self.kept.index(i))
        res = err - self._gains(A, R, slice(None))
        res = torch.where(self._in, torch.full_like(res, torch.inf), res)
        res[i] = self._err
        return res


def swap_search(objective, rounds: int, *, rel_tol: float = 1e-12) -> list[tuple[int, int, float]]:
    """Local search on a kept set: each round prices every (kept out, open in) pair with
    ``objective.swap_losses`` and makes the best swap if it lowers the loss by more than
    ``rel_tol`` times the loss; stops after ``rounds`` rounds or when no swap lowers it. The
    objective ends holding the improved set. Returns the swaps made: (out, in, loss after)."""
    if getattr(objective, "supports_swaps", False) is not True:
        raise GreedypruneTypeError(
            f"swap_search needs an objective that declares supports_swaps = True (RefitLoss, "
            f"FixedWeightLoss); {type(objective).__name__} does not"
        )
    rounds = check_int("rounds", rounds, minimum=0)
    if objective.size < 1 and rounds:
        raise GreedypruneError("swap_search needs a non-empty kept set: select first")
    done = []
    for _ in range(rounds):
        current = objective.current_loss()
        best = (current, -1, -1)
        for i in list(objective.kept):
            res = objective.swap_losses(i)
            j = int(torch.argmin(res))
            if float(res[j]) < best[0]:
                best = (float(res[j]), i, j)
        loss, i, j = best
        if i < 0 or not loss < current - rel_tol * abs(current):
            break
        objective.remove(i)
        objective.add(j)
        done.append((i, j, objective.current_loss()))
    return done


class PatchGram:
    """Accumulates a consumer's layer problem over chunks of rows, in float64 by default.

    update(patches [n, C, K], target [n, O]): the consumer's input patches (C channels, K taps)
    and the dense output at the same n rows. ``H = X'X`` [CK, CK], ``U = X'Z`` [CK, O] and
    ``const = ||Z||^2`` (channel-major columns ``c*K + k``) grow by each chunk, so memory does not
    grow with the number of rows.
    """

    def __init__(
        self, channels: int, taps: int, outputs: int, *, dtype=torch.float64, device="cpu"
    ):
        for name, v in (("channels", channels), ("taps", taps), ("outputs", outputs)):
            check_int(name, v, minimum=1)
        self.channels, self.taps, self.outputs = channels, taps, outputs
        ck = channels * taps
        self.H = torch.zeros(ck, ck, dtype=dtype, device=device)
        self.U = torch.zeros(ck, outputs, dtype=dtype, device=device)
        self.const = 0.0
        self.rows = 0

    def update(self, patches: Tensor, target: Tensor) -> None:
        check_tensor("patches", patches, ndims=(3,))
        check_tensor("target", target, ndims=(2,))
        n = patches.shape[0]
        if tuple(patches.shape[1:]) != (self.channels, self.taps):
            raise refuse(
                "patches.shape", tuple(patches.shape), f"(n, {self.channels}, {self.taps})"
            )
        if tuple(target.shape) != (n, self.outputs):
            raise refuse("target.shape", tuple(target.shape), f"({n}, {self.outputs})")
        x = patches.reshape(n, -1).to(self.H)
        z = target.to(self.H)
        self.H.addmm_(x.T, x)
        self.U.addmm_(x.T, z)
        self.const += float(z.pow(2).sum())
        self.rows += n


def channel_gram(H: Tensor, U: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """The channel terms of a consumer with weights ``weight`` [O, C, K] (BN scale folded in):
    ``G [C, C] = <A_c, A_c'>`` and ``b [C] = <A_c, Z>``, where ``A_c = X_c W_c'`` is channel c's
    contribution, from the patch terms ``H`` [CK, CK] and ``U`` [CK, O] (:class:`PatchGram`).

    ``G[c, c'] = sum_{k, k'} (W_k' W_k')[c, c'] (X_k' X_k')[c, c']``: H times the weights' own
    Gram, elementwise, with the K x K tap blocks summed; ``b[c] = sum_{k, o} W[o, c, k] U[ck, o]``.
    """
    O, C, K = weight.shape
    w = weight.to(H).reshape(O, C * K)
    WW = (w.T @ w).reshape(C, K, C, K)
    G = (H.reshape(C, K, C, K) * WW).sum((1, 3))
    b = torch.einsum("cko,ock->c", U.reshape(C, K, -1), w.reshape(O, C, K))
    return G, b


def backward_to(objective, n: int) -> list[tuple[int, float]]:
    """Backward elimination on a set objective (``supports_removal``), from every candidate down
    to ``n``: each step removes the candidate whose removal raises the loss least (ties to the
    lowest index). Unlike :func:`~greedyprune.select.backward_elimination` it stops at ``n``
    (the nested path below n is not needed) and leaves the objective holding the n survivors.
    Returns the removals: (index, loss after)."""
    N = objective.n_candidates
    n = check_int("n", n, minimum=1, maximum=N)
    objective.reset()
    for i in range(N):
        objective.add(i)
    removed = []
    while objective.size > n:
        scores = objective.removal_losses()
        j = int(torch.argmin(scores))
        objective.remove(j)
        removed.append((j, objective.current_loss()))
    return removed


def lasso_gram(
    gram: Tensor,
    linear: Tensor,
    penalty: float,
    *,
    init: Tensor | None = None,
    iters: int = 5000,
    tol: float = 1e-10,
) -> Tensor:
    """The LASSO in Gram form: ``argmin_w  w' gram w / 2 - linear' w + penalty * ||w||_1``
    (that is ``||Z - sum_c w_c A_c||^2 / 2 + penalty ||w||_1`` up to a constant), by accelerated
    proximal gradient (FISTA, step 1 / the largest eigenvalue, momentum restarted when it points
    against the step: O'Donoghue and Candes' gradient scheme) from ``init`` (zero if None); stops
    when an iterate moves by at most ``tol`` times its norm. gram [N, N] positive semi-definite,
    linear [N]; returns w [N]."""
    lip = float(torch.linalg.eigvalsh(gram)[-1])
    w = torch.zeros_like(linear) if init is None else init.clone()
    if lip <= 0:
        return w
    cut = penalty / lip
    y, t = w, 1.0
    for _ in range(iters):
        v = y - (gram @ y - linear) / lip
        nxt = torch.sign(v) * (v.abs() - cut).clamp_min(0)
        if float((y - nxt) @ (nxt - w)) > 0:  # restart the momentum
            t_next, y = 1.0, nxt
        else:
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = nxt + ((t - 1) / t_next) * (nxt - w)
        step = float((nxt - w).norm())
        w, t = nxt, t_next
        if step <= tol * max(float(w.norm()), 1e-300):
            break
    return w


def lasso_support(gram: Tensor, linear: Tensor, n: int, *, steps: int = 40) -> list[int]:
    """``n`` channels chosen by the LASSO (Channel Pruning, He et al. 2017): the penalty is
    bisected (on a log scale, ``steps`` halvings) to the largest one whose support holds at least
    ``n`` channels; if that support holds more, the n with the largest ``|w_c| sqrt(gram_cc)``
    (their contributions' norms) are kept. Sorted indices."""
    N = gram.shape[0]
    n = check_int("n", n, minimum=1, maximum=N)
    hi = float(linear.abs().max())  # at or above this penalty every weight is zero
    if hi <= 0:
        return list(range(n))
    lo = hi * 1e-8
    best = lasso_gram(gram, linear, lo)
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        w = lasso_gram(gram, linear, mid, init=best)  # warm start from the denser solution
        if int((w != 0).sum()) >= n:
            lo, best = mid, w
        else:
            hi = mid
    size = (best.abs() * gram.diagonal().clamp_min(0).sqrt()).tolist()
    order = sorted(range(N), key=lambda c: (-size[c], c))
    return sorted(order[:n])
