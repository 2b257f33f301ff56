"""The two-layer mean-field network ``f(x) = (1/N) sum_i b_i act(a_i . x)``.

Each neuron's contribution ``phi_i(x) = b_i act(a_i . x)`` is a *feature*: the network is the plain
average of its N features, and a subnetwork of a multiset S of neurons is the average over S. That
is the form the greedy theory is stated in, so ``features(x)`` is the bridge to ``greedyprune.select``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from greedyprune.errors import GreedypruneError, check_int, check_type, refuse

__all__ = ["ACTIVATIONS", "TwoLayerNet", "activation_fn"]

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def activation_fn(name: str):
    """The activation called ``name`` (one of ``ACTIVATIONS``)."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise refuse("activation", name, f"one of {', '.join(map(repr, sorted(ACTIVATIONS)))}")
    return ACTIVATIONS[name]


class TwoLayerNet(nn.Module):
    """Two-layer network in mean-field scaling.

    Parameters
    ----------
    a: first-layer weights ``[N, d]`` (neuron i reads ``a_i . x``; no bias: append a constant
        input coordinate if one is wanted).
    b: output weights ``[N]`` (one output) or ``[N, c]`` (c outputs).
    activation: ``"relu"``, ``"tanh"`` or ``"sigmoid"``.

    The parameters are copied into ``nn.Parameter``s with the given tensors' device and dtype.
    """

    def __init__(self, a: Tensor, b: Tensor, activation: str = "tanh"):
        super().__init__()
        check_type("a", a, Tensor, "a tensor [N, d]")
        check_type("b", b, Tensor, "a tensor [N] or [N, c]")
        if a.dim() != 2:
            raise refuse("a.shape", tuple(a.shape), "(N, d)")
        if b.dim() not in (1, 2) or b.shape[0] != a.shape[0]:
            n = a.shape[0]
            raise refuse("b.shape", tuple(b.shape), f"({n},) or ({n}, c): N={n} matching a")
        if a.shape[0] < 1:
            raise GreedypruneError("a network needs at least one neuron (N >= 1)")
        if a.device != b.device or a.dtype != b.dtype:
            raise GreedypruneError(
                f"a and b must share device and dtype, got {a.device}/{a.dtype} and "
                f"{b.device}/{b.dtype}; convert one with .to(...)"
            )
        self._act = activation_fn(activation)
        self.activation = activation
        self.a = nn.Parameter(a.detach().clone())
        self.b = nn.Parameter(b.detach().clone())

    @classmethod
    def random(
        cls,
        width: int,
        dim: int,
        *,
        outputs: int | None = None,
        activation: str = "tanh",
        a_std: float = 1.0,
        b_std: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> TwoLayerNet:
        """A network with ``a_i ~ N(0, a_std^2 I_d)`` and ``b_i ~ N(0, b_std^2)``.

        The numbers are drawn on the CPU from ``seed`` and then moved to ``device``, so the same
        seed gives the same network on every device.
        """
        check_int("width", width, minimum=1)
        check_int("dim", dim, minimum=1)
        if outputs is not None:
            check_int("outputs", outputs, minimum=1)
        for name, v in (("a_std", a_std), ("b_std", b_std)):
            if not isinstance(v, (int, float)) or v < 0:
                raise GreedypruneError(f"{name}={v!r} must be a number >= 0")
        g = torch.Generator().manual_seed(int(seed))
        a = torch.randn(width, dim, generator=g, dtype=dtype) * a_std
        shape = (width,) if outputs is None else (width, outputs)
        b = torch.randn(*shape, generator=g, dtype=dtype) * b_std
        return cls(a.to(device), b.to(device), activation)

    @property
    def width(self) -> int:
        """N, the number of neurons."""
        return self.a.shape[0]

    @property
    def dim(self) -> int:
        """d, the input dimension."""
        return self.a.shape[1]

    @property
    def n_outputs(self) -> int | None:
        """c, or None for a single output stored as ``b: [N]``."""
        return None if self.b.dim() == 1 else self.b.shape[1]

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise refuse("x", x, "a tensor [m, d]", wrong_type=True)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise refuse("x.shape", tuple(x.shape), f"(m, {self.dim})")

    def hidden(self, x: Tensor) -> Tensor:
        """Activations ``act(a_i . x_j)``: ``x [m, d] -> [N, m]``."""
        self._check_x(x)
        return self._act(self.a @ x.T)

    def forward(self, x: Tensor) -> Tensor:
        """``x [m, d] -> [m]`` (one output) or ``[m, c]``."""
        self._check_x(x)
        h = self._act(x @ self.a.T)  # [m, N]
        return h @ self.b / self.width

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """Per-neuron outputs ``phi_i(x_j) = b_i act(a_i . x_j)``: ``[N, m]`` or ``[N, m, c]``.

        ``features(x).mean(0)`` equals ``forward(x)``.
        """
        h = self.hidden(x)
        if self.b.dim() == 1:
            return h * self.b[:, None]
        return h[:, :, None] * self.b[:, None, :]

    def mean_field_lr_scales(self) -> list[tuple[nn.Parameter, float]]:
        """Learning-rate multipliers for mean-field training: every parameter gets N.

        A neuron's gradient carries the 1/N of the average; scaling its step by N makes each
        neuron move at a width-independent speed (Mei, Montanari and Nguyen 2018).
        """
        return [(self.a, float(self.width)), (self.b, float(self.width))]

    @torch.no_grad()
    def subnetwork(
        self, indices: Tensor | Sequence[int], weights: Tensor | None = None
    ) -> TwoLayerNet:
        """The subnetwork of the neurons ``indices`` (a multiset: repeats are kept as copies).

        Without ``weights`` it computes ``(1/n) sum_{i in indices} phi_i`` with n = len(indices):
        the greedy subnetwork of ``Selection.order[:n]``. With ``weights`` (``[len(indices)]``,
        nonnegative, summing to one) it computes ``sum_k weights_k phi_{indices_k}``; the output
        weights are rescaled so that the result is again a mean-field network of that width.
        """
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.a.device).reshape(-1)
        if idx.numel() == 0:
            raise refuse("indices", indices, "one neuron index or more")
        if int(idx.min()) < 0 or int(idx.max()) >= self.width:
            raise refuse("indices", indices, f"neuron indices in 0..{self.width - 1}")
        a = self.a[idx]
        b = self.b[idx]
        if weights is not None:
            w = torch.as_tensor(weights, dtype=self.b.dtype, device=self.b.device).reshape(-1)
            if w.numel() != idx.numel():
                raise GreedypruneError(
                    f"weights has {w.numel()} entries but indices has {idx.numel()}; pass one "
                    "weight per index"
                )
            scale = w * idx.numel()
            b = b * (scale if b.dim() == 1 else scale[:, None])
        return TwoLayerNet(a, b, self.activation)

    def extra_repr(self) -> str:
        return (
            f"width={self.width}, dim={self.dim}, outputs={self.n_outputs}, act={self.activation}"
        )
