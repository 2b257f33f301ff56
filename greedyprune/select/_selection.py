"""The record of a selection: which neurons, in which order, with what weights and losses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from greedyprune.errors import check_int, check_path, refuse

__all__ = ["Selection"]


@dataclass
class Selection:
    """What a selection method returns.

    order: LongTensor [n], the picked indices in order; ``order[:k]`` is the size-k subnetwork
        (with replacement an index may repeat; the subnetwork is then the multiset average).
    counts: LongTensor [N], how often each candidate was picked.
    weights: Tensor [N] (float64), the subnetwork's mixing weights: ``counts / n``, or the re-solved
        weights of the corrective variant. They sum to one.
    losses: Tensor [n] (float64), ``losses[k-1]`` is the loss of the size-k subnetwork.
    evaluations: how many candidate losses were computed.
    method: the name of the method that made it.
    """

    order: Tensor
    counts: Tensor
    weights: Tensor
    losses: Tensor
    evaluations: int = 0
    method: str = "greedy"
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.order.numel())

    @property
    def n_candidates(self) -> int:
        return int(self.counts.numel())

    @property
    def support(self) -> Tensor:
        """LongTensor [n_distinct]: the distinct neurons with non-zero weight, ascending."""
        return torch.nonzero(self.weights > 0).flatten()

    def prefix_weights(self, k: int) -> Tensor:
        """Tensor [N] (float64): uniform-average weights of the size-k prefix ``order[:k]``."""
        k = check_int("k", k, minimum=1, maximum=self.n)  # at most the selection's size
        c = torch.bincount(self.order[:k], minlength=self.n_candidates).to(torch.float64)
        return c / k

    @classmethod
    def from_order(
        cls,
        order,
        losses,
        n_candidates: int,
        *,
        evaluations: int = 0,
        method: str = "",
        weights=None,
    ) -> Selection:
        order = torch.as_tensor(order, dtype=torch.long).flatten().cpu()
        if order.numel() and (int(order.min()) < 0 or int(order.max()) >= n_candidates):
            shown = f"{int(order.min())}..{int(order.max())}"
            raise refuse("order", shown, f"indices in 0..{n_candidates - 1} (n_candidates)")
        losses = torch.as_tensor(losses, dtype=torch.float64).flatten().cpu()
        if losses.numel() != order.numel():
            raise refuse("len(losses)", losses.numel(), f"{order.numel()}, one loss per step")
        counts = torch.bincount(order, minlength=n_candidates)
        if weights is None:
            weights = counts.to(torch.float64) / max(1, order.numel())
        return cls(
            order=order,
            counts=counts,
            weights=torch.as_tensor(weights, dtype=torch.float64).cpu(),
            losses=losses,
            evaluations=int(evaluations),
            method=method,
        )

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "evaluations": self.evaluations,
            "n_candidates": self.n_candidates,
            "order": self.order.tolist(),
            "counts": self.counts.tolist(),
            "weights": self.weights.tolist(),
            "losses": self.losses.tolist(),
            "info": self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write to ``.json`` (readable) or ``.npz`` (compact), chosen by the file's suffix."""
        from greedyprune.runs import atomic_write_bytes, atomic_write_text

        path = Path(path)
        if path.suffix == ".json":
            atomic_write_text(path, json.dumps(self.to_dict()) + "\n")
        elif path.suffix == ".npz":
            import io

            buf = io.BytesIO()
            np.savez(
                buf,
                order=self.order.numpy(),
                counts=self.counts.numpy(),
                weights=self.weights.numpy(),
                losses=self.losses.numpy(),
                meta=np.array(
                    json.dumps(
                        {"method": self.method, "evaluations": self.evaluations, "info": self.info}
                    )
                ),
            )
            atomic_write_bytes(path, buf.getvalue())
        else:
            raise refuse("path", str(path), "a file name ending in .json or .npz")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Selection:
        path = check_path("path", path)
        if path.suffix == ".json":
            d = json.loads(path.read_text())
            return cls(
                order=torch.tensor(d["order"], dtype=torch.long),
                counts=torch.tensor(d["counts"], dtype=torch.long),
                weights=torch.tensor(d["weights"], dtype=torch.float64),
                losses=torch.tensor(d["losses"], dtype=torch.float64),
                evaluations=int(d["evaluations"]),
                method=d["method"],
                info=d.get("info", {}),
            )
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                return cls(
                    order=torch.from_numpy(z["order"]).long(),
                    counts=torch.from_numpy(z["counts"]).long(),
                    weights=torch.from_numpy(z["weights"]).double(),
                    losses=torch.from_numpy(z["losses"]).double(),
                    evaluations=int(meta["evaluations"]),
                    method=meta["method"],
                    info=meta.get("info", {}),
                )
        raise refuse("path", str(path), "a file name ending in .json or .npz")
