"""Pruning over several processes with ``torch.distributed`` (launched by ``torchrun``).

What each part does with K processes (ranks):

- **Selection of a layer**: every rank draws the same global step batch from the run's seed and
  keeps its contiguous slice (rank r: images ``[r B/K, (r+1) B/K)``); each candidate's per-sample
  losses are all-gathered in rank order, so the mean is taken over the global batch in the same
  order as one process: the same scores, and so the same picks. The evaluation set of the
  tolerance rule is split the same way and the correct counts are summed.
- **Fine-tuning**: ``DistributedDataParallel`` with a ``DistributedSampler``; the global batch size
  is the one asked for, split over the ranks.
- **Files**: rank 0 alone writes the run folder; the others take rank 0's answers about it (is
  it valid, which of ``compare``'s units are done: ``greedyprune.runs.open_run`` and
  ``from_main``, through ``greedyprune.study.run_study``) or wait at a barrier and read it.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) all of this is a no-op: one process.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import Tensor

from greedyprune.dist import barrier, init_from_env, is_distributed, is_main, rank, world_size
from greedyprune.errors import GreedypruneError

__all__ = [
    "all_sum",
    "barrier",
    "gather_mean",
    "init_from_env",
    "is_distributed",
    "is_main",
    "local_slice",
    "rank",
    "world_size",
]


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
