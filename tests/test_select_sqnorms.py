"""The squared losses' one-pass setup (``_checked_sqnorms``) against the two passes it replaces.

Before, construction checked every value of the features for NaN and inf (``old_error``) and then
took ``flat.pow(2).sum(1)``. The fused pass must give the same squared norms bit for bit and raise
exactly where the old check raised, with its message (count included): on any NaN or inf, in
features, activations, out_weights or target, and not on large-but-finite rows whose squared norm
overflows to inf.

The pass sums the rows in blocks of ``SETUP_VALUES // width`` rows (at least 2): wide features
make the block boundaries (and the merged one-row leftover) show up on small inputs, and a spy on
``torch.sum`` (one call per block) checks that the blocks are the ones asked for. Everything goes
through the public API of ``greedyprune.select``.
"""

from __future__ import annotations

import contextlib
import math
import re

import pytest
import torch

from greedyprune.select import FactoredSquaredLoss, SquaredLoss, greedy_select

D = 4
#: values per block of the setup pass of greedyprune.select's squared losses (rows per block:
#: ``SETUP_VALUES // width``); test_blocks_are_as_asked fails if the pass changes it
SETUP_VALUES = 32_000
#: bytes per block when two rows hold more than SETUP_VALUES values
SETUP_BYTES = 4 * 2**20


@contextlib.contextmanager
def setup_blocks():
    """A list, filled while the body runs with the rows of each block the setup pass sums (one
    ``torch.sum(..., out=...)`` per block)."""
    sizes: list[int] = []
    real = torch.sum

    def spy(*args, **kwargs):
        if "out" in kwargs:
            sizes.append(int(args[0].shape[0]))
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch, "sum", spy)
        yield sizes


@pytest.fixture(params=[None, 3, 2], ids=["default-blocks", "3-row-blocks", "2-row-blocks"])
def width(request):
    """The features' width: D (one block at these sizes), or one giving blocks of 3 or 2 rows."""
    return D if request.param is None else SETUP_VALUES // request.param


def old_error(name: str, x: torch.Tensor) -> str | None:
    """The message the old construction raised for ``x`` (its check of every value), or None."""
    bad = int((~torch.isfinite(x)).sum()) if x.is_floating_point() else 0
    if not bad:
        return None
    return f"{name} holds {bad} NaN or inf values; clean or drop them before selecting"


def feats(n, *tail, dtype=torch.float64, seed=0, width=D):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, *tail, generator=g, dtype=dtype)


@pytest.mark.parametrize("rows", [2, 3, 4, 30])
def test_blocks_are_as_asked(rows):
    """Blocks of ``SETUP_VALUES // width`` rows that cover the rows, and none of one row (a
    one-output sum is split across threads: another order of additions than the other rows')."""
    width = SETUP_VALUES // rows
    for n in range(2, 3 * rows + 8):
        with setup_blocks() as sizes:
            SquaredLoss(torch.zeros(n, width), torch.zeros(width))
        assert sum(sizes) == n and min(sizes) >= 2, (n, sizes)
        assert sizes[: n // rows - 1] == [rows] * (n // rows - 1), (n, sizes)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 7, 10, 11, 50])
def test_sqnorms_bit_for_bit(n, width):
    D = width
    for f in (feats(n, width=D), feats(n, 3, width=D), feats(n, dtype=torch.float32, width=D)):
        t = torch.randn(f.shape[1:], dtype=f.dtype)
        obj = SquaredLoss(f, t)
        assert torch.equal(obj._sqnorms, f.reshape(n, -1).pow(2).sum(1))
    # Non-contiguous features (reshape copies, as before) and rows of a larger tensor.
    rows = feats(n + 3, width=D)[1 : n + 1]  # a contiguous slice
    transposed = feats(n, seed=5, width=D).T.contiguous().T  # column-major: pow(2).sum(1)
    strided = feats(2 * n, 3, width=D)[::2, :, 1]  # every other row, one output: the same
    for x in (rows, transposed, strided):
        obj = SquaredLoss(x, torch.zeros(D, dtype=x.dtype))
        assert torch.equal(obj._sqnorms, x.reshape(n, -1).pow(2).sum(1))
    a, w = feats(n, seed=1, width=D), torch.randn(n, 3, dtype=torch.float64)
    fobj = FactoredSquaredLoss(a, w, torch.zeros(D, 3, dtype=torch.float64))
    assert torch.equal(fobj._sqnorms, a.pow(2).sum(1) * w.pow(2).sum(1))


def test_sqnorms_bit_for_bit_large_rows():
    # Rows longer than SETUP_VALUES / 2 go in parallel blocks of about SETUP_BYTES, and a sum over
    # one row alone is split across threads (another order, other bits in the last place for
    # some rows), so the setup pass must never make a block of one row out of a leftover. Every
    # split of 3..9 rows into blocks of 2..4 rows.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for rows in (2, 3, 4):
            m = SETUP_BYTES // (4 * rows)  # float32 rows: `rows` of them per block
            f = torch.randn(9, m, generator=torch.Generator().manual_seed(3))
            for n in range(3, 10):
                with setup_blocks() as sizes:
                    obj = SquaredLoss(f[:n], torch.zeros(m))
                assert sum(sizes) == n and min(sizes) >= 2, (rows, n, sizes)
                assert sizes[: n // rows - 1] == [rows] * (n // rows - 1), (rows, n, sizes)
                assert torch.equal(obj._sqnorms, f[:n].pow(2).sum(1)), (rows, n)
    finally:
        torch.set_num_threads(threads)


BAD = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize(
    "where",
    [[(0, 0)], [(9, 3)], [(6, 1)], [(2, 0), (2, 3), (7, 2)], [(r, 1) for r in range(10)]],
    ids=["first", "last-row", "leftover-block", "several", "every-row"],
)
def test_raises_exactly_where_the_old_check_did(bad, where, width):
    D = width
    f, t = feats(10, width=D), torch.randn(D, dtype=torch.float64)
    for i, j in where:
        f[i, j] = bad
    expected = old_error("features", f)
    assert expected is not None
    with pytest.raises(ValueError, match=re.escape(expected)):
        SquaredLoss(f, t)
    f3 = feats(10, 2, width=D)
    for i, j in where:
        f3[i, j, 1] = bad
    with pytest.raises(ValueError, match=re.escape(old_error("features", f3))):
        SquaredLoss(f3, torch.zeros(D, 2, dtype=torch.float64))
    # Factored: each argument named, in the old order.
    a, w = feats(10, seed=1, width=D), torch.randn(10, 3, dtype=torch.float64)
    tt = torch.zeros(D, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=re.escape(old_error("activations", f))):
        FactoredSquaredLoss(f, w, tt)
    wb = w.clone()
    wb[where[0][0], 2] = bad
    with pytest.raises(ValueError, match=re.escape(old_error("out_weights", wb))):
        FactoredSquaredLoss(a, wb, tt)
    with pytest.raises(ValueError, match=re.escape(old_error("activations", f))):
        FactoredSquaredLoss(f, wb, tt)


@pytest.mark.parametrize("bad", BAD)
def test_non_finite_target(bad):
    f, t = feats(10), torch.randn(D, dtype=torch.float64)
    t[2] = bad
    with pytest.raises(ValueError, match=re.escape(old_error("target", t))):
        SquaredLoss(f, t)
    a, w = feats(10), torch.randn(10, 3, dtype=torch.float64)
    tt = torch.zeros(D, 3, dtype=torch.float64)
    tt[1, 1] = bad
    with pytest.raises(ValueError, match=re.escape(old_error("target", tt))):
        FactoredSquaredLoss(a, w, tt)


def test_features_checked_before_target():
    # Non-finite features and a target of the wrong shape: the features' error comes first.
    f = feats(10)
    f[4, 0] = math.nan
    with pytest.raises(ValueError, match="features holds 1 NaN"):
        SquaredLoss(f, torch.zeros(D + 1, dtype=torch.float64))


@pytest.mark.parametrize(
    ("dtype", "big"), [(torch.float32, 1e20), (torch.float64, 1e200), (torch.float16, 300.0)]
)
def test_large_but_finite_rows_pass(dtype, big, width):
    # Squares overflow to inf, the values are finite: no error (as before), the same inf norms.
    D = width
    f = feats(10, dtype=torch.float64, width=D).to(dtype)
    f[3, 1] = big
    f[9] = big
    assert old_error("features", f) is None
    obj = SquaredLoss(f, torch.zeros(D, dtype=dtype))
    ref = f.pow(2).sum(1)
    assert torch.isinf(ref[3]) and torch.isinf(ref[9])
    assert torch.equal(obj._sqnorms, ref)
    a, w = f, torch.ones(10, 3, dtype=dtype)
    fobj = FactoredSquaredLoss(a, w, torch.zeros(D, 3, dtype=dtype))
    assert torch.equal(fobj._sqnorms, a.pow(2).sum(1) * w.pow(2).sum(1))
    # A non-finite value next to the overflowing rows is still found and counted.
    f[5, 2] = math.nan
    with pytest.raises(ValueError, match=re.escape(old_error("features", f))):
        SquaredLoss(f, torch.zeros(D, dtype=dtype))


def test_selection_unchanged_by_blocks():
    # Blocks of 2 rows against the old pass's norms (``pow(2).sum(1)`` of the whole features):
    # the same picks and the same losses, bit for bit.
    f = torch.randn(300, SETUP_VALUES // 2, generator=torch.Generator().manual_seed(7))
    t = f.mean(0) + 0.1 * torch.randn(f.shape[1], generator=torch.Generator().manual_seed(8))
    with setup_blocks() as sizes:
        blocked = SquaredLoss(f, t)
    assert sizes == [2] * 150
    old = SquaredLoss(f, t)
    old._sqnorms = f.pow(2).sum(1)
    one, blocks = greedy_select(old, 25), greedy_select(blocked, 25)
    assert one.order.tolist() == blocks.order.tolist()
    assert one.losses.tolist() == blocks.losses.tolist()
