"""Exact checks of the selection loop's edges: generators, the candidate count, the record's
labels, progress output, non-finite scores and the fused step's fallback.

Each test states a behaviour the loop promises and that the reference and property tests do not
pin down (found by mutation testing: ``make mutate``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from greedyprune.select import (
    CrossEntropyLoss,
    FactoredSquaredLoss,
    Selection,
    SquaredLoss,
    candidates_per_step,
    greedy_select,
    magnitude,
    make_generator,
)


def _data(seed=0, N=8, m=5):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(N, m, generator=g, dtype=torch.float64)
    return feats, torch.randn(m, generator=g, dtype=torch.float64) * 0.3


class _Scores:
    """A protocol-only objective (the loop's general path) whose scores can be rewritten."""

    def __init__(self, inner, edit=lambda step, scores, cands: scores):
        self.inner, self.edit = inner, edit
        self.n_candidates = inner.n_candidates
        self.device = inner.device
        self.calls = 0

    @property
    def size(self):
        return self.inner.size

    def losses(self, candidates):
        self.calls += 1
        return self.edit(self.inner.size + 1, self.inner.losses(candidates).clone(), candidates)

    def add(self, index):
        self.inner.add(index)

    def current_loss(self):
        return self.inner.current_loss()

    def reset(self):
        self.inner.reset()


# -- generators and the candidate count ------------------------------------------------------------
def test_make_generator():
    g = torch.Generator().manual_seed(3)
    assert make_generator(g) is g
    assert make_generator(12345).initial_seed() == 12345
    # None: a fresh, randomly seeded generator (two of them share a seed with chance ~2^-64)
    assert make_generator(None).initial_seed() != make_generator(None).initial_seed()


def test_a_generator_is_advanced_in_place():
    """A torch.Generator passed in is used (and advanced), not copied: two runs sharing one draw
    different candidates, and the second equals a run from the state the first left behind."""
    feats, target = _data()
    g = torch.Generator().manual_seed(5)
    start = g.get_state()
    first = greedy_select(SquaredLoss(feats, target), 6, candidates=2, generator=g)
    state = g.get_state()
    assert not torch.equal(state, start)
    second = greedy_select(SquaredLoss(feats, target), 6, candidates=2, generator=g)
    again = torch.Generator()
    again.set_state(state)
    third = greedy_select(SquaredLoss(feats, target), 6, candidates=2, generator=again)
    assert (
        first.order.tolist()
        == greedy_select(SquaredLoss(feats, target), 6, candidates=2, generator=5).order.tolist()
    )
    assert second.order.tolist() == third.order.tolist()


@pytest.mark.parametrize(
    ("N", "n", "eps"),
    [(40, 8, 0.1), (2, 100, 0.5), (10, 10, 0.9), (1000, 3, 0.01), (7, 7, 1 / math.e)],
)
def test_eps_candidates_formula(N, n, eps):
    """s = max(1, ceil((N / n) log(1 / eps))): never below one candidate per step."""
    s = candidates_per_step(("eps", eps), N, n)
    assert s == max(1, math.ceil(N / n * math.log(1 / eps)))
    assert isinstance(s, int) and s >= 1


def test_candidates_per_step_plain_values():
    assert candidates_per_step(None, 10, 3) is None
    assert candidates_per_step(4, 10, 3) == 4
    assert candidates_per_step(1, 10, 3) == 1
    assert candidates_per_step(40, 10, 3) == 40  # above N: the loop then scores all N


# -- the record's labels and the progress bar ------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "method"),
    [
        ({}, "greedy"),
        ({"replacement": False}, "greedy_norepl"),
        ({"weights": "corrective"}, "greedy_corrective"),
        ({"weights": "corrective", "replacement": False}, "greedy_corrective_norepl"),
        ({"candidates": 3, "generator": 0}, "greedy"),
    ],
)
def test_method_and_info(kwargs, method):
    feats, target = _data()
    sel = greedy_select(SquaredLoss(feats, target), 4, **kwargs)
    assert sel.method == method
    keys = ("replacement", "candidates_per_step", "weights")
    assert {k: sel.info[k] for k in keys} == {
        "replacement": kwargs.get("replacement", True),
        "candidates_per_step": kwargs.get("candidates"),
        "weights": kwargs.get("weights", "average"),
    }
    assert (sel.weights is not None) and math.isclose(float(sel.weights.sum()), 1.0)


def test_progress_bar_only_when_asked(capsys):
    feats, target = _data()
    greedy_select(SquaredLoss(feats, target), 3)
    assert capsys.readouterr().err == ""
    greedy_select(SquaredLoss(feats, target), 3, progress=True)
    err = capsys.readouterr().err
    # a transient bar: shown while it runs, cleared at the end (no line left behind)
    assert err.lstrip("\r").startswith("greedy:") and "\n" not in err


# -- the corrective weights ------------------------------------------------------------------------
def test_corrective_without_replacement_never_repeats():
    feats, target = _data(1, N=6)
    sel = greedy_select(SquaredLoss(feats, target), 6, weights="corrective", replacement=False)
    assert sorted(sel.order.tolist()) == list(range(6))
    assert bool((sel.weights >= 0).all()) and math.isclose(float(sel.weights.sum()), 1.0)
    pred = torch.tensordot(sel.weights, feats, dims=1)
    assert math.isclose(
        float(sel.losses[-1]), float(((pred - target) ** 2).sum() / 10), rel_tol=1e-10
    )


# -- non-finite scores -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("replacement", [True, False])
def test_non_finite_scores_are_passed_over(bad, replacement):
    """A candidate whose score is NaN or +inf is never picked while a finite one is open; the pick
    is then the best finite candidate and its loss is recorded."""
    feats, target = _data(2)
    clean = greedy_select(SquaredLoss(feats, target), 5, replacement=replacement)
    favourite = int(clean.order[0])

    def spoil(step, scores, cands):
        idx = torch.arange(feats.shape[0]) if cands is None else cands
        scores[idx == favourite] = bad
        return scores

    obj = _Scores(SquaredLoss(feats, target), spoil)
    sel = greedy_select(obj, 5, replacement=replacement)
    assert favourite not in sel.order.tolist()
    assert bool(torch.isfinite(sel.losses).all())
    # the first pick is the best of the others, with its own loss
    first = SquaredLoss(feats, target).losses(None)
    first[favourite] = math.inf
    assert int(sel.order[0]) == int(torch.argmin(first))
    assert float(sel.losses[0]) == float(first.min())


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_all_scores_non_finite_raises(bad):
    feats, target = _data(3)

    def spoil(step, scores, cands):
        return torch.full_like(scores, bad) if step == 2 else scores

    with pytest.raises(FloatingPointError, match="step 2"):
        greedy_select(_Scores(SquaredLoss(feats, target), spoil), 4)


class _FlakyFused(SquaredLoss):
    """A SquaredLoss whose fused step reports a NaN loss from step ``from_step`` on."""

    from_step = 3

    def best_addition(self, blocked=None):
        i, loss = super().best_addition(blocked)
        return (i, math.nan) if self.size + 1 >= self.from_step else (i, loss)


@pytest.mark.parametrize("replacement", [True, False])
def test_fused_step_falls_back_to_the_general_path(replacement):
    """A non-finite fused step hands over to the general path, which keeps the picks closed so
    far closed (no replacement), picks what the fused step would have and counts evaluations
    once per scored candidate."""
    feats, target = _data(4, N=7)
    n = 7 if not replacement else 10
    clean = greedy_select(SquaredLoss(feats, target), n, replacement=replacement)
    flaky = greedy_select(_FlakyFused(feats, target), n, replacement=replacement)
    assert flaky.order.tolist() == clean.order.tolist()
    torch.testing.assert_close(flaky.losses, clean.losses, rtol=1e-12, atol=1e-14)
    assert flaky.evaluations == clean.evaluations


def test_general_path_without_replacement_scores_only_open_candidates():
    """Without replacement the general path asks a protocol-only objective for the open
    candidates only (ascending), and a feature objective's picks never repeat."""
    feats, target = _data(5, N=6)
    seen = []

    def record(step, scores, cands):
        seen.append(None if cands is None else cands.tolist())
        return scores

    sel = greedy_select(_Scores(SquaredLoss(feats, target), record), 6, replacement=False)
    order = sel.order.tolist()
    assert seen[0] is None  # step 1: every candidate is open
    for k in range(1, 6):
        assert seen[k] == sorted(set(range(6)) - set(order[:k]))
    logits = torch.randn(6, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1])
    ce = greedy_select(CrossEntropyLoss(logits, labels), 6, replacement=False)
    assert sorted(ce.order.tolist()) == list(range(6))


# -- removal (backward elimination's step) ---------------------------------------------------------
def test_remove_down_to_empty_and_not_below():
    feats, target = _data(6, N=4)
    obj = SquaredLoss(feats, target)
    obj.add(2)
    obj.add(1)
    obj.remove(2)
    torch.testing.assert_close(obj.prediction(), feats[1], rtol=0, atol=1e-15)
    obj.remove(1)  # a size-1 subnetwork can be emptied
    assert obj.size == 0
    assert float(obj.prediction().abs().max()) <= 1e-15
    with pytest.raises(ValueError, match=r"^cannot remove from an empty subnetwork$"):
        obj.remove(0)


def test_factored_feature_norms_and_weights_match_dense():
    """FactoredSquaredLoss never builds phi_i = a_i w_i^T, yet its norms, re-weighting and rows
    are those of the dense features."""
    g = torch.Generator().manual_seed(7)
    acts = torch.randn(6, 5, generator=g, dtype=torch.float64)
    out_w = torch.randn(6, 3, generator=g, dtype=torch.float64)
    target = torch.randn(5, 3, generator=g, dtype=torch.float64)
    dense = acts.unsqueeze(2) * out_w.unsqueeze(1)
    fac, den = FactoredSquaredLoss(acts, out_w, target), SquaredLoss(dense, target)
    torch.testing.assert_close(fac.feature_norms(), den.feature_norms(), rtol=1e-12, atol=0)
    assert magnitude(fac, 4).order.tolist() == magnitude(den, 4).order.tolist()
    idx = torch.tensor([4, 0, 2])
    torch.testing.assert_close(fac.feature_rows(idx), dense[idx], rtol=0, atol=0)
    w = torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)
    for obj in (fac, den):
        obj.add(1)
        obj.add(3)
        obj.set_weights(idx, w)
    torch.testing.assert_close(fac.prediction(), den.prediction(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        fac.prediction(), torch.tensordot(w, dense[idx], dims=1), rtol=1e-12, atol=1e-14
    )
    assert math.isclose(fac.current_loss(), den.current_loss(), rel_tol=1e-12)


class _Minimal:
    """Only what the loop requires: n_candidates, losses, add, current_loss (no size, device,
    dtype or reset attribute)."""

    def __init__(self, inner):
        self._inner = inner
        self.n_candidates = inner.n_candidates

    def losses(self, candidates):
        return self._inner.losses(candidates)

    def add(self, index):
        self._inner.add(index)

    def current_loss(self):
        return self._inner.current_loss()


@pytest.mark.parametrize("kwargs", [{}, {"replacement": False}, {"candidates": 3, "generator": 1}])
def test_a_minimal_objective_is_enough(kwargs):
    """An objective with only the four required attributes runs on the CPU and picks what the
    full SquaredLoss picks."""
    feats, target = _data(8)
    full = greedy_select(SquaredLoss(feats, target), 6, **kwargs)
    sel = greedy_select(_Minimal(SquaredLoss(feats, target)), 6, **kwargs)
    assert sel.order.tolist() == full.order.tolist()
    torch.testing.assert_close(sel.losses, full.losses, rtol=1e-12, atol=1e-14)
    assert sel.evaluations == full.evaluations


class _Spy(SquaredLoss):
    """A SquaredLoss that counts how it is scored."""

    def __init__(self, *args):
        super().__init__(*args)
        self.fused_calls = self.loss_calls = 0

    def best_addition(self, blocked=None):
        self.fused_calls += 1
        return super().best_addition(blocked)

    def losses(self, candidates=None):
        self.loss_calls += 1
        return super().losses(candidates)


@pytest.mark.parametrize(
    ("kwargs", "fused"),
    [
        ({}, True),
        ({"replacement": False}, True),
        ({"candidates": 8, "generator": 0}, True),  # s = N scores every candidate: same fast path
        ({"candidates": 7, "generator": 0}, False),
        ({"weights": "corrective"}, False),
    ],
)
def test_exact_greedy_on_a_squared_loss_takes_the_fused_step(kwargs, fused):
    """The documented fast path: exact greedy on a SquaredLoss (candidates None or >= N, average
    weights) makes one fused call per step and never asks for a batch of losses."""
    feats, target = _data(9)
    obj = _Spy(feats, target)
    greedy_select(obj, 5, **kwargs)
    assert (obj.fused_calls, obj.loss_calls == 0) == ((5, True) if fused else (0, False))


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_selection_round_trip_keeps_values_and_dtypes(tmp_path, suffix):
    phi = torch.randn(7, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sel = greedy_select(SquaredLoss(phi, phi.mean(0)), 5, replacement=True)
    sel.info["note"] = "kept"
    back = Selection.load(sel.save(tmp_path / f"sel{suffix}"))
    for name in ("order", "counts", "weights", "losses"):
        got, want = getattr(back, name), getattr(sel, name)
        assert got.dtype == (torch.long if name in ("order", "counts") else torch.float64)
        assert torch.equal(got, want.to(got.dtype)), name
    assert (back.method, back.evaluations, back.info) == (sel.method, sel.evaluations, sel.info)


def test_selection_json_without_info_loads_an_empty_info(tmp_path):
    phi = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    path = greedy_select(SquaredLoss(phi, phi.mean(0)), 3).save(tmp_path / "s.json")
    d = json.loads(path.read_text())
    del d["info"]
    path.write_text(json.dumps(d))
    assert Selection.load(path).info == {}
