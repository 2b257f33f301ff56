"""Greedy selection on squared-loss feature objectives whose rows are sharded over processes.

Each process (rank) of a ``torch.distributed`` job holds a contiguous block of rows
``[row_offset, row_offset + N_r)`` of the ``[N, m]`` (or ``[N, m, c]``) features and the whole
target. Launch with ``torchrun`` (or any launcher that sets the usual environment variables), call
``torch.distributed.init_process_group`` ("gloo" on CPU, "nccl" on GPU), or
``greedyprune.dist.init_from_env(device)``, which does that from ``torchrun``'s environment and
closes the group at exit, then::

    from greedyprune import dist
    from greedyprune.select import sharded_greedy_select

    lo, count = dist.shard_range(N)                      # this rank's rows
    sel = sharded_greedy_select(features[lo:lo + count], target, n)
    if dist.is_main():
        sel.save("selection.json")

Two methods:

- ``method="central"`` (the default) is exact greedy over all N rows: every step, each rank scores
  its own rows with one matrix-vector product, then one all-gather of (best score, its global
  index, its feature row) from every rank lets all ranks commit the same global argmin, ties to the
  lowest global index as in one process, and add the same row to their copy of the running sum.
  The loop is ``greedy_select``'s own: :class:`ShardedSquaredLoss` is an objective like any other,
  over a :class:`~greedyprune.select.SquaredLoss` of this rank's rows read through its public
  interface (``rows``, ``row_sqnorms``, ``running_sum``, ``n_points``, ``add_feature``).
- ``method="greedi"`` is the two-round GreeDi of Mirzasoleiman et al. (2013): each rank runs greedy
  on its own rows alone, the local picks (indices and rows) are all-gathered, greedy runs again on
  their union, and the best of the union's solution and the local solutions is returned. It needs
  two rounds of communication in all instead of one per step, at the price of an approximation.

Without an initialised process group every function here runs as a world of one process.
"""

from __future__ import annotations

import bisect
import math

import torch
import torch.distributed as tdist
from torch import Tensor

from greedyprune.dist import (
    all_gather,
    broadcast,
    check_world,
    comm_device,
    is_distributed,
    is_main,
    rank,
    world_size,
)
from greedyprune.errors import GreedypruneError, GreedypruneTypeError, check_choice, refuse

from ._checks import check_bool, check_positive_int
from ._greedy import greedy_select
from ._objectives import DEFAULT_MAX_BYTES, SquaredLoss
from ._selection import Selection

__all__ = ["METHODS", "ShardedSquaredLoss", "sharded_greedy_select"]

METHODS = ("central", "greedi")


def _encode_count(v) -> int:
    """-1 for None, -3 for anything but an int >= 0 (checked collectively), else the int."""
    if v is None:
        return -1
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        return -3
    return v


def _dtype_code(dtype) -> int:
    codes = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    return codes.index(dtype) if dtype in codes else -1


# -- the sharded objective -------------------------------------------------------------------------
class ShardedSquaredLoss:
    """``SquaredLoss`` over features whose rows are split among the ranks of a process group.

    features_shard: this rank's rows ``[N_r, m]`` or ``[N_r, m, c]``, global rows
        ``[row_offset, row_offset + N_r)``; target: ``[m]`` / ``[m, c]``, the same on every rank.
    row_offset: this rank's first global row; None on every rank stacks the shards in rank order
        (rank 0 first). n_total: N; None takes the sum of the shards' rows.

    Candidates are global indices ``0..N-1``; ``greedy_select(obj, n)`` runs exact greedy over all
    of them with one all-gather per step (see the module's docstring). The running sum of the
    subnetwork is kept on every rank. Construction is collective (every rank must construct it
    with consistent arguments) and validates collectively: a bad input on one rank raises on all.
    Supports the fused exact step (``supports_fused_step``); not supported:
    ``weights="corrective"`` (``supports_corrective`` is False), backward elimination.
    """

    supports_fused_step = True
    supports_corrective = False

    def __init__(
        self,
        features_shard: Tensor,
        target: Tensor,
        *,
        row_offset: int | None = None,
        n_total: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        W, me = world_size(), rank()
        comm = comm_device()
        is_tensor = isinstance(features_shard, Tensor) and features_shard.dim() >= 1
        n_r = int(features_shard.shape[0]) if is_tensor else -1
        width = math.prod(features_shard.shape[1:]) if is_tensor else -1
        layout = torch.tensor(
            [
                _encode_count(row_offset),
                n_r,
                _encode_count(n_total),
                width,
                _dtype_code(features_shard.dtype) if is_tensor else -2,
            ],
            dtype=torch.int64,
            device=comm,
        )
        table = all_gather(layout).cpu().tolist()
        offsets, counts = self._check_layout(table, W)
        self.row_offset, self.n_local = offsets[me], counts[me]
        self.row_end = self.row_offset + self.n_local
        self.n_candidates = sum(counts)
        self.world_size, self.rank = W, me
        self._offsets, self._counts = offsets, counts
        self._starts = sorted(zip(offsets, range(W)))

        # Local validation (shapes, dtypes, finiteness) by SquaredLoss itself, then agreement.
        err: Exception | None = None
        try:
            self._local = SquaredLoss(features_shard, target, max_bytes=max_bytes)
            t = target.detach().double().cpu()
            summary = [0.0, float(t.sum()), float(t.pow(2).sum())]
        except (ValueError, TypeError) as e:
            err, summary = e, [1.0, 0.0, 0.0]
        flags = all_gather(torch.tensor(summary, dtype=torch.float64, device=comm)).cpu()
        failed = [q for q in range(W) if flags[q, 0] != 0]
        if err is not None:
            raise err
        if failed:
            raise GreedypruneError(
                f"rank(s) {failed} rejected their features_shard or target (see their error)"
            )
        if not bool((flags[:, 1:] == flags[0, 1:]).all()):
            raise GreedypruneError(
                "target differs between ranks: every rank must pass the same target tensor"
            )
        self._comm = comm
        self._width = width
        self._msg = torch.empty(2 + width, dtype=torch.float64, device=comm)
        self._buffers: tuple[Tensor, Tensor, Tensor] | None = None
        self._pending: tuple[int, Tensor] | None = None

    @staticmethod
    def _check_layout(table: list[list[int]], W: int) -> tuple[list[int], list[int]]:
        """Offsets and counts of all ranks from the gathered layouts; the same error on every rank."""
        counts = [row[1] for row in table]
        if any(row[0] == -3 or row[2] == -3 for row in table):
            raise GreedypruneTypeError(
                "row_offset and n_total must be None or an int >= 0 on every rank"
            )
        if any(c < 0 for c in counts) or any(row[4] == -2 for row in table):
            bad = [q for q in range(W) if table[q][1] < 0 or table[q][4] == -2]
            raise GreedypruneTypeError(
                f"features_shard must be a torch.Tensor [N_r, m] or [N_r, m, c] on every rank; "
                f"rank(s) {bad} passed something else"
            )
        totals = {row[2] for row in table}
        if len(totals) > 1:
            raise GreedypruneError(f"n_total differs between ranks: {sorted(totals)}")
        given_total = totals.pop()
        n_rows = given_total if given_total >= 0 else sum(counts)
        check_world(n_rows, W)
        empty = [q for q in range(W) if counts[q] == 0]
        if empty:
            raise GreedypruneError(
                f"rank(s) {empty} hold no rows (world size {W}, {n_rows} rows): give every rank "
                f"at least one row, e.g. with greedyprune.dist.shard_range"
            )
        if sum(counts) != n_rows:
            raise GreedypruneError(
                f"the shards hold {sum(counts)} rows in all (per rank: {counts}) but n_total="
                f"{n_rows}"
            )
        widths = {row[3] for row in table}
        if len(widths) > 1:
            raise refuse(
                "features' values per row", sorted(widths), "one number, the same on every rank",
                argument="features",
            )  # fmt: skip
        if len({row[4] for row in table}) > 1:
            raise GreedypruneTypeError("features_shard must have the same dtype on every rank")
        given = [row[0] for row in table]
        if all(o < 0 for o in given):
            offsets = [sum(counts[:q]) for q in range(W)]
        elif any(o < 0 for o in given):
            raise GreedypruneError(
                "pass row_offset on every rank or on none (None stacks in rank order)"
            )
        else:
            offsets = given
            end = 0
            for o, q in sorted(zip(offsets, range(W))):
                if o != end:
                    raise GreedypruneError(
                        f"the shards must tile rows [0, {n_rows}) without gaps or overlaps; rank "
                        f"{q} starts at row {o}, expected {end} (offsets {offsets}, rows {counts})"
                    )
                end = o + counts[q]
        return offsets, counts

    # -- state ---------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._local.device

    @property
    def dtype(self) -> torch.dtype:
        return self._local.dtype

    @property
    def target(self) -> Tensor:
        return self._local.target

    @property
    def features(self) -> Tensor:
        """This rank's rows (global rows ``[row_offset, row_end)``)."""
        return self._local.features

    @property
    def size(self) -> int:
        return self._local.size

    def owner(self, index: int) -> int:
        """The rank that holds global row ``index``."""
        j = bisect.bisect_right(self._starts, (int(index), self.world_size)) - 1
        return self._starts[j][1]

    def reset(self) -> None:
        self._local.reset()
        self._pending = None

    def prediction(self) -> Tensor:
        return self._local.prediction()

    def current_loss(self) -> float:
        return self._local.current_loss()

    def _row(self, index: int) -> Tensor:
        """Global row ``index`` (float64, flattened, on the communication device) on every rank."""
        q = self.owner(index)
        buf = self._msg[2:].clone()
        if q == self.rank:
            buf.copy_(self._local.rows[index - self.row_offset])
        return broadcast(buf, q)

    def add(self, index: int) -> None:
        i = int(index)
        if not 0 <= i < self.n_candidates:
            raise GreedypruneError(f"index {i} outside [0, {self.n_candidates})")
        if self._pending is not None and self._pending[0] == i:
            row = self._pending[1]
        else:
            row = self._row(i)
        local = self._local
        local.add_feature(row)
        self._pending = None

    # -- scoring -------------------------------------------------------------------------------------
    def losses(self, candidates: Tensor | None = None) -> Tensor:
        """Tensor [K] on every rank: the loss after adding each global candidate.

        Each rank scores the candidates it holds; one all-reduce (sum, with zeros elsewhere)
        assembles them. Used off the fast path (stochastic greedy, NaN fallback).
        """
        if candidates is None:
            candidates = torch.arange(self.n_candidates, device=self.device)
        cand = candidates.to(self.device)
        mine = (cand >= self.row_offset) & (cand < self.row_end)
        out = torch.zeros(cand.numel(), dtype=torch.float64, device=self._comm)
        if bool(mine.any()):
            local = self._local.losses(cand[mine] - self.row_offset)
            out[mine.to(self._comm)] = local.to(dtype=torch.float64, device=self._comm)
        if is_distributed() and self.world_size > 1:
            tdist.all_reduce(out)
        return out.to(dtype=self.dtype, device=self.device)

    def best_addition(self, blocked: Tensor | None = None) -> tuple[int, float]:
        """The exact greedy step over all N global candidates: ``(index, loss after adding it)``.

        The same scores as ``SquaredLoss.best_addition`` on the full features (``||phi_i||^2 +
        2 <R, phi_i>``, one ``addmv`` over this rank's rows); one all-gather of each rank's best
        (score, global index, row) then picks the smallest score, ties to the lowest global index.
        blocked: None or Tensor [N] (0 open, +inf closed), global.
        """
        local = self._local
        k = local.size + 1
        if self._buffers is None:
            r = torch.empty_like(local.running_sum)
            self._buffers = (r, r.view(-1), torch.empty_like(local.row_sqnorms))
        r, r_flat, u = self._buffers
        torch.add(local.running_sum, local.target, alpha=-k, out=r)
        torch.addmv(local.row_sqnorms, local.rows, r_flat, alpha=2, out=u)
        if blocked is not None:
            u.add_(blocked[self.row_offset : self.row_end])
        j = int(torch.argmin(u))
        msg = self._msg
        msg[0] = u[j]
        msg[1] = self.row_offset + j
        msg[2:].copy_(local.rows[j])
        table = all_gather(msg)
        heads = table[:, :2].cpu().tolist()
        self._pending = None
        if any(math.isnan(s) for s, _ in heads):
            # The loop falls back to ``losses`` for this step (which handles NaN).
            return int(heads[0][1]), math.nan
        score, gi, q = min((s, g, q) for q, (s, g) in enumerate(heads))
        self._pending = (int(gi), table[q, 2:])
        return int(gi), (score + float(r_flat.dot(r_flat))) / (2 * local.n_points * k * k)


# -- the entry point -------------------------------------------------------------------------------
def _shared_seed(comm: torch.device) -> int:
    seed = torch.randint(0, 2**62, (1,), dtype=torch.int64) if is_main() else torch.zeros(1)
    return int(broadcast(seed.to(dtype=torch.int64, device=comm), 0).item())


def sharded_greedy_select(
    features_shard: Tensor,
    target: Tensor,
    n: int,
    *,
    row_offset: int | None = None,
    n_total: int | None = None,
    replacement: bool = True,
    method: str = "central",
    candidates=None,
    stop=None,
    generator: torch.Generator | int | None = None,
    local_n: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
) -> Selection:
    """Greedy selection over rows sharded among the ranks; the same :class:`Selection` on all ranks.

    features_shard, target, row_offset, n_total: see :class:`ShardedSquaredLoss`. Indices in the
    result are global. Every rank must call it with the same n and options.
    method: "central" (exact greedy; picks what ``greedy_select(SquaredLoss(features, target), n)``
        picks on the full features in one process) or "greedi" (two rounds, see the module's
        docstring; ``local_n`` >= n steps per rank in round one, n by default).
    replacement, candidates, stop, generator: as in ``greedy_select`` ("central" only for
        candidates; with candidates=s and no generator, rank 0 draws a seed shared by all ranks).
        For "greedi", stop applies to round two.
    """
    if method not in METHODS:
        check_choice("method", method, METHODS)
    n = check_positive_int("n", n)
    replacement = check_bool("replacement", replacement)
    if method == "central":
        if local_n is not None:
            raise GreedypruneError("local_n is an option of method='greedi' only")
        obj = ShardedSquaredLoss(
            features_shard, target, row_offset=row_offset, n_total=n_total, max_bytes=max_bytes
        )
        if candidates is not None and generator is None:
            generator = _shared_seed(obj._comm)
        sel = greedy_select(
            obj,
            n,
            replacement=replacement,
            candidates=candidates,
            stop=stop,
            generator=generator,
            progress=progress and is_main(),
        )
        sel.info["distributed"] = _info(obj, "central")
        return sel
    if candidates is not None:
        raise GreedypruneError(
            "method='greedi' runs exact greedy in both rounds; pass candidates=None"
        )
    return _greedi(
        features_shard,
        target,
        n,
        row_offset=row_offset,
        n_total=n_total,
        replacement=replacement,
        stop=stop,
        local_n=local_n,
        max_bytes=max_bytes,
        progress=progress,
    )


def _info(obj: ShardedSquaredLoss, method: str, **extra) -> dict:
    return {
        "method": method,
        "world_size": obj.world_size,
        "row_offsets": list(obj._offsets),
        "rows": list(obj._counts),
        **extra,
    }


def _greedi(
    features_shard,
    target,
    n,
    *,
    row_offset,
    n_total,
    replacement,
    stop,
    local_n,
    max_bytes,
    progress,
) -> Selection:
    obj = ShardedSquaredLoss(
        features_shard, target, row_offset=row_offset, n_total=n_total, max_bytes=max_bytes
    )
    N, comm = obj.n_candidates, obj._comm
    if not replacement and n > N:
        raise GreedypruneError(
            f"n={n} exceeds the {N} candidates; without replacement pass n <= {N} or replacement=True"
        )
    local_n = n if local_n is None else check_positive_int("local_n", local_n)
    if local_n < n:
        raise GreedypruneError(f"local_n={local_n} must be >= n={n} (each rank's round-one size)")

    # Round one: greedy on this rank's rows alone.
    local = obj._local
    k_r = local_n if replacement else min(local_n, obj.n_local)
    sel_r = greedy_select(local, k_r, replacement=replacement)
    local.reset()
    picks = torch.unique(sel_r.order)  # local indices, ascending
    P, D = int(picks.numel()), obj._width
    # One message per rank: [k_r, P, evaluations | losses (local_n) | order (local_n) |
    # picks (local_n) | rows (local_n x D)], float64, padded.
    msg = torch.full((3 + 3 * local_n + local_n * D,), -1.0, dtype=torch.float64)
    msg[:3] = torch.tensor([k_r, P, sel_r.evaluations], dtype=torch.float64)
    msg[3 : 3 + k_r] = sel_r.losses
    msg[3 + local_n : 3 + local_n + k_r] = (sel_r.order + obj.row_offset).double()
    msg[3 + 2 * local_n : 3 + 2 * local_n + P] = (picks + obj.row_offset).double()
    rows = msg[3 + 3 * local_n :].view(local_n, D)
    rows[:P] = local.rows.index_select(0, picks.to(local.device)).double().cpu()
    table = all_gather(msg.to(comm)).cpu()

    ks = [int(t) for t in table[:, 0]]
    ps = [int(t) for t in table[:, 1]]
    idx = torch.cat(
        [table[q, 3 + 2 * local_n : 3 + 2 * local_n + ps[q]] for q in range(obj.world_size)]
    )
    urows = torch.cat(
        [table[q, 3 + 3 * local_n :].view(local_n, D)[: ps[q]] for q in range(obj.world_size)]
    )
    idx, perm = torch.sort(idx.long())
    urows = urows.index_select(0, perm)
    U = urows.to(dtype=local.dtype, device=local.device).view(len(idx), *local.pred_shape)

    # Round two on the union, on rank 0; the result goes to every rank.
    out = torch.zeros(2 + 2 * n, dtype=torch.float64)
    if is_main():
        sel_u = greedy_select(
            SquaredLoss(U, obj.target, max_bytes=max_bytes),
            n,
            replacement=replacement,
            stop=stop,
            progress=progress,
        )
        L = sel_u.n
        out[0], out[1] = L, sel_u.evaluations
        out[2 : 2 + L] = idx[sel_u.order].double()
        out[2 + n : 2 + n + L] = sel_u.losses
    out = broadcast(out.to(comm), 0).cpu()
    L = int(out[0])
    order, losses = out[2 : 2 + L].long(), out[2 + n : 2 + n + L]
    chosen = "union"
    # The best of the union's solution and the local solutions at the same size (GreeDi's rule).
    best = float(losses[L - 1])
    for q in range(obj.world_size):
        if ks[q] >= L and float(table[q, 3 + L - 1]) < best:
            best = float(table[q, 3 + L - 1])
            order = table[q, 3 + local_n : 3 + local_n + L].long()
            losses = table[q, 3 : 3 + L].clone()
            chosen = f"local:{q}"
    evaluations = int(table[:, 2].sum()) + int(out[1])
    sel = Selection.from_order(
        order,
        losses,
        N,
        evaluations=evaluations,
        method="greedi" + ("" if replacement else "_norepl"),
    )
    sel.info = {
        "replacement": replacement,
        "candidates_per_step": None,
        "weights": "average",
        "distributed": _info(obj, "greedi", local_n=local_n, union_size=len(idx), chosen=chosen),
    }
    return sel
