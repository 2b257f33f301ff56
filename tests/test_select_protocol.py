"""The kernel's objective protocol: declared capabilities, the corrective guard, the on_step hook.

``greedy_select`` reads two flags, ``supports_fused_step`` and ``supports_corrective``, instead of
probing objectives for private methods; ``on_step(step, index, loss)`` is its per-step hook for
side effects, called after the pick is committed and before ``stop``.
"""

from __future__ import annotations

import math

import pytest
import torch

from greedyprune.select import (
    CrossEntropyLoss,
    ElementwiseLoss,
    FactoredSquaredLoss,
    FeatureObjective,
    Objective,
    ShardedSquaredLoss,
    SquaredLoss,
    StackedObjective,
    greedy_select,
)

N, M, C = 7, 5, 3


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _squared(seed=0):
    g = _gen(seed)
    feats = torch.randn(N, M, generator=g, dtype=torch.float64)
    target = torch.randn(M, generator=g, dtype=torch.float64)
    return SquaredLoss(feats, target)


def _factored(seed=0):
    g = _gen(seed)
    return FactoredSquaredLoss(
        torch.randn(N, M, generator=g, dtype=torch.float64),
        torch.randn(N, C, generator=g, dtype=torch.float64),
        torch.randn(M, C, generator=g, dtype=torch.float64),
    )


def _cross_entropy(seed=0):
    g = _gen(seed)
    logits = torch.randn(N, M, C, generator=g, dtype=torch.float64)
    return CrossEntropyLoss(logits, torch.randint(0, C, (M,), generator=g))


def _elementwise(seed=0, cls=ElementwiseLoss):
    g = _gen(seed)
    feats = torch.randn(N, M, generator=g, dtype=torch.float64)
    target = torch.randn(M, generator=g, dtype=torch.float64)
    return cls(feats, target, lambda p, t: (p - t).pow(2) / 2)


def _stacked(seed=0, cls=StackedObjective):
    g = _gen(seed)
    x = torch.randn(4, N, generator=g, dtype=torch.float64)
    y = torch.randn(4, generator=g, dtype=torch.float64)

    def forward(xs, gates):
        k = gates.shape[0]
        return (xs.view(k, -1, N) * gates.unsqueeze(1)).sum(-1).reshape(-1)

    return cls(x, forward, lambda out, t: (out - t).pow(2), N, target=y)


# -- the flags -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "fused", "corrective"),
    [
        (_squared, True, True),
        (_factored, False, True),
        (_cross_entropy, False, False),
        (_elementwise, False, False),
        (_stacked, False, False),
    ],
)
def test_each_objective_declares_what_it_supports(make, fused, corrective):
    obj = make()
    assert obj.supports_fused_step is fused
    assert obj.supports_corrective is corrective
    # what a flag promises is there, under its public name
    if fused:
        assert callable(obj.best_addition)
    if corrective:
        assert callable(obj.feature_rows)
        assert callable(obj.set_weights)
        assert callable(obj.linesearch_losses)
        assert isinstance(obj.target, torch.Tensor)


def test_protocol_base_and_sharded_declarations():
    """The protocol and the feature base default to no capability; the sharded squared loss has
    the fused step only."""
    for cls in (Objective, FeatureObjective):
        assert cls.supports_fused_step is False
        assert cls.supports_corrective is False
    assert ShardedSquaredLoss.supports_fused_step is True
    assert ShardedSquaredLoss.supports_corrective is False
    assert callable(ShardedSquaredLoss.best_addition)


# -- the corrective guard --------------------------------------------------------------------------
class _CountingElementwise(ElementwiseLoss):
    """An ElementwiseLoss (it has target, feature_rows and set_weights) that counts its scoring."""

    calls = 0

    def losses(self, candidates=None):
        type(self).calls += 1
        return super().losses(candidates)

    def add(self, index):
        type(self).calls += 1
        super().add(index)


class _CountingStacked(StackedObjective):
    calls = 0

    def losses(self, candidates=None):
        type(self).calls += 1
        return super().losses(candidates)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: _elementwise(cls=_CountingElementwise), "_CountingElementwise"),
        (_cross_entropy, "CrossEntropyLoss"),
        (lambda: _stacked(cls=_CountingStacked), "_CountingStacked"),
    ],
)
@pytest.mark.parametrize("kwargs", [{}, {"replacement": False}, {"candidates": 3, "generator": 0}])
def test_corrective_is_refused_up_front(make, name, kwargs):
    """weights="corrective" on an objective that does not declare it raises before any step, with
    the class and what it lacks in the message (an ElementwiseLoss used to fail at step 2)."""
    _CountingElementwise.calls = _CountingStacked.calls = 0
    obj = make()
    with pytest.raises(TypeError) as err:
        greedy_select(obj, 3, weights="corrective", **kwargs)
    msg = str(err.value)
    assert f"{name} does not declare it" in msg
    assert "supports_corrective = True" in msg
    assert "simplex_terms, set_weights and linesearch_losses" in msg
    assert "weights='average'" in msg
    assert _CountingElementwise.calls == _CountingStacked.calls == 0
    assert obj.size == 0


def test_linesearch_needs_the_declared_capability():
    with pytest.raises(TypeError, match="ElementwiseLoss has no closed-form line search"):
        _elementwise().linesearch_losses()


# -- flags, not probing ----------------------------------------------------------------------------
class _Delegate:
    """Follows the protocol by delegation to a SquaredLoss, without subclassing anything; the
    capabilities it declares are chosen per test."""

    def __init__(self, inner, fused=False, corrective=False):
        self._inner = inner
        self.n_candidates = inner.n_candidates
        self.supports_fused_step = fused
        self.supports_corrective = corrective
        self.fused_calls = self.loss_calls = 0

    # required
    @property
    def size(self):
        return self._inner.size

    def losses(self, candidates):
        self.loss_calls += 1
        return self._inner.losses(candidates)

    def add(self, index):
        self._inner.add(index)

    def current_loss(self):
        return self._inner.current_loss()

    def reset(self):
        self._inner.reset()

    # optional, always present: only the flags decide whether the kernel uses them
    device = property(lambda self: self._inner.device)
    dtype = property(lambda self: self._inner.dtype)
    target = property(lambda self: self._inner.target)

    def best_addition(self, blocked=None):
        self.fused_calls += 1
        return self._inner.best_addition(blocked)

    def feature_rows(self, index):
        return self._inner.feature_rows(index)

    def simplex_terms(self, indices):
        return self._inner.simplex_terms(indices)

    def set_weights(self, indices, weights):
        self._inner.set_weights(indices, weights)

    def linesearch_losses(self, candidates=None):
        self.loss_calls += 1
        return self._inner.linesearch_losses(candidates)


@pytest.mark.parametrize("replacement", [True, False])
def test_the_fused_step_follows_the_flag(replacement):
    """best_addition is used exactly when supports_fused_step is True; both paths pick alike."""
    ref = greedy_select(_squared(), 6, replacement=replacement)
    on = _Delegate(_squared(), fused=True)
    off = _Delegate(_squared(), fused=False)
    sel_on = greedy_select(on, 6, replacement=replacement)
    sel_off = greedy_select(off, 6, replacement=replacement)
    assert (on.fused_calls, on.loss_calls) == (6, 0)
    assert (off.fused_calls, off.loss_calls) == (0, 6)
    for sel in (sel_on, sel_off):
        assert sel.order.tolist() == ref.order.tolist()
        torch.testing.assert_close(sel.losses, ref.losses, rtol=1e-12, atol=1e-14)


def test_a_squared_loss_that_withdraws_the_fused_step():
    class _NoFused(SquaredLoss):
        supports_fused_step = False

        def best_addition(self, blocked=None):  # pragma: no cover - must not be called
            raise AssertionError("best_addition called although supports_fused_step is False")

    g = _gen(3)
    feats = torch.randn(N, M, generator=g, dtype=torch.float64)
    target = torch.randn(M, generator=g, dtype=torch.float64)
    ref = greedy_select(SquaredLoss(feats, target), 5)
    sel = greedy_select(_NoFused(feats, target), 5)
    assert sel.order.tolist() == ref.order.tolist()


def test_a_declared_corrective_capability_is_enough():
    """A non-FeatureObjective that declares supports_corrective runs the corrective variant and
    picks what SquaredLoss does; a truthy non-bool flag does not count as a declaration."""
    ref = greedy_select(_squared(), 6, weights="corrective")
    sel = greedy_select(_Delegate(_squared(), corrective=True), 6, weights="corrective")
    assert sel.order.tolist() == ref.order.tolist()
    torch.testing.assert_close(sel.losses, ref.losses, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sel.weights, ref.weights, rtol=1e-12, atol=1e-14)
    with pytest.raises(TypeError, match="_Delegate does not declare it"):
        greedy_select(_Delegate(_squared(), corrective=1), 2, weights="corrective")


class _Plain:
    """Only the required protocol: no flags, no optional method, no device or dtype."""

    def __init__(self, inner):
        self._inner = inner
        self.n_candidates = inner.n_candidates
        self.calls = 0

    @property
    def size(self):
        return self._inner.size

    def losses(self, candidates):
        self.calls += 1
        return self._inner.losses(candidates)

    def add(self, index):
        self._inner.add(index)

    def current_loss(self):
        return self._inner.current_loss()

    def reset(self):
        self._inner.reset()


@pytest.mark.parametrize("kwargs", [{}, {"replacement": False}, {"candidates": 3, "generator": 2}])
def test_a_custom_objective_without_capabilities_takes_the_general_path(kwargs):
    ref = greedy_select(_squared(4), 6, **kwargs)
    plain = _Plain(_squared(4))
    sel = greedy_select(plain, 6, **kwargs)
    assert plain.calls == 6
    assert sel.order.tolist() == ref.order.tolist()
    torch.testing.assert_close(sel.losses, ref.losses, rtol=1e-12, atol=1e-14)
    with pytest.raises(TypeError, match="_Plain does not declare it"):
        greedy_select(_Plain(_squared(4)), 2, weights="corrective")


# -- on_step ---------------------------------------------------------------------------------------
def _cases():
    return [
        (_squared, {}),  # fused step
        (_squared, {"replacement": False}),
        (_squared, {"candidates": 3, "generator": 5}),  # general path
        (_squared, {"weights": "corrective"}),
        (_factored, {"weights": "corrective", "replacement": False}),
        (_cross_entropy, {}),
        (_stacked, {"replacement": False}),
        (lambda: _Plain(_squared(1)), {}),
    ]


@pytest.mark.parametrize(("make", "kwargs"), _cases())
def test_on_step_sees_each_committed_step_before_stop(make, kwargs):
    obj = make()
    events = []

    def on_step(step, index, loss):
        assert isinstance(index, int) and isinstance(loss, float)
        events.append(("on_step", step, index, loss, obj.size))

    def stop(step, loss):
        events.append(("stop", step, loss))
        return False

    sel = greedy_select(obj, 5, on_step=on_step, stop=stop, **kwargs)
    assert len(sel.order) == 5
    hooks = [e for e in events if e[0] == "on_step"]
    assert [e[0] for e in events] == ["on_step", "stop"] * 5
    assert [e[1] for e in hooks] == [1, 2, 3, 4, 5]
    assert [e[2] for e in hooks] == sel.order.tolist()
    assert [e[3] for e in hooks] == sel.losses.tolist()
    assert [e[4] for e in hooks] == [1, 2, 3, 4, 5]  # the pick is committed first
    assert [e[2] for e in events if e[0] == "stop"] == sel.losses.tolist()


def test_on_step_runs_on_the_step_that_stops_and_not_after():
    calls = []
    sel = greedy_select(
        _squared(), 6, on_step=lambda *a: calls.append(a), stop=lambda step, loss: step == 3
    )
    assert len(sel.order) == 3
    assert [c[0] for c in calls] == [1, 2, 3]
    # a loss threshold too: the hook sees the step whose loss crosses it
    full = greedy_select(_squared(), 6)
    threshold = float(full.losses[2])
    calls.clear()
    sel = greedy_select(_squared(), 6, on_step=lambda *a: calls.append(a), stop=threshold)
    assert len(calls) == len(sel.order) <= 3
    assert math.isclose(calls[-1][2], float(sel.losses[-1]))


def test_what_on_step_changes_is_seen_by_the_next_step():
    """A hook that swaps the objective's data between steps (what greedy_prune does with its
    mini-batches) changes the next step's scores: the kernel scores after the hook."""

    class _Swappable(ElementwiseLoss):
        def swap(self, target):
            self.target = target

    g = _gen(9)
    feats = torch.randn(N, M, generator=g, dtype=torch.float64)
    t1, t2 = feats[2].clone(), feats[5].clone()
    obj = _Swappable(feats, t1, lambda p, t: (p - t).pow(2))
    sel = greedy_select(
        obj, 2, replacement=False, on_step=lambda step, i, loss: obj.swap(t2) if step == 1 else None
    )
    assert sel.order.tolist() == [2, 5]
    plain = greedy_select(_Swappable(feats, t1, lambda p, t: (p - t).pow(2)), 2, replacement=False)
    assert plain.order.tolist()[0] == 2
    assert plain.order.tolist()[1] != 5  # without the swap the second pick differs


@pytest.mark.parametrize("bad", [1, "log", object()])
def test_on_step_must_be_callable(bad):
    with pytest.raises(
        TypeError, match=r"^on_step=.* must be None or a callable\(step, index, loss\)$"
    ):
        greedy_select(_squared(), 2, on_step=bad)


def test_cross_entropy_elementwise_still_run_with_average_weights():
    """The guard only refuses the corrective variant: the default weights run as before."""
    for obj in (_cross_entropy(), _elementwise(), _stacked()):
        assert len(greedy_select(obj, 3).order) == 3


# -- the hook in use: greedy_prune's per-step batch --------------------------------------------------
@pytest.mark.parametrize("tol", [None, 0.5])
def test_greedy_prune_draws_one_batch_per_step(tol):
    """greedy_prune's on_step draws the next step's batch only when the group goes on: a group of
    s steps uses s batches (none is drawn and dropped after its last step), so the batch stream,
    hence every later pick, is what it was when the draw lived in the stop rule."""
    import greedyprune.prune as gp

    torch.manual_seed(0)
    model = gp.build_model("resnet18", 4).eval()
    example = torch.zeros(1, 3, 8, 8)
    g = _gen(1)
    draws = []

    def batches():
        draws.append(1)
        return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 4, (4,), generator=g)

    x_eval = torch.randn(16, 3, 8, 8, generator=_gen(2))
    with torch.no_grad():
        eval_data = (x_eval, model(x_eval).argmax(1))
    groups = gp.find_prunable_groups(model, example)[:2]
    widths = {grp.name: 3 for grp in groups}
    _, res = gp.greedy_prune(
        model,
        batches,
        example,
        widths=widths,
        tol=tol,
        eval_data=eval_data,
        candidates=4,
        groups=groups,
    )
    steps = [len(rec.order) for rec in res.layers]
    assert steps and all(1 <= s <= 3 for s in steps)
    assert len(draws) == sum(steps)


class _Baselined(_Delegate):
    """Has removal and feature norms as methods; whether the baselines may use them is the flags'."""

    def __init__(self, inner, removal=False, norms=False):
        super().__init__(inner)
        self.supports_removal = removal
        self.supports_feature_norms = norms

    def feature_norms(self):
        return self._inner.feature_norms()

    def removal_losses(self, candidates=None):
        return self._inner.removal_losses(candidates)

    def remove(self, index):
        self._inner.remove(index)


def test_baselines_follow_the_declared_capabilities():
    from greedyprune.select import backward_elimination, magnitude

    with pytest.raises(TypeError, match="supports_feature_norms"):
        magnitude(_Baselined(_squared()), 3)
    with pytest.raises(TypeError, match="supports_removal"):
        backward_elimination(_Baselined(_squared()), 3)
    declared = _Baselined(_squared(), removal=True, norms=True)
    assert magnitude(declared, 3).order.tolist() == magnitude(_squared(), 3).order.tolist()
    got = backward_elimination(_Baselined(_squared(), removal=True), 3)
    assert got.order.tolist() == backward_elimination(_squared(), 3).order.tolist()
    # the shipped feature objectives declare both; the stacked one neither
    assert FeatureObjective.supports_removal and FeatureObjective.supports_feature_norms
    assert not (StackedObjective.supports_removal or Objective.supports_feature_norms)
