"""Objectives: the loss of "current subnetwork + candidate i" for a batch of candidates at once.

The selection loop (``greedy_select``) only decides which candidate to commit; an objective holds
the state of the growing subnetwork and scores candidates. Any object with the methods of
:class:`Objective` can be used, so a front end (a CNN, a deep network) brings its own.

The subnetwork of a multiset S of neurons is the average ``f_S = (1/|S|) sum_{i in S} phi_i``; adding
candidate i to a size-k subnetwork gives ``(k f_S + phi_i) / (k + 1)``, the Frank-Wolfe step of size
1/(k+1). Feature objectives keep ``total = k * f_S`` and ``size = k``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from greedyprune.errors import GreedypruneError, GreedypruneTypeError, check_int, refuse

from ._checks import check_finite, check_same_device, check_same_dtype, check_tensor
from ._simplex import simplex_terms

__all__ = [
    "DEFAULT_MAX_BYTES",
    "CrossEntropyLoss",
    "ElementwiseLoss",
    "FactoredSquaredLoss",
    "FeatureObjective",
    "Objective",
    "SquaredLoss",
]

#: default memory budget for one chunk of candidate predictions (bytes)
DEFAULT_MAX_BYTES = 256 * 2**20

#: values per block of the setup pass (``_checked_sqnorms``): under torch's parallel grain size
#: (32768), so each block's two ops run in the calling thread, with no intra-op thread to wait for
_SETUP_BLOCK_ELEMENTS = 32_000
#: bytes per block when even two rows exceed ``_SETUP_BLOCK_ELEMENTS`` (the ops are parallel then):
#: few, cache-sized blocks
_SETUP_BLOCK_BYTES = 4 * 2**20


@runtime_checkable
class Objective(Protocol):
    """What the selection loop needs from an objective.

    n_candidates: N, the number of candidate neurons (indices 0..N-1).
    size: k, how many neurons (counted with repeats) the current subnetwork holds.
    losses(candidates): Tensor [K], the loss after adding each candidate with the 1/(k+1) step;
        ``candidates`` is a LongTensor [K] on the objective's device, or None for all N.
    add(index): commit a candidate.
    current_loss(): the loss of the current subnetwork (of the zero function when empty).
    reset(): back to the empty subnetwork.

    Optional capabilities are declared, not discovered: ``greedy_select`` reads these two
    attributes (an objective that does not define them has neither capability) and never probes
    for methods.

    supports_fused_step: True if the objective has ``best_addition(blocked) -> (index, loss)``,
        the exact step over all N candidates in one call (``blocked``: None, or Tensor [N] of
        ``dtype`` on ``device``, 0 for an open candidate and +inf for a closed one), plus
        ``dtype`` and ``device``. Exact greedy with average weights then takes it instead of
        ``losses(None)``; a non-finite loss hands the step back to ``losses``.
    supports_corrective: True if ``weights="corrective"`` may run on it: a squared loss
        ``||f - target||^2 / 2`` with ``simplex_terms(indices) -> (gram [k, k], lin [k], const)``
        (that loss of ``sum_j w_j phi_{indices[j]}`` is ``(w' gram w - 2 lin' w + const) / 2``),
        ``set_weights(indices, weights)`` (make the subnetwork ``sum_j w_j phi_{indices[j]}``) and
        ``linesearch_losses(candidates)`` (the exact line search of each candidate).
    supports_feature_reads: True if the objective holds its features and target where a method
        can read them: ``target`` and ``feature_rows(index) -> [K, m(, c)]`` (what the provable
        peers, :func:`~greedyprune.select.ispasp` and sensitivity sampling, read).
    supports_removal: True if the objective has ``removal_losses(candidates) -> [K]`` (the loss
        after removing each candidate from the subnetwork once) and ``remove(index)``: what
        :func:`~greedyprune.select.backward_elimination` needs.
    supports_feature_norms: True if the objective has ``feature_norms() -> [N]``: what
        :func:`~greedyprune.select.magnitude` ranks by when no ``scores`` are given.
    """

    n_candidates: int
    supports_fused_step: bool = False
    supports_corrective: bool = False
    supports_feature_reads: bool = False
    supports_removal: bool = False
    supports_feature_norms: bool = False

    @property
    def size(self) -> int: ...

    def losses(self, candidates: Tensor | None) -> Tensor: ...

    def add(self, index: int) -> None: ...

    def current_loss(self) -> float: ...

    def reset(self) -> None: ...


def _check_max_bytes(max_bytes) -> None:
    check_int("max_bytes", max_bytes, minimum=1)  # bytes per chunk of candidate predictions


def _chunks(n: int, chunk: int):
    for start in range(0, n, chunk):
        yield start, min(n, start + chunk)


def _block_sizes(n: int, rows: int) -> list[int]:
    """Rows per block: ``rows`` each, no block of one row (n >= 2, rows >= 2)."""
    sizes = [rows] * (n // rows)
    rest = n % rows
    if rest == 1 and sizes:
        if rows >= 3:
            sizes[-1] -= 1
            sizes.append(2)
        else:
            sizes[-1] += 1
    elif rest:
        sizes.append(rest)
    return sizes


def _checked_sqnorms(name: str, flat: Tensor) -> Tensor:
    """Tensor [N]: ``flat.pow(2).sum(1)`` bit for bit, and the finiteness check of ``flat`` [N, D].

    The setup pass of the squared losses. Instead of ``check_finite`` (which materialises [N, D]
    masks and temporaries) and ``pow(2)`` (an [N, D] copy), it reads the rows once and reads
    finiteness off the squared norms: a row holding a NaN or an inf has a NaN or inf squared norm
    (squares are >= 0, so no inf - inf can cancel), hence every non-finite value lies in a flagged
    row. A finite row whose squared norm overflows is flagged too; flagged rows, and only they, get
    the exact element check, so the function raises if and only if ``flat`` holds a NaN or an inf,
    with ``check_finite``'s message and count; large-but-finite rows pass (with an inf norm, as
    before).

    On the CPU a contiguous ``flat`` is squared block by block into a small reused buffer and each
    block summed into its slice of the result: no [N, D] allocation. Blocks hold under
    ``_SETUP_BLOCK_ELEMENTS`` values, so torch runs them in the calling thread: many small parallel
    ops each wait for every intra-op thread, and on a machine shared with other processes those
    waits cost more than the pass (1-4 MiB parallel blocks took 5-80 GEMVs, 30-row serial ones 2).
    Rows too long for two of them to fit go in parallel blocks of about ``_SETUP_BLOCK_BYTES``. A
    CPU sum reduces each row within one thread with the same loop whatever the number of rows,
    except for a single row (a one-output sum is split across threads), so no block has one row
    unless N = 1. Elsewhere ``flat.pow(2).sum(1)`` as is.
    """
    n, d = flat.shape
    if flat.device.type != "cpu" or not flat.is_contiguous() or n < 2:
        sq = flat.pow(2).sum(1)
    else:
        rows = _SETUP_BLOCK_ELEMENTS // max(1, d)
        if rows < 2:
            rows = max(2, _SETUP_BLOCK_BYTES // max(1, d * flat.element_size()))
        sizes = _block_sizes(n, rows)
        sq = torch.empty(n, dtype=flat.dtype)
        buf = torch.empty(max(sizes), d, dtype=flat.dtype)
        for block, out in zip(flat.split(sizes), sq.split(sizes)):
            square = buf[: block.shape[0]]
            torch.mul(block, block, out=square)
            torch.sum(square, 1, out=out)
    flagged = ~torch.isfinite(sq)
    if bool(flagged.any()):
        check_finite(name, flat[flagged])
    return sq


class FeatureObjective:
    """Base of the objectives over cached features ``features: [N, m]`` or ``[N, m, c]``.

    Subclasses define ``_loss_of(pred: [K, m(, c)]) -> [K]``; the base class gives the bookkeeping,
    removal (for backward elimination), re-weighting (for the corrective variant) and chunking so a
    chunk of candidate predictions stays within ``max_bytes``. It declares no optional capability
    (see :class:`Objective`) beyond removal and feature norms: the squared losses set
    ``supports_corrective`` (and ``SquaredLoss`` ``supports_fused_step``).
    """

    supports_fused_step: bool = False
    supports_corrective: bool = False
    supports_removal: bool = True
    supports_feature_norms: bool = True

    def __init__(self, features: Tensor, *, max_bytes: int = DEFAULT_MAX_BYTES):
        check_tensor("features", features, ndims=(2, 3))
        self._setup_features(features)
        _check_max_bytes(max_bytes)
        self.features = features
        self.n_candidates = int(features.shape[0])
        self.max_bytes = max_bytes
        self.reset()

    def _setup_features(self, features: Tensor) -> None:
        """The one pass over the features at construction: raise on NaN or inf in them.

        A subclass that caches something per row overrides it to compute that in the same pass.
        """
        check_finite("features", features)

    # -- state -------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.features.device

    @property
    def dtype(self) -> torch.dtype:
        return self.features.dtype

    @property
    def size(self) -> int:
        return self._size

    @property
    def pred_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[1:])

    def reset(self) -> None:
        self._total = torch.zeros(self.pred_shape, dtype=self.dtype, device=self.device)
        self._size = 0

    def prediction(self) -> Tensor:
        """Tensor [m(, c)]: the current subnetwork's output on the data (zeros when empty)."""
        return self._total / self._size if self._size > 0 else self._total.clone()

    def feature_rows(self, index: Tensor) -> Tensor:
        """Tensor [K, m(, c)]: the features of candidates ``index`` (LongTensor [K] on ``device``)."""
        return self.features.index_select(0, index)

    def _feature(self, i: int) -> Tensor:
        return self.features[i]

    def add(self, index: int) -> None:
        self._total += self._feature(int(index))
        self._size += 1

    def remove(self, index: int) -> None:
        if self._size < 1:
            raise GreedypruneError("cannot remove from an empty subnetwork")
        self._total = self._total - self._feature(int(index))
        self._size -= 1

    def set_weights(self, indices: Tensor, weights: Tensor) -> None:
        """Make the current subnetwork ``sum_j weights[j] * phi_{indices[j]}`` (size unchanged)."""
        w = weights.to(dtype=self.dtype, device=self.device)
        rows = self.feature_rows(indices.to(self.device))
        self._total = self._size * torch.tensordot(w, rows, dims=1)

    def simplex_terms(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The corrective rule's problem on ``indices`` [k] (see :class:`Objective`); squared
        losses only (they have a ``target``)."""
        return simplex_terms(self.feature_rows(indices), self.target)

    def feature_norms(self) -> Tensor:
        """Tensor [N]: ||phi_i|| with ||h||^2 = (1/m) sum over data (and outputs)."""
        m = self.features.shape[1]
        return (self.features.reshape(self.n_candidates, -1).pow(2).sum(1) / m).sqrt()

    # -- scoring -----------------------------------------------------------------------------------
    def _chunk_size(self) -> int:
        per = max(1, int(torch.Size(self.pred_shape).numel()) * self.features.element_size() * 3)
        return max(1, self.max_bytes // per)

    def _scores(self, candidates: Tensor | None, sign: int) -> Tensor:
        k = self._size + sign
        if candidates is None:
            candidates = torch.arange(self.n_candidates, device=self.device)
        out = []
        for a, b in _chunks(candidates.numel(), self._chunk_size()):
            rows = self.feature_rows(candidates[a:b])
            pred = (self._total.unsqueeze(0) + sign * rows) / k
            out.append(self._loss_of(pred))
        return torch.cat(out)

    def losses(self, candidates: Tensor | None = None) -> Tensor:
        return self._scores(candidates, +1)

    def removal_losses(self, candidates: Tensor | None = None) -> Tensor:
        """Tensor [K]: the loss after removing each candidate once (it must be in the subnetwork)."""
        if self._size < 2:
            raise GreedypruneError("removal needs a subnetwork of at least 2 neurons")
        return self._scores(candidates, -1)

    def current_loss(self) -> float:
        return float(self._loss_of(self.prediction().unsqueeze(0))[0])

    def linesearch_losses(self, candidates: Tensor | None = None) -> Tensor:
        """Tensor [K]: ``min over g in [0, 1]`` of the loss of ``(1 - g) f + g phi_i`` (squared loss).

        The exact line search of Frank-Wolfe from the current (possibly re-weighted) subnetwork f:
        g = 0 is allowed, so the best candidate never raises the loss. Two matrix-vector products.
        """
        if not self.supports_corrective:
            raise GreedypruneTypeError(
                f"{type(self).__name__} has no closed-form line search (squared losses only)"
            )
        f = self.prediction()
        r = f - self.target
        sq = self._sqnorms if candidates is None else self._sqnorms.index_select(0, candidates)
        r_phi, f_phi = self._inner(r, candidates), self._inner(f, candidates)
        terms = (r.pow(2).sum(), (r * f).sum(), f.pow(2).sum())
        return linesearch(*terms, r_phi, f_phi, sq) / (2 * self._m)

    def _loss_of(self, pred: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def linesearch(r_r, r_f, f_f, r_phi: Tensor, f_phi: Tensor, sq: Tensor) -> Tensor:
    """``min over g in [0, 1]`` of ``||(1 - g) f + g phi - t||^2`` per candidate, from inner
    products: ``r = f - t``; r_r, r_f, f_f: <r, r>, <r, f>, <f, f>; r_phi, f_phi, sq [K]: <r, phi>,
    <f, phi>, <phi, phi>. The direction is d = phi - f; g = 0 is allowed."""
    r_d = r_phi - r_f
    d_d = (sq - 2 * f_phi + f_f).clamp_min(0)
    safe = torch.where(d_d > 0, d_d, torch.ones_like(d_d))
    g = torch.where(d_d > 0, (-r_d / safe).clamp(0, 1), torch.zeros_like(d_d))
    return r_r + 2 * g * r_d + g * g * d_d


def _check_target(features: Tensor, target: Tensor, name: str = "target") -> Tensor:
    check_tensor(name, target, ndims=(1, 2))
    check_finite(name, target)
    check_same_device(features=features, **{name: target})
    check_same_dtype(features=features, **{name: target})
    if tuple(target.shape) != tuple(features.shape[1:]):
        want = tuple(features.shape[1:])
        raise refuse(
            f"{name}.shape",
            tuple(target.shape),
            f"{want}, features' shape without N",
            argument=name,
        )
    return target


class SquaredLoss(FeatureObjective):
    """``L(f) = ||f - target||^2 / 2`` with ``||h||^2 = (1/m) sum_j |h(x_j)|^2`` (summed over outputs).

    features: [N, m] or [N, m, c]; target: [m] or [m, c], same device and dtype.
    One step costs one matrix-vector product with the cached features: the loss of adding i is
    ``(||R||^2 + 2 <R, phi_i> + ||phi_i||^2) / (2 m (k+1)^2)`` with ``R = total - (k+1) target``.
    Supports the fused exact step (``best_addition``) and the corrective variant.
    """

    supports_fused_step = True
    supports_corrective = True
    supports_feature_reads = True

    def __init__(self, features: Tensor, target: Tensor, *, max_bytes: int = DEFAULT_MAX_BYTES):
        super().__init__(features, max_bytes=max_bytes)
        self.target = _check_target(features, target)
        self._m = int(features.shape[1])
        self._step_buffers: tuple[Tensor, Tensor, Tensor] | None = None

    def _setup_features(self, features: Tensor) -> None:
        # The finiteness check and the squared norms in one pass (see _checked_sqnorms): about
        # one matrix-vector product's worth of memory traffic, where a separate check and
        # ``pow(2)`` cost tens.
        self._flat = features.reshape(features.shape[0], -1)
        self._sqnorms = _checked_sqnorms("features", self._flat)

    # -- the public interface of a front end that keeps the running sum itself (the sharded
    # objective adds rows held by other processes); read-only views, no copies
    @property
    def rows(self) -> Tensor:
        """Tensor [N, D]: the features flattened per candidate (D = m, or m * c)."""
        return self._flat

    @property
    def row_sqnorms(self) -> Tensor:
        """Tensor [N]: each row's squared norm, summed over D (not divided by m)."""
        return self._sqnorms

    @property
    def running_sum(self) -> Tensor:
        """Tensor [m(, c)]: the sum of the selected features (``size`` of them)."""
        return self._total

    @property
    def n_points(self) -> int:
        """m: the data points the norm averages over."""
        return self._m

    def add_feature(self, row: Tensor) -> None:
        """Add a feature that is not one of this objective's rows (``row``: m(, c) values, e.g.
        another process's row), as :meth:`add` adds one of its own."""
        self._total += row.to(dtype=self.dtype, device=self.device).view(self.pred_shape)
        self._size += 1

    def _loss_of(self, pred: Tensor) -> Tensor:
        d = (pred - self.target.unsqueeze(0)).reshape(pred.shape[0], -1)
        return d.pow(2).sum(1) / (2 * self._m)

    def _inner(self, vec: Tensor, candidates: Tensor | None) -> Tensor:
        rows = self._flat if candidates is None else self._flat.index_select(0, candidates)
        return rows @ vec.reshape(-1)

    def _scores(self, candidates: Tensor | None, sign: int) -> Tensor:
        k = self._size + sign
        r = (self._total - k * self.target).reshape(-1)
        if candidates is None:
            rows, sq = self._flat, self._sqnorms
        else:
            rows = self._flat.index_select(0, candidates)
            sq = self._sqnorms.index_select(0, candidates)
        # ||phi||^2 + 2 sign <R, phi> in one fused matrix-vector call, then two in-place ops.
        out = torch.addmv(sq, rows, r, alpha=2 * sign)
        return out.add_(r.dot(r)).mul_(1.0 / (2 * self._m * k * k))

    def best_addition(self, blocked: Tensor | None = None) -> tuple[int, float]:
        """The exact greedy step over all N candidates: ``(index, loss after adding it)``.

        blocked: None, or Tensor [N] (the features' dtype and device) holding 0 for an open
        candidate and +inf for a closed one (no replacement). Same scores as ``losses(None)`` up to
        the constant ``||R||^2`` and the positive factor, which do not move the argmin, so a step
        is one ``addmv`` into a preallocated buffer, one ``argmin`` and three scalar reads: at small
        N the loop's cost is these few calls, not the product.
        """
        k = self._size + 1
        if self._step_buffers is None:
            r = torch.empty_like(self._total)
            self._step_buffers = (r, r.view(-1), torch.empty_like(self._sqnorms))
        r, r_flat, u = self._step_buffers
        torch.add(self._total, self.target, alpha=-k, out=r)
        torch.addmv(self._sqnorms, self._flat, r_flat, alpha=2, out=u)
        if blocked is not None:
            u.add_(blocked)
        # argmin returns the first minimal index: ties go to the lowest index.
        j = int(torch.argmin(u))
        return j, (float(u[j]) + float(r_flat.dot(r_flat))) / (2 * self._m * k * k)


class CrossEntropyLoss(FeatureObjective):
    """Mean cross-entropy of the averaged logits against labels.

    features: [N, m, c] (each neuron's logits on the m data points); labels: LongTensor [m] in [0, c).
    """

    def __init__(self, features: Tensor, labels: Tensor, *, max_bytes: int = DEFAULT_MAX_BYTES):
        check_tensor("features", features, ndims=(3,))
        super().__init__(features, max_bytes=max_bytes)
        if not isinstance(labels, Tensor) or labels.dtype not in (torch.int64, torch.int32):
            raise GreedypruneTypeError(
                "labels must be an integer torch.Tensor [m]; convert with .long()"
            )
        if labels.dim() != 1 or labels.shape[0] != features.shape[1]:
            raise refuse("labels.shape", tuple(labels.shape), f"({features.shape[1]},)")
        check_same_device(features=features, labels=labels)
        c = features.shape[2]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= c):
            shown = f"{int(labels.min())}..{int(labels.max())}"
            raise refuse("labels", shown, f"within 0..{c - 1} for {c} classes")
        self.labels = labels.long()

    def _loss_of(self, pred: Tensor) -> Tensor:
        k, m, c = pred.shape
        ce = F.cross_entropy(pred.reshape(k * m, c), self.labels.repeat(k), reduction="none")
        return ce.view(k, m).mean(1)


class ElementwiseLoss(FeatureObjective):
    """Any elementwise loss: ``loss_fn(pred [K, m(, c)], target [1, m(, c)]) -> [K, m(, c)]``, averaged
    over everything but the candidate axis.

    features: [N, m] or [N, m, c]; target: a tensor broadcastable against one prediction [m(, c)].
    """

    def __init__(
        self,
        features: Tensor,
        target: Tensor,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        super().__init__(features, max_bytes=max_bytes)
        if not callable(loss_fn):
            raise refuse("loss_fn", loss_fn, "callable", wrong_type=True)
        if not isinstance(target, Tensor):
            raise refuse("target", target, "a torch.Tensor", wrong_type=True)
        check_finite("target", target)
        check_same_device(features=features, target=target)
        try:
            torch.broadcast_shapes(tuple(target.shape), self.pred_shape)
        except RuntimeError:
            raise GreedypruneError(
                f"target of shape {tuple(target.shape)} does not broadcast against one prediction "
                f"{self.pred_shape}"
            ) from None
        self.target = target
        self.loss_fn = loss_fn

    def _loss_of(self, pred: Tensor) -> Tensor:
        out = self.loss_fn(pred, self.target.unsqueeze(0))
        if out.shape[0] != pred.shape[0]:
            raise GreedypruneError(
                f"loss_fn must keep the candidate axis: returned shape {tuple(out.shape)} for "
                f"predictions of shape {tuple(pred.shape)}"
            )
        return out.reshape(pred.shape[0], -1).mean(1)


class FactoredSquaredLoss(FeatureObjective):
    """Squared loss over rank-one features ``phi_i = a_i w_i^T`` that are never materialised.

    activations: [N, m] (neuron i's activation on each data point); out_weights: [N, c] (its outgoing
    weights); target: [m, c]. Same loss as ``SquaredLoss`` on ``features[i] = outer(a_i, w_i)``:
    inner products come from one [N, m] x [m, c] product per step. Supports the corrective variant
    (not the fused step: exact greedy scores through ``losses``).
    """

    supports_corrective = True
    supports_feature_reads = True

    def __init__(
        self,
        activations: Tensor,
        out_weights: Tensor,
        target: Tensor,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        check_tensor("activations", activations, ndims=(2,))
        check_tensor("out_weights", out_weights, ndims=(2,))
        check_tensor("target", target, ndims=(2,))
        # Finiteness in the same pass as the row norms (see _checked_sqnorms), checked in the
        # order activations, out_weights, target as before.
        a_sq = _checked_sqnorms("activations", activations)
        w_sq = _checked_sqnorms("out_weights", out_weights)
        check_finite("target", target)
        check_same_device(activations=activations, out_weights=out_weights, target=target)
        check_same_dtype(activations=activations, out_weights=out_weights, target=target)
        n, m = activations.shape
        if out_weights.shape[0] != n:
            raise refuse(
                "out_weights.shape", tuple(out_weights.shape), f"({n}, c), a row per neuron"
            )
        c = out_weights.shape[1]
        if tuple(target.shape) != (m, c):
            raise refuse("target.shape", tuple(target.shape), f"({m}, {c})")
        _check_max_bytes(max_bytes)
        self.activations, self.out_weights, self.target = activations, out_weights, target
        # The base class's bookkeeping works on any tensor whose first axis indexes neurons.
        self.features = activations
        self.n_candidates, self._m, self.max_bytes = int(n), int(m), max_bytes
        self._sqnorms = a_sq * w_sq
        self.reset()

    @property
    def pred_shape(self) -> tuple[int, ...]:
        return tuple(self.target.shape)

    def _feature(self, i: int) -> Tensor:
        return torch.outer(self.activations[i], self.out_weights[i])

    def feature_rows(self, index: Tensor) -> Tensor:
        return self.activations.index_select(0, index).unsqueeze(2) * self.out_weights.index_select(
            0, index
        ).unsqueeze(1)

    def feature_norms(self) -> Tensor:
        return (self._sqnorms / self._m).sqrt()

    def set_weights(self, indices: Tensor, weights: Tensor) -> None:
        idx = indices.to(self.device)
        w = weights.to(dtype=self.dtype, device=self.device)
        a = self.activations.index_select(0, idx)
        ow = self.out_weights.index_select(0, idx) * w.unsqueeze(1)
        self._total = self._size * (a.T @ ow)

    def _loss_of(self, pred: Tensor) -> Tensor:
        d = (pred - self.target.unsqueeze(0)).reshape(pred.shape[0], -1)
        return d.pow(2).sum(1) / (2 * self._m)

    def _inner(self, vec: Tensor, candidates: Tensor | None) -> Tensor:
        a, w = self.activations, self.out_weights
        if candidates is not None:
            a, w = a.index_select(0, candidates), w.index_select(0, candidates)
        return ((a @ vec.reshape(self.pred_shape)) * w).sum(1)

    def _scores(self, candidates: Tensor | None, sign: int) -> Tensor:
        k = self._size + sign
        r = self._total - k * self.target  # [m, c]
        if candidates is None:
            inner = ((self.activations @ r) * self.out_weights).sum(1)
            sq = self._sqnorms
        else:
            a = self.activations.index_select(0, candidates)
            inner = ((a @ r) * self.out_weights.index_select(0, candidates)).sum(1)
            sq = self._sqnorms.index_select(0, candidates)
        return (r.pow(2).sum() + (2 * sign) * inner + sq) / (2 * self._m * k * k)
