"""What the kernel promises beyond the happy path: each test pins one documented behaviour that a
mutation sample showed no other test checked (method names, defaults, the exact line search,
non-contiguous inputs, file round trips, the message of each refusal)."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch

from greedyprune.select import (
    CPU_MAX_BYTES,
    ElementwiseLoss,
    FactoredSquaredLoss,
    Selection,
    SquaredLoss,
    StackedObjective,
    backward_elimination,
    check_positive_int,
    greedy_select,
    magnitude,
    per_sample_loss,
    random_subset,
    solve_simplex_ls,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def features(n=6, m=5, seed=0):
    return torch.randn(n, m, generator=gen(seed), dtype=torch.float64)


def raises(exc, name: str):
    """pytest.raises that also requires the message to name ``name`` as a word."""
    return pytest.raises(exc, match=rf"(?<![\w]){re.escape(name)}(?![\w])")


# -- method names: the record says which rule made it -------------------------------------------
def test_each_baseline_names_itself_in_the_selection():
    def obj():
        return SquaredLoss(features(), torch.zeros(5, dtype=torch.float64))

    assert magnitude(obj(), 3).method == "magnitude"
    assert random_subset(obj(), 3, generator=0).method == "random_norepl"
    assert random_subset(obj(), 3, replacement=True, generator=0).method == "random"
    assert backward_elimination(obj(), 3).method == "backward"


def test_random_subset_is_without_replacement_by_default():
    # 6 draws from 6 candidates: with replacement, a repeat is all but certain over 20 seeds
    for seed in range(20):
        obj = SquaredLoss(features(), torch.zeros(5, dtype=torch.float64))
        sel = random_subset(obj, 6, generator=seed)
        assert sorted(sel.order.tolist()) == list(range(6))
        assert sel.counts.max().item() == 1


# -- the exact line search ----------------------------------------------------------------------
def _brute_linesearch(f: torch.Tensor, phi: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """min over g in [0, 1] of ||(1 - g) f + g phi_i - t||^2 / (2 m): the quadratic's vertex
    clipped to [0, 1], checked against the endpoints."""
    m = t.shape[0]
    out = []
    for p in phi:
        d, r = p - f, f - t
        dd = float(d @ d)
        g = 0.0 if dd == 0 else min(1.0, max(0.0, -float(r @ d) / dd))
        vals = [float(((f + gg * d - t) ** 2).sum()) / (2 * m) for gg in (0.0, 1.0, g)]
        out.append(min(vals))
    return torch.tensor(out, dtype=torch.float64)


def test_linesearch_losses_equal_the_brute_force_minimum_over_the_segment():
    phi = features(8, 5, seed=3)
    # the target lies far beyond candidate 0 (the unclipped step would be about 3), and
    # candidate 1 equals the current subnetwork (a zero-length segment)
    t = 3.0 * phi[0] - 2.0 * phi[2]
    obj = SquaredLoss(phi.clone(), t)
    obj.add(2)
    phi[1] = obj.prediction()
    obj = SquaredLoss(phi, t)
    obj.add(2)
    got = obj.linesearch_losses()
    want = _brute_linesearch(obj.prediction(), phi, t)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # and on a candidate subset, in that order
    idx = torch.tensor([5, 0, 3])
    torch.testing.assert_close(obj.linesearch_losses(idx), want[idx], rtol=1e-10, atol=1e-12)


# -- inputs the setup must take as they are ------------------------------------------------------
def test_non_contiguous_features_give_the_losses_of_contiguous_ones():
    base = torch.randn(5, 7, generator=gen(4), dtype=torch.float64)
    phi = base.T  # [7, 5], not contiguous
    assert not phi.is_contiguous()
    t = torch.randn(5, generator=gen(5), dtype=torch.float64)
    a, b = SquaredLoss(phi, t), SquaredLoss(phi.contiguous(), t)
    torch.testing.assert_close(a.losses(), b.losses(), rtol=1e-12, atol=0)
    assert greedy_select(a, 4).order.tolist() == greedy_select(b, 4).order.tolist()


def test_factored_loss_checks_every_dtype():
    a = torch.randn(4, 3, generator=gen(0))  # float32
    w = torch.randn(4, 2, generator=gen(1), dtype=torch.float64)
    t = torch.randn(3, 2, generator=gen(2), dtype=torch.float64)
    with pytest.raises(TypeError, match=r"activations is torch\.float32"):
        FactoredSquaredLoss(a, w, t)


def test_elementwise_loss_that_drops_the_candidate_axis_is_named_with_its_shape():
    phi = features(6, 4)
    obj = ElementwiseLoss(phi, torch.zeros(4, dtype=torch.float64), lambda p, t: (p - t).T)
    with pytest.raises(
        ValueError, match=r"loss_fn must keep the candidate axis: returned shape \(4, 6\)"
    ):
        obj.losses()


def test_per_sample_squared_loss_refuses_shapes_that_would_broadcast():
    with pytest.raises(ValueError, match=r"^target\.shape=\(4,\) must be the outputs' \(4, 1\)"):
        per_sample_loss("squared", torch.zeros(4, 1), torch.zeros(4))


# -- Selection files -----------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_an_empty_selection_round_trips_with_integer_indices(tmp_path, suffix):
    sel = Selection.from_order([], [], 4, method="none")
    path = tmp_path / f"sel{suffix}"
    sel.save(path)
    back = Selection.load(path)
    assert back.order.dtype == torch.long and back.order.numel() == 0
    assert back.counts.dtype == torch.long and back.counts.tolist() == [0, 0, 0, 0]


def test_selection_load_names_the_suffixes_it_reads(tmp_path):
    path = tmp_path / "sel.txt"
    path.write_text("{}")
    with pytest.raises(
        ValueError, match=r"^path='.*sel\.txt' must be a file name ending in \.json or \.npz$"
    ):
        Selection.load(path)


# -- the simplex solver's arguments ---------------------------------------------------------------
def test_simplex_solver_names_a_bad_init_and_takes_a_zero_tolerance():
    phi = features(4, 6)
    t = phi.mean(0)
    with raises(TypeError, "init"):
        solve_simplex_ls(phi, t, init=[0.25] * 4)
    with raises(ValueError, "init"):
        solve_simplex_ls(phi, t, init=torch.ones(2, 2, dtype=torch.float64))
    w = solve_simplex_ls(phi, t, tol=0)
    assert torch.isclose(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    assert float(((w @ phi - t) ** 2).sum()) < 1e-8
    # a target of the wrong shape: the message says the shape it needs, the features' without k
    with pytest.raises(
        ValueError, match=r"^target\.shape=\(5,\) must be \(6,\), features' shape without k$"
    ):
        solve_simplex_ls(phi, torch.zeros(5, dtype=torch.float64))


# -- a live network's objective ------------------------------------------------------------------
def _gated(h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """A one-layer network's output with gates [K, N] on inputs stacked K times [K * B, N]."""
    return (h.reshape(g.shape[0], -1, h.shape[-1]) * g[:, None, :]).sum(-1).reshape(-1)


def _stacked(**kw):
    x = torch.randn(5, 4, generator=gen(0))
    return StackedObjective(x, _gated, lambda o, t: (o - t) ** 2, 4, target=x.sum(1), **kw)


@pytest.mark.parametrize("bad", [2.5, "4", True])
def test_stacked_objective_refuses_a_non_integer_candidate_count(bad):
    x = torch.randn(5, 4)
    with raises((TypeError, ValueError), "n_candidates"):
        StackedObjective(x, lambda h, g: (h * g).sum(-1), lambda o, t: o, bad)


def test_stacked_objective_names_reduce_and_mismatched_inputs():
    with pytest.raises(
        TypeError, match=r"^reduce must be None or a callable\(\[K, B\]\) -> \[K\]$"
    ):
        _stacked(reduce="mean")
    with pytest.raises(
        ValueError, match=r"^inputs' shapes=\[\(5, 4\), \(3, 4\)\] must be of one batch size, 5$"
    ):
        StackedObjective(
            (torch.randn(5, 4), torch.randn(3, 4)), lambda h, g: h[0], lambda o, t: o, 4
        )


def test_stacked_objective_checks_the_loss_shape():
    x = torch.randn(5, 4, generator=gen(0))
    obj = StackedObjective(x, _gated, lambda o, t: o.sum(), 4)
    with pytest.raises(
        ValueError,
        match=r"^loss_fn's output shape=\(\) must be \(\d+,\): one loss per stacked sample$",
    ):
        obj.losses(torch.tensor([0, 1]))


def test_stacked_current_loss_is_the_mean_loss_of_the_gated_network():
    obj = _stacked()
    x = obj.inputs[0]
    t = x.sum(1)
    assert obj.current_loss() == pytest.approx(float((t**2).mean()), rel=1e-6)
    obj.add(1)
    # one of four gates open at weight 1/1, scaled by the protocol's mean-field scale (1.0)
    pred = x[:, 1] * float(obj.gates()[1])
    assert obj.current_loss() == pytest.approx(float(((pred - t) ** 2).mean()), rel=1e-6)


def test_magnitude_message_names_the_flag_and_method():
    obj = _stacked()
    with pytest.raises(TypeError, match=r"supports_feature_norms \(feature_norms\(\)\)$"):
        magnitude(obj, 2)


def test_greedy_on_stacked_equals_exhaustive_reference():
    # exact greedy on a live network: every step's pick is the argmin of the loss after adding
    # each candidate, computed here by building the gated prediction by hand
    obj = _stacked()
    x = obj.inputs[0].double()
    t = x.sum(1)
    sel = greedy_select(obj, 3, replacement=False)
    chosen: list[int] = []
    for step, idx in enumerate(sel.order.tolist()):
        losses = []
        for i in range(4):
            if i in chosen:
                losses.append(np.inf)
                continue
            g = torch.zeros(4, dtype=torch.float64)
            for j in [*chosen, i]:
                g[j] += 1.0 / (len(chosen) + 1)
            losses.append(float((((x * g).sum(-1) - t) ** 2).mean()))
        assert idx == int(np.argmin(losses)), step
        chosen.append(idx)


def test_simplex_solver_returns_its_start_when_every_feature_is_zero():
    # a zero Gram matrix has no curvature to step with: the start is already optimal
    phi = torch.zeros(3, 4, dtype=torch.float64)
    t = torch.ones(4, dtype=torch.float64)
    torch.testing.assert_close(
        solve_simplex_ls(phi, t), torch.full((3,), 1 / 3, dtype=torch.float64)
    )
    init = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(solve_simplex_ls(phi, t, init=init), init)


def test_integer_features_are_refused_with_the_conversion_to_use():
    with pytest.raises(
        TypeError,
        match=r"^features\.dtype=torch\.int64 must be a floating-point dtype; convert with",
    ):
        SquaredLoss(torch.ones(3, 4, dtype=torch.long), torch.zeros(4))
    with pytest.raises(
        TypeError, match=r"^features\.dtype=torch\.int64 must be a floating-point dtype"
    ):
        solve_simplex_ls(torch.ones(3, 4, dtype=torch.long), torch.zeros(4))


# ---- found against mutants that survived the tests above (make mutate-sample)


def _feats(n=6, m=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, m, generator=g, dtype=torch.float64), torch.randn(
        m, generator=g, dtype=torch.float64
    )


def test_magnitude_breaks_ties_by_the_lowest_index():
    phi, y = _feats()
    scores = torch.tensor([1.0, 3.0, 2.0, 3.0, 2.0, 3.0])
    assert magnitude(SquaredLoss(phi, y), 4, scores=scores).order.tolist() == [1, 3, 5, 2]


def test_elementwise_loss_keeps_its_memory_budget():
    phi, y = _feats()
    assert ElementwiseLoss(phi, y, lambda p, t: (p - t).abs(), max_bytes=1234).max_bytes == 1234


def test_set_weights_takes_weights_of_another_dtype():
    phi, y = _feats()
    a, b = SquaredLoss(phi, y), SquaredLoss(phi, y)
    idx = torch.tensor([0, 2, 3])
    w = torch.tensor([0.5, 0.25, 0.25])
    a.set_weights(idx, w.float())  # float32 weights on a float64 objective
    b.set_weights(idx, w)
    assert a.current_loss() == b.current_loss()


def test_selection_from_order_and_npz_without_info(tmp_path):
    sel = Selection.from_order([0.0, 2.0], [1.0, 0.5], 3)
    assert sel.order.dtype == torch.long and sel.order.tolist() == [0, 2]
    path = tmp_path / "s.npz"
    buf = io.BytesIO()
    np.savez(
        buf,
        order=np.array([0, 2]),
        counts=np.array([1, 0, 1]),
        weights=np.array([0.5, 0.0, 0.5]),
        losses=np.array([1.0, 0.5]),
        meta=np.array(json.dumps({"method": "greedy", "evaluations": 5})),
    )
    path.write_bytes(buf.getvalue())
    assert Selection.load(path).info == {}


def test_simplex_solver_starts_from_the_uniform_mixture():
    phi, y = _feats(n=5, m=8)
    default = solve_simplex_ls(phi, y)
    uniform = solve_simplex_ls(phi, y, init=torch.full((5,), 0.2, dtype=torch.float64))
    assert torch.equal(default, uniform)


def test_stacked_objective_passes_tuple_inputs_whole():
    x1, x2 = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    seen = []

    def forward(xs, gates):
        seen.append(type(xs))
        a, b = xs
        return a.sum(-1) + b.sum(-1)

    obj = StackedObjective((x1, x2), forward, lambda o, t: o, 3)
    obj.losses(None)
    assert seen and all(t is tuple for t in seen)


def test_stacked_objective_chunks_to_the_cpu_budget():
    x = torch.randn(64, 1024)  # 256 KiB of inputs, x4 for the activations: 1 MiB per candidate
    obj = StackedObjective(x, lambda h, g: h.sum(-1), lambda o, t: o, 100)
    assert obj.chunk_size == CPU_MAX_BYTES // (x.numel() * 4 * 4)


def test_stacked_objective_one_candidate_per_pass_and_integer_inputs():
    """chunk_size=1 (one candidate per forward pass) is allowed and scores as one pass does; with
    integer inputs (e.g. token ids) the gates take the default float dtype, not the inputs'."""
    x = torch.arange(12).reshape(4, 3)  # int64

    def forward(h, gates):  # h [K*B, 3] (copy j in rows j*B..), gates [K, 3]: a gated row sum
        per_row = gates.repeat_interleave(h.shape[0] // gates.shape[0], dim=0)
        return (h.to(gates.dtype) * per_row).sum(-1)

    def loss(o, t):
        return o.pow(2)

    one = StackedObjective(x, forward, loss, 3, chunk_size=1)
    assert one.chunk_size == 1 and one.dtype == torch.get_default_dtype()
    whole = StackedObjective(x, forward, loss, 3, chunk_size=3)
    torch.testing.assert_close(one.losses(None), whole.losses(None), rtol=0, atol=0)


def test_per_sample_squared_loss_is_half_the_squared_distance():
    from greedyprune.select import per_sample_loss

    out = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 3.0]], dtype=torch.float64)
    tgt = torch.tensor([[0.0, 1.0], [1.0, 1.0], [3.0, 2.0]], dtype=torch.float64)
    want = torch.tensor([1.0, 2.5, 0.5], dtype=torch.float64)  # 0.5 * ||out - tgt||^2 per row
    assert torch.equal(per_sample_loss("squared", out, tgt), want)


def test_lowest_index_order_scores_the_lowest_open_candidates():
    phi, y = _feats(n=8, m=6, seed=3)
    sel = greedy_select(
        SquaredLoss(phi, y), 4, replacement=False, candidates=2, candidate_order="lowest-index"
    )
    assert sel.info["candidate_order"] == "lowest-index"
    # slow reference: at each step the better of the two lowest-index open candidates
    ref, taken = SquaredLoss(phi, y), []
    for _ in range(4):
        pool = [i for i in range(8) if i not in taken][:2]
        losses = ref.losses(torch.tensor(pool))
        taken.append(pool[int(torch.argmin(losses))])
        ref.add(taken[-1])
    assert sel.order.tolist() == taken
    assert random_subset(SquaredLoss(phi, y), 3, replacement=False).method == "random_norepl"
    assert random_subset(SquaredLoss(phi, y), 3, replacement=True).method == "random"


def test_kernel_messages_name_the_argument_and_the_fix(tmp_path):
    phi, y = _feats()
    with pytest.raises(
        ValueError, match=r"^candidate_order='best' must be one of 'random', 'lowest-index'$"
    ):
        greedy_select(SquaredLoss(phi, y), 2, candidates=2, candidate_order="best")
    with pytest.raises(
        ValueError, match=r"^loss='l3' is not known; pass 'squared' or 'cross_entropy'$"
    ):
        per_sample_loss("l3", torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(
        TypeError,
        match=r"^objective=3 must be a greedyprune\.select\.Objective \(missing 'n_candidates'\)$",
    ):
        greedy_select(3, 2)
    with pytest.raises(TypeError, match=r"^loss_fn='l1' must be callable$"):
        ElementwiseLoss(phi, y, "l1")
    with pytest.raises(
        TypeError, match=r"^inputs must be a torch\.Tensor \[B, \.\.\.\] or a tuple"
    ):
        StackedObjective([1, 2], lambda x, g: x, lambda o, t: o, 3)
    with pytest.raises(TypeError, match=r"^n=2\.0 must be an int >= 1$"):
        check_positive_int("n", 2.0)
    sel = greedy_select(SquaredLoss(phi, y), 2)
    with pytest.raises(
        ValueError, match=r"^path='.*sel\.txt' must be a file name ending in \.json or \.npz$"
    ):
        sel.save(tmp_path / "sel.txt")
