"""The Gram-form objectives against slow, obvious references on materialised layer problems.

References: the contributions ``A_c`` computed by a real convolution with one input channel kept;
``SquaredLoss`` on them; least squares by ``torch.linalg.lstsq`` on the materialised patches or
contributions; brute force over every kept set change. float64 throughout, so the tolerances are
rounding (1e-10 relative), not judgement.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from greedyprune.select import (
    FixedWeightLoss,
    GramLoss,
    PatchGram,
    RefitLoss,
    SquaredLoss,
    backward_elimination,
    backward_to,
    channel_gram,
    greedy_select,
    lasso_gram,
    lasso_support,
    magnitude,
    swap_search,
)

D64 = torch.float64


def _problem(seed=0, n=60, C=7, K=3, O=5, noise=0.3):
    """Patches X [n, C, K], weights W [O, C, K], target Z [n, O] (the dense output plus noise so
    that no subset fits exactly), contributions A [C, n, O], and the patch terms."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, C, K, generator=g, dtype=D64)
    X = X * torch.linspace(0.2, 2.0, C, dtype=D64).reshape(1, C, 1)  # channels of unequal energy
    W = torch.randn(O, C, K, generator=g, dtype=D64)
    Z = torch.einsum("nck,ock->no", X, W) + noise * torch.randn(n, O, generator=g, dtype=D64)
    A = torch.einsum("nck,ock->cno", X, W)
    acc = PatchGram(C, K, O)
    for chunk in (slice(0, n // 3), slice(n // 3, n)):  # two chunks: accumulation is exact
        acc.update(X[chunk], Z[chunk])
    return X, W, Z, A, acc


def _lstsq_error(M: torch.Tensor, Z: torch.Tensor) -> float:
    """min_B ||Z - M B||^2 by a direct solve (M [n, p], Z [n, O])."""
    if M.shape[1] == 0:
        return float(Z.pow(2).sum())
    B = torch.linalg.lstsq(M, Z, driver="gelsd").solution
    return float((Z - M @ B).pow(2).sum())


def _full_error(X, Z, S) -> float:
    """The consumer's full refit on the kept channels S: every weight of their patch columns."""
    return _lstsq_error(X[:, sorted(S), :].reshape(X.shape[0], -1), Z)


def _scalar_error(A, Z, S) -> float:
    """One least-squares scale per kept channel: ||Z - sum_S w_c A_c||^2 at the best w."""
    cols = A[sorted(S)].reshape(len(S), -1).T
    return _lstsq_error(cols, Z.reshape(-1, 1))


def _fixed_error(A, Z, S) -> float:
    return float((Z - A[sorted(S)].sum(0)).pow(2).sum()) if S else float(Z.pow(2).sum())


def _close(a, b, scale):
    assert abs(a - b) <= 1e-10 * scale, (a, b)


def _greedy_reference(error, C, n):
    """The slow, obvious forward greedy: each step the channel whose addition gives the least
    error (ties to the lowest index)."""
    S, losses = [], []
    for _ in range(n):
        best = min((error([*S, c]), c) for c in range(C) if c not in S)
        S.append(best[1])
        losses.append(best[0])
    return S, losses


# -- the terms -------------------------------------------------------------------------------------
def test_the_terms_equal_contributions_of_a_real_strided_convolution():
    """Patches of a 3x3, stride-2, padded convolution at random positions; each channel's
    contribution is the convolution of the input with only that channel kept."""
    g = torch.Generator().manual_seed(3)
    B, C, O, H = 3, 4, 6, 9
    x = torch.randn(B, C, H, H, generator=g, dtype=D64)
    weight = torch.randn(O, C, 3, 3, generator=g, dtype=D64)
    conv = dict(stride=2, padding=1)
    dense = F.conv2d(x, weight, **conv).flatten(2)  # [B, O, L]
    L = dense.shape[-1]
    pos = torch.randint(0, L, (B, 4), generator=g)
    rows = torch.arange(B).repeat_interleave(4), pos.flatten()
    patches = F.unfold(x, 3, **conv).reshape(B, C, 9, L)
    X = patches[rows[0], :, :, rows[1]]  # [n, C, 9]
    Z = dense[rows[0], :, rows[1]]  # [n, O]
    A = torch.stack(
        [
            F.conv2d(x * (torch.arange(C) == c).to(x).reshape(1, C, 1, 1), weight, **conv).flatten(
                2
            )[rows[0], :, rows[1]]
            for c in range(C)
        ]
    )  # [C, n, O]
    torch.testing.assert_close(A.sum(0), Z, rtol=1e-12, atol=1e-12)
    acc = PatchGram(C, 9, O)
    acc.update(X, Z)
    G, b = channel_gram(acc.H, acc.U, weight.reshape(O, C, 9))
    flat = A.reshape(C, -1)
    torch.testing.assert_close(G, flat @ flat.T, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(b, flat @ Z.reshape(-1), rtol=1e-12, atol=1e-10)
    assert acc.const == pytest.approx(float(Z.pow(2).sum()), rel=1e-14)
    assert acc.rows == B * 4


def test_float32_terms_are_close_to_float64():
    X, W, Z, _A, acc = _problem(seed=4)
    acc32 = PatchGram(7, 3, 5, dtype=torch.float32)
    acc32.update(X.float(), Z.float())
    G, b = channel_gram(acc.H, acc.U, W)
    G32, b32 = channel_gram(acc32.H, acc32.U, W.float())
    assert float((G32.double() - G).abs().max() / G.abs().max()) < 1e-5
    assert float((b32.double() - b).abs().max() / b.abs().max()) < 1e-5


# -- GramLoss: the kernel's average, in Gram form --------------------------------------------------
CONFIGS = [
    {},
    {"replacement": False},
    {"candidates": 3, "generator": 1},
    {"candidates": 3, "generator": 1, "replacement": False},
    {"weights": "corrective"},
    {"weights": "corrective", "replacement": False},
]


@pytest.mark.parametrize("kwargs", CONFIGS)
@pytest.mark.parametrize("scale", [1.0, 7.0])
def test_gram_loss_is_squared_loss_on_the_contributions(kwargs, scale):
    X, W, Z, A, acc = _problem(seed=1)
    G, b = channel_gram(acc.H, acc.U, W)
    n = 6
    ref = greedy_select(SquaredLoss(scale * A, Z), n, **kwargs)
    sel = greedy_select(GramLoss(G, b, acc.const, rows=X.shape[0], scale=scale), n, **kwargs)
    assert sel.order.tolist() == ref.order.tolist()
    torch.testing.assert_close(sel.losses, ref.losses, rtol=1e-10, atol=1e-12)
    if kwargs.get("weights") == "corrective":
        torch.testing.assert_close(sel.weights, ref.weights, rtol=1e-8, atol=1e-10)


def test_gram_loss_backward_and_magnitude_are_squared_loss_s():
    X, W, Z, A, acc = _problem(seed=2)
    G, b = channel_gram(acc.H, acc.U, W)
    gram = GramLoss(G, b, acc.const, rows=X.shape[0], scale=7.0)
    ref = backward_elimination(SquaredLoss(7.0 * A, Z), 4)
    sel = backward_elimination(gram, 4)
    assert sel.order.tolist() == ref.order.tolist()
    torch.testing.assert_close(sel.losses, ref.losses, rtol=1e-10, atol=1e-12)
    gram.reset()
    assert gram.current_loss() == pytest.approx(float(Z.pow(2).sum()) / (2 * X.shape[0]))
    assert magnitude(gram, 3).order.tolist() == magnitude(SquaredLoss(7.0 * A, Z), 3).order.tolist()


# -- the refit criteria ----------------------------------------------------------------------------
@pytest.mark.parametrize("ridge", [0.0, 1e-3])
def test_full_refit_greedy_is_the_direct_least_squares_greedy(ridge):
    X, _W, Z, _A, acc = _problem(seed=5)
    C, K = 7, 3
    obj = RefitLoss(acc.H, acc.U, acc.const, block=K, ridge=ridge)
    sel = greedy_select(obj, 5, replacement=False)
    if ridge == 0:
        ref_order, ref_losses = _greedy_reference(lambda S: _full_error(X, Z, S), C, 5)
    else:  # the ridge criterion's direct form: const - tr(U_S' (H_SS + rho I)^-1 U_S)
        rho = ridge * float(acc.H.diagonal().mean())

        def ridge_error(S):
            cols = torch.cat([torch.arange(c * K, (c + 1) * K) for c in S])
            Hs = acc.H[cols][:, cols] + rho * torch.eye(len(cols), dtype=D64)
            Us = acc.U[cols]
            return acc.const - float((Us * torch.linalg.solve(Hs, Us)).sum())

        ref_order, ref_losses = _greedy_reference(ridge_error, C, 5)
    assert sel.order.tolist() == ref_order
    for got, want in zip(sel.losses.tolist(), ref_losses):
        _close(got, want, acc.const)


def test_scalar_refit_greedy_is_orthogonal_matching_pursuit():
    _X, W, Z, A, acc = _problem(seed=6)
    G, b = channel_gram(acc.H, acc.U, W)
    obj = RefitLoss(G, b, acc.const)
    sel = greedy_select(obj, 5, replacement=False)
    ref_order, ref_losses = _greedy_reference(lambda S: _scalar_error(A, Z, S), 7, 5)
    assert sel.order.tolist() == ref_order
    for got, want in zip(sel.losses.tolist(), ref_losses):
        _close(got, want, acc.const)


def test_fixed_weight_greedy_is_the_direct_greedy():
    _X, W, Z, A, acc = _problem(seed=7, noise=0.05)
    G, b = channel_gram(acc.H, acc.U, W)
    sel = greedy_select(FixedWeightLoss(G, b, acc.const), 6, replacement=False)
    ref_order, ref_losses = _greedy_reference(lambda S: _fixed_error(A, Z, S), 7, 6)
    assert sel.order.tolist() == ref_order
    for got, want in zip(sel.losses.tolist(), ref_losses):
        _close(got, want, acc.const)


def _objectives(seed):
    X, W, Z, A, acc = _problem(seed=seed)
    G, b = channel_gram(acc.H, acc.U, W)
    return {
        "full": (RefitLoss(acc.H, acc.U, acc.const, block=3), lambda S: _full_error(X, Z, S)),
        "scalar": (RefitLoss(G, b, acc.const), lambda S: _scalar_error(A, Z, S)),
        "fixed": (FixedWeightLoss(G, b, acc.const), lambda S: _fixed_error(A, Z, S)),
    }, acc.const


@pytest.mark.parametrize("kind", ["full", "scalar", "fixed"])
def test_removal_and_backward_elimination_against_brute_force(kind):
    objs, scale = _objectives(8)
    obj, error = objs[kind]
    for c in (4, 1, 6, 0):
        obj.add(c)
    S = [4, 1, 6, 0]
    rem = obj.removal_losses()
    for c in range(7):
        want = error([s for s in S if s != c]) if c in S else float("inf")
        if c in S:
            _close(float(rem[c]), want, scale)
        else:
            assert rem[c] == want
    obj.remove(1)
    _close(obj.current_loss(), error([4, 6, 0]), scale)
    obj.add(3)  # the state after a removal keeps working
    _close(obj.current_loss(), error([4, 6, 0, 3]), scale)
    obj.reset()
    sel = backward_elimination(obj, 3)
    alive, removed = list(range(7)), []
    while len(alive) > 1:  # the slow reference: remove whatever raises the error least
        drop = min((error([a for a in alive if a != c]), c) for c in alive)[1]
        alive.remove(drop)
        removed.append(drop)
    assert sel.order.tolist() == [alive[0], *reversed(removed)][:3]


@pytest.mark.parametrize("kind", ["full", "scalar", "fixed"])
def test_swap_losses_and_swap_search_against_brute_force(kind):
    objs, scale = _objectives(9)
    obj, error = objs[kind]
    S = [0, 2, 3]  # a poor start: the low-energy channels
    for c in S:
        obj.add(c)
    for i in S:
        res = obj.swap_losses(i)
        for j in range(7):
            if j == i:
                _close(float(res[j]), error(S), scale)
            elif j in S:
                assert res[j] == float("inf")
            else:
                _close(float(res[j]), error([s for s in S if s != i] + [j]), scale)
    start = obj.current_loss()
    swaps = swap_search(obj, 10)
    losses = [start] + [loss for _, _, loss in swaps]
    assert swaps and all(b < a for a, b in itertools.pairwise(losses))  # every swap lowers it
    final = sorted(obj.kept)
    _close(obj.current_loss(), error(final), scale)
    if len(swaps) < 10:  # stopped at a local optimum: no (out, in) pair lowers the error
        best = min(
            error([s for s in final if s != i] + [j])
            for i, j in itertools.product(final, range(7))
            if j not in final
        )
        assert best >= error(final) - 1e-10 * scale


def test_a_set_refuses_a_kept_channel_and_swaps_need_a_set():
    objs, _ = _objectives(10)
    for obj, _ in objs.values():
        obj.add(2)
        with pytest.raises(ValueError, match="kept already"):
            obj.add(2)
        with pytest.raises(ValueError, match="not kept"):
            obj.remove(5)
    with pytest.raises(TypeError, match="supports_swaps"):
        swap_search(GramLoss(torch.eye(3, dtype=D64), torch.ones(3, dtype=D64), 1.0), 1)
    with pytest.raises(ValueError, match="rounds"):
        swap_search(objs["full"][0], -1)


@pytest.mark.parametrize(
    "make, word",
    [
        (
            lambda: GramLoss(torch.eye(3), torch.ones(4), 1.0),
            r"^linear\.shape=\(4,\) must be \(3, \.\.\.\)",
        ),
        (lambda: GramLoss(torch.eye(3), torch.ones(3), -1.0), "const"),
        (lambda: GramLoss(torch.eye(3), torch.ones(3), 1.0, scale=0), "scale"),
        (lambda: GramLoss(torch.eye(3), torch.ones(3), 1.0, rows=0), "rows"),
        (lambda: RefitLoss(torch.eye(4), torch.ones(4), 1.0, block=3), "multiple of block"),
        (lambda: RefitLoss(torch.eye(4), torch.ones(4), 1.0, ridge=-1), "ridge"),
        (lambda: RefitLoss(torch.eye(4), torch.ones(4), 1.0, ridge=float("nan")), "ridge"),
        (lambda: FixedWeightLoss(torch.eye(3).double(), torch.ones(3), 1.0), "dtype"),
        (lambda: PatchGram(0, 3, 2), "channels"),
    ],
)
def test_bad_terms_are_refused_with_the_argument_named(make, word):
    with pytest.raises((ValueError, TypeError), match=word):
        make()


# -- properties ------------------------------------------------------------------------------------
@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), K=st.sampled_from([1, 2, 4]))
def test_refit_error_never_rises_with_k_and_full_is_at_most_scalar(seed, K):
    _X, W, _Z, _A, acc = _problem(seed=seed, n=40, C=6, K=K, O=3)
    G, b = channel_gram(acc.H, acc.U, W)
    full = greedy_select(RefitLoss(acc.H, acc.U, acc.const, block=K), 6, replacement=False)
    scalar = RefitLoss(G, b, acc.const)
    sel = greedy_select(scalar, 6, replacement=False)
    tol = 1e-9 * acc.const
    for losses in (full.losses, sel.losses):
        assert all(b <= a + tol for a, b in zip(losses.tolist(), losses[1:].tolist()))
    # on the same set, refitting every weight is never worse than one scale per channel
    for k in range(1, 7):
        same = RefitLoss(acc.H, acc.U, acc.const, block=K)
        for c in sel.order[:k].tolist():
            same.add(c)
        assert same.current_loss() <= float(sel.losses[k - 1]) + tol


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["full", "scalar", "fixed"]))
def test_a_swap_never_raises_the_error(seed, kind):
    objs, _scale = _objectives(seed)
    obj = objs[kind][0]
    greedy_select(obj, 3, replacement=False)
    before = obj.current_loss()
    swaps = swap_search(obj, 3)
    losses = [before] + [loss for _, _, loss in swaps]
    assert all(b < a for a, b in itertools.pairwise(losses))


# -- the peers' building blocks --------------------------------------------------------------------
def _backward_reference(error, C, n):
    alive = list(range(C))
    while len(alive) > n:
        alive.remove(min((error([a for a in alive if a != c]), c) for c in alive)[1])
    return alive


@pytest.mark.parametrize("kind", ["full", "scalar", "fixed"])
def test_backward_to_is_the_slow_backward_elimination(kind):
    objs, scale = _objectives(12)
    obj, error = objs[kind]
    removed = backward_to(obj, 3)
    assert sorted(obj.kept) == _backward_reference(error, 7, 3)
    assert len(removed) == 4
    _close(removed[-1][1], error(sorted(obj.kept)), scale)
    with pytest.raises(ValueError, match=r"n=0 must be an int in 1\.\.7"):
        backward_to(obj, 0)


def _lasso_reference(G, b, penalty, sweeps=20_000):
    """Cyclic coordinate descent, slow and obvious, to convergence."""
    w = torch.zeros_like(b)
    for _ in range(sweeps):
        old = w.clone()
        for c in range(len(b)):
            rho = float(b[c] - G[c] @ w + G[c, c] * w[c])
            w[c] = max(abs(rho) - penalty, 0.0) * (1 if rho > 0 else -1) / float(G[c, c])
        if float((w - old).abs().max()) < 1e-15:
            break
    return w


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lasso_matches_coordinate_descent_and_its_optimality_conditions(seed):
    _X, W, _Z, _A, acc = _problem(seed=seed)
    G, b = channel_gram(acc.H, acc.U, W)
    for frac in (0.05, 0.3):
        penalty = frac * float(b.abs().max())
        w = lasso_gram(G, b, penalty)
        ref = _lasso_reference(G, b, penalty)
        torch.testing.assert_close(w, ref, rtol=1e-6, atol=1e-8 * float(ref.abs().max()))
        grad = G @ w - b  # KKT: -grad = penalty * sign(w) on the support, |grad| <= penalty off it
        on = w != 0
        torch.testing.assert_close(
            -grad[on], penalty * torch.sign(w[on]), rtol=1e-6, atol=1e-6 * penalty
        )
        assert bool((grad[~on].abs() <= penalty * (1 + 1e-6)).all())


def test_lasso_support_has_the_width_and_is_the_lasso_s():
    _X, W, _Z, _A, acc = _problem(seed=3, C=9)
    G, b = channel_gram(acc.H, acc.U, W)
    for n in (1, 4, 9):
        keep = lasso_support(G, b, n)
        assert len(keep) == n and keep == sorted(set(keep))
    # below the penalty max|b| the first channel to leave zero is the one with the largest |b_c|
    # (w = 0 is optimal exactly when every |b_c| <= penalty)
    assert lasso_support(G, b, 1) == [int(torch.argmax(b.abs()))]
