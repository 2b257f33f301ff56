"""The provable peers of greedy selection: i-SpaSP and sensitivity sampling (greedyprune.select).

Each is checked against a slow, obvious reference written here with numpy loops (one i-SpaSP
iteration after another; the sensitivities, sampling probabilities, importance weights and prefix
losses by hand), on hypothesis properties (sizes and ranges, n = N gives the full network, the
sampling estimate is unbiased, the draws follow the probabilities) and on seeded determinism.
Losses are recomputed from their definition, ``||f - t||^2 / 2`` with ``||h||^2 = (1/m) sum_j
|h(x_j)|^2`` (summed over outputs), in float64.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import greedyprune.select._peers as peers
from greedyprune.select import (
    CrossEntropyLoss,
    FactoredSquaredLoss,
    Selection,
    SquaredLoss,
    StackedObjective,
    empirical_sensitivity,
    ispasp,
    losses_at_sizes,
    sensitivity_sampling,
)

seeds = st.integers(0, 2**31 - 1)


# Tiny tensors: one torch thread (see conftest's one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def instance(seed: int, N: int, m: int, c: int = 0, target: str = "free"):
    """features [N, m] (c = 0) or [N, m, c] and a target: "free" (Gaussian) or "full" (f_N)."""
    g = torch.Generator().manual_seed(seed)
    tail = (c,) if c else ()
    phi = torch.randn(N, m, *tail, generator=g, dtype=torch.float64)
    t = phi.mean(0) if target == "full" else torch.randn(m, *tail, generator=g, dtype=torch.float64)
    return phi, t


def loss_of(phi: np.ndarray, t: np.ndarray, w: np.ndarray) -> float:
    f = np.tensordot(w, phi, axes=1)
    return float(((f - t) ** 2).sum() / (2 * t.shape[0]))


def raises(exc, name: str):
    """pytest.raises that also requires the message to name ``name`` as a word."""
    return pytest.raises(exc, match=rf"(?<![\w]){re.escape(name)}(?![\w])")


# -- slow references -------------------------------------------------------------------------------
def ispasp_reference(phi, t, n, iterations, expand=2):
    """i-SpaSP, one neuron at a time: (order, loss after each support update, converged)."""
    phi = phi.reshape(phi.shape[0], phi.shape[1], -1)
    t = t.reshape(t.shape[0], -1)
    N, m = phi.shape[:2]
    mag = [float(np.abs(phi[i]).sum()) / m for i in range(N)]
    S: list[int] = []
    history = []
    converged = False
    for _ in range(iterations):
        f = np.zeros_like(t) if not S else sum(phi[i] for i in S) / len(S)
        r = t - f
        proxy = [float((phi[i] * r).sum()) / m for i in range(N)]
        omega = sorted(range(N), key=lambda i: (-proxy[i], i))[: min(N, expand * n)]
        merged = sorted(set(omega) | set(S))
        new = sorted(sorted(merged, key=lambda i: (-mag[i], i))[:n])
        if S and new == S:
            converged = True
            break
        S = new
        f = sum(phi[i] for i in S) / len(S)
        history.append(float(((f - t) ** 2).sum()) / (2 * m))
    return sorted(S, key=lambda i: (-mag[i], i)), history, converged


def sensitivity_reference(phi, points=None):
    """s_i = max over data points x and outputs o of phi_i's share of the terms of its sign."""
    phi = phi.reshape(phi.shape[0], phi.shape[1], -1)
    N, m, c = phi.shape
    s = np.zeros(N)
    for x in range(m) if points is None else points:
        for o in range(c):
            col = phi[:, x, o]
            pos = sum(v for v in col if v > 0)
            neg = sum(-v for v in col if v < 0)
            for i in range(N):
                if col[i] > 0:
                    s[i] = max(s[i], col[i] / pos)
                elif col[i] < 0:
                    s[i] = max(s[i], -col[i] / neg)
    return s


# -- i-SpaSP ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("N", "m", "c"), [(30, 6, 0), (25, 5, 3), (12, 40, 0)])
@pytest.mark.parametrize("iterations", [1, 2, 20])
def test_ispasp_matches_the_reference(seed, N, m, c, iterations):
    phi, t = instance(seed, N, m, c)
    for n in (1, 3, 7):
        ref_order, ref_hist, ref_conv = ispasp_reference(phi.numpy(), t.numpy(), n, iterations)
        obj = SquaredLoss(phi, t)
        sel = ispasp(obj, n, iterations=iterations)
        assert sel.order.tolist() == ref_order
        assert sel.info["converged"] == ref_conv
        assert sel.info["iterations"] == len(ref_hist)
        np.testing.assert_allclose(sel.info["iteration_losses"], ref_hist, rtol=1e-10, atol=1e-14)
        assert sel.evaluations == N * (len(ref_hist) + ref_conv) + n
        assert sel.info["expand"] == 2  # the documented info keys, the default expansion


@pytest.mark.parametrize("expand", [1, 3])
def test_ispasp_expand_matches_the_reference(expand):
    phi, t = instance(11, 40, 8)
    ref_order, ref_hist, _ = ispasp_reference(phi.numpy(), t.numpy(), 5, 20, expand=expand)
    sel = ispasp(SquaredLoss(phi, t), 5, expand=expand)
    assert sel.order.tolist() == ref_order
    np.testing.assert_allclose(sel.info["iteration_losses"], ref_hist, rtol=1e-10)


def test_ispasp_factored_equals_materialised_features():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(30, 7, generator=g, dtype=torch.float64)
    w = torch.randn(30, 2, generator=g, dtype=torch.float64)
    t = torch.randn(7, 2, generator=g, dtype=torch.float64)
    phi = a[:, :, None] * w[:, None, :]
    sel_f = ispasp(FactoredSquaredLoss(a, w, t), 4)
    sel_s = ispasp(SquaredLoss(phi, t), 4)
    ref_order, _, _ = ispasp_reference(phi.numpy(), t.numpy(), 4, 20)
    assert sel_f.order.tolist() == sel_s.order.tolist() == ref_order
    torch.testing.assert_close(sel_f.losses, sel_s.losses)


@settings(max_examples=25)
@given(
    seed=seeds, N=st.integers(1, 12), m=st.integers(1, 6), c=st.sampled_from([0, 2]), data=st.data()
)
def test_ispasp_record(seed, N, m, c, data):
    n = data.draw(st.integers(1, N), label="n")
    iterations = data.draw(st.integers(1, 6), label="iterations")
    phi, t = instance(seed, N, m, c)
    obj = SquaredLoss(phi, t)
    sel = ispasp(obj, n, iterations=iterations)
    order = sel.order.tolist()
    assert sel.n == n and len(set(order)) == n and all(0 <= i < N for i in order)
    assert sel.method == "ispasp"
    torch.testing.assert_close(sel.weights, sel.counts.double() / n)
    for k in range(1, n + 1):
        want = loss_of(phi.numpy(), t.numpy(), sel.prefix_weights(k).numpy())
        assert sel.losses[k - 1].item() == pytest.approx(want, rel=1e-9, abs=1e-14)
    assert 1 <= sel.info["iterations"] <= iterations
    assert sel.info["iteration_losses"][-1] == pytest.approx(
        sel.losses[-1].item(), rel=1e-9, abs=1e-14
    )
    # the objective holds the size-n subnetwork
    assert obj.size == n
    assert obj.current_loss() == pytest.approx(sel.losses[-1].item(), rel=1e-9, abs=1e-14)


@settings(max_examples=25)
@given(
    seed=seeds, N=st.integers(1, 12), m=st.integers(1, 6), target=st.sampled_from(["free", "full"])
)
def test_ispasp_with_n_equal_to_the_pool_is_the_full_network(seed, N, m, target):
    phi, t = instance(seed, N, m, target=target)
    sel = ispasp(SquaredLoss(phi, t), N)
    assert sorted(sel.order.tolist()) == list(range(N))
    full = loss_of(phi.numpy(), t.numpy(), np.full(N, 1.0 / N))
    assert sel.losses[-1].item() == pytest.approx(full, rel=1e-9, abs=1e-14)
    assert sel.info["converged"] and sel.info["iterations"] == 1


@pytest.mark.parametrize("seed", range(6))
def test_ispasp_stops_at_a_fixed_point(seed):
    phi, t = instance(seed, 40, 6)
    long = ispasp(SquaredLoss(phi, t), 5, iterations=100)
    assert long.info["converged"]
    k = long.info["iterations"]
    short = ispasp(SquaredLoss(phi, t), 5, iterations=k)
    assert short.order.tolist() == long.order.tolist()
    assert not short.info["converged"]
    assert short.info["iteration_losses"] == long.info["iteration_losses"]


def test_ispasp_is_deterministic():
    phi, t = instance(3, 50, 8)
    a, b = ispasp(SquaredLoss(phi, t), 6), ispasp(SquaredLoss(phi, t), 6)
    assert a.order.tolist() == b.order.tolist()
    assert torch.equal(a.losses, b.losses)


# -- sensitivity sampling --------------------------------------------------------------------------
def test_sensitivity_by_hand():
    # point 0: terms 1, 3 (positive, sum 4) and -1 (negative, sum 1)
    # point 1: terms -2, 0, -2 (negative, sum 4)
    phi = torch.tensor([[1.0, -2.0], [3.0, 0.0], [-1.0, -2.0]], dtype=torch.float64)
    obj = SquaredLoss(phi, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(
        empirical_sensitivity(obj), torch.tensor([0.5, 0.75, 1.0], dtype=torch.float64)
    )
    at_1 = empirical_sensitivity(obj, points=torch.tensor([1]))
    torch.testing.assert_close(at_1, torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))
    assert not bool(torch.signbit(at_1).any())  # +0.0 for a zero feature, not -0.0
    # two outputs: the maximum runs over outputs too
    phi2 = torch.stack([phi, -phi], dim=2)  # output 1 flips every sign: the same shares
    obj2 = SquaredLoss(phi2, torch.zeros(2, 2, dtype=torch.float64))
    torch.testing.assert_close(
        empirical_sensitivity(obj2), torch.tensor([0.5, 0.75, 1.0], dtype=torch.float64)
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("N", "m", "c"), [(9, 5, 0), (7, 4, 3)])
def test_sensitivity_matches_the_reference(seed, N, m, c):
    phi, t = instance(seed, N, m, c)
    obj = SquaredLoss(phi, t)
    np.testing.assert_allclose(
        empirical_sensitivity(obj).numpy(), sensitivity_reference(phi.numpy()), rtol=1e-12
    )
    pts = [3, 0]
    np.testing.assert_allclose(
        empirical_sensitivity(obj, points=torch.tensor(pts)).numpy(),
        sensitivity_reference(phi.numpy(), pts),
        rtol=1e-12,
    )


def test_sensitivity_of_factored_features():
    g = torch.Generator().manual_seed(2)
    a = torch.relu(torch.randn(10, 6, generator=g, dtype=torch.float64))
    w = torch.randn(10, 3, generator=g, dtype=torch.float64)
    phi = a[:, :, None] * w[:, None, :]
    obj = FactoredSquaredLoss(a, w, torch.zeros(6, 3, dtype=torch.float64))
    np.testing.assert_allclose(
        empirical_sensitivity(obj).numpy(), sensitivity_reference(phi.numpy()), rtol=1e-12
    )


@pytest.mark.parametrize("n", [1, 4, 25])
def test_sampling_weights_and_losses_by_hand(n):
    phi, t = instance(8, 6, 4, 2)
    obj = SquaredLoss(phi, t)
    sel = sensitivity_sampling(obj, n, generator=3)
    P, T = phi.numpy(), t.numpy()
    N = P.shape[0]
    s = sensitivity_reference(P)
    p = s / s.sum()
    order = sel.order.numpy()
    np.testing.assert_allclose(sel.info["sampling_probability"], p[order], rtol=1e-12)
    assert sel.info["sensitivity_sum"] == pytest.approx(s.sum(), rel=1e-12)
    counts = np.bincount(order, minlength=N)
    np.testing.assert_allclose(sel.weights.numpy(), counts / (n * N * p), rtol=1e-12)
    for k in range(1, n + 1):
        w = np.zeros(N)
        for j in order[:k]:
            w[j] += 1.0 / (k * N * p[j])
        assert sel.losses[k - 1].item() == pytest.approx(loss_of(P, T, w), rel=1e-10, abs=1e-14)
    assert sel.method == "sensitivity" and sel.n == n
    assert obj.size == n
    assert obj.current_loss() == pytest.approx(sel.losses[-1].item(), rel=1e-10, abs=1e-14)


def test_sampling_draws_follow_the_probabilities():
    phi, t = instance(4, 5, 3)
    n = 40_000
    sel = sensitivity_sampling(SquaredLoss(phi, t), n, generator=0)
    s = sensitivity_reference(phi.numpy())
    p = s / s.sum()
    freq = sel.counts.numpy() / n
    sd = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * sd), (freq, p)


@settings(max_examples=12)
@given(
    seed=seeds,
    N=st.integers(2, 6),
    m=st.integers(1, 3),
    c=st.sampled_from([0, 2]),
    n=st.integers(1, 3),
)
def test_sampling_is_unbiased(seed, N, m, c, n):
    """The mean of R independent n-draw estimates is within 6 standard errors of f_N (the
    variance computed exactly from the probabilities), coordinate by coordinate."""
    phi, t = instance(seed, N, m, c)
    obj = SquaredLoss(phi, t)
    gen = torch.Generator().manual_seed(seed)
    R = 200
    est = np.zeros(tuple(phi.shape[1:]))
    for _ in range(R):
        obj.reset()
        sel = sensitivity_sampling(obj, n, generator=gen)
        est += np.tensordot(sel.weights.numpy(), phi.numpy(), axes=1) / R
    P = phi.numpy()
    s = sensitivity_reference(P)
    p = s / s.sum()
    f_N = P.mean(0)
    live = p > 0
    second = np.tensordot(1.0 / (N * N * p[live]), P[live] ** 2, axes=1)  # E Y^2 of one draw
    se = np.sqrt(np.maximum(second - f_N**2, 0) / (n * R))
    assert np.all(np.abs(est - f_N) <= 6 * se + 1e-9), (est, f_N, se)


def test_sampling_is_seeded():
    phi, t = instance(1, 50, 5)

    def draw(generator):
        return sensitivity_sampling(SquaredLoss(phi, t), 20, generator=generator)

    torch.manual_seed(0)
    a = draw(7)
    torch.manual_seed(1)  # the global generator is not consulted
    b = draw(7)
    c = draw(torch.Generator().manual_seed(7))
    for x in (b, c):
        assert torch.equal(a.order, x.order)
        assert torch.equal(a.weights, x.weights)
        assert torch.equal(a.losses, x.losses)
    assert not torch.equal(a.order, draw(8).order)


def test_points_restrict_the_sensitivity_to_those_data():
    phi, t = instance(6, 8, 7, 2)
    pts = torch.tensor([5, 1, 2])
    sub = SquaredLoss(phi[:, pts].contiguous(), t[pts].contiguous())
    torch.testing.assert_close(
        empirical_sensitivity(SquaredLoss(phi, t), points=pts), empirical_sensitivity(sub)
    )
    sel = sensitivity_sampling(SquaredLoss(phi, t), 5, points=pts, generator=2)
    assert sel.info["points"] == 3
    assert torch.equal(sel.order, sensitivity_sampling(sub, 5, generator=2).order)


def test_float32_features_and_devices(device):
    phi, t = instance(12, 40, 6, 2)
    ref_i = ispasp(SquaredLoss(phi, t), 5)
    ref_s = sensitivity_sampling(SquaredLoss(phi, t), 30, generator=4)
    for dtype in (torch.float64, torch.float32):
        obj = SquaredLoss(phi.to(device, dtype), t.to(device, dtype))
        sel = ispasp(obj, 5)
        assert sel.order.tolist() == ref_i.order.tolist()
        torch.testing.assert_close(sel.losses, ref_i.losses, rtol=1e-5, atol=1e-7)
        obj.reset()
        torch.testing.assert_close(
            empirical_sensitivity(obj),
            empirical_sensitivity(SquaredLoss(phi, t)),
            rtol=1e-5,
            atol=1e-7,
        )
        sel = sensitivity_sampling(obj, 30, generator=4)
        assert sel.order.tolist() == ref_s.order.tolist()
        torch.testing.assert_close(sel.weights, ref_s.weights, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(sel.losses, ref_s.losses, rtol=1e-4, atol=1e-7)
        assert obj.current_loss() == pytest.approx(sel.losses[-1].item(), rel=1e-4)


# -- chunking, rate curves, the record -------------------------------------------------------------
def test_results_do_not_depend_on_the_chunk_size(monkeypatch):
    phi, t = instance(9, 23, 4, 3)
    ref = (
        empirical_sensitivity(SquaredLoss(phi, t)),
        ispasp(SquaredLoss(phi, t), 4),
        sensitivity_sampling(SquaredLoss(phi, t), 17, generator=1),
    )
    # 3 rows (ispasp, sensitivities) or 2 rows (prefix losses) per chunk
    monkeypatch.setattr(peers, "DEFAULT_MAX_BYTES", 4 * 3 * 8 * 2 * 3 + 1)
    torch.testing.assert_close(empirical_sensitivity(SquaredLoss(phi, t)), ref[0])
    sel = ispasp(SquaredLoss(phi, t), 4)
    assert sel.order.tolist() == ref[1].order.tolist()
    np.testing.assert_allclose(
        sel.info["iteration_losses"], ref[1].info["iteration_losses"], rtol=1e-12
    )
    sel = sensitivity_sampling(SquaredLoss(phi, t), 17, generator=1)
    torch.testing.assert_close(sel.losses, ref[2].losses)


def test_losses_at_sizes_runs_each_size():
    phi, t = instance(2, 30, 6)
    obj = SquaredLoss(phi, t)
    sizes = [1, 4, 9]
    losses, sels = losses_at_sizes(ispasp, obj, sizes, iterations=5)
    assert losses.dtype == torch.float64 and losses.shape == (3,)
    for n, loss, sel in zip(sizes, losses.tolist(), sels):
        alone = ispasp(SquaredLoss(phi, t), n, iterations=5)
        assert sel.order.tolist() == alone.order.tolist()
        assert loss == alone.losses[-1].item()
    assert obj.size == 9 and obj.current_loss() == pytest.approx(losses[-1].item())
    # the keyword arguments reach every call of select
    seen = []

    def recording(objective, n, **kwargs):
        seen.append((n, kwargs))
        return ispasp(objective, n, **kwargs)

    losses_at_sizes(recording, SquaredLoss(phi, t), [2, 3], iterations=1, expand=3)
    assert seen == [(2, dict(iterations=1, expand=3)), (3, dict(iterations=1, expand=3))]


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_peer_selections_round_trip(tmp_path, suffix):
    phi, t = instance(0, 10, 4)
    for sel in (
        ispasp(SquaredLoss(phi, t), 3),
        sensitivity_sampling(SquaredLoss(phi, t), 6, generator=0),
    ):
        back = Selection.load(sel.save(tmp_path / f"{sel.method}{suffix}"))
        assert torch.equal(back.order, sel.order) and torch.equal(back.weights, sel.weights)
        assert back.info == sel.info and back.method == sel.method


# -- errors ----------------------------------------------------------------------------------------
def squared():
    phi, t = instance(0, 5, 4)
    return SquaredLoss(phi, t)


METHODS = [
    pytest.param(lambda o, n, **kw: ispasp(o, n, **kw), id="ispasp"),
    pytest.param(
        lambda o, n, **kw: sensitivity_sampling(o, n, generator=0, **kw), id="sensitivity"
    ),
]


@pytest.mark.parametrize("method", METHODS)
def test_bad_n(method):
    for n in (0, -3):
        with raises(ValueError, "n"):
            method(squared(), n)
    for n in (2.5, "3", True, None):
        with raises(TypeError, "n"):
            method(squared(), n)
    assert method(squared(), np.int64(2)).n == 2


def test_n_above_the_pool():
    with raises(ValueError, "n"):
        ispasp(squared(), 6)
    # i.i.d. draws: any n
    assert sensitivity_sampling(squared(), 9, generator=0).n == 9


@pytest.mark.parametrize("method", METHODS)
def test_objective_needs_readable_features(method):
    ce = CrossEntropyLoss(torch.randn(5, 4, 3), torch.zeros(4, dtype=torch.long))
    stacked = StackedObjective(
        torch.randn(4, 3), lambda x, g: x @ torch.ones(3, 1), lambda o, t: o.flatten(), 3
    )
    for obj in (ce, stacked):
        with raises(TypeError, "supports_feature_reads"):
            method(obj, 2)
    with pytest.raises(TypeError, match="CrossEntropyLoss does not declare it"):
        method(ce, 2)
    with raises(TypeError, "supports_feature_reads"):
        empirical_sensitivity(ce)
    with raises(TypeError, "objective"):
        method(object(), 2)
    busy = squared()
    busy.add(0)
    with raises(ValueError, "objective"):
        method(busy, 2)


def test_bad_ispasp_options():
    for name in ("iterations", "expand"):
        with raises(ValueError, name):
            ispasp(squared(), 2, **{name: 0})
        with raises(TypeError, name):
            ispasp(squared(), 2, **{name: 1.5})


@pytest.mark.parametrize(
    ("points", "exc"),
    [
        ([0, 1], TypeError),
        (torch.tensor([0.0, 1.0]), TypeError),
        (torch.tensor([0, 4]), ValueError),
        (torch.tensor([-1]), ValueError),
        (torch.tensor([], dtype=torch.long), ValueError),
        (torch.tensor([[0, 1]]), ValueError),
    ],
)
def test_bad_points(points, exc):
    with raises(exc, "points"):
        sensitivity_sampling(squared(), 2, points=points, generator=0)
    with raises(exc, "points"):
        empirical_sensitivity(squared(), points=points)


def test_bad_generator_and_zero_features():
    for generator in ("seed", 1.5, True):
        with raises(TypeError, "generator"):
            sensitivity_sampling(squared(), 2, generator=generator)
    zero = SquaredLoss(torch.zeros(4, 3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    with raises(ValueError, "features"):
        sensitivity_sampling(zero, 2, generator=0)


def test_bad_losses_at_sizes():
    with raises(TypeError, "select"):
        losses_at_sizes("ispasp", squared(), [1])
    with raises(TypeError, "sizes"):
        losses_at_sizes(ispasp, squared(), 3)
    with raises(ValueError, "sizes"):
        losses_at_sizes(ispasp, squared(), [])
    with raises(ValueError, "sizes"):
        losses_at_sizes(ispasp, squared(), [2, 0])
    with raises(ValueError, "n"):
        losses_at_sizes(ispasp, squared(), [6])
