"""Layer-wise greedy forward selection in a deep mean-field network, from the input to the output.

Layer l is selected with the layers below it already pruned. Two objectives score a candidate:

- ``"local"`` (imitation): make the next layer's pre-activations (the output, for the last hidden
  layer) match the full network's, in squared loss. Neuron i of layer l contributes the rank-one
  feature ``phi_i = h_i (x) W^{l+1}_{:, i}``: its activation on the data times its outgoing
  weights, so :class:`~greedyprune.select.FactoredSquaredLoss` scores all candidates with matrix
  products and never builds the ``[N, m, N_{l+1}]`` tensor.
- ``"global"``: the training loss of the whole network with the candidate added. The activations
  below layer l are computed once; the layers above run once on the stacked candidates
  (:class:`~greedyprune.select.StackedObjective`, the mechanism the CNN front end uses too).

Baselines reuse the same bookkeeping: ``"random"`` (a uniform subset per layer) and
``"magnitude"`` (the neurons with the largest contribution norm ``||h_i|| ||W^{l+1}_{:, i}||``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from greedyprune.errors import (
    GreedypruneError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_type,
    refuse,
    with_fields,
)
from greedyprune.layerwise import LayerPlan, select_layerwise
from greedyprune.select import (
    FactoredSquaredLoss,
    Selection,
    StackedObjective,
    magnitude,
    per_sample_loss,
    random_subset,
)

from ._net import DeepMeanFieldNet

__all__ = [
    "METHODS",
    "LayerwiseResult",
    "NeuronSelectSettings",
    "global_objective",
    "layerwise_select",
    "local_objective",
    "per_sample_loss",
]

METHODS = ("local", "global", "random", "magnitude")


@dataclass
class LayerwiseResult:
    """What :func:`layerwise_select` returns.

    selections: one :class:`~greedyprune.select.Selection` per hidden layer (input first); its
        ``losses`` are that layer's objective (local imitation or global loss) after each step.
    counts: per hidden layer a LongTensor ``[N_l]``: how often each neuron was picked.
    network: the compact subnetwork (a :class:`DeepMeanFieldNet` of the kept widths).
    """

    selections: list[Selection]
    counts: list[Tensor]
    network: DeepMeanFieldNet
    info: dict = field(default_factory=dict)

    @property
    def widths(self) -> list[int]:
        """Distinct neurons kept per hidden layer."""
        return self.network.widths

    def gates(self, net: DeepMeanFieldNet) -> list[Tensor]:
        """Per-layer gates ``N_l * counts_l / sum(counts_l)`` that make ``net`` compute the subnetwork."""
        out = []
        for c, b in zip(self.counts, net.biases):
            c = c.to(device=b.device, dtype=b.dtype)
            out.append(c * (c.numel() / c.sum()))
        return out


def _sizes(sizes, widths: list[int], replacement: bool, name: str = "sizes") -> list[int]:
    if isinstance(sizes, bool):
        raise refuse(name, sizes, "an int or a list of ints", wrong_type=True)
    if sizes is None:
        sizes = list(widths)
    elif isinstance(sizes, int):
        sizes = [sizes] * len(widths)
    else:
        sizes = list(sizes)
    if len(sizes) != len(widths):
        raise refuse(f"len({name})", len(sizes), f"{len(widths)}, one size per hidden layer")
    for l, (n, N) in enumerate(zip(sizes, widths)):
        check_int(f"{name}[{l}]", n, minimum=1)
        if not replacement and n > N:
            raise GreedypruneError(
                f"{name}[{l}]={n} exceeds layer {l + 1}'s {N} neurons; without replacement pass "
                f"at most {N}"
            )
    return sizes


def local_objective(
    net: DeepMeanFieldNet, x: Tensor, layer: int, gates: list, max_bytes: int
) -> FactoredSquaredLoss:
    """Imitate the full network's pre-activation of layer ``layer + 1`` (0-based hidden index)."""
    with torch.no_grad():
        h_pruned = net.hidden(x, layer + 1, gates)  # [m, N_l]
        h_full = net.hidden(x, layer + 1)
        w_out = net.weights[layer + 1].detach()  # [N_{l+1} or c, N_l]
        target = h_full @ w_out.T / net.widths[layer]
    return FactoredSquaredLoss(
        h_pruned.T.contiguous(), w_out.T.contiguous(), target, max_bytes=max_bytes
    )


def global_objective(
    net: DeepMeanFieldNet,
    x: Tensor,
    y: Tensor,
    layer: int,
    gates: list,
    loss: str,
    max_bytes: int,
) -> StackedObjective:
    """The training loss of the whole network with a candidate of layer ``layer`` added: the
    layers below are run once (cached), those above on the stacked candidates."""
    with torch.no_grad():
        h = net.hidden(x, layer + 1, gates)  # cached once: everything below the layer
    batch = h.shape[0]
    above = list(gates)

    def forward(stacked: Tensor, cand_gates: Tensor) -> Tensor:
        # Gate the stacked copies in place of a [K*B, N] per-sample gate tensor.
        k = cand_gates.shape[0]
        gated = (stacked.view(k, batch, -1) * cand_gates.unsqueeze(1)).view(k * batch, -1)
        g = list(above)
        g[layer] = None
        return net.forward_from(gated, layer + 1, g)

    return StackedObjective(
        h,
        forward,
        functools.partial(per_sample_loss, loss),
        net.widths[layer],
        target=y,
        scale=float(net.widths[layer]),
        max_bytes=max_bytes,
    )


_BASELINES = {
    "random": lambda obj, n, gen: random_subset(obj, n, replacement=False, generator=gen),
    "magnitude": lambda obj, n, gen: magnitude(obj, n),
}


@dataclass(frozen=True)
class NeuronSelectSettings:
    """What :func:`layerwise_select` computes, checked when made (each message names the field).

    method: ``"local"``, ``"global"``, ``"random"`` or ``"magnitude"`` (module docstring).
    sizes: steps per hidden layer (an int for all, or one per layer); None: the layer's width.
        With ``replacement`` a neuron can be picked again, so the kept width can be smaller.
        Checked against the network's widths when it is run.
    loss_tol: per-layer early stop by a relative loss tolerance (greedy methods only). Local: stop
        once the imitation loss is at most ``loss_tol`` times the loss of the empty layer,
        ``||target||^2 / 2``. Global: stop once the loss is at most ``(1 + loss_tol)`` times the
        loss with this layer unpruned (the layers below already pruned). ``sizes`` is then the
        largest size allowed. (Not the CNN front end's ``tol``, an accuracy drop.)
    replacement: True is the theory's version; False never picks a neuron twice (the authors').
    loss: ``"squared"`` or ``"cross_entropy"``, for the global objective.
    candidates: candidates scored per step (see :func:`greedyprune.select.greedy_select`).
    batch_size: score the global objective on this many data points drawn once per layer (the
        authors use a mini-batch); None uses all of ``x``.
    generator: seed or generator for random subsets, candidate draws and batches; None is seed 0
        (see :func:`greedyprune.layerwise.layer_generator`).
    max_bytes: the objectives' memory budget per scoring pass.
    """

    method: str = "local"
    sizes: int | Sequence[int] | None = None
    loss_tol: float | None = None
    replacement: bool = True
    loss: str = "squared"
    candidates: object = None
    batch_size: int | None = None
    generator: torch.Generator | int | None = None
    max_bytes: int = 256 * 2**20

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        if self.method in ("random", "magnitude") and self.loss_tol is not None:
            raise GreedypruneError(
                f"loss_tol applies to the greedy methods only, not method={self.method!r}"
            )
        if self.loss_tol is not None:
            check_number("loss_tol", self.loss_tol, minimum=0, fix="or None to stop by size")
        check_bool("replacement", self.replacement)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, minimum=1, fix="or None for the full batch")
        check_int("max_bytes", self.max_bytes, minimum=1)


def layerwise_select(
    net: DeepMeanFieldNet,
    x: Tensor,
    y: Tensor | None = None,
    settings: NeuronSelectSettings | None = None,
    *,
    progress: bool = False,
    **knobs,
) -> LayerwiseResult:
    """Select the neurons of every hidden layer of ``net``, from the input to the output.

    net: the (pretrained or random) network; it is not modified.
    x: ``[m, d]`` data the objectives are measured on; y: targets (``[m, c]`` for the squared loss,
        labels ``[m]`` for cross-entropy), needed by ``method="global"``.
    settings: what the selection computes, a :class:`NeuronSelectSettings` (None: its defaults);
        any of its fields may be given as a keyword instead (``layerwise_select(net, x,
        method="random", sizes=8)``), replacing that field.
    Returns a :class:`LayerwiseResult`. The loop over the layers is
    :func:`greedyprune.layerwise.select_layerwise`; this function builds each layer's objective
    and applies its selection as the gates of the layers above.
    """
    st, _ = with_fields("layerwise_select", NeuronSelectSettings, settings, knobs)
    check_type("net", net, DeepMeanFieldNet, "a DeepMeanFieldNet")
    net._check_x(x)
    method = st.method
    if method == "global":
        if y is None:
            raise GreedypruneError("method='global' scores the training loss; pass the targets y")
        if y.shape[0] != x.shape[0]:
            raise GreedypruneError(
                f"y has {y.shape[0]} rows but x has {x.shape[0]}; pass matching data"
            )
        per_sample_loss(st.loss, net(x[:1]), y[:1])
    repl = st.replacement and method in ("local", "global")
    sizes = _sizes(st.sizes, net.widths, repl)
    gates: list[Tensor | None] = [None] * net.depth

    def plan(l: int, gen: torch.Generator) -> LayerPlan:
        return _layer_plan(net, x, y, st, gates, l, gen, sizes[l])

    def apply(l: int, spec: LayerPlan, sel: Selection) -> bool:
        c = sel.counts.to(device=net.biases[l].device, dtype=net.biases[l].dtype)
        gates[l] = c * (net.widths[l] / c.sum())
        return True

    selections = select_layerwise(
        range(net.depth),
        plan,
        apply,
        replacement=st.replacement,
        candidates=st.candidates,
        generator=st.generator,
        progress=progress,
    )
    counts = [sel.counts.clone() for sel in selections]
    info = dict(method=method, replacement=repl, sizes=sizes, loss_tol=st.loss_tol, loss=st.loss)
    return LayerwiseResult(selections, counts, net.subnetwork(counts), info)


def _layer_plan(net, x, y, st: NeuronSelectSettings, gates, l: int, gen, size: int) -> LayerPlan:
    """Layer ``l``'s objective (on a batch drawn from ``gen`` for the global one), its stop rule
    by ``loss_tol`` and its size, with the layers below gated by ``gates``."""
    if st.method == "global":
        xb, yb = x, y
        if st.batch_size is not None and st.batch_size < x.shape[0]:
            idx = torch.randperm(x.shape[0], generator=gen)[: st.batch_size].to(x.device)
            xb, yb = x[idx], y[idx]
        obj = global_objective(net, xb, yb, l, gates, st.loss, st.max_bytes)
    else:
        obj = local_objective(net, x, l, gates, st.max_bytes)
    stop = None
    if st.loss_tol is not None:
        if st.method == "local":
            stop = float(st.loss_tol) * float(obj.target.pow(2).sum()) / (2 * obj.target.shape[0])
        else:
            for i in range(net.widths[l]):
                obj.add(i)
            stop = (1.0 + float(st.loss_tol)) * obj.current_loss()
            obj.reset()
    return LayerPlan(obj, size, stop=stop, select=_BASELINES.get(st.method))
