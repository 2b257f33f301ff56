"""The squared losses' one-pass setup (``_checked_sqnorms``) against the two passes it replaces.

Before, construction ran ``check_finite`` over the features and then ``flat.pow(2).sum(1)``. The
fused pass must give the same squared norms bit for bit and raise exactly where ``check_finite``
raised, with its message (count included): on any NaN or inf, in features, activations,
out_weights or target, and not on large-but-finite rows whose squared norm overflows to inf.
Small ``_SETUP_BLOCK_ELEMENTS`` make the block boundaries (and the merged one-row leftover) show up
on small inputs.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from greedyprune.select import FactoredSquaredLoss, SquaredLoss, _objectives, greedy_select
from greedyprune.select._checks import check_finite

D = 4


@pytest.fixture(params=[None, 3, 1], ids=["default-blocks", "3-row-blocks", "2-row-blocks"])
def block_rows(request, monkeypatch):
    """Rows per block of the setup pass (None: the default budget; 1 means the floor of 2)."""
    if request.param is not None:
        monkeypatch.setattr(_objectives, "_SETUP_BLOCK_ELEMENTS", request.param * D)
    return request.param


def old_error(name: str, x: torch.Tensor) -> str | None:
    """The message the old construction raised for ``x``, or None if it did not raise."""
    try:
        check_finite(name, x)
    except ValueError as e:
        return str(e)
    return None


def feats(n, *tail, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, *tail, generator=g, dtype=dtype)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 7, 10, 11, 50])
def test_sqnorms_bit_for_bit(n, block_rows):
    for f in (feats(n), feats(n, 3), feats(n, dtype=torch.float32)):
        t = torch.randn(f.shape[1:], dtype=f.dtype)
        obj = SquaredLoss(f, t)
        assert torch.equal(obj._sqnorms, f.reshape(n, -1).pow(2).sum(1))
    # Non-contiguous features (reshape copies, as before) and rows of a larger tensor.
    rows = feats(n + 3)[1 : n + 1]  # a contiguous slice
    transposed = feats(n, seed=5).T.contiguous().T  # column-major: the pow(2).sum(1) path
    strided = feats(2 * n, 3)[::2, :, 1]  # every other row, one output: the same path
    for x in (rows, transposed, strided):
        obj = SquaredLoss(x, torch.zeros(D, dtype=x.dtype))
        assert torch.equal(obj._sqnorms, x.reshape(n, -1).pow(2).sum(1))
    a, w = feats(n, seed=1), torch.randn(n, 3, dtype=torch.float64)
    fobj = FactoredSquaredLoss(a, w, torch.zeros(D, 3, dtype=torch.float64))
    assert torch.equal(fobj._sqnorms, a.pow(2).sum(1) * w.pow(2).sum(1))


def test_sqnorms_bit_for_bit_large_rows(monkeypatch):
    # Rows longer than _SETUP_BLOCK_ELEMENTS / 2 go in parallel blocks, and a sum over one row
    # alone is split across threads (another order, other bits in the last place for some rows),
    # so the setup pass must never make a block of one row out of a leftover. Every split of
    # 3..9 rows into blocks of 2..4 rows.
    m = 40_000
    f = torch.randn(9, m, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for rows in (2, 3, 4):
            monkeypatch.setattr(_objectives, "_SETUP_BLOCK_BYTES", rows * m * 4)
            for n in range(3, 10):
                obj = SquaredLoss(f[:n], torch.zeros(m))
                assert torch.equal(obj._sqnorms, f[:n].pow(2).sum(1)), (rows, n)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("rows", [2, 3, 4, 30])
def test_block_sizes_cover_the_rows_without_lone_rows(rows):
    for n in range(2, 100):
        sizes = _objectives._block_sizes(n, rows)
        assert sum(sizes) == n and min(sizes) >= 2, (n, sizes)


BAD = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize(
    "where",
    [[(0, 0)], [(9, 3)], [(6, 1)], [(2, 0), (2, 3), (7, 2)], [(r, 1) for r in range(10)]],
    ids=["first", "last-row", "leftover-block", "several", "every-row"],
)
def test_raises_exactly_where_check_finite_did(bad, where, block_rows):
    f, t = feats(10), torch.randn(D, dtype=torch.float64)
    for i, j in where:
        f[i, j] = bad
    expected = old_error("features", f)
    assert expected is not None
    with pytest.raises(ValueError, match=re.escape(expected)):
        SquaredLoss(f, t)
    f3 = feats(10, 2)
    for i, j in where:
        f3[i, j, 1] = bad
    with pytest.raises(ValueError, match=re.escape(old_error("features", f3))):
        SquaredLoss(f3, torch.zeros(D, 2, dtype=torch.float64))
    # Factored: each argument named, in the old order.
    a, w = feats(10, seed=1), torch.randn(10, 3, dtype=torch.float64)
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
def test_large_but_finite_rows_pass(dtype, big, block_rows):
    # Squares overflow to inf, the values are finite: no error (as before), the same inf norms.
    f = feats(10, dtype=torch.float64).to(dtype)
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


def test_selection_unchanged_by_blocks(monkeypatch):
    # Tiny blocks or one block: the same picks and the same losses, bit for bit.
    f = torch.randn(300, 17, generator=torch.Generator().manual_seed(7))
    t = f.mean(0) + 0.1 * torch.randn(17, generator=torch.Generator().manual_seed(8))
    one = greedy_select(SquaredLoss(f, t), 25)
    monkeypatch.setattr(_objectives, "_SETUP_BLOCK_ELEMENTS", 5 * 17)
    small = greedy_select(SquaredLoss(f, t), 25)
    assert one.order.tolist() == small.order.tolist()
    assert one.losses.tolist() == small.losses.tolist()
