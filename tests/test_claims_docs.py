"""The claims in code agree with the claims docs/theory.md states: the same ids, and for each the
same statement, rows (experiment, method, metric, filters), form and threshold, conditions and
source. A threshold or a statement changed in one place and not the other fails here (the docs
table is what a reader of a verdict relies on)."""

import re
from dataclasses import replace
from pathlib import Path

import pytest

from greedyprune.sims.two_layer import PRESETS
from greedyprune.sims.two_layer import claims as preset_claims
from greedyprune.theory import deep_claims, halves

DOC = (Path(__file__).parents[1] / "docs" / "theory.md").read_text()
SIZES = [1, 2, 4, 8, 16, 32, 64]


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


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


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
    return {
        "bound": ("bound", claim.metric, claim.bound_column),
        "exponential": ("exponential",),
        "faster_than": ("faster_than", claim.versus),
        "less_than": ("less_than", claim.versus),
        "decreasing": ("decreasing", claim.by),
    }[claim.form]


def _documented_test(cell: str) -> tuple:
    if m := re.fullmatch(r"slope `(<=|>=) ([-+0-9. ]+)`", cell):
        return ("slope", m.group(1), _number(m.group(2)))
    if m := re.fullmatch(r"slope within `([-0-9.]+) \+- ([0-9.]+)`", cell):
        return ("within", float(m.group(1)), float(m.group(2)))
    if m := re.fullmatch(r"bound: `(\w+) <= (\w+)`, every row", cell):
        return ("bound", m.group(1), m.group(2))
    if m := re.fullmatch(r"slope difference `< 0` against `(\w+)`", cell):
        return ("faster_than", m.group(1))
    if m := re.fullmatch(r"ratio `< 1` against `(\w+)`", cell):
        return ("less_than", m.group(1))
    if m := re.fullmatch(r"decreasing in `(\w+)`", cell):
        return ("decreasing", m.group(1))
    if cell == "exponential form":
        return ("exponential",)
    raise AssertionError(f"the docs' test {cell!r} is not one this test reads")


def _paper_two_layer():
    """The two-layer claims of the paper preset (its level claims' ranges are in the table)."""
    return preset_claims(PRESETS["paper"])


@pytest.mark.parametrize(
    "title, make",
    [
        ("Two-layer (`greedyprune.theory.two_layer_claims`)", _paper_two_layer),
        ("Deep (`greedyprune.theory.deep_claims`)", deep_claims),
    ],
    ids=["two_layer", "deep"],
)
def test_docs_table_matches_the_claims(title, make):
    # the claims are built inside the test (not at collection), so that mutation testing sees
    # which test reads them
    claims = make(SIZES) if make is deep_claims else make()
    by_id = {c.id: c for c in claims}
    assert len(by_id) == len(claims), "claim ids must be unique"
    documented = []
    for cid_cell, statement, rows, test, conditions, source in _table(title):
        (cid,) = _ticked(cid_cell)
        assert cid in by_id, f"docs/theory.md lists {cid!r}, which the code lacks"
        claim = by_id[cid]
        documented.append(cid)
        assert statement == claim.statement, cid
        where = [f"{k}={v}" for k, v in claim.where.items()]
        assert _ticked(rows) == [claim.experiment, claim.method, claim.metric, *where], cid
        assert _documented_test(test) == pytest.approx(_expected_test(claim)), cid
        conds = [] if conditions == "none" else _ticked(conditions)
        assert conds == list(claim.conditions), cid
        assert source == claim.source, cid
    assert sorted(documented) == sorted(by_id), "every claim once in docs/theory.md"


def test_deep_large_n_range_is_a_quarter_of_the_largest_size_up():
    def large(sizes):
        (c,) = [c for c in deep_claims(sizes) if c.id == "deep_local_beats_gd_large_n"]
        return c.n_range, c.statement

    assert large(SIZES) == ((16, 64), large(SIZES)[1])
    assert large(SIZES)[1].endswith("for n in 16..64")
    assert large([10, 20])[0] == (10, 20)  # a quarter of 20 is below the smallest size
    levels = [c.n_range for c in deep_claims(SIZES) if "below_gd" in c.id]
    assert levels == halves(1, 64) == [(1, 8), (8, 64)]
    assert [c.n_range for c in deep_claims([5]) if "below_gd" in c.id] == [(5, 5)]
    others = [c for c in deep_claims([1, 2]) if "large_n" not in c.id and "below_gd" not in c.id]
    assert others and all(c.n_range is None for c in others)


def test_two_layer_level_ranges_are_the_halves_of_each_presets_fit_range():
    for preset in PRESETS.values():
        levels = [c for c in preset_claims(preset) if c.id.startswith("greedy_below_gd_")]
        assert [c.n_range for c in levels] == halves(*preset.fit_range)
        assert all((c.method, c.versus) == ("greedy_pretrained", "gd_scratch") for c in levels)
        # each half holds GD widths, and the grid holds every GD width (equal n to pair)
        assert set(preset.gd_widths) <= set(preset.grid)
        for lo, hi in halves(*preset.fit_range):
            assert [w for w in preset.gd_widths if lo <= w <= hi], (preset.name, lo, hi)
    assert [c.n_range for c in preset_claims(PRESETS["paper"]) if "below" in c.id] == [
        (90, 300),
        (300, 1000),
    ]


def test_the_deep_bound_needs_replacement():
    """Proposition C averages over all neurons, picked ones included: a setting that selects
    without replacement gets no deep_local_bound; with replacement it does."""
    from tiny import DEEP_TINY

    assert "deep_local_bound" in [c.id for c in deep_claims(DEEP_TINY)]
    without = replace(DEEP_TINY, replacement=False)
    assert "deep_local_bound" not in [c.id for c in deep_claims(without)]
    assert "deep_local_bound" not in [c.id for c in deep_claims(SIZES, replacement=False)]
    dropped = {"deep_local_rate", "deep_global_rate", "deep_random_rate", "deep_gd_scratch_rate"}
    assert not dropped & {c.id for c in deep_claims(SIZES)}
