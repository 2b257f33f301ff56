"""The shared layer-wise loop (``greedyprune.layerwise.select_layerwise``) on a toy front end.

The toy network is a chain of averaging layers: layer l has candidates ``F_l [N, m]`` built from
the average of the rows layer l-1 kept, and each layer's objective is the squared distance of its
running average to a target. A slow reference (plain Python greedy, layer after layer) gives the
picks the loop must reproduce; a recording front end checks the order of plan / select / apply /
between_layers, the skipped and uncut layers, the context and the seeding convention.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from greedyprune.layerwise import LayerPlan, layer_generator, select_layerwise
from greedyprune.select import SquaredLoss, per_sample_loss

M, N = 7, 9


def _data(seed=0, depth=3):
    g = torch.Generator().manual_seed(seed)
    base = [torch.randn(N, M, dtype=torch.float64, generator=g) for _ in range(depth)]
    mix = [torch.rand(N, 1, dtype=torch.float64, generator=g) for _ in range(depth)]
    target = torch.randn(M, dtype=torch.float64, generator=g)
    return base, mix, target


def _features(l, base, mix, below):
    """Layer l's candidates: its own rows plus a share of what the layer below kept."""
    return base[l] if below is None else base[l] + mix[l] * below


def _slow_greedy(feats, target, n, stop=None, replacement=False, lowest=None):
    """Greedy on ``||mean(rows) - target||^2 / (2m)``, ties lowest; ``lowest`` s scores only the
    s open candidates of lowest index (the kernel's ``candidate_order="lowest-index"``)."""
    order, losses = [], []
    for _ in range(n):
        best, best_i = None, None
        pool = [i for i in range(feats.shape[0]) if replacement or i not in order]
        for i in pool[:lowest]:
            avg = feats[[*order, i]].mean(0)
            v = float(0.5 * (avg - target).pow(2).sum() / feats.shape[1])
            if best is None or v < best:
                best, best_i = v, i
        order.append(best_i)
        losses.append(best)
        if stop is not None and best <= stop:
            break
    return order, losses


def _slow_layerwise(base, mix, target, sizes, stops, **kw):
    below, picks = None, []
    for l, n in enumerate(sizes):
        feats = _features(l, base, mix, below)
        order, _ = _slow_greedy(feats, target, n, stops[l], **kw)
        picks.append(order)
        below = feats[order].mean(0)
    return picks


class _Toy:
    """A front end over the chain; records every call in ``log``."""

    def __init__(self, base, mix, target, sizes, stops, cut=None, skip=()):
        self.base, self.mix, self.target = base, mix, target
        self.sizes, self.stops = sizes, stops
        self.cut = cut or (lambda l: True)
        self.skip = set(skip)
        self.below = None
        self.log: list = []
        self.steps: dict[int, list[int]] = {}
        self.generators: list = []

    def plan(self, l, gen):
        self.log.append(("plan", l))
        self.generators.append(gen)
        if l in self.skip:
            return None
        feats = _features(l, self.base, self.mix, self.below)
        obj = SquaredLoss(feats, self.target)

        def on_step(step, index, loss):
            self.steps.setdefault(l, []).append(index)

        return LayerPlan(obj, self.sizes[l], stop=self.stops[l], on_step=on_step, state=feats)

    def apply(self, l, spec, sel):
        self.log.append(("apply", l))
        self.below = spec.state[sel.order].mean(0)
        return self.cut(l)

    def between(self, l):
        self.log.append(("between", l))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_picks_match_a_slow_layer_by_layer_reference(seed):
    base, mix, target = _data(seed)
    sizes, stops = [4, 5, 3], [None, 0.21, None]  # seeds 1, 2 stop layer 1 early
    toy = _Toy(base, mix, target, sizes, stops)
    sels = select_layerwise(range(3), toy.plan, toy.apply, replacement=False)
    want = _slow_layerwise(base, mix, target, sizes, stops)
    assert [s.order.tolist() for s in sels] == want
    assert len(want[1]) == (5 if seed == 0 else 3)
    # on_step saw every step of every layer, in order
    assert [toy.steps[l] for l in range(3)] == want


@pytest.mark.parametrize(
    "kw, ref",
    [
        (dict(replacement=True), dict(replacement=True)),
        (dict(replacement=False, candidates=3, candidate_order="lowest-index"), dict(lowest=3)),
    ],
    ids=["replacement", "lowest-index"],
)
def test_the_loop_options_reach_every_layer(kw, ref):
    base, mix, target = _data(6)
    sizes = [6, 6, 6]
    toy = _Toy(base, mix, target, sizes, [None] * 3)
    sels = select_layerwise(range(3), toy.plan, toy.apply, **kw)
    want = _slow_layerwise(base, mix, target, sizes, [None] * 3, **ref)
    assert [s.order.tolist() for s in sels] == want
    if kw["replacement"]:
        assert any(len(set(o)) < len(o) for o in want)  # a repeat, so the option shows


def test_between_layers_once_per_cut_layer_after_apply():
    base, mix, target = _data(3, depth=4)
    toy = _Toy(base, mix, target, [3, 3, 3, 3], [None] * 4, cut=lambda l: l != 1, skip={2})
    sels = select_layerwise(range(4), toy.plan, toy.apply, between_layers=toy.between)
    assert sels[2] is None and all(sels[l] is not None for l in (0, 1, 3))
    assert toy.log == [
        ("plan", 0),
        ("apply", 0),
        ("between", 0),
        ("plan", 1),
        ("apply", 1),
        ("plan", 2),
        ("plan", 3),
        ("apply", 3),
        ("between", 3),
    ]


def test_one_generator_through_the_run_and_none_is_seed_zero():
    base, mix, target = _data(4)
    runs = {}
    for key, generator in [("none", None), ("zero", 0), ("gen", torch.Generator().manual_seed(0))]:
        toy = _Toy(base, mix, target, [4, 4, 4], [None] * 3)
        sels = select_layerwise(range(3), toy.plan, toy.apply, candidates=2, generator=generator)
        runs[key] = [s.order.tolist() for s in sels]
        # the same generator object is handed to every layer's plan
        assert all(g is toy.generators[0] for g in toy.generators)
        if key == "gen":
            assert toy.generators[0] is generator
    assert runs["none"] == runs["zero"] == runs["gen"]
    toy = _Toy(base, mix, target, [4, 4, 4], [None] * 3)
    other = select_layerwise(range(3), toy.plan, toy.apply, candidates=2, generator=1)
    assert [s.order.tolist() for s in other] != runs["zero"]
    with pytest.raises(TypeError, match="generator"):
        layer_generator(1.5)
    with pytest.raises(TypeError, match="generator"):
        layer_generator(True)


def test_context_wraps_plan_and_selection_only_and_select_overrides():
    base, mix, target = _data(5)
    inside: list[bool] = []
    state = {"in": False}

    @contextlib.contextmanager
    def ctx(l):
        state["in"] = True
        try:
            yield
        finally:
            state["in"] = False

    toy = _Toy(base, mix, target, [2, 2], [None, None])

    def plan(l, gen):
        inside.append(state["in"])
        spec = toy.plan(l, gen)
        if l == 1:  # a baseline in place of the greedy selection
            spec.select = lambda obj, n, g: _first_n(obj, n, inside, state)
        return spec

    def apply(l, spec, sel):
        inside.append(state["in"])
        return toy.apply(l, spec, sel)

    sels = select_layerwise(range(2), plan, apply, context=ctx)
    assert inside == [True, False, True, True, False]
    assert sels[1].order.tolist() == [0, 1]


def _first_n(obj, n, inside, state):
    from greedyprune.select import Selection

    inside.append(state["in"])
    return Selection.from_order(list(range(n)), [0.0] * n, obj.n_candidates)


def test_per_sample_loss():
    out = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    t = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert torch.equal(per_sample_loss("squared", out, t), torch.tensor([2.5, 2.5]))
    ce = per_sample_loss("cross_entropy", out, torch.tensor([1, 0]))
    assert torch.allclose(
        ce, torch.nn.functional.cross_entropy(out, torch.tensor([1, 0]), reduction="none")
    )
    with pytest.raises(
        ValueError,
        match=r"^target\.shape=\(2, 1\) must be the outputs' \(2, 2\) for the squared loss",
    ):
        per_sample_loss("squared", out, t[:, :1])
    with pytest.raises(ValueError, match="not known"):
        per_sample_loss("hinge", out, t)
