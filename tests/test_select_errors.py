"""Bad input to the kernel raises ValueError or TypeError whose message names the argument."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from greedyprune.select import (
    CrossEntropyLoss,
    ElementwiseLoss,
    FactoredSquaredLoss,
    Selection,
    SquaredLoss,
    StackedObjective,
    backward_elimination,
    greedy_select,
    magnitude,
    project_simplex,
    random_subset,
    solve_simplex_ls,
)

N, M, C = 5, 4, 3


def feats(*tail, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, M, *tail, generator=g, dtype=dtype).to(device)


def target(*tail, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(1)
    return torch.randn(M, *tail, generator=g, dtype=dtype).to(device)


def squared():
    return SquaredLoss(feats(), target())


def raises(exc, name: str):
    """pytest.raises that also requires the message to name ``name`` as a word."""
    return pytest.raises(exc, match=rf"(?<![\w]){re.escape(name)}(?![\w])")


def with_value(x: torch.Tensor, index, value) -> torch.Tensor:
    y = x.clone()
    y[index] = value
    return y


# -- n -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, -3])
@pytest.mark.parametrize(
    "method",
    [
        lambda o, n: greedy_select(o, n),
        lambda o, n: greedy_select(o, n, replacement=False),
        lambda o, n: random_subset(o, n),
        lambda o, n: magnitude(o, n),
        lambda o, n: backward_elimination(o, n),
    ],
)
def test_n_below_one(n, method):
    with raises(ValueError, "n"):
        method(squared(), n)


@pytest.mark.parametrize("n", [2.5, "3", True, None])
def test_n_not_an_int(n):
    with raises(TypeError, "n"):
        greedy_select(squared(), n)


def test_n_accepts_numpy_integers():
    assert greedy_select(squared(), np.int64(3)).n == 3


@pytest.mark.parametrize(
    "method",
    [
        lambda o, n: greedy_select(o, n, replacement=False),
        lambda o, n: random_subset(o, n, replacement=False),
        lambda o, n: magnitude(o, n),
        lambda o, n: backward_elimination(o, n),
    ],
)
def test_n_above_n_candidates_without_replacement(method):
    with raises(ValueError, "n"):
        method(squared(), N + 1)


def test_n_above_n_candidates_with_replacement_is_fine():
    assert greedy_select(squared(), N + 4).n == N + 4


@pytest.mark.parametrize("progress", ["yes", 1, None])
def test_progress_must_be_a_bool(progress):
    with raises(TypeError, "progress"):
        greedy_select(squared(), 2, progress=progress)


@pytest.mark.parametrize("replacement", ["no", 0, None])
def test_replacement_must_be_a_bool(replacement):
    with raises(TypeError, "replacement"):
        greedy_select(squared(), 2, replacement=replacement)
    with raises(TypeError, "replacement"):
        random_subset(squared(), 2, replacement=replacement)


# -- shapes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("f", "t", "name"),
    [
        (feats(), target(C), "target"),
        (feats(), torch.randn(M + 1, dtype=torch.float64), "target"),
        (feats(C), target(), "target"),
        (feats(C), torch.randn(M, C + 1, dtype=torch.float64), "target"),
        (torch.randn(N, dtype=torch.float64), torch.randn(1, dtype=torch.float64), "features"),
        (torch.randn(N, M, C, 2, dtype=torch.float64), target(C, 2), "features"),
    ],
)
def test_squared_loss_shape_mismatch(f, t, name):
    with raises(ValueError, name):
        SquaredLoss(f, t)


def test_factored_shape_mismatch():
    a, w, t = torch.randn(N, M), torch.randn(N, C), torch.randn(M, C)
    with raises(ValueError, "out_weights"):
        FactoredSquaredLoss(a, torch.randn(N + 1, C), t)
    with raises(ValueError, "target"):
        FactoredSquaredLoss(a, w, torch.randn(M, C + 1))
    with raises(ValueError, "target"):
        FactoredSquaredLoss(a, w, torch.randn(M))
    with raises(ValueError, "activations"):
        FactoredSquaredLoss(torch.randn(N, M, 1), w, t)


def test_cross_entropy_shape_mismatch():
    with raises(ValueError, "labels"):
        CrossEntropyLoss(feats(C), torch.zeros(M + 1, dtype=torch.long))
    with raises(ValueError, "labels"):
        CrossEntropyLoss(feats(C), torch.zeros(M, 1, dtype=torch.long))
    with raises(ValueError, "features"):
        CrossEntropyLoss(feats(), torch.zeros(M, dtype=torch.long))


def test_elementwise_target_must_broadcast():
    with raises(ValueError, "target"):
        ElementwiseLoss(feats(C), torch.randn(M + 1, C, dtype=torch.float64), F.l1_loss)


def test_solve_simplex_ls_shape_mismatch():
    with raises(ValueError, "target"):
        solve_simplex_ls(feats(), target(C))
    with raises(ValueError, "init"):
        solve_simplex_ls(feats(), target(), init=torch.ones(N + 1, dtype=torch.float64))
    with raises(ValueError, "v"):
        project_simplex(torch.ones(2, 2))


# -- dtype and type ------------------------------------------------------------------------------
def test_dtype_mismatch():
    with raises(TypeError, "target"):
        SquaredLoss(feats(dtype=torch.float32), target())
    with raises(TypeError, "out_weights"):
        FactoredSquaredLoss(torch.randn(N, M), torch.randn(N, C).double(), torch.randn(M, C))
    with raises(TypeError, "target"):
        solve_simplex_ls(feats(dtype=torch.float32), target())


@pytest.mark.parametrize(
    "make",
    [
        lambda: SquaredLoss(feats().numpy(), target()),
        lambda: SquaredLoss(torch.ones(N, M, dtype=torch.long), target()),
        lambda: CrossEntropyLoss(feats(C).tolist(), torch.zeros(M, dtype=torch.long)),
    ],
)
def test_features_must_be_a_float_tensor(make):
    with raises(TypeError, "features"):
        make()


def test_labels_must_be_an_integer_tensor():
    with raises(TypeError, "labels"):
        CrossEntropyLoss(feats(C), torch.zeros(M, dtype=torch.float64))
    with raises(TypeError, "labels"):
        CrossEntropyLoss(feats(C), [0] * M)


def test_target_must_be_a_tensor():
    with raises(TypeError, "target"):
        SquaredLoss(feats(), target().tolist())
    with raises(TypeError, "target"):
        ElementwiseLoss(feats(), 0.5, F.l1_loss)
    with raises(TypeError, "target"):
        StackedObjective(torch.randn(4, 3), lambda x, g: x, lambda o, t: o, 3, target=[1, 2])


def test_loss_fn_must_be_callable():
    with raises(TypeError, "loss_fn"):
        ElementwiseLoss(feats(), target(), "l1")


def test_objective_must_follow_the_protocol():
    with raises(TypeError, "objective"):
        greedy_select(object(), 2)
    with raises(TypeError, "objective"):
        random_subset(feats(), 2)


def test_objective_must_start_empty():
    obj = squared()
    obj.add(0)
    with raises(ValueError, "objective"):
        greedy_select(obj, 2)


# -- device (only where CUDA exists) -------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_mismatch():
    with raises(ValueError, "target"):
        SquaredLoss(feats(device="cuda"), target())
    with raises(ValueError, "labels"):
        CrossEntropyLoss(feats(C, device="cuda"), torch.zeros(M, dtype=torch.long))
    with raises(ValueError, "out_weights"):
        FactoredSquaredLoss(
            torch.randn(N, M, device="cuda"), torch.randn(N, C), torch.randn(M, C, device="cuda")
        )
    with raises(ValueError, "target"):
        ElementwiseLoss(feats(device="cuda"), target(), F.l1_loss)
    with raises(ValueError, "target"):
        solve_simplex_ls(feats(device="cuda"), target())


# -- non-finite values ---------------------------------------------------------------------------
BAD = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("bad", BAD)
def test_non_finite_features_or_target(bad):
    with raises(ValueError, "features"):
        SquaredLoss(with_value(feats(), (1, 2), bad), target())
    with raises(ValueError, "target"):
        SquaredLoss(feats(), with_value(target(), 3, bad))
    with raises(ValueError, "features"):
        SquaredLoss(with_value(feats(C), (0, 1, 2), bad), target(C))
    with raises(ValueError, "features"):
        CrossEntropyLoss(with_value(feats(C), (4, 0, 0), bad), torch.zeros(M, dtype=torch.long))
    with raises(ValueError, "features"):
        ElementwiseLoss(with_value(feats(), (0, 0), bad), target(), F.l1_loss)
    with raises(ValueError, "target"):
        ElementwiseLoss(feats(), with_value(target(), 0, bad), F.l1_loss)
    a, w, t = torch.randn(N, M), torch.randn(N, C), torch.randn(M, C)
    with raises(ValueError, "activations"):
        FactoredSquaredLoss(with_value(a, (0, 0), bad), w, t)
    with raises(ValueError, "out_weights"):
        FactoredSquaredLoss(a, with_value(w, (0, 0), bad), t)
    with raises(ValueError, "target"):
        FactoredSquaredLoss(a, w, with_value(t, (0, 0), bad))
    with raises(ValueError, "features"):
        solve_simplex_ls(with_value(feats(), (0, 0), bad), target())
    with raises(ValueError, "scores"):
        magnitude(squared(), 2, scores=with_value(torch.ones(N), 0, bad))


# -- empty ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(0, M), (N, 0), (0, M, C)])
def test_empty_feature_set(shape):
    f = torch.zeros(shape, dtype=torch.float64)
    with raises(ValueError, "features"):
        SquaredLoss(f, torch.zeros(shape[1:], dtype=torch.float64))
    with raises(ValueError, "features"):
        ElementwiseLoss(f, torch.zeros(shape[1:], dtype=torch.float64), F.l1_loss)


def test_empty_factored_and_cross_entropy():
    with raises(ValueError, "activations"):
        FactoredSquaredLoss(torch.zeros(0, M), torch.zeros(0, C), torch.zeros(M, C))
    with raises(ValueError, "features"):
        CrossEntropyLoss(torch.zeros(0, M, C), torch.zeros(M, dtype=torch.long))


# -- labels --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, C, C + 7])
def test_label_out_of_range(bad):
    labels = torch.zeros(M, dtype=torch.long)
    labels[2] = bad
    with raises(ValueError, "labels"):
        CrossEntropyLoss(feats(C), labels)


# -- options of greedy_select --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("candidates", "exc"),
    [
        (0, ValueError),
        (-2, ValueError),
        (2.5, ValueError),
        ("all", ValueError),
        (True, ValueError),
        (("eps", 0), ValueError),
        (("eps", 1.0), ValueError),
        (("eps", math.nan), ValueError),
        (("eps", "x"), ValueError),
        (("sqrt", 0.1), ValueError),
        ([3], ValueError),
    ],
)
def test_bad_candidates(candidates, exc):
    with raises(exc, "candidates"):
        greedy_select(squared(), 2, candidates=candidates)


def test_candidates_accepts_numpy_integers():
    sel = greedy_select(squared(), 2, candidates=np.int32(3), generator=0)
    assert sel.info["candidates_per_step"] == 3


@pytest.mark.parametrize(
    ("stop", "exc"),
    [
        ("small", TypeError),
        (True, TypeError),
        ([0.1], TypeError),
        (math.nan, ValueError),
        (math.inf, ValueError),
    ],
)
def test_bad_stop(stop, exc):
    with raises(exc, "stop"):
        greedy_select(squared(), 2, stop=stop)


@pytest.mark.parametrize("weights", ["uniform", "Corrective", None, 1])
def test_bad_weights(weights):
    with raises(ValueError, "weights"):
        greedy_select(squared(), 2, weights=weights)


def test_corrective_needs_a_squared_loss_objective():
    with raises(TypeError, "weights"):
        greedy_select(
            CrossEntropyLoss(feats(C), torch.zeros(M, dtype=torch.long)), 2, weights="corrective"
        )
    # the message names the objectives that do support it
    with pytest.raises(TypeError, match=r"\(SquaredLoss, FactoredSquaredLoss, GramLoss\)"):
        greedy_select(
            CrossEntropyLoss(feats(C), torch.zeros(M, dtype=torch.long)), 2, weights="corrective"
        )


@pytest.mark.parametrize("generator", ["seed", 1.5, True])
def test_bad_generator(generator):
    with raises(TypeError, "generator"):
        greedy_select(squared(), 2, candidates=2, generator=generator)
    with raises(TypeError, "generator"):
        random_subset(squared(), 2, generator=generator)


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, True])
def test_bad_max_bytes(max_bytes):
    with raises(ValueError, "max_bytes"):
        SquaredLoss(feats(), target(), max_bytes=max_bytes)
    with raises(ValueError, "max_bytes"):
        FactoredSquaredLoss(
            torch.randn(N, M), torch.randn(N, C), torch.randn(M, C), max_bytes=max_bytes
        )


# -- baselines, solver, record -------------------------------------------------------------------
def test_magnitude_scores_must_match():
    with raises(ValueError, "scores"):
        magnitude(squared(), 2, scores=torch.ones(N + 1))


def test_backward_elimination_needs_removal():
    stacked = StackedObjective(
        torch.randn(4, 3), lambda x, g: x @ torch.ones(3, 1), lambda o, t: o.flatten(), 3
    )
    with raises(TypeError, "removal_losses"):
        backward_elimination(stacked, 2)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"max_iter": 0}, "max_iter"), ({"patience": -1}, "patience"), ({"tol": -1e-3}, "tol")],
)
def test_bad_solver_options(kwargs, name):
    with raises(ValueError, name):
        solve_simplex_ls(feats(), target(), **kwargs)


def test_stacked_objective_arguments():
    x = torch.randn(4, 3)
    fwd, loss = lambda x, g: x, lambda o, t: o.sum(1)
    with raises(TypeError, "inputs"):
        StackedObjective([1, 2], fwd, loss, 3)
    with raises(ValueError, "n_candidates"):
        StackedObjective(x, fwd, loss, 0)
    with raises(ValueError, "chunk_size"):
        StackedObjective(x, fwd, loss, 3, chunk_size=0)
    with raises(ValueError, "target"):
        StackedObjective(x, fwd, loss, 3, target=torch.randn(5))
    with raises(TypeError, "loss_fn"):
        StackedObjective(x, fwd, None, 3)


def test_selection_arguments(tmp_path):
    with raises(ValueError, "order"):
        Selection.from_order([0, 5], [1.0, 0.5], 5)
    with raises(ValueError, "losses"):
        Selection.from_order([0, 1], [1.0], 5)
    sel = Selection.from_order([0, 1], [1.0, 0.5], 5)
    with raises(ValueError, "k"):
        sel.prefix_weights(3)
    with raises(TypeError, "k"):
        sel.prefix_weights(1.0)
    with raises(ValueError, "path"):
        sel.save(tmp_path / "sel.pt")
    with pytest.raises(ValueError, match=r"path=.* must be an existing file"):
        Selection.load(tmp_path / "missing.json")


# ------------------------------------------------------------ what mutation testing found


def test_baseline_messages_name_what_is_missing(tmp_path):
    # a stacked objective (a network's suffix) has neither feature norms nor removal
    x = torch.randn(5, 4)
    obj = StackedObjective(
        x, lambda h, g: (h * g).sum(-1), lambda o, t: (o - t) ** 2, 4, target=x.sum(1)
    )
    with pytest.raises(
        TypeError, match=r"^magnitude needs scores=\.\.\. for an objective that does"
    ):
        magnitude(obj, 2)
    with pytest.raises(
        TypeError, match=r"\(removal_losses\(\)/remove\(\)\); StackedObjective does not$"
    ):
        backward_elimination(obj, 2)
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ValueError, match=re.escape(repr(str(missing)))):
        Selection.load(missing)


def test_backward_elimination_record_and_removal_of_chosen_candidates():
    gen = torch.Generator().manual_seed(3)
    phi = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    obj = SquaredLoss(phi, phi.mean(0))
    sel = backward_elimination(obj, 2)
    assert sel.method == "backward"
    # N + (N - 1) + ... + 2 removal scorings, one per candidate left at each of the N - 1 steps
    assert sel.evaluations == sum(range(2, 7))
    # removal_losses of chosen candidates are those entries of the full vector
    obj = SquaredLoss(phi, phi.mean(0))
    kept = greedy_select(obj, 4).order[:2]
    full = obj.removal_losses()
    assert full.shape == (6,)
    torch.testing.assert_close(obj.removal_losses(kept), full[kept], rtol=1e-12, atol=0)
    single = SquaredLoss(phi, phi.mean(0))
    greedy_select(single, 1)
    with pytest.raises(ValueError, match=r"^removal needs a subnetwork of at least 2 neurons$"):
        single.removal_losses()
