"""Details of the kernel and the rate fit that the other tests left free: each test here was
written against a mutant that survived them (``make mutate-sample``), and fails on it."""

import io
import json
import math

import numpy as np
import pytest
import torch

from greedyprune.select import (
    CPU_MAX_BYTES,
    ElementwiseLoss,
    Selection,
    SquaredLoss,
    StackedObjective,
    check_positive_int,
    greedy_select,
    magnitude,
    solve_simplex_ls,
)
from greedyprune.theory import Claim, check, fit_rate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _feats(n=6, m=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, m, generator=g, dtype=torch.float64), torch.randn(
        m, generator=g, dtype=torch.float64
    )


# ------------------------------------------------------------------ kernel


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


# ------------------------------------------------------------------ rate fit


def test_fit_reads_columns_and_integers_as_flat_floats():
    n = np.array([1, 2, 4, 8, 16])
    loss = 1.0 / n**2
    flat = fit_rate(n, loss, n_boot=20)
    col = fit_rate(n.reshape(-1, 1), loss.reshape(-1, 1), seed=np.zeros((5, 1)), n_boot=20)
    assert flat.slope == pytest.approx(-2.0) and col.slope == pytest.approx(flat.slope)
    big = fit_rate(np.array([10**10, 2 * 10**10, 4 * 10**10]), [4.0, 1.0, 0.25], n_boot=20)
    assert big.slope == pytest.approx(-2.0)


def test_fit_drops_zero_losses_and_counts_them():
    n = [1, 2, 4, 8, 16, 32]
    loss = [1.0, 0.5, 0.25, 0.0, 0.0625, 1 / 32]
    fit = fit_rate(n, loss, n_boot=20)
    assert fit.n_dropped == 1 and fit.slope == pytest.approx(-1.0)


def test_exponential_fit_is_log_loss_against_n():
    n = np.arange(1, 11)
    fit = fit_rate(n, np.exp(-0.3 * n + 0.1 * np.sin(n)), form="exponential", n_boot=20)
    ref = np.polyfit(n, -0.3 * n + 0.1 * np.sin(n), 1)[0]
    assert fit.slope == pytest.approx(ref, rel=1e-12)


def test_fit_r2_is_the_coefficient_of_determination():
    n = np.array([1.0, 2, 4, 8, 16, 32])
    y = -1.0 * np.log(n) + np.array([0.1, -0.2, 0.05, 0.15, -0.1, 0.0])
    fit = fit_rate(n, np.exp(y), n_boot=20)
    slope, icpt = np.polyfit(np.log(n), y, 1)
    resid = y - (icpt + slope * np.log(n))
    r2 = 1 - (resid**2).sum() / ((y - y.mean()) ** 2).sum()
    assert fit.r2 == pytest.approx(r2, rel=1e-12)
    assert fit_rate([1, 2], [1.0, 1.0], n_boot=20).r2 == 1.0  # a flat curve: fitted exactly


# ------------------------------------------------------------------ verdict table


def _rows(settings=("b", "a")):
    return [
        dict(experiment="rate", method="greedy", n=n, seed=s, setting=st, loss_train=n**-1.0)
        for st in settings
        for s in range(2)
        for n in (10, 20, 40, 80)
    ]


def test_verdict_table_keeps_setting_order_columns_and_the_predicted_slope():
    import pandas as pd

    claim = Claim("c", "s", "rate", "greedy", predicted_slope=-1.0, tolerance=0.25)
    out = check(pd.DataFrame(_rows()), [claim], n_boot=50)
    assert list(out["setting"]) == ["b", "a"]
    assert list(out.columns[:4]) == ["claim", "setting", "statement", "form"]
    assert list(out["predicted_slope"]) == [-1.0, -1.0]


def test_undecided_conditions_are_noted_in_the_reason():
    import pandas as pd

    claim = Claim(
        "c", "s", "rate", "greedy", predicted_slope=-1.0, tolerance=0.25, conditions=("maybe",)
    )
    out = check(
        pd.DataFrame(_rows(("x",))),
        [claim],
        n_boot=50,
        conditions={"maybe": lambda rows, rng: (None, "cannot tell")},
    )
    (row,) = out.to_dict("records")
    assert row["verdict"] == "holds" and row["reason"].endswith(" | maybe: cannot tell")


def test_a_bound_met_with_equality_up_to_the_slack_holds():
    import pandas as pd

    rows = [
        dict(experiment="bounds", method="greedy", n=n, seed=0, e_n=1 + 1e-9, bound=1.0)
        for n in (1, 2, 4)
    ]
    claim = Claim("b", "s", "bounds", "greedy", metric="e_n", form="bound", bound_column="bound")
    (row,) = check(pd.DataFrame(rows), [claim], n_boot=50).to_dict("records")
    assert row["verdict"] == "holds"
    assert math.isclose(1 + 1e-9, rows[0]["e_n"] / rows[0]["bound"])


# ------------------------------------------------------------------ messages


def test_messages_name_the_argument_and_the_fix():
    from greedyprune.select import per_sample_loss
    from greedyprune.theory import deep_claims

    phi, y = _feats()
    with pytest.raises(
        ValueError, match=r"^candidate_order='best' must be one of 'random', 'lowest-index'$"
    ):
        greedy_select(SquaredLoss(phi, y), 2, candidates=2, candidate_order="best")
    with pytest.raises(
        ValueError, match=r"^loss='l3' is not known; pass 'squared' or 'cross_entropy'$"
    ):
        per_sample_loss("l3", torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(TypeError, match=r"\(missing 'n_candidates'\); got int$"):
        greedy_select(3, 2)
    with pytest.raises(TypeError, match=r"^loss_fn must be callable, got str$"):
        ElementwiseLoss(phi, y, "l1")
    with pytest.raises(
        TypeError, match=r"^inputs must be a torch\.Tensor \[B, \.\.\.\] or a tuple"
    ):
        StackedObjective([1, 2], lambda x, g: x, lambda o, t: o, 3)
    with pytest.raises(TypeError, match=r"^results must be a pandas DataFrame, got dict$"):
        check({}, [])
    with pytest.raises(ValueError, match=r"^deep_claims needs at least one size n$"):
        deep_claims([])


def test_per_sample_squared_loss_is_half_the_squared_distance():
    from greedyprune.select import per_sample_loss

    out = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 3.0]], dtype=torch.float64)
    tgt = torch.tensor([[0.0, 1.0], [1.0, 1.0], [3.0, 2.0]], dtype=torch.float64)
    want = torch.tensor([1.0, 2.5, 0.5], dtype=torch.float64)  # 0.5 * ||out - tgt||^2 per row
    assert torch.equal(per_sample_loss("squared", out, tgt), want)


def test_fit_settings_at_their_edges():
    n, loss = [1, 2, 4, 8], [1.0, 0.5, 0.25, 0.125]
    assert fit_rate(n, loss, n_boot=1).slope == pytest.approx(-1.0)  # one re-sample is allowed
    for level in (0.0, 1.0):  # an interval of level 0 or 1 is no interval
        with pytest.raises(ValueError, match="level"):
            fit_rate(n, loss, n_boot=10, level=level)


def test_slope_difference_interval_has_the_requested_level():
    from greedyprune.theory import slope_difference_interval

    gen = np.random.default_rng(5)
    ns = np.array([10, 20, 40, 80, 160])
    rows_a, rows_b = [], []
    for s in range(6):
        for n in ns:
            rows_a.append((n, n ** (-1.0 + gen.normal(0, 0.1)), s))
            rows_b.append((n, n ** (-0.5 + gen.normal(0, 0.1)), s))
    a = tuple(np.array(c) for c in zip(*rows_a))
    b = tuple(np.array(c) for c in zip(*rows_b))
    lo90, hi90 = slope_difference_interval(a, b, n_boot=400, level=0.90)
    lo50, hi50 = slope_difference_interval(a, b, n_boot=400, level=0.50)
    assert lo90 < lo50 < hi50 < hi90  # a higher level, a wider interval around the same draws
    assert lo90 < -0.5 < hi90


def test_lowest_index_order_scores_the_lowest_open_candidates():
    from greedyprune.select import random_subset

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


def test_more_messages(tmp_path):
    import pandas as pd

    with pytest.raises(TypeError, match=r"^n=2\.0 must be an int >= 1$"):
        check_positive_int("n", 2.0)
    phi, y = _feats()
    sel = greedy_select(SquaredLoss(phi, y), 2)
    with pytest.raises(ValueError, match=r"got '.*sel\.txt'$"):
        sel.save(tmp_path / "sel.txt")
    with pytest.raises(ValueError, match=r"^Claim 'x': form='slope'; pass one of"):
        Claim("x", "s", "rate", "greedy", form="slope")
    with pytest.raises(ValueError, match=r"^Claim 'x': direction='below'; pass at_most, at_least"):
        Claim("x", "s", "rate", "greedy", predicted_slope=-1.0, direction="below")
    claim = Claim("c", "the words", "rate", "greedy", predicted_slope=-1.0, tolerance=0.25)
    (row,) = check(pd.DataFrame(_rows(("x",))), [claim], n_boot=50).to_dict("records")
    assert row["statement"] == "the words" and row["n_seeds"] == 2
