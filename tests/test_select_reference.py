"""The vectorised kernel picks exactly what a slow, obvious per-candidate loop picks.

The reference below scores every allowed candidate one at a time, in float64, by building the
candidate subnetwork's prediction (or gates) and computing its loss from the definition. The check
*replays* the kernel's selection: at each step it rebuilds the kernel's prefix, scores all candidates
with the reference, and requires

- the kernel's pick to be the reference's lowest-index argmin whenever the runner-up is further
  than the rounding tolerance away (a "decided" step);
- otherwise (a float tie) only that the pick is an argmin within the tolerance; the next step then
  continues from the kernel's pick, so one near-tie cannot derail the rest of the comparison;
- the loss the kernel records to equal the reference loss of its pick.

To keep the tolerance honest, each test also requires most steps to be decided. Exact lowest-index
tie-breaking is tested separately with duplicated features whose arithmetic is exact in float64.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from greedyprune.select import (
    CrossEntropyLoss,
    ElementwiseLoss,
    FactoredSquaredLoss,
    SquaredLoss,
    StackedObjective,
    greedy_select,
)

DTYPES = [torch.float32, torch.float64]


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: intra-op threads only add synchronisation (on a loaded 2-core
    machine a [16, 24] tanh took 1 ms with 2 threads against 11 us with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the slow, obvious reference -------------------------------------------------------------------
@dataclass
class Problem:
    """One selection problem and its float64 reference loss.

    make(): a fresh kernel objective (in the test's dtype and device).
    ref_loss(weights [N] float64): the loss of the subnetwork with mixing weights ``weights``,
        computed from the definition in float64, one candidate at a time.
    magnitude: a bound on the size of the terms whose rounding enters the kernel's loss (the
        loss computed with absolute values, for the elementwise largest |feature|, which bounds
        every average), used to scale the tolerance.
    n_terms: how many terms a loss sums over (data x outputs), for the rounding bound.
    """

    make: object
    ref_loss: object
    magnitude: float
    n_terms: int
    n_candidates: int


def _avg(features64: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """[N, m(, c)] features, [N] weights -> the weighted average [m(, c)], in float64."""
    return torch.tensordot(weights, features64, dims=1)


def squared_problem(features, target, device) -> Problem:
    f64, t64 = features.double(), target.double()
    m = features.shape[1]

    def ref_loss(w):
        return float(((_avg(f64, w) - t64) ** 2).sum() / (2 * m))

    envelope = f64.abs().amax(0)
    return Problem(
        make=lambda: SquaredLoss(features.to(device), target.to(device)),
        ref_loss=ref_loss,
        magnitude=float(((envelope + t64.abs()) ** 2).sum() / (2 * m)),
        n_terms=int(features[0].numel()),
        n_candidates=features.shape[0],
    )


def factored_problem(acts, out_w, target, device) -> Problem:
    """FactoredSquaredLoss, checked against the dense reference on the materialised features."""
    dense = acts.double().unsqueeze(2) * out_w.double().unsqueeze(1)  # [N, m, c]
    p = squared_problem(dense, target.double(), device)
    p.make = lambda: FactoredSquaredLoss(acts.to(device), out_w.to(device), target.to(device))
    return p


def cross_entropy_problem(logits, labels, device, max_bytes=None) -> Problem:
    f64 = logits.double()
    kw = {} if max_bytes is None else {"max_bytes": max_bytes}

    def ref_loss(w):
        return float(F.cross_entropy(_avg(f64, w), labels))

    return Problem(
        make=lambda: CrossEntropyLoss(logits.to(device), labels.to(device), **kw),
        ref_loss=ref_loss,
        magnitude=float(f64.abs().amax(0).amax(1).mean() * 2 + math.log(logits.shape[2])),
        n_terms=int(logits[0].numel()),
        n_candidates=logits.shape[0],
    )


def _huber(pred, target):
    return F.smooth_l1_loss(pred, target.expand_as(pred), reduction="none", beta=0.5)


def elementwise_problem(features, target, device, max_bytes=None) -> Problem:
    f64, t64 = features.double(), target.double()
    kw = {} if max_bytes is None else {"max_bytes": max_bytes}

    def ref_loss(w):
        return float(_huber(_avg(f64, w), t64).mean())

    return Problem(
        make=lambda: ElementwiseLoss(features.to(device), target.to(device), _huber, **kw),
        ref_loss=ref_loss,
        magnitude=float(((f64.abs().amax(0) + t64.abs()) ** 2).mean() + 1.0),
        n_terms=int(features[0].numel()),
        n_candidates=features.shape[0],
    )


def _mlp_forward(w1, w2):
    """A gated one-hidden-layer network: forward(x [K*B, d], gates [K, N]) -> [K*B, c]."""

    def forward(x, gates):
        h = torch.tanh(x @ w1.T)  # [K*B, N]
        g = gates.repeat_interleave(x.shape[0] // gates.shape[0], dim=0)
        return (h * g) @ w2.T / w1.shape[0]

    return forward


def _per_sample_mse(out, target):
    return ((out - target) ** 2).sum(1) / 2


def stacked_problem(x, w1, w2, target, device, scale, chunk_size=None) -> Problem:
    """StackedObjective over a gated MLP, against one float64 forward per candidate."""
    fwd64 = _mlp_forward(w1.double(), w2.double())
    x64, t64 = x.double(), target.double()
    N = w1.shape[0]

    def ref_loss(w):
        out = fwd64(x64, (scale * w).unsqueeze(0))
        return float(_per_sample_mse(out, t64).mean())

    # The gates are >= 0 and sum to scale, so |output| <= scale * max_j |h_j w2_j| / N.
    h = torch.tanh(x64 @ w1.double().T).abs()  # [B, N]
    out_env = scale * (h.unsqueeze(1) * w2.double().abs().unsqueeze(0)).amax(2) / N  # [B, c]

    def make():
        dev = torch.device(device)
        return StackedObjective(
            x.to(dev),
            _mlp_forward(w1.to(dev), w2.to(dev)),
            _per_sample_mse,
            N,
            target=target.to(dev),
            scale=scale,
            chunk_size=chunk_size,
        )

    return Problem(
        make=make,
        ref_loss=ref_loss,
        magnitude=float(((out_env + t64.abs()) ** 2).sum(1).mean() / 2),
        n_terms=int(w1.shape[1] * N + target[0].numel() * N),
        n_candidates=N,
    )


def reference_losses(problem: Problem, prefix: list[int], allowed: list[int]):
    """The slow loop: the loss of prefix + {i} (1/(k+1) average) for each allowed i, one by one."""
    N, k = problem.n_candidates, len(prefix)
    base = torch.bincount(torch.tensor(prefix, dtype=torch.long), minlength=N).double()
    out = []
    for i in allowed:
        w = base.clone()
        w[i] += 1
        w /= k + 1
        out.append(problem.ref_loss(w))
    return torch.tensor(out, dtype=torch.float64)


def tolerance(problem: Problem, dtype: torch.dtype, k: int) -> float:
    """Rounding bound: a sum of M terms of size <= magnitude is off by at most about M * eps * it.

    M counts the terms of the loss plus the k+1 features summed into the prediction; the factor 4
    covers the few extra operations (a square, a division, a subtraction) per term.
    """
    eps = torch.finfo(dtype).eps
    return 4 * (problem.n_terms + k + 1) * eps * problem.magnitude


def replay(problem: Problem, sel, *, replacement: bool, dtype: torch.dtype) -> dict:
    """Check ``sel`` step by step against the reference; returns counts of decided/tied steps.

    A second kernel objective follows the same prefix, so the kernel's score of *every* candidate
    is compared with the reference (within the rounding bound), not only the pick. A pick p other
    than the reference's lowest-index argmin r is only possible where the kernel's rounding errors
    (err = kernel - reference) can flip the order: ref[p] - ref[r] <= err[r] - err[p]. Such a step
    is a float tie; anywhere else the pick must be r exactly.
    """
    N = problem.n_candidates
    order = sel.order.tolist()
    assert len(order) == sel.losses.numel()
    shadow = problem.make()
    decided = ties = 0
    for k, pick in enumerate(order):
        prefix = order[:k]
        allowed = list(range(N)) if replacement else sorted(set(range(N)) - set(prefix))
        assert pick in allowed, f"step {k + 1}: picked {pick}, not an allowed candidate"
        ref = reference_losses(problem, prefix, allowed)
        tol = tolerance(problem, dtype, k)
        allowed_t = torch.tensor(allowed, device=shadow.device)
        kern = shadow.losses(allowed_t).detach().double().cpu()
        err = kern - ref
        worst = int(err.abs().argmax())
        assert float(err.abs().max()) <= tol, (
            f"step {k + 1}: the kernel scores candidate {allowed[worst]} at {float(kern[worst])!r}, "
            f"the reference at {float(ref[worst])!r} (rounding bound {tol:.3g})"
        )
        r, p = int(torch.argmin(ref)), allowed.index(pick)
        if pick == allowed[r] or float(ref[p] - ref[r]) > float(err[r] - err[p]):
            decided += int(float(ref[p] - ref[r]) > float(err.max() - err.min()) or p == r)
            assert pick == allowed[r], (
                f"step {k + 1}: kernel picked {pick} (reference loss {float(ref[p])!r}), the "
                f"reference picks {allowed[r]} (loss {float(ref[r])!r}); the kernel's rounding "
                f"errors cannot explain the difference"
            )
        else:
            ties += 1
        assert abs(float(sel.losses[k]) - float(ref[p])) <= tol, (
            f"step {k + 1}: kernel records loss {float(sel.losses[k])!r}, the reference "
            f"{float(ref[p])!r} (tolerance {tol:.3g})"
        )
        shadow.add(pick)
    return {"decided": decided, "ties": ties}


def check_against_reference(problem, n, *, replacement, dtype, device):
    sel = greedy_select(problem.make(), n, replacement=replacement)
    assert sel.order.device.type == "cpu" and sel.losses.dtype == torch.float64
    stats = replay(problem, sel, replacement=replacement, dtype=dtype)
    # The comparison must not be vacuous: random data should leave few steps to float ties.
    print("STATS", stats, n)
    assert stats["decided"] >= 0.9 * n, f"too many float ties to be a test: {stats}"
    N = problem.n_candidates
    expected_evals = n * N if replacement else sum(N - k for k in range(n))
    assert sel.evaluations == expected_evals
    return sel


# -- data ------------------------------------------------------------------------------------------
def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _features(seed, shape, dtype):
    return torch.randn(shape, generator=_gen(seed), dtype=torch.float64).to(dtype)


N_CAND, M_DATA, C_OUT = 24, 10, 3
SEEDS = [0, 1]


def _n_steps(replacement):
    # With replacement run past N so repeats happen; without, stop short of exhausting the pool.
    return 2 * N_CAND if replacement else N_CAND - 4


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_squared_loss_2d(seed, replacement, dtype, device):
    feats = _features(seed, (N_CAND, M_DATA), dtype)
    target = _features(seed + 100, (M_DATA,), dtype) * 0.3
    problem = squared_problem(feats, target, device)
    check_against_reference(
        problem, _n_steps(replacement), replacement=replacement, dtype=dtype, device=device
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_squared_loss_3d(seed, replacement, dtype, device):
    feats = _features(seed, (N_CAND, M_DATA, C_OUT), dtype)
    target = feats.mean(0) + 0.1 * _features(seed + 100, (M_DATA, C_OUT), dtype)
    problem = squared_problem(feats, target, device)
    check_against_reference(
        problem, _n_steps(replacement), replacement=replacement, dtype=dtype, device=device
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_bytes", [None, 1])
def test_cross_entropy(seed, replacement, dtype, max_bytes, device):
    logits = 2 * _features(seed, (N_CAND, M_DATA, C_OUT), dtype)
    labels = torch.randint(C_OUT, (M_DATA,), generator=_gen(seed + 7))
    # max_bytes=1 forces one candidate per chunk: chunking must not change the picks.
    problem = cross_entropy_problem(logits, labels, device, max_bytes=max_bytes)
    check_against_reference(
        problem, _n_steps(replacement), replacement=replacement, dtype=dtype, device=device
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_bytes", [None, 100])
def test_elementwise_loss(seed, replacement, dtype, max_bytes, device):
    feats = _features(seed, (N_CAND, M_DATA, C_OUT), dtype)
    target = _features(seed + 100, (M_DATA, C_OUT), dtype) * 0.5
    problem = elementwise_problem(feats, target, device, max_bytes=max_bytes)
    check_against_reference(
        problem, _n_steps(replacement), replacement=replacement, dtype=dtype, device=device
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_factored_squared_loss_matches_dense(seed, replacement, dtype, device):
    acts = _features(seed, (N_CAND, M_DATA), dtype)
    out_w = _features(seed + 50, (N_CAND, C_OUT), dtype)
    target = _features(seed + 100, (M_DATA, C_OUT), dtype) * 0.3
    problem = factored_problem(acts, out_w, target, device)
    sel = check_against_reference(
        problem, _n_steps(replacement), replacement=replacement, dtype=dtype, device=device
    )
    # Where no step was a near-tie, the factored and dense kernels must agree exactly.
    dense = (acts.unsqueeze(2) * out_w.unsqueeze(1)).to(device)
    sel_dense = greedy_select(
        SquaredLoss(dense, target.to(device)), _n_steps(replacement), replacement=replacement
    )
    if dtype == torch.float64:
        assert sel.order.tolist() == sel_dense.order.tolist()
        torch.testing.assert_close(sel.losses, sel_dense.losses, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("scale", "chunk_size"), [(1.0, None), (float(N_CAND), 5)])
def test_stacked_objective(seed, replacement, dtype, scale, chunk_size, device):
    batch, d_in, c = 16, 4, 2
    x = _features(seed, (batch, d_in), dtype)
    w1 = _features(seed + 1, (N_CAND, d_in), dtype)
    w2 = 3 * _features(seed + 2, (c, N_CAND), dtype)
    target = _features(seed + 3, (batch, c), dtype) * 0.2
    problem = stacked_problem(x, w1, w2, target, device, scale, chunk_size)
    check_against_reference(
        problem, _n_steps(replacement), replacement=replacement, dtype=dtype, device=device
    )


def test_stacked_objective_gates_follow_the_average(device):
    """gates() after n picks is scale * counts / n (the authors' N/n per kept channel)."""
    x = _features(0, (8, 3), torch.float64)
    w1, w2 = _features(1, (10, 3), torch.float64), _features(2, (2, 10), torch.float64)
    problem = stacked_problem(x, w1, w2, _features(3, (8, 2), torch.float64), device, 10.0)
    obj = problem.make()
    sel = greedy_select(obj, 6, replacement=False)
    expected = 10.0 * sel.counts.double() / 6
    torch.testing.assert_close(obj.gates().cpu(), expected, rtol=1e-12, atol=1e-12)


# -- exact ties: duplicated features, exact arithmetic ---------------------------------------------
def _duplicated(seed, n_unique, copies, shape_tail):
    """Integer-valued features [n_unique * copies, *shape_tail] (float64), each row repeated
    ``copies`` times at scattered (permuted) indices."""
    base = torch.randint(-3, 4, (n_unique, *shape_tail), generator=_gen(seed)).double()
    feats = base.repeat_interleave(copies, dim=0)
    return feats[torch.randperm(feats.shape[0], generator=_gen(seed + 1))]


def _exact_loss(kind, feats, target, counts, k, n_data):
    """The loss of the multiset average ``sum_j counts[j] phi_j / k`` in exact rational arithmetic.

    feats: ints [N][terms]; target: ints [terms]; counts: {index: multiplicity}."""
    terms = len(target)
    diff = [
        Fraction(sum(c * feats[j][t] for j, c in counts.items()), k) - target[t]
        for t in range(terms)
    ]
    if kind == "elementwise":  # smooth L1 with beta = 1/2, as _huber
        beta = Fraction(1, 2)
        return sum(d * d / (2 * beta) if abs(d) < beta else abs(d) - beta / 2 for d in diff) / terms
    return sum(d * d for d in diff) / (2 * n_data)


def _lowest_index_greedy_exact(kind, feats, target, n, replacement, n_data):
    """The slow reference, run on its own in exact arithmetic: true ties go to the lowest index.

    Returns the order and how many steps had a tie for the minimum (so a test can check that its
    instance really exercises the tie rule)."""
    N = len(feats)
    order, tied_steps = [], 0
    for k in range(n):
        allowed = list(range(N)) if replacement else [i for i in range(N) if i not in order]
        losses = [
            _exact_loss(kind, feats, target, Counter([*order, i]), k + 1, n_data) for i in allowed
        ]
        best = min(losses)
        tied_steps += int(losses.count(best) > 1)
        order.append(allowed[losses.index(best)])
    return order, tied_steps


@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("kind", ["squared", "squared3d", "factored", "elementwise"])
def test_exact_ties_go_to_lowest_index(kind, replacement, device):
    """Duplicated integer features in float64. The squared losses' fast paths then compare exact
    integers (scaled by a common factor), and the generic path applies the same operations to
    identical rows, so true ties are exact ties in the kernel too; they must go to the lowest
    index, as the exact rational reference decides them."""
    n_unique, copies, m, c = 6, 3, 8, 2
    N = n_unique * copies
    target = torch.randint(-2, 3, (m, c), generator=_gen(5)).double()
    if kind == "squared":
        dense = _duplicated(0, n_unique, copies, (m,))
        target = target[:, 0].contiguous()
        obj = SquaredLoss(dense.to(device), target.to(device))
    elif kind == "squared3d":
        dense = _duplicated(0, n_unique, copies, (m, c))
        obj = SquaredLoss(dense.to(device), target.to(device))
    elif kind == "factored":
        ac = _duplicated(0, n_unique, copies, (m + c,))
        acts, out_w = ac[:, :m].contiguous(), ac[:, m:].contiguous()
        dense = acts.unsqueeze(2) * out_w.unsqueeze(1)
        obj = FactoredSquaredLoss(acts.to(device), out_w.to(device), target.to(device))
    else:
        dense = _duplicated(0, n_unique, copies, (m, c))
        obj = ElementwiseLoss(dense.to(device), target.to(device), _huber)
    n = 2 * N if replacement else N
    sel = greedy_select(obj, n, replacement=replacement)
    feats_int = [[int(v) for v in row] for row in dense.reshape(N, -1).tolist()]
    target_int = [int(v) for v in target.flatten().tolist()]
    expected, tied_steps = _lowest_index_greedy_exact(
        kind, feats_int, target_int, n, replacement, n_data=m
    )
    assert tied_steps >= n // 2, "the instance must exercise the tie rule"
    assert sel.order.tolist() == expected
