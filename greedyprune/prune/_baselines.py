"""The channel criteria: Torch-Pruning's importances, i-SpaSP and random, each a registered method.

Each criterion keeps, in every prunable group, the ``widths[name]`` channels it ranks highest; the
widths come from the same MACs plan as greedy's, so every method is compared at equal MACs. Each is
one function registered in :data:`~greedyprune.prune._registry.SELECTION_METHODS`;
:func:`baseline_channels` runs one of them on a model directly.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
import torch_pruning as tp
from torch import Tensor, nn

from greedyprune.errors import GreedypruneError, check_choice, refuse

from ..select import SquaredLoss, ispasp
from . import _greedy_prune  # noqa: F401  (registers greedy first: the registry's order is compare's)
from ._gates import PrunableGroup
from ._registry import SELECTION_METHODS, Choice, SelectionRequest, register_method, select_channels

__all__ = ["BASELINES", "baseline_channels"]

# i-SpaSP's sampling of the consumers' outputs: output positions per consumer and image, and the
# most feature entries (channels x images x sampled outputs) one group may hold.
ISPASP_POSITIONS = 16
ISPASP_MAX_ELEMENTS = 2**25

# Torch-Pruning importance classes, read in torch_pruning 1.6.1.
_IMPORTANCES = {
    "l1": lambda: tp.importance.MagnitudeImportance(p=1, normalizer=None),
    "taylor": lambda: tp.importance.TaylorImportance(normalizer=None),
    "bn": lambda: tp.importance.BNScaleImportance(normalizer=None),
}


@register_method("l1", "group L1 norm of the weights (tp.importance.MagnitudeImportance, p=1)")
def _l1(req: SelectionRequest) -> Choice:
    return Choice(_importance_channels("l1", req.model, req.example, req.groups, req.widths))


@register_method(
    "taylor", "first-order Taylor |w * dL/dw| on one batch (tp.importance.TaylorImportance)"
)
def _taylor(req: SelectionRequest) -> Choice:
    batch = req.one_batch("taylor")
    return Choice(
        _importance_channels("taylor", req.model, req.example, req.groups, req.widths, batch)
    )


@register_method(
    "bn",
    "batch-norm scale |gamma| (tp.importance.BNScaleImportance, network slimming); groups "
    "without batch norm (squeeze-excitation convolutions) are ranked by L1",
)
def _bn(req: SelectionRequest) -> Choice:
    return Choice(_importance_channels("bn", req.model, req.example, req.groups, req.widths))


@register_method(
    "ispasp",
    "i-SpaSP (Wolfe & Kyrillidis 2022) per group on one batch: the kernel's CoSaMP-style "
    "support iteration (greedyprune.select.ispasp) on each channel's exact contribution to the "
    "consumers' pre-activations (after their batch norm), target their dense sum; every group "
    "on the dense network, at most 16 evenly spaced output positions per consumer and image",
)
def _ispasp(req: SelectionRequest) -> Choice:
    x = req.one_batch("ispasp")[0]
    return Choice(_ispasp_channels(req.model, req.groups, req.widths, x))


@register_method(
    "ispasp-seq",
    "i-SpaSP group after group on the partly pruned network: as ispasp, but each group's "
    "consumers read the channels the earlier groups kept (the removed ones zeroed), and the "
    "target stays the dense network's pre-activations",
)
def _ispasp_seq(req: SelectionRequest) -> Choice:
    x = req.one_batch("ispasp-seq")[0]
    return Choice(_ispasp_channels(req.model, req.groups, req.widths, x, sequential=True))


@register_method("random", "uniformly random channels (seeded)")
def _random(req: SelectionRequest) -> Choice:
    return Choice(
        {
            g.name: sorted(
                int(i)
                for i in torch.randperm(g.n_channels, generator=req.generator)[: req.widths[g.name]]
            )
            for g in req.groups
        }
    )


# name -> what it ranks by: every registered method but greedy (registered in _greedy_prune)
BASELINES = {name: spec.description for name, spec in SELECTION_METHODS.items() if name != "greedy"}


def baseline_channels(
    method: str,
    model: nn.Module,
    example_input: Tensor,
    groups: list[PrunableGroup],
    widths: dict[str, int],
    *,
    batch: tuple[Tensor, Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, list[int]]:
    """Channels to keep per group (sorted) for a criterion ``method`` (see :data:`BASELINES`).

    example_input: [1, C, H, W]; batch: ``(x [B, C, H, W], y [B])`` for ``taylor`` (the gradients
    of the cross-entropy on it) and ``ispasp`` (its images; the labels are not used); generator:
    for ``random`` (default: seeded with 0). Does not change the model's weights (``taylor``
    leaves gradients in ``.grad``, which are cleared). ``ispasp`` is described in
    :func:`_ispasp_channels`.
    """
    check_choice("method", method, BASELINES)
    request = SelectionRequest(
        model=model,
        example=example_input,
        groups=groups,
        widths={g.name: widths.get(g.name, g.n_channels) for g in groups},
        generator=generator if generator is not None else torch.Generator().manual_seed(0),
        batch=batch,
    )
    return select_channels(method, request).kept


def _importance_channels(
    method: str,
    model: nn.Module,
    example_input: Tensor,
    groups: list[PrunableGroup],
    widths: dict[str, int],
    batch: tuple[Tensor, Tensor] | None = None,
) -> dict[str, list[int]]:
    """The ``widths[g]`` channels of each group with the highest Torch-Pruning importance."""
    imp = _IMPORTANCES[method]()
    l1 = tp.importance.MagnitudeImportance(p=1, normalizer=None)
    mods = dict(model.named_modules())
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
            if method == "taylor":
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(batch[0]), batch[1]).backward()
        kept = {}
        for g in groups:
            d = g.n_channels
            group = dg.get_pruning_group(
                mods[g.name], tp.prune_conv_out_channels, idxs=list(range(d))
            )
            scores = imp(group)
            if scores is None and method == "bn":
                # No batch norm in the group (squeeze-excitation convolutions): rank by L1.
                scores = l1(group)
            if scores is None or scores.numel() != d:
                raise GreedypruneError(f"{method} importance could not score group {g.name!r}")
            # Ties broken toward the lower index so the choice is reproducible.
            order = sorted(range(d), key=lambda i: (-float(scores[i]), i))
            kept[g.name] = sorted(order[: widths.get(g.name, d)])
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return kept


def _bn_after(model: nn.Module) -> dict[str, nn.Module]:
    """Module name -> the batch norm that is the only reader of that module's output (traced with
    ``torch.fx``; empty when the model cannot be traced)."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:
        return {}
    mods = dict(model.named_modules())
    out = {}
    for node in graph.nodes:
        if node.op == "call_module" and len(node.users) == 1:
            (user,) = node.users
            bn = mods.get(user.target) if user.op == "call_module" else None
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                out[node.target] = bn
    return out


def _bn_scale(bn: nn.Module) -> Tensor:
    """[O]: the factor an eval-mode batch norm multiplies its input's changes by."""
    if bn.running_var is None:  # no running statistics: the batch's, not known here
        return torch.ones(bn.num_features)
    scale = torch.rsqrt(bn.running_var.float() + bn.eps)
    return scale * bn.weight.float() if bn.weight is not None else scale


def _contributions(module: nn.Module, x: Tensor, n_channels: int, positions: int) -> Tensor:
    """[C, B, O, P]: each input channel's contribution to ``module``'s output (bias left out) at
    P evenly spaced output positions (all of them when there are at most ``positions``).

    module: a convolution with ``groups == 1`` and zero padding (x: [B, C, H, W]) or a linear
    layer (x: [B, C * r], channel-major as ``flatten`` leaves it; P = 1). Summing over C gives the
    output minus its bias at those positions, so contribution c is exactly the module applied to
    its input with only channel c kept.
    """
    C, B = n_channels, x.shape[0]
    x = x.float()
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise GreedypruneError(
                "i-SpaSP handles consumer convolutions with groups=1 and integer zero padding"
            )
        cols = F.unfold(
            x,
            module.kernel_size,
            dilation=module.dilation,
            padding=module.padding,
            stride=module.stride,
        )  # [B, C * kh * kw, L]
        L = cols.shape[-1]
        p = min(L, positions)
        idx = torch.arange(p, device=cols.device) * L // p  # distinct, evenly spaced
        cols = cols[..., idx].reshape(B, C, -1, p)
        w = module.weight.float().reshape(module.out_channels, C, -1)
        return torch.einsum("bckp,ock->cbop", cols, w)
    if isinstance(module, nn.Linear):
        if x.dim() != 2 or x.shape[1] % C:
            raise refuse(
                "x.shape", tuple(x.shape), f"(B, {C} * r): i-SpaSP's linear consumer's input"
            )
        w = module.weight.float().reshape(module.out_features, C, -1)
        return torch.einsum("bcr,ocr->cbo", x.reshape(B, C, -1), w).unsqueeze(-1)
    raise GreedypruneError(f"i-SpaSP cannot read a consumer of type {type(module).__name__}")


def _consumer_inputs(
    model: nn.Module, x: Tensor, names, removed: dict[str, tuple[int, Tensor]]
) -> dict[str, Tensor]:
    """The inputs of the consumers ``names`` on ``x``, with the channels ``removed[c]`` zeroed at
    every consumer c that reads a group cut so far (a pruned network's inputs)."""
    mods = dict(model.named_modules())
    seen: dict[str, Tensor] = {}

    def hook(name):
        def pre(module, args):
            h = args[0]
            if name in removed:  # [B, C, ...] or a linear layer's [B, C * r]
                channels, cut = removed[name]
                z = h.reshape(h.shape[0], channels, -1).clone()
                z[:, cut.to(z.device)] = 0
                h = z.reshape(h.shape)
            if name in names:
                seen[name] = h.detach()
            return (h, *args[1:])

        return pre

    was_training = model.training
    model.eval()
    hooked = set(names) | set(removed)
    handles = [mods[c].register_forward_pre_hook(hook(c)) for c in sorted(hooked)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return seen


def _ispasp_channels(
    model: nn.Module,
    groups: list[PrunableGroup],
    widths: dict[str, int],
    x: Tensor,
    *,
    positions: int = ISPASP_POSITIONS,
    max_elements: int = ISPASP_MAX_ELEMENTS,
    iterations: int = 20,
    sequential: bool = False,
) -> dict[str, list[int]]:
    """i-SpaSP (Wolfe and Kyrillidis, "i-SpaSP: Structured Neural Pruning via Sparse Signal
    Recovery", 2022) adapted to a CNN's prunable groups; x: the images [B, C, H, W].

    The paper prunes a layer's hidden neurons so that the next layer's pre-activation output is
    kept, on a batch of data. Here, for every group, the "next layer" is the group's consumers
    (every convolution or linear layer that reads its channels: one for a plain chain, several
    for a residual stream). Channel c's feature is its contribution to the consumers' outputs on
    the batch: each consumer applied to its input with only channel c kept, bias left out, times
    the scale of the batch norm that reads the consumer's output when there is one (so the
    feature is the change of the pre-activation, after the batch norm, in eval mode),
    concatenated over the consumers. Each consumer is linear in its input and reads the group's
    channels directly (see :mod:`~greedyprune.prune._gates`), so no linearisation is needed: with
    the consumers' inputs of the dense network, the sum of the kept channels' features is exactly
    the consumers' pre-activations with the other channels removed, less those with all removed.
    That includes MobileNet blocks (the expansion's depthwise convolution, batch norm and ReLU6
    act on each channel before the projection reads it) and the last consumer of a chain. In a
    residual stream (several producers and consumers) a later consumer's input also depends on
    the removed channels through the blocks in between; that effect is left out (each consumer's
    input is the dense network's), as is the change of a group's consumers' inputs caused by
    pruning earlier groups.

    Target: the sum of all the features (the dense network's pre-activations, less the same
    constant). The kernel's :func:`~greedyprune.select.ispasp` then runs the CoSaMP-style support
    iteration (residual between the target and the kept channels' sum, proxy = correlation of
    each channel's feature with it, merge the top ``2n`` with the support, keep the n of largest
    magnitude; at most ``iterations`` rounds) with n = ``widths[group]``, and the support is kept.
    The features are passed scaled by n, so that the kernel's subnetwork ``(1/n) sum_S phi`` is
    the plain sum of the kept channels' contributions: the pruned network's own output, with the
    kept weights unchanged as in the paper (the scaling changes neither the proxy's nor the
    magnitude's ranking, only the residual).

    ``sequential=True`` (method ``ispasp-seq``) prunes group after group, in the order of
    ``groups`` (the network's, as :func:`find_prunable_groups` lists them): a group's features are
    measured on the network with the channels removed so far zeroed where their consumers read
    them (exactly the partly pruned network's consumers' inputs), while the target stays the dense
    network's, so the support iteration recovers the dense pre-activations from what is left, the
    residual between the pruned and the dense network's outputs that the paper's abstract names.
    The first group's choice is the one-shot one. Its cost is one more forward pass per group.

    Where it differs from the paper: by default every group is pruned on the dense network (one
    shot, as the other criteria here), not layer after layer on the partly pruned one (that is
    ``sequential``; the paper's multi-layer procedure could be read only in summary, so how close
    this is to it is not known); a residual stream is
    one group whose consumers' outputs are preserved together; the proxy and the
    magnitude are those of the kernel (correlation with the residual and mean absolute feature,
    see its docstring); and to stay cheap each consumer's output is read at ``positions`` evenly
    spaced spatial positions (16: all of them at 16 px for ResNet-18 and fewer when the group's
    features would exceed ``max_elements`` entries, down to one position per image).
    """
    mods = dict(model.named_modules())
    bns = _bn_after(model)
    B = x.shape[0]

    def features_of(g, inputs: dict[str, Tensor], p: int) -> Tensor:
        parts = []
        for c in g.consumers:
            contrib = _contributions(mods[c], inputs[c], g.n_channels, p)
            if c in bns:
                contrib = contrib * _bn_scale(bns[c]).to(contrib.device).reshape(1, 1, -1, 1)
            parts.append(contrib.reshape(g.n_channels, B, -1))
        return torch.cat(parts, 2)

    dense = _consumer_inputs(model, x, {c for g in groups for c in g.consumers}, {})
    removed: dict[str, tuple[int, Tensor]] = {}  # consumer -> (channels, the removed ones)
    kept = {}
    for g in groups:
        C = g.n_channels
        n = widths.get(g.name, C)
        if n == C:
            kept[g.name] = list(range(C))
            continue
        outs = sum(
            mods[c].out_channels if isinstance(mods[c], nn.Conv2d) else mods[c].out_features
            for c in g.consumers
        )
        p = max(1, min(positions, max_elements // max(1, C * B * outs)))
        with torch.no_grad():
            features = features_of(g, dense, p)
            target = features.sum(0)  # the dense network's pre-activations, less a constant
            if removed:  # sequential, after a cut: the features on the partly pruned network
                features = features_of(g, _consumer_inputs(model, x, set(g.consumers), removed), p)
            sel = ispasp(SquaredLoss(features * n, target), n, iterations=iterations)
        kept[g.name] = sorted(int(i) for i in sel.order)
        if sequential:
            cut = torch.ones(C, dtype=torch.bool)
            cut[kept[g.name]] = False
            for c in g.consumers:
                removed[c] = (C, cut.nonzero().flatten())
    return kept
