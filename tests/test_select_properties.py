"""Properties of the selection kernel that hold on every instance, checked on generated ones.

Hypothesis draws the sizes and a seed; the features come from a seeded Gaussian generator, so no
instance hides a sub-rounding near-tie that would make "which index wins" a matter of summation
order (exact ties are tested in test_select_reference.py). Every loss is recomputed here from its
definition, in float64: ``L(w) = ||sum_i w_i phi_i - t||^2 / 2`` with ``||h||^2 = (1/m) sum_j h_j^2``
(summed over outputs).
"""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greedyprune.select import (
    FactoredSquaredLoss,
    Selection,
    SquaredLoss,
    backward_elimination,
    greedy_select,
    magnitude,
    random_subset,
)

# The `device` fixture returns a constant device, so reusing it across examples is safe.
FIXTURE_OK = settings(
    suppress_health_check=[
        *settings.default.suppress_health_check,
        HealthCheck.function_scoped_fixture,
    ]
)

seeds = st.integers(0, 2**31 - 1)


# Tiny tensors: one torch thread (see conftest's one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- instances and the loss from its definition --------------------------------------------------
def make_instance(seed, N, m, c, target_kind, device, dtype=torch.float64):
    """features [N, m] (c = 0) or [N, m, c]; target [m(, c)] and, for hull targets, its weights.

    target_kind: "full" (t = f_N, the full network), "hull" (a random convex combination of the
    features; weights from a Dirichlet(1) draw) or "free" (an unrelated Gaussian target).
    Returns (features, target, hull_weights [N] float64 or None), features and target in dtype on
    device.
    """
    g = torch.Generator().manual_seed(seed)
    shape = (N, m) if c == 0 else (N, m, c)
    feats = torch.randn(*shape, generator=g, dtype=torch.float64)
    w = None
    if target_kind == "full":
        w = torch.full((N,), 1.0 / N, dtype=torch.float64)
    elif target_kind == "hull":
        e = -torch.log(torch.rand(N, generator=g, dtype=torch.float64).clamp_min(1e-300))
        w = e / e.sum()
    if w is None:
        target = torch.randn(*shape[1:], generator=g, dtype=torch.float64)
    else:
        target = torch.tensordot(w, feats, dims=1)
    return feats.to(device=device, dtype=dtype), target.to(device=device, dtype=dtype), w


def ref_loss(feats, target, weights) -> float:
    """L(weights) in float64 on the CPU: ||sum_i w_i phi_i - t||^2 / 2 (mean over the m data)."""
    f64, t64 = feats.double().cpu(), target.double().cpu()
    pred = torch.tensordot(weights.double().cpu(), f64, dims=1)
    return float((pred - t64).pow(2).sum() / (2 * f64.shape[1]))


def loss_scale(feats, target) -> float:
    """A magnitude of the terms summed in a loss, to scale rounding tolerances."""
    c = 1 if feats.dim() == 2 else feats.shape[2]
    return (float(feats.abs().max()) + float(target.abs().max())) ** 2 * c


def assert_valid(sel: Selection, N: int, n: int, *, repeats_allowed: bool) -> None:
    assert sel.order.dtype == torch.long and sel.order.shape == (n,)
    assert sel.losses.shape == (n,)
    assert int(sel.order.min()) >= 0 and int(sel.order.max()) < N
    assert torch.equal(sel.counts, torch.bincount(sel.order, minlength=N))
    assert int(sel.counts.sum()) == n
    assert bool((sel.weights >= 0).all())
    assert math.isclose(float(sel.weights.sum()), 1.0, rel_tol=1e-12)
    if not repeats_allowed:
        assert int(sel.counts.max()) == 1


# -- the greedy loop -----------------------------------------------------------------------------
@FIXTURE_OK
@given(
    seed=seeds,
    N=st.integers(1, 12),
    m=st.integers(1, 6),
    c=st.sampled_from([0, 3]),
    n=st.integers(1, 20),
    replacement=st.booleans(),
    s=st.one_of(st.none(), st.integers(1, 14)),
    target_kind=st.sampled_from(["full", "hull", "free"]),
)
def test_greedy_record_is_consistent(seed, N, m, c, n, replacement, s, target_kind, device):
    """counts = bincount(order), counts sum to n, weights = counts / n sum to one, no repeats
    without replacement, evaluations counts every scored candidate, and ``losses[k-1]`` is the loss
    of the weights rebuilt from ``order[:k]`` (``Selection.prefix_weights``)."""
    if not replacement:
        n = min(n, N)
    feats, target, _ = make_instance(seed, N, m, c, target_kind, device)
    sel = greedy_select(
        SquaredLoss(feats, target), n, replacement=replacement, candidates=s, generator=seed
    )
    assert_valid(sel, N, n, repeats_allowed=replacement)
    assert torch.equal(sel.weights, sel.counts.double() / n)
    pools = [N if replacement else N - k for k in range(n)]
    assert sel.evaluations == sum(p if s is None else min(s, p) for p in pools)
    tol = 1e-11 * loss_scale(feats, target)
    for k in range(1, n + 1):
        expect = ref_loss(feats, target, sel.prefix_weights(k))
        assert abs(float(sel.losses[k - 1]) - expect) <= tol, (k, float(sel.losses[k - 1]), expect)


@FIXTURE_OK
@given(
    seed=seeds,
    N=st.integers(1, 12),
    m=st.integers(1, 6),
    c=st.sampled_from([0, 2]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_first_step_is_the_best_single_neuron(seed, N, m, c, dtype, device):
    """Step 1 adds phi_i to the empty subnetwork, so losses[0] = min_i L(e_i) and order[0] attains it."""
    feats, target, _ = make_instance(seed, N, m, c, "free", device, dtype)
    sel = greedy_select(SquaredLoss(feats, target), 1)
    singles = [ref_loss(feats, target, torch.eye(N, dtype=torch.float64)[i]) for i in range(N)]
    eps = torch.finfo(dtype).eps
    tol = 8 * eps * (m * (1 if c == 0 else c)) * loss_scale(feats, target)
    best = min(singles)
    assert singles[int(sel.order[0])] <= best + tol
    assert abs(float(sel.losses[0]) - best) <= tol


def _prop_a_bound(feats, target, w) -> float:
    """B_w = sum_i w_i ||phi_i - t||^2 (the bound of Proposition A; B_w <= D^2 = max_i ||phi_i - t||^2
    since w lies on the simplex: that inequality and the library's B and D are tested in
    test_theory.py against ``bound_constants``)."""
    f64, t64 = feats.double().cpu(), target.double().cpu()
    m = f64.shape[1]
    dist2 = (f64 - t64.unsqueeze(0)).reshape(f64.shape[0], -1).pow(2).sum(1) / m
    return float((w * dist2).sum())


def check_proposition_a(feats, target, w, n) -> None:
    """Greedy with replacement toward a target t = sum_i w_i phi_i in the hull satisfies, for every
    k = 1..n (e_k = ||f_k - t||^2 = 2 L(f_k)),

        e_k <= B_w / k <= D^2 / k,   B_w = sum_i w_i ||phi_i - t||^2,  D = max_i ||phi_i - t||.

    Derivation (docs/theory.md, Proposition A). With f_{k+1} = (k f_k + phi_i) / (k + 1),

        (k+1)^2 e_{k+1} = k^2 e_k + 2k <f_k - t, phi_i - t> + ||phi_i - t||^2.

    Greedy picks the i minimising e_{k+1}, hence the right side; the minimum is at most its
    w-weighted average, and sum_i w_i (phi_i - t) = 0 kills the middle term:
    (k+1)^2 e_{k+1} <= k^2 e_k + B_w. Step 1 gives e_1 = min_i ||phi_i - t||^2 <= B_w, so by
    induction k^2 e_k <= k B_w. With t = f_N (w uniform) B_w is the mean squared distance B.
    """
    sel = greedy_select(SquaredLoss(feats, target), n)
    b_w = _prop_a_bound(feats, target, w)
    # Rounding: the kernel's loss carries an absolute error of a few eps times the loss's terms.
    slack = 64 * torch.finfo(feats.dtype).eps * loss_scale(feats, target)
    e = [2 * float(x) for x in sel.losses]
    # The induction step itself, step by step: each greedy step does at least as well as the
    # w-average candidate, (k+1)^2 e_{k+1} <= k^2 e_k + B_w (e_0 = 0 weighted by k^2 = 0). This is
    # sharper than e_k <= B_w / k: a step that picks a worse candidate than the average can hide
    # under the slack that earlier, better-than-average steps leave in the cumulative bound.
    prev = 0.0
    for k in range(1, n + 1):
        assert k * k * e[k - 1] <= prev + b_w + k * k * slack, (k, e[k - 1], prev, b_w)
        assert e[k - 1] <= b_w / k + slack, (k, e[k - 1], b_w / k)
        prev = k * k * e[k - 1]


@FIXTURE_OK
@given(
    seed=seeds,
    N=st.integers(1, 10),
    m=st.integers(1, 6),
    c=st.sampled_from([0, 2]),
    n=st.integers(1, 40),
    target_kind=st.sampled_from(["full", "hull"]),
)
def test_proposition_a(seed, N, m, c, n, target_kind, device):
    """e_k <= B_w / k <= D^2 / k for every k; see :func:`check_proposition_a` for the derivation."""
    feats, target, w = make_instance(seed, N, m, c, target_kind, device)
    check_proposition_a(feats, target, w, n)


def test_proposition_a_on_a_thousand_instances():
    """The same inequality swept over 1000 seeded instances (sizes drawn per instance)."""
    g = torch.Generator().manual_seed(2020)
    for seed in range(1000):
        N = int(torch.randint(2, 9, (1,), generator=g))
        m = int(torch.randint(1, 6, (1,), generator=g))
        kind = "full" if seed % 2 else "hull"
        feats, target, w = make_instance(seed, N, m, 0, kind, torch.device("cpu"))
        check_proposition_a(feats, target, w, 30)


def test_random_subset_identity_by_enumeration():
    """For t = f_N and i_1..i_n i.i.d. uniform, E e_n = B / n exactly (B = mean_i ||phi_i - t||^2):
    the cross terms <phi_i - t, phi_j - t> average to zero. Enumerate all N^n draws of a small
    instance and average the objective's own losses."""
    for N, m, n in [(3, 2, 3), (4, 3, 2), (2, 5, 4)]:
        feats, target, w = make_instance(N * 100 + n, N, m, 0, "full", torch.device("cpu"))
        b = _prop_a_bound(feats, target, w)
        total = 0.0
        for draw in itertools.product(range(N), repeat=n):
            obj = SquaredLoss(feats, target)
            for i in draw:
                obj.add(i)
            total += 2 * obj.current_loss()
        assert math.isclose(total / N**n, b / n, rel_tol=1e-12)


def test_random_subset_matches_the_identity_in_the_mean():
    """random_subset(replacement=True) samples that distribution: over R seeded draws the mean of
    e_n lies within 5 standard errors of B / n (a check of its sampling, not of a rate)."""
    feats, target, w = make_instance(7, 6, 4, 0, "full", torch.device("cpu"))
    b = _prop_a_bound(feats, target, w)
    n, R = 5, 1500
    gen = torch.Generator().manual_seed(11)
    e = torch.tensor(
        [
            2
            * float(
                random_subset(
                    SquaredLoss(feats, target), n, replacement=True, generator=gen
                ).losses[-1]
            )
            for _ in range(R)
        ],
        dtype=torch.float64,
    )
    assert abs(float(e.mean()) - b / n) <= 5 * float(e.std()) / math.sqrt(R)


@FIXTURE_OK
@given(
    seed=seeds,
    N=st.integers(1, 10),
    m=st.integers(1, 6),
    c=st.sampled_from([0, 2]),
    n=st.integers(1, 15),
    target_kind=st.sampled_from(["full", "hull", "free"]),
)
def test_corrective_loss_never_rises(seed, N, m, c, n, target_kind, device):
    """The corrective variant's loss is non-increasing, is at most the loss of the uniform
    average over its own support at every step (the re-solve optimises over that simplex, and
    uniform is feasible), equals plain greedy's at step 1 and is at most plain greedy's at step 2
    (its line search includes plain greedy's step 1/2). Its weights lie on the simplex and give its
    final loss."""
    feats, target, _ = make_instance(seed, N, m, c, target_kind, device)
    sel = greedy_select(SquaredLoss(feats, target), n, weights="corrective")
    plain = greedy_select(SquaredLoss(feats, target), min(n, 2))
    assert_valid(sel, N, n, repeats_allowed=True)
    scale = loss_scale(feats, target)
    tol = 1e-10 * scale
    losses = sel.losses.tolist()
    for k in range(1, n):
        assert losses[k] <= losses[k - 1] + tol, (k, losses[k], losses[k - 1])
    for k in range(1, n + 1):
        support = torch.unique(sel.order[:k])
        uniform = torch.zeros(N, dtype=torch.float64)
        uniform[support] = 1.0 / support.numel()
        assert losses[k - 1] <= ref_loss(feats, target, uniform) + tol
    assert abs(losses[0] - float(plain.losses[0])) <= tol
    if n >= 2:
        assert losses[1] <= float(plain.losses[1]) + tol
    assert set(sel.support.tolist()) <= set(sel.order.tolist())
    assert abs(losses[-1] - ref_loss(feats, target, sel.weights)) <= tol


@FIXTURE_OK
@given(seed=seeds, N=st.integers(1, 12), m=st.integers(1, 6), c=st.sampled_from([0, 3]))
def test_all_neurons_without_replacement_is_the_full_network(seed, N, m, c, device):
    feats, target, _ = make_instance(seed, N, m, c, "free", device)
    obj = SquaredLoss(feats, target)
    sel = greedy_select(obj, N, replacement=False)
    assert sorted(sel.order.tolist()) == list(range(N))
    assert torch.equal(sel.weights, torch.full((N,), 1.0 / N, dtype=torch.float64))
    torch.testing.assert_close(obj.prediction(), feats.mean(0), rtol=1e-12, atol=1e-12)
    full = ref_loss(feats, target, torch.full((N,), 1.0 / N, dtype=torch.float64))
    assert abs(float(sel.losses[-1]) - full) <= 1e-11 * loss_scale(feats, target)


class _Plain:
    """A SquaredLoss seen only through the Objective protocol: the loop's general path."""

    def __init__(self, inner):
        self.inner = inner
        self.n_candidates = inner.n_candidates
        self.device = inner.device

    @property
    def size(self):
        return self.inner.size

    def losses(self, candidates):
        return self.inner.losses(candidates)

    def add(self, index):
        self.inner.add(index)

    def current_loss(self):
        return self.inner.current_loss()

    def reset(self):
        self.inner.reset()


@FIXTURE_OK
@given(
    seed=seeds,
    N=st.integers(1, 12),
    m=st.integers(1, 6),
    c=st.sampled_from([0, 3]),
    n=st.integers(1, 20),
    replacement=st.booleans(),
)
def test_fast_path_and_stochastic_with_s_at_least_n_equal_exact_greedy(
    seed, N, m, c, n, replacement, device
):
    """SquaredLoss's fused step, the protocol-only general path, and stochastic greedy with s >= N
    (on either path) pick the same neurons with the same losses."""
    if not replacement:
        n = min(n, N)
    feats, target, _ = make_instance(seed, N, m, c, "free", device)
    runs = [
        greedy_select(SquaredLoss(feats, target), n, replacement=replacement),
        greedy_select(_Plain(SquaredLoss(feats, target)), n, replacement=replacement),
        greedy_select(
            SquaredLoss(feats, target), n, replacement=replacement, candidates=N, generator=seed
        ),
        greedy_select(
            _Plain(SquaredLoss(feats, target)),
            n,
            replacement=replacement,
            candidates=N + 3,
            generator=seed,
        ),
    ]
    tol = 1e-11 * loss_scale(feats, target)
    for other in runs[1:]:
        assert torch.equal(other.order, runs[0].order)
        assert float((other.losses - runs[0].losses).abs().max()) <= tol
        assert other.evaluations == runs[0].evaluations


def test_eps_candidates_sets_s_from_n_and_eps():
    feats, target, _ = make_instance(3, 40, 3, 0, "free", torch.device("cpu"))
    sel = greedy_select(SquaredLoss(feats, target), 8, candidates=("eps", 0.1), generator=0)
    assert sel.info["candidates_per_step"] == math.ceil(40 / 8 * math.log(10))
    assert sel.evaluations == 8 * math.ceil(40 / 8 * math.log(10))


@given(seed=seeds, N=st.integers(2, 10), threshold_step=st.integers(1, 12))
def test_stop_threshold_and_callback(seed, N, threshold_step):
    """A threshold stops at the first step whose loss is at or below it; a callback stops at the
    step where it first returns True, having seen the steps 1, 2, ... in order."""
    feats, target, _ = make_instance(seed, N, 3, 0, "free", torch.device("cpu"))
    full = greedy_select(SquaredLoss(feats, target), 12)
    threshold = float(full.losses[threshold_step - 1])
    first = next(k for k in range(1, 13) if float(full.losses[k - 1]) <= threshold)
    cut = greedy_select(SquaredLoss(feats, target), 12, stop=threshold)
    assert torch.equal(cut.order, full.order[:first])
    seen = []
    cb = greedy_select(
        SquaredLoss(feats, target), 12, stop=lambda step, loss: seen.append(step) or step == 3
    )
    assert seen == [1, 2, 3] and cb.n == 3
    assert torch.equal(cb.order, full.order[:3])


# -- the record ---------------------------------------------------------------------------------
@st.composite
def selections(draw):
    N = draw(st.integers(1, 30))
    order = draw(st.lists(st.integers(0, N - 1), min_size=1, max_size=40))
    losses = draw(
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False, width=64),
            min_size=len(order),
            max_size=len(order),
        )
    )
    sel = Selection.from_order(
        order,
        losses,
        N,
        evaluations=draw(st.integers(0, 10**9)),
        method=draw(st.sampled_from(["greedy", "random", "backward", "magnitude"])),
    )
    if draw(st.booleans()):
        raw = torch.tensor(
            draw(st.lists(st.floats(0.01, 1.0), min_size=N, max_size=N)), dtype=torch.float64
        )
        sel.weights = raw / raw.sum()
    sel.info = draw(
        st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3)
    )
    return sel


@settings(max_examples=25)
@given(sel=selections(), suffix=st.sampled_from([".json", ".npz"]))
def test_save_load_round_trip(sel, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = sel.save(Path(tmp) / f"sel{suffix}")
        back = Selection.load(path)
    for name in ("order", "counts", "weights", "losses"):
        a, b = getattr(sel, name), getattr(back, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert (back.evaluations, back.method, back.info) == (sel.evaluations, sel.method, sel.info)


# -- baselines ----------------------------------------------------------------------------------
@FIXTURE_OK
@given(
    seed=seeds,
    N=st.integers(1, 12),
    m=st.integers(1, 5),
    n=st.integers(1, 15),
    replacement=st.booleans(),
)
def test_random_subset_is_valid(seed, N, m, n, replacement, device):
    if not replacement:
        n = min(n, N)
    feats, target, _ = make_instance(seed, N, m, 0, "free", device)
    sel = random_subset(SquaredLoss(feats, target), n, replacement=replacement, generator=seed)
    assert_valid(sel, N, n, repeats_allowed=replacement)
    again = random_subset(SquaredLoss(feats, target), n, replacement=replacement, generator=seed)
    assert torch.equal(sel.order, again.order)
    tol = 1e-11 * loss_scale(feats, target)
    for k in range(1, n + 1):
        assert abs(float(sel.losses[k - 1]) - ref_loss(feats, target, sel.prefix_weights(k))) <= tol


@FIXTURE_OK
@given(
    seed=seeds, N=st.integers(1, 12), m=st.integers(1, 5), n=st.integers(1, 12), ties=st.booleans()
)
def test_magnitude_picks_largest_norms_first(seed, N, m, n, ties, device):
    """order lists the n largest norms in non-increasing order, ties to the lowest index; given
    scores replace the norms."""
    n = min(n, N)
    feats, target, _ = make_instance(seed, N, m, 0, "free", device)
    if ties:
        # Duplicated rows have bit-identical norms: exact ties.
        feats[N // 2 :] = feats[: N - N // 2].clone()
    obj = SquaredLoss(feats, target)
    sel = magnitude(obj, n)
    assert_valid(sel, N, n, repeats_allowed=False)
    norms = (feats.double().cpu().pow(2).sum(1) / m).sqrt()
    key = sorted(range(N), key=lambda i: (-float(norms[i]), i))
    picked = sel.order.tolist()
    chosen = norms[sel.order]
    assert bool((chosen[:-1] >= chosen[1:] - 1e-12).all())
    unpicked = [i for i in range(N) if i not in picked]
    if unpicked:
        assert float(norms[unpicked].max()) <= float(chosen.min()) + 1e-12
    assert picked == key[:n]
    scores = torch.randn(N, generator=torch.Generator().manual_seed(seed))
    by_score = magnitude(SquaredLoss(feats, target), n, scores=scores)
    assert by_score.order.tolist() == sorted(range(N), key=lambda i: (-float(scores[i]), i))[:n]


def slow_backward(feats, target):
    """Backward elimination from the definition, float64: returns (kept-order, loss at each size)."""
    N = feats.shape[0]
    alive = list(range(N))
    removed = []
    loss_at = {N: ref_loss(feats, target, torch.full((N,), 1.0 / N, dtype=torch.float64))}
    while len(alive) > 1:
        best, best_loss = None, math.inf
        for j in alive:
            w = torch.zeros(N, dtype=torch.float64)
            w[[i for i in alive if i != j]] = 1.0 / (len(alive) - 1)
            loss = ref_loss(feats, target, w)
            if loss < best_loss:
                best, best_loss = j, loss
        alive.remove(best)
        removed.append(best)
        loss_at[len(alive)] = best_loss
    return [alive[0], *reversed(removed)], [loss_at[k] for k in range(1, N + 1)]


@FIXTURE_OK
@given(
    seed=seeds,
    N=st.integers(1, 9),
    m=st.integers(1, 5),
    n=st.integers(1, 9),
    factored=st.booleans(),
)
def test_backward_elimination_matches_slow_reference(seed, N, m, n, factored, device):
    """order[:k] is the set kept at size k, the loss path is the slow loop's, and the objective is
    left holding the size-n subnetwork."""
    n = min(n, N)
    if factored:
        g = torch.Generator().manual_seed(seed)
        acts = torch.randn(N, m, generator=g, dtype=torch.float64)
        out_w = torch.randn(N, 2, generator=g, dtype=torch.float64)
        target = torch.randn(m, 2, generator=g, dtype=torch.float64)
        feats = acts.unsqueeze(2) * out_w.unsqueeze(1)
        acts, out_w, target = acts.to(device), out_w.to(device), target.to(device)
        obj = FactoredSquaredLoss(acts, out_w, target)
    else:
        feats, target, _ = make_instance(seed, N, m, 0, "free", device)
        obj = SquaredLoss(feats, target)
    sel = backward_elimination(obj, n)
    assert_valid(sel, N, n, repeats_allowed=False)
    order, losses = slow_backward(feats, target)
    assert sel.order.tolist() == order[:n]
    tol = 1e-11 * loss_scale(feats, target)
    assert max(abs(a - b) for a, b in zip(sel.losses.tolist(), losses[:n])) <= tol
    assert obj.size == n
    assert abs(obj.current_loss() - losses[n - 1]) <= tol
