"""The claims in code agree with the claims docs/theory.md states: the same ids, and for each the
same form, threshold, metric and conditions. A threshold changed in one place and not the other
fails here (the docs table is what a reader of a verdict relies on)."""

import re
from pathlib import Path

import pytest

from greedyprune.theory import deep_claims, two_layer_claims

DOC = (Path(__file__).parents[1] / "docs" / "theory.md").read_text()


def _table(title: str) -> list[list[str]]:
    """The rows (cells) of the first markdown table after the line starting with ``title``."""
    lines = DOC[DOC.index(title) :].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _ids(cell: str) -> list[str]:
    return re.findall(r"`([a-zA-Z0-9_]+)`", cell)


def _number(expr: str) -> float:
    """``-2 + 0.4``, ``-1 - 0.3`` or ``-0.75`` as a number."""
    if not re.fullmatch(r"[-+0-9. ]+", expr):
        raise AssertionError(f"not a threshold: {expr!r}")
    return float(eval(expr))  # digits, signs and spaces only (checked above)


def _expected_test(claim) -> tuple:
    """What the docs' test column must say for ``claim``, as a comparable tuple."""
    if claim.form == "power":
        p, tol = claim.predicted_slope, claim.tolerance
        return {
            "at_most": ("slope", "<=", p + tol),
            "at_least": ("slope", ">=", p - tol),
            "about": ("within", p, tol),
        }[claim.direction]
    return (claim.form,)


def _documented_test(cell: str) -> tuple:
    if m := re.search(r"slope `(<=|>=) ([-+0-9. ]+)`", cell):
        return ("slope", m.group(1), _number(m.group(2)))
    if m := re.search(r"within `([-0-9.]+) \+- ([0-9.]+)`", cell):
        return ("within", float(m.group(1)), float(m.group(2)))
    if "slope difference `< 0`" in cell:
        return ("faster_than",)
    if "ratio `< 1`" in cell:
        return ("less_than",)
    for form in ("bound", "exponential", "decreasing"):
        if cell.startswith(form):
            return (form,)
    raise AssertionError(f"the docs' test {cell!r} is not one this test reads")


_METRIC_WORDS = {
    "test loss": "loss_test",
    "training loss": "loss_train",
    "discrepancy": "discrepancy",
}


@pytest.mark.parametrize(
    "title, make, test_col, cond_col",
    [
        ("Two-layer (`greedyprune.theory.two_layer_claims`)", two_layer_claims, 2, 3),
        ("Deep (`greedyprune.theory.deep_claims`)", deep_claims, 2, None),
    ],
    ids=["two_layer", "deep"],
)
def test_docs_table_matches_the_claims(title, make, test_col, cond_col):
    # the claims are built inside the test (not at collection), so that mutation testing sees
    # which test reads them
    claims = make([1, 2, 4, 8, 16, 32, 64]) if make is deep_claims else make()
    by_id = {c.id: c for c in claims}
    assert len(by_id) == len(claims), "claim ids must be unique"
    documented = set()
    for row in _table(title):
        ids = _ids(row[0])
        assert ids, row
        for cid in ids:
            assert cid in by_id, f"docs/theory.md lists {cid!r}, which the code lacks"
            claim = by_id[cid]
            documented.add(cid)
            assert _documented_test(row[test_col]) == pytest.approx(_expected_test(claim)), cid
            words = [m for w, m in _METRIC_WORDS.items() if w in row[1]]
            if claim.form not in ("bound", "exponential", "decreasing") and words:
                assert claim.metric in words, (cid, claim.metric, row[1])
            if cond_col is not None:
                conds = [] if row[cond_col] == "none" else _ids(row[cond_col])
                assert sorted(conds) == sorted(claim.conditions), cid
            elif claim.conditions:
                raise AssertionError(f"{cid}: the docs say deep claims have no conditions")
    assert documented == set(by_id), f"not in docs/theory.md: {set(by_id) - documented}"


def test_deep_large_n_range_is_a_quarter_of_the_largest_size_up():
    def large(sizes):
        (c,) = [c for c in deep_claims(sizes) if c.id == "deep_local_beats_gd_large_n"]
        return c.n_range

    assert large([1, 2, 4, 8, 16, 32, 64]) == (16, 64)
    assert large([10, 20]) == (10, 20)  # a quarter of 20 is below the smallest size
    assert all(c.n_range is None for c in deep_claims([1, 2]) if "large_n" not in c.id)
