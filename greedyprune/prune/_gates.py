"""Prunable channel groups found from the model, gates on them, and prefix/suffix splits.

A *prunable group* is a set of channels that Torch-Pruning's dependency graph couples across
layers and that can be removed on its own: it is produced by one ordinary convolution (plus the
depthwise convolutions, batch norms, activations and squeeze-excitation scales that act channel by
channel on it) and read by the *consumers*, the ordinary convolutions or linear layers whose input
channels are these channels. Groups coupled by a residual addition or concatenation are left whole,
as are the stem's group (the first convolution) and the head's group (read by a linear classifier).

A *gate* multiplies a group's channels at the input of every consumer. Setting a channel's gate to
zero is then exactly removing the channel from the whole group, and a non-zero gate folds into the
consumers' weights (``W[:, c] *= g_c``), so surgery reproduces the gated network.

To score K gate vectors of one group at once, the network is split with ``torch.fx`` at the latest
point before the group's first consumer where a single tensor carries everything the rest of the
network needs (the input of a residual block, or just before the consumer in a plain chain): the
prefix is run once per batch, the suffix on K stacked copies with one gate vector per copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx
import torch_pruning as tp
from torch import Tensor, nn

from greedyprune.errors import GreedypruneError, GreedypruneTypeError, refuse

__all__ = ["Gate", "GatedModel", "PrunableGroup", "find_prunable_groups"]


@dataclass
class PrunableGroup:
    """name: the producing convolution (root); producers/consumers: module names."""

    name: str
    n_channels: int
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)


def _op_name(dep) -> str:
    target = dep.target
    fn = getattr(target, "grad_fn", None)
    return type(fn).__name__ if fn is not None else type(target.module).__name__


def find_prunable_groups(
    model: nn.Module,
    example_input: Tensor,
    *,
    include_stem: bool = False,
    include_head: bool = False,
    residual: bool = True,
) -> list[PrunableGroup]:
    """The model's prunable groups in forward order (see the module docstring).

    example_input: [1, C, H, W] on the model's device and dtype (used to trace the graph).
    """
    if not isinstance(model, nn.Module):
        raise refuse("model", model, "a torch.nn.Module", wrong_type=True)
    names = {m: n for n, m in model.named_modules()}
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    was_training = model.training
    model.eval()
    try:
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
        raw = list(dg.get_all_groups(root_module_types=[nn.Conv2d]))
    except Exception as exc:  # the tracer's own failure on a model it cannot group (a shuffle)
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise GreedypruneError(
            f"model={type(model).__name__} cannot be split into channel groups by torch-pruning's "
            f"dependency graph ({detail}); this model is not supported, pick another --arch",
            name="arch",
        ) from None
    finally:
        model.train(was_training)
    order = {n: i for i, n in enumerate(names.values())}
    groups = []
    for grp in raw:
        producers, consumers, coupled, head, stem = [], [], False, False, False
        for dep, _ in grp:
            mod = dep.target.module
            op = _op_name(dep)
            if op.startswith(("Cat", "Split", "Stack", "Unbind")) or (
                not residual and op.startswith(("Add", "Sub"))
            ):
                coupled = True
            if mod not in names or not isinstance(mod, (nn.Conv2d, nn.Linear)):
                continue
            if dg.is_out_channel_pruning_fn(dep.handler):
                producers.append(names[mod])
                stem = stem or mod is first_conv
            elif isinstance(mod, nn.Linear) or mod.groups == 1:
                consumers.append(names[mod])
                head = head or isinstance(mod, nn.Linear)
            else:
                producers.append(names[mod])
        if coupled or not consumers or (head and not include_head) or (stem and not include_stem):
            continue
        # The group is named by its first ordinary producing convolution (the root for surgery).
        mods = dict(model.named_modules())
        roots = [p for p in producers if isinstance(mods[p], nn.Conv2d) and mods[p].groups == 1]
        if not roots:
            continue
        root = min(roots, key=lambda p: order[p])
        groups.append(
            PrunableGroup(
                root, int(mods[root].out_channels), sorted(set(producers)), sorted(set(consumers))
            )
        )
    groups.sort(key=lambda g: min(order[c] for c in g.consumers))
    return groups


class Gate:
    """Per-channel multipliers at the input of a group's consumers.

    ``value: [C]`` applies to every sample (None: no gate). ``stacked: [K, C]`` (set while scoring)
    applies row j to the j-th of K equal slices of the batch, so K candidate gate vectors run in
    one forward pass of a batch of K stacked copies.
    """

    def __init__(self, n_channels: int):
        self.n_channels = int(n_channels)
        self.value: Tensor | None = None
        self.stacked: Tensor | None = None
        self._handles = []

    def _apply(self, x: Tensor) -> Tensor:
        c = self.n_channels
        if x.shape[1] != c:
            raise GreedypruneError(f"gate of {c} channels met an input of shape {tuple(x.shape)}")
        rest = (1,) * (x.dim() - 2)
        if self.stacked is not None:
            k = self.stacked.shape[0]
            xs = x.reshape(k, x.shape[0] // k, *x.shape[1:])
            return (xs * self.stacked.to(x.dtype).reshape(k, 1, c, *rest)).reshape(x.shape)
        if self.value is not None:
            return x * self.value.to(x.dtype).reshape(1, c, *rest)
        return x

    def _hook(self, module, args):
        return (self._apply(args[0]), *args[1:])

    def attach(self, modules: list[nn.Module]) -> None:
        for m in modules:
            self._handles.append(m.register_forward_pre_hook(self._hook))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _live_counts(nodes: list[torch.fx.Node]) -> tuple[list[list[torch.fx.Node]], dict]:
    index = {n: i for i, n in enumerate(nodes)}
    last = {n: max((index[u] for u in n.users), default=index[n]) for n in nodes}
    live = []
    for p in range(len(nodes)):
        live.append([n for n in nodes[:p] if n.op != "get_attr" and last[n] >= p])
    return live, index


def fx_trace(model: nn.Module, needs: str) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace(model)``, or the type error saying that ``needs`` (what reads the
    graph: "greedy selection", "local imitation") wants a traceable model."""
    try:
        return torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for what it cannot follow
        raise GreedypruneTypeError(
            f"{type(model).__name__} could not be traced by torch.fx ({exc}); {needs} needs a "
            "traceable model"
        ) from None


class GatedModel:
    """A model with a :class:`Gate` on each prunable group and prefix/suffix splits.

    The model's own modules are used (nothing is copied), so the gates also act in ``model(x)``.
    Call :meth:`detach` to remove the hooks.
    """

    def __init__(self, model: nn.Module, example_input: Tensor, groups=None):
        self.model = model
        self.example_input = example_input
        self.groups = (
            list(groups) if groups is not None else find_prunable_groups(model, example_input)
        )
        if not self.groups:
            raise GreedypruneError(
                f"found no prunable channel group in {type(model).__name__}; only groups that are "
                "not coupled by residual additions or concatenations can be pruned here"
            )
        self.graph_module = fx_trace(model, "greedy selection")
        mods = dict(model.named_modules())
        self.gates: dict[str, Gate] = {}
        for g in self.groups:
            gate = Gate(g.n_channels)
            gate.attach([mods[c] for c in g.consumers])
            self.gates[g.name] = gate
        self._nodes = list(self.graph_module.graph.nodes)
        self._live, self._index = _live_counts(self._nodes)
        self._splits: dict[str, tuple[nn.Module, nn.Module]] = {}

    def group(self, name: str) -> PrunableGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise GreedypruneError(
            f"no prunable group {name!r}; groups are {[g.name for g in self.groups]}"
        )

    def detach(self) -> None:
        for gate in self.gates.values():
            gate.detach()

    def cut_index(self, name: str) -> int:
        """Index p of the FX node list: nodes[:p] form the prefix, nodes[p:] the suffix."""
        cons = self.group(name).consumers
        q = min(self._index[n] for n in self._nodes if n.op == "call_module" and n.target in cons)
        for p in range(q, 0, -1):
            if len(self._live[p]) == 1:
                return p
        raise GreedypruneError(f"no single-tensor cut before group {name!r}")

    def split(self, name: str) -> tuple[nn.Module, nn.Module]:
        """(prefix, suffix): ``prefix(x) -> h`` and ``suffix(h) -> logits``, sharing the model's
        modules (so gates, and later weight updates, apply)."""
        if name in self._splits:
            return self._splits[name]
        p = self.cut_index(name)
        cut = self._live[p][0]
        pre, env = torch.fx.Graph(), {}
        for n in self._nodes[:p]:
            env[n] = pre.node_copy(n, lambda a: env[a])
        pre.output(env[cut])
        suf, env2 = torch.fx.Graph(), {}
        env2[cut] = suf.placeholder("h")
        for n in self._nodes[:p]:
            if n.op == "get_attr" and any(self._index[u] >= p for u in n.users):
                env2[n] = suf.node_copy(n, lambda a: env2[a])
        for n in self._nodes[p:]:
            env2[n] = suf.node_copy(n, lambda a: env2[a])
        root = self.graph_module
        out = (torch.fx.GraphModule(root, pre), torch.fx.GraphModule(root, suf))
        self._splits[name] = out
        return out
