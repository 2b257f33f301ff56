"""Deep networks in mean-field scaling, with per-layer gates for layer-wise selection.

With hidden widths ``N_1..N_L`` and ``c`` outputs the network computes

    h^1 = act(W^1 x + b^1)                                   W^1: [N_1, d]
    h^l = act((1/N_{l-1}) W^l h^{l-1} + b^l),  l = 2..L     W^l: [N_l, N_{l-1}]
    f   = (1/N_L) W^{L+1} h^L                                W^{L+1}: [c, N_L]

so every layer above the first averages its inputs, as in the mean-field theory of deep networks
(Nguyen and Pham 2020; Araujo, Oliveira and Yukimura 2019). A *gate* ``g^l: [N_l]`` (or one gate
per sample, ``[B, N_l]``) multiplies layer l's activations before the average; with
``g^l = N_l * w^l`` for mixing weights ``w^l`` on the simplex, layer l+1 sees ``sum_i w^l_i W_i h_i``,
the subnetwork of the multiset that ``w^l`` weighs. All-ones gates give the full network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from greedyprune.errors import (
    GreedypruneError,
    GreedypruneTypeError,
    check_int,
    check_number,
    check_type,
    refuse,
)

from .._mean_field_net import activation_fn

__all__ = ["DeepMeanFieldNet"]

Gates = Sequence[Tensor | None] | None


class DeepMeanFieldNet(nn.Module):
    """A deep fully-connected network in mean-field scaling (see the module docstring).

    Parameters
    ----------
    weights: ``[W^1 [N_1, d], W^2 [N_2, N_1], ..., W^{L+1} [c, N_L]]`` (at least two tensors).
    biases: ``[b^1 [N_1], ..., b^L [N_L]]``, one per hidden layer (the output has no bias, so the
        output is exactly the average of the last hidden layer's neurons' contributions).
    activation: ``"tanh"``, ``"relu"`` or ``"sigmoid"``.

    The tensors are copied into parameters with their own device and dtype.
    """

    def __init__(
        self, weights: Sequence[Tensor], biases: Sequence[Tensor], activation: str = "tanh"
    ):
        super().__init__()
        weights, biases = list(weights), list(biases)
        if len(weights) < 2:
            raise refuse(
                "len(weights)", len(weights), "at least 2: a hidden layer and the output layer"
            )
        if len(biases) != len(weights) - 1:
            raise refuse("len(biases)", len(biases), f"{len(weights) - 1}, one per hidden layer")
        for i, t in enumerate([*weights, *biases]):
            if not isinstance(t, Tensor) or not t.is_floating_point():
                raise GreedypruneTypeError(
                    f"weights and biases must be floating tensors (entry {i})"
                )
        ref = weights[0]
        for i, w in enumerate(weights):
            if w.dim() != 2:
                raise refuse(f"weights[{i}].shape", tuple(w.shape), "a matrix's, (rows, columns)")
            if i > 0 and w.shape[1] != weights[i - 1].shape[0]:
                raise refuse(
                    f"weights[{i}].shape",
                    tuple(w.shape),
                    f"(rows, {weights[i - 1].shape[0]}): as many columns as the width below",
                )
        for i, b in enumerate(biases):
            if tuple(b.shape) != (weights[i].shape[0],):
                raise refuse(f"biases[{i}].shape", tuple(b.shape), f"({weights[i].shape[0]},)")
        for t in [*weights, *biases]:
            if t.device != ref.device or t.dtype != ref.dtype:
                raise GreedypruneError(
                    f"weights and biases must share one device and dtype, got {t.device}/{t.dtype} "
                    f"and {ref.device}/{ref.dtype}; convert with .to(...)"
                )
        self._act = activation_fn(activation)
        self.activation = activation
        self.weights = nn.ParameterList([nn.Parameter(w.detach().clone()) for w in weights])
        self.biases = nn.ParameterList([nn.Parameter(b.detach().clone()) for b in biases])

    @classmethod
    def random(
        cls,
        dim: int,
        widths: Sequence[int],
        outputs: int = 1,
        *,
        activation: str = "tanh",
        input_std: float = 1.0,
        weight_std: float = 1.0,
        output_std: float = 1.0,
        bias_std: float = 1.0,
        standard_scale: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> DeepMeanFieldNet:
        """A network with i.i.d. Gaussian weights, drawn on the CPU from ``seed`` then moved.

        ``W^1 ~ N(0, input_std^2)``, hidden-to-hidden ``N(0, weight_std^2)``, output
        ``N(0, output_std^2)``, biases ``N(0, bias_std^2)``. With ``standard_scale`` the
        hidden-to-hidden and output stds are multiplied by ``sqrt(N_{l-1})`` so the averages have
        O(1) fluctuations at finite width (a generic random function: the deep teacher); without
        it the weights are the mean-field initialisation, whose averages concentrate.
        """
        check_int("dim", dim, minimum=1)
        check_int("outputs", outputs, minimum=1)
        widths = [check_int(f"widths[{i}]", w, minimum=1) for i, w in enumerate(widths)]
        if not widths:
            raise GreedypruneError("widths must name at least one hidden layer, e.g. [64, 64]")
        stds = {
            "input_std": input_std,
            "weight_std": weight_std,
            "output_std": output_std,
            "bias_std": bias_std,
        }
        stds = {k: check_number(k, v, minimum=0) for k, v in stds.items()}
        g = torch.Generator().manual_seed(int(seed))
        sizes = [dim, *widths, outputs]
        weights, biases = [], []
        for l in range(len(sizes) - 1):
            fan_in, fan_out = sizes[l], sizes[l + 1]
            if l == 0:
                std = stds["input_std"]
            else:
                std = stds["output_std" if l == len(widths) else "weight_std"]
                if standard_scale:
                    std *= fan_in**0.5
            weights.append(torch.randn(fan_out, fan_in, generator=g, dtype=dtype) * std)
            if l < len(widths):
                biases.append(torch.randn(fan_out, generator=g, dtype=dtype) * stds["bias_std"])
        return cls([w.to(device) for w in weights], [b.to(device) for b in biases], activation)

    # -- shape -----------------------------------------------------------------------------------
    @property
    def widths(self) -> list[int]:
        """``[N_1, ..., N_L]``, the hidden widths."""
        return [int(b.shape[0]) for b in self.biases]

    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return len(self.biases)

    @property
    def dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.weights[-1].shape[0])

    # -- forward -----------------------------------------------------------------------------------
    def _check_x(self, x: Tensor) -> None:
        check_type("x", x, Tensor, "a tensor [m, d]")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise refuse("x.shape", tuple(x.shape), f"(m, {self.dim})")
        w = self.weights[0]
        if x.dtype != w.dtype or x.device != w.device:
            raise GreedypruneError(
                f"x is {x.dtype} on {x.device} but the network is {w.dtype} on {w.device}; "
                f"convert with x.to(device, dtype) or net.to(...)"
            )

    def _gates(self, gates: Gates) -> list[Tensor | None]:
        if gates is None:
            return [None] * self.depth
        gates = list(gates)
        if len(gates) != self.depth:
            raise refuse(
                "len(gates)", len(gates), f"{self.depth}, one per hidden layer (None: ungated)"
            )
        for l, g in enumerate(gates):
            if g is not None and (not isinstance(g, Tensor) or g.shape[-1] != self.widths[l]):
                raise GreedypruneError(
                    f"gates[{l}] must be None or a tensor [{self.widths[l]}] or [B, {self.widths[l]}]"
                )
        return gates

    def _layer(self, l: int, h: Tensor) -> Tensor:
        """Pre-activation of hidden layer ``l`` (0-based) from the (gated) layer below."""
        if l == 0:
            return h @ self.weights[0].T + self.biases[0]
        return h @ self.weights[l].T / self.widths[l - 1] + self.biases[l]

    def hidden(self, x: Tensor, layer: int, gates: Gates = None) -> Tensor:
        """Activations of hidden layer ``layer`` (1-based, ungated): ``x [B, d] -> [B, N_layer]``.

        gates: as in :meth:`forward`; only the gates of the layers below ``layer`` act.
        """
        self._check_x(x)
        check_int("layer", layer, minimum=1, maximum=self.depth)
        gates = self._gates(gates)
        h = self._act(self._layer(0, x))
        for l in range(1, layer):
            g = gates[l - 1]
            h = self._act(self._layer(l, h if g is None else h * g))
        return h

    def forward_from(self, h: Tensor, layer: int, gates: Gates = None) -> Tensor:
        """Run the network above hidden layer ``layer`` (1-based): ``h [B, N_layer] -> [B, c]``.

        h: the layer's ungated activations; ``gates[layer - 1:]`` act (the ones below are ignored).
        """
        check_int("layer", layer, minimum=1, maximum=self.depth)
        check_type("h", h, Tensor, f"a tensor [B, {self.widths[layer - 1]}]")
        if h.dim() != 2 or h.shape[1] != self.widths[layer - 1]:
            raise refuse(
                "h.shape",
                tuple(h.shape),
                f"(B, {self.widths[layer - 1]}): layer {layer}'s activations",
            )
        gates = self._gates(gates)
        for l in range(layer, self.depth):
            g = gates[l - 1]
            h = self._act(self._layer(l, h if g is None else h * g))
        g = gates[-1]
        return (h if g is None else h * g) @ self.weights[-1].T / self.widths[-1]

    def forward(self, x: Tensor, gates: Gates = None) -> Tensor:
        """``x [B, d] -> [B, c]``; gates: None or one entry per hidden layer (None, [N_l] or [B, N_l])."""
        return self.forward_from(self.hidden(x, 1), 1, gates)

    def mean_field_lr_scales(self) -> list[tuple[nn.Parameter, float]]:
        """Learning-rate multipliers: ``N_l * N_{l-1}`` for W^l (N_0 = N_{L+1} = 1), N_l for b^l.

        A weight's gradient carries the 1/N of each average it sits in (the one it feeds and, by
        the backward pass, the one above its neuron); the multipliers undo them, so every
        parameter moves at a width-independent speed and duplicating every neuron k times leaves
        the training trajectory's function unchanged.
        """
        sizes = [1, *self.widths, 1]
        out = [(w, float(sizes[l + 1] * sizes[l])) for l, w in enumerate(self.weights)]
        out += [(b, float(self.widths[l])) for l, b in enumerate(self.biases)]
        return out

    # -- subnetworks -------------------------------------------------------------------------------
    @torch.no_grad()
    def subnetwork(self, counts: Sequence[Tensor | None]) -> DeepMeanFieldNet:
        """The compact network of the multisets ``counts`` (one per hidden layer, None keeps all).

        counts: per hidden layer a nonnegative tensor ``[N_l]`` (how often each neuron was picked,
            or any nonnegative mixing weights). Layer l keeps its neurons with positive count; each
            is weighted by ``w_i = counts_i / sum(counts)``, and the outgoing weights are rescaled
            by ``n_l * w_i`` (n_l kept neurons) so the compact mean-field network computes exactly
            the gated one: ``subnetwork(c)(x) == self(x, gates=[N_l * c_l / sum(c_l)])``.
        """
        counts = list(counts)
        if len(counts) != self.depth:
            raise refuse("len(counts)", len(counts), f"{self.depth}, one per hidden layer")
        keep, mult = [], []
        for l, c in enumerate(counts):
            N = self.widths[l]
            if c is None:
                keep.append(torch.arange(N, device=self.biases[l].device))
                mult.append(None)
                continue
            c = torch.as_tensor(c).detach().to(self.biases[l].device)
            if c.shape != (N,) or bool((c < 0).any()) or not bool(torch.isfinite(c).all()):
                raise refuse(f"counts[{l}]", c, f"a nonnegative finite tensor [{N}]")
            idx = torch.nonzero(c > 0).flatten()
            if idx.numel() == 0:
                raise GreedypruneError(f"counts[{l}] keeps no neuron; pick at least one")
            kept = c[idx].to(torch.float64)
            # n * c_i / sum(c) is exactly 1 when every kept neuron is picked once: the full
            # network is then reproduced bit for bit.
            m = kept * idx.numel() / kept.sum()
            keep.append(idx)
            mult.append(m.to(self.biases[l].dtype))
        weights = [self.weights[0][keep[0]]]
        for l in range(1, self.depth + 1):
            rows = keep[l] if l < self.depth else slice(None)
            w = self.weights[l][rows][:, keep[l - 1]]
            if mult[l - 1] is not None:
                w = w * mult[l - 1]
            weights.append(w)
        biases = [self.biases[l][keep[l]] for l in range(self.depth)]
        return DeepMeanFieldNet(weights, biases, self.activation)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, widths={self.widths}, outputs={self.n_outputs}, act={self.activation}"
        )
