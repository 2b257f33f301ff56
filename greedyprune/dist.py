"""Process groups, in one home: joining the group ``torchrun`` describes (:func:`init_from_env`,
closed at exit), rank and world size, rank-0 work (:func:`is_main`, :func:`main_first`,
:func:`from_main`), and the collectives the jobs use (:func:`all_gather`, :func:`broadcast`,
:func:`all_sum`, :func:`gather_mean`, :func:`local_slice`, :func:`shard_range`).

Without an initialised process group (or with one process) every function here acts as a world of
one process: rank 0 of 1, collectives that return their input. What each job does with K processes:

- **Selection over sharded features** (``greedyprune.select.sharded_greedy_select``): each rank
  holds a contiguous block of rows (:func:`shard_range`); see that module.
- **Pruning a layer** (``greedyprune.prune``): every rank draws the same global step batch from
  the run's seed and keeps its contiguous slice (:func:`local_slice`; rank r: images
  ``[r B/K, (r+1) B/K)``); each candidate's per-sample losses are gathered in rank order
  (:func:`gather_mean`), so the mean is taken over the global batch in the same order as one
  process: the same scores, and so the same picks. The evaluation set of the tolerance rule is
  split the same way and the correct counts are summed (:func:`all_sum`).
- **Fine-tuning**: ``DistributedDataParallel`` with a ``DistributedSampler``; the global batch size
  is the one asked for, split over the ranks.
- **Files**: rank 0 alone writes a run folder; the others take rank 0's answers about it
  (:func:`from_main`: is it valid, which units are done) or wait at a barrier and read it.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as tdist
from torch import Tensor

from greedyprune.errors import GreedypruneError, check_int

__all__ = [
    "all_gather",
    "all_sum",
    "barrier",
    "broadcast",
    "check_world",
    "comm_device",
    "from_main",
    "gather_mean",
    "init_from_env",
    "is_distributed",
    "is_main",
    "local_slice",
    "main_first",
    "rank",
    "shard_range",
    "world_size",
]

R = TypeVar("R")


# -- process-group helpers -------------------------------------------------------------------------
def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group."""
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    """This process's rank in the default group (0 without a process group)."""
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes in the default group (1 without a process group)."""
    return tdist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a plain, single process)."""
    return rank() == 0


def barrier() -> None:
    """``torch.distributed.barrier()`` inside a process group, nothing otherwise."""
    if is_distributed():
        tdist.barrier()


@contextlib.contextmanager
def main_first():
    """Run the body on rank 0 first, then on the other ranks (e.g. to build a cache once).

    Every rank must enter it. The other ranks wait at a barrier until rank 0 has left the body,
    even when rank 0's body raised, so no rank is left waiting.
    """
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def init_from_env(device: str) -> str:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1),
    with NCCL for a CUDA device and gloo for the CPU; returns this rank's device (``cuda:LOCAL_RANK``
    for ``cuda``). The collective timeout is ``GREEDYPRUNE_DIST_TIMEOUT`` seconds (default 600), so
    a rank that dies makes the others fail with a message instead of hanging."""
    kind = torch.device(device).type
    if is_distributed():
        backend = tdist.get_backend()
        if kind == "cuda" and backend == "gloo":
            raise GreedypruneError(
                f"device={device!r} in a process group launched with the gloo backend, which "
                "cannot reduce CUDA tensors here; launch with NCCL or pass --device cpu"
            )
        return device
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    backend = os.environ.get("GREEDYPRUNE_DIST_BACKEND", "nccl" if kind == "cuda" else "gloo")
    if kind == "cuda" and backend == "gloo":
        raise GreedypruneError(
            f"device={device!r} with GREEDYPRUNE_DIST_BACKEND=gloo: gloo runs on the CPU here; "
            "unset it (NCCL on GPUs) or pass --device cpu"
        )
    if kind == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise GreedypruneError(
                f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} CUDA devices; "
                "pass --nproc_per_node at most the number of GPUs"
            )
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    timeout = datetime.timedelta(seconds=float(os.environ.get("GREEDYPRUNE_DIST_TIMEOUT", "600")))
    tdist.init_process_group(backend, timeout=timeout)
    # The group we made is taken down when the interpreter exits. Left to C++ static destruction,
    # gloo's worker threads abort a rank now and then ("terminate called without an active
    # exception", SIGABRT) when ranks leave at different moments, e.g. on a resumed run with
    # nothing left to do.
    atexit.register(_close_group)
    return device


def _close_group() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def check_world(n_rows: int, world: int) -> None:
    """Refuse more ranks than rows: every rank needs at least one."""
    if world > n_rows:
        raise GreedypruneError(
            f"world size {world} is larger than the {n_rows} rows of the features: every rank "
            f"needs at least one row; launch at most {n_rows} processes"
        )


def shard_range(n_total: int, rank: int | None = None, world_size: int | None = None):
    """``(row_offset, count)`` of one rank's block in an even split of ``n_total`` rows.

    The first ``n_total % world_size`` ranks get one row more. rank and world_size default to this
    process's. Raises ValueError when there are more ranks than rows.
    """
    n_total = check_int("n_total", n_total, minimum=1)
    w = _world_size() if world_size is None else check_int("world_size", world_size, minimum=1)
    r = _rank() if rank is None else check_int("rank", rank, minimum=0)
    if r >= w:
        raise GreedypruneError(f"rank {r} must be below world_size {w}")
    check_world(n_total, w)
    base, extra = divmod(n_total, w)
    return r * base + min(r, extra), base + (1 if r < extra else 0)


_rank, _world_size = rank, world_size


# -- collectives -----------------------------------------------------------------------------------
def comm_device() -> torch.device:
    """Where tensors go for a collective: the current CUDA device under NCCL, the CPU otherwise."""
    if is_distributed() and "nccl" in str(tdist.get_backend()) and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather(t: Tensor) -> Tensor:
    """``[W, *t.shape]``: every rank's ``t`` (same shape and dtype on all ranks), in rank order."""
    if not is_distributed() or world_size() == 1:
        return t.unsqueeze(0).clone()
    parts = [torch.empty_like(t) for _ in range(world_size())]
    tdist.all_gather(parts, t.contiguous())
    return torch.stack(parts)


def broadcast(t: Tensor, src: int) -> Tensor:
    """``t`` as rank ``src`` holds it, on every rank (in place); ``t`` itself without a group."""
    if is_distributed() and world_size() > 1:
        tdist.broadcast(t, src=src)
    return t


# -- the collectives of the jobs --------------------------------------------------------------------
def local_slice(n: int) -> slice:
    """This rank's contiguous share of ``n`` items (``n`` divisible by the world size)."""
    k = world_size()
    if n % k:
        raise GreedypruneError(
            f"a batch of {n} images cannot be split evenly over {k} processes; pass a batch size "
            f"that is a multiple of {k}"
        )
    part = n // k
    return slice(rank() * part, (rank() + 1) * part)


def gather_mean(per_sample: Tensor) -> Tensor:
    """``per_sample: [K, B_local]`` losses of this rank's slice -> ``[K]`` means over the global
    batch, concatenated in rank order (the one-process order)."""
    if not is_distributed():
        return per_sample.mean(1)
    parts = [torch.empty_like(per_sample) for _ in range(world_size())]
    tdist.all_gather(parts, per_sample.contiguous())
    return torch.cat(parts, dim=1).mean(1)


def all_sum(*values: float) -> list[float]:
    """Sums of plain numbers over the ranks (float64 on the CPU, or on this rank's CUDA device
    under NCCL)."""
    if not is_distributed():
        return [float(v) for v in values]
    device = "cuda" if tdist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return [float(v) for v in t.cpu()]


# -- rank-0 I/O ------------------------------------------------------------------------------------
def from_main(fn: Callable[[], R]) -> R:
    """``fn()`` run on rank 0 of a ``torch.distributed`` job, its result handed to every rank.

    Every rank must call it (it is a collective); the result must pickle. The ranks of a job
    agree on a run folder through it: rank 0 alone reads (or writes) the folder and the others
    take its answer, so a late or stale view of a shared file system on another node never makes
    them run different units (and wait forever in each other's collectives). A ``ValueError``
    raised on rank 0 (a bad ``out``, a folder of other settings) is raised on every rank as a
    ``GreedypruneError`` with the
    same message, so a bad input stops them all at once; any other exception there reaches the
    other ranks as a ``RuntimeError`` naming it. Without a process group (or with one process):
    ``fn()``.
    """
    if world_size() == 1:
        return fn()
    box: list[Any] = [None]
    if tdist.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as exc:
            kind = "value" if isinstance(exc, ValueError) else "other"
            box[0] = (kind, f"{type(exc).__name__}: {exc}" if kind == "other" else str(exc))
            tdist.broadcast_object_list(box, src=0)
            raise
        tdist.broadcast_object_list(box, src=0)
        return box[0][1]
    tdist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "value":
        raise GreedypruneError(value)
    if kind == "other":
        raise RuntimeError(f"rank 0 failed ({value})")
    return value
