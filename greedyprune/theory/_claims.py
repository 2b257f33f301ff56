"""The paper's claims as data: what is asserted, under which conditions, with which rate.

A :class:`Claim` says which rows of a long-format results table it is about (``experiment``,
``method``, ``metric``) and how to judge them (``form``). :func:`greedyprune.theory.check` turns a
results table and a list of claims into verdicts. Every front end's claims live here:
:func:`two_layer_claims` (``verify two-layer``) and :func:`deep_claims` (``verify deep``); the
forms below are the whole vocabulary.

Forms
-----
``"power"``        ``metric ~ C n^slope``; ``direction`` says how to compare with ``predicted_slope``:
                   ``"at_most"`` (as steep as predicted or steeper: holds when the whole interval is
                   <= predicted + tolerance), ``"at_least"`` (no steeper: interval >=
                   predicted - tolerance) or ``"about"`` (interval within predicted +- tolerance).
``"exponential"``  ``log metric`` falls linearly in n: the exponential fit's slope interval is < 0
                   and it fits better (higher R^2) than a power law over the same range.
``"bound"``        ``metric <= bound_column`` on every row (a deterministic inequality).
``"faster_than"``  the power slope of ``method`` is below that of ``versus`` (paired bootstrap
                   over seeds of the difference).
``"less_than"``    ``metric`` of ``method`` is below that of ``versus`` at the same (n, seed): the
                   mean log ratio's interval is < 0.
``"decreasing"``   the metric at the largest n falls as the column ``by`` grows (power slope of
                   the metric against ``by`` has an interval < 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from greedyprune.errors import GreedypruneError

__all__ = ["FORMS", "Claim", "deep_claims", "halves", "level_claims", "two_layer_claims"]

# the forms a Claim may take: the built-in ones; a front end adds its own with
# ``greedyprune.theory.register_form`` (each form has one judge, ``theory._check.JUDGES``)
FORMS = ["power", "exponential", "bound", "faster_than", "less_than", "decreasing"]


@dataclass(frozen=True)
class Claim:
    """One checkable statement.

    id: short name (a row of the verdict table). statement: the claim in words.
    source: where it comes from (paper, docs/theory.md section, related work).
    experiment, method, metric: the rows and column it is about.
    form, direction, predicted_slope, tolerance: how it is judged (see the module doc).
    versus: the other method for ``faster_than`` / ``less_than``.
    bound_column: the column holding the bound for ``bound``. by: the column for ``decreasing``.
    conditions: names of conditions (see ``greedyprune.theory.CONDITIONS``) that must hold in a
        setting for the claim to apply there; otherwise the verdict is "conditions not met".
    n_range: the n range of the fit (None: the range passed to ``check``).
    where: extra equality filters on the rows, e.g. ``{"target": "f_N"}``.
    pooled: judged once on the rows of every setting together (its verdict's setting is
        ``all``): a claim across settings, e.g. how a cost grows with the data size.
    """

    id: str
    statement: str
    experiment: str
    method: str
    metric: str = "loss_train"
    form: str = "power"
    direction: str = "at_most"
    predicted_slope: float | None = None
    tolerance: float = 0.4
    versus: str | None = None
    bound_column: str | None = None
    by: str | None = None
    conditions: tuple[str, ...] = ()
    n_range: tuple[float, float] | None = None
    where: dict = field(default_factory=dict)
    source: str = ""
    pooled: bool = False

    def __post_init__(self):
        if self.form not in FORMS:
            raise GreedypruneError(
                f"Claim {self.id!r}: form={self.form!r}; pass one of {tuple(FORMS)}"
            )
        if self.direction not in ("at_most", "at_least", "about"):
            raise GreedypruneError(
                f"Claim {self.id!r}: direction={self.direction!r}; pass at_most, at_least or about"
            )
        if self.form == "power" and self.predicted_slope is None:
            raise GreedypruneError(f"Claim {self.id!r}: a power claim needs predicted_slope")
        if self.form in ("faster_than", "less_than") and not self.versus:
            raise GreedypruneError(f"Claim {self.id!r}: form {self.form!r} needs versus=<method>")
        if self.form == "bound" and not self.bound_column:
            raise GreedypruneError(f"Claim {self.id!r}: form 'bound' needs bound_column")
        if self.form == "decreasing" and not self.by:
            raise GreedypruneError(f"Claim {self.id!r}: form 'decreasing' needs by=<column>")

    def as_dict(self) -> dict:
        return asdict(self)


def halves(low: float, high: float) -> list[tuple[float, float]]:
    """``(low, high)`` cut at its geometric middle: the lower and the upper n range of a level
    claim (rounded to whole n)."""
    mid = round((low * high) ** 0.5)
    return [(low, mid), (mid, high)]


def level_claims(
    prefix: str, method: str, versus: str, ranges, *, what: str, metric: str = "loss_train"
) -> list[Claim]:
    """The paper's claim as a *level*: ``method``'s loss is below ``versus``'s at equal n, one
    claim per n range. A steeper slope does not imply this (a curve can fall faster from far
    higher), so it is judged apart: the seed-bootstrapped geometric mean of the paired ratio."""
    return [
        Claim(
            f"{prefix}_n{lo:g}_{hi:g}",
            f"{what} has lower {metric.replace('loss_', '')}ing loss than GD from scratch at equal "
            f"n, for n in {lo:g}..{hi:g}".replace("testing", "test"),
            "rate",
            method,
            metric=metric,
            form="less_than",
            versus=versus,
            n_range=(lo, hi),
            source="the paper: a size-n subnetwork found greedily beats size-n GD (a level claim)",
        )
        for lo, hi in ranges
    ]


def two_layer_claims(
    corrective_range: tuple[float, float] | None = None, level_ranges=()
) -> list[Claim]:
    """The claims checked by ``greedyprune verify two-layer`` (see docs/two_layer.md).

    corrective_range: n range of the exponential fit of the re-weighted variant (it reaches the
    floor of exact interpolation after about m + 1 picks, so its range is short).
    level_ranges: n ranges of the level claims ``greedy_below_gd_n<lo>_<hi>`` (greedy's training
    loss below GD's at equal n; the presets use the two halves of their fit range).
    """
    levels = level_claims(
        "greedy_below_gd",
        "greedy_pretrained",
        "gd_scratch",
        level_ranges,
        what="greedy from a pretrained net",
    )
    claims = [
        Claim(
            "prop_a_bound_fN",
            "greedy toward f_N: e_n <= D^2 / n for every n",
            "bounds",
            "greedy",
            metric="e_n",
            form="bound",
            bound_column="bound_D2_over_n",
            predicted_slope=-1.0,
            where={"target": "f_N"},
            source="Proposition A (docs/theory.md); the paper's O(1/n) rate",
        ),
        Claim(
            "prop_a_bound_y",
            "greedy toward the labels y: e_n <= D^2 / n for every n (needs y in the hull)",
            "bounds",
            "greedy",
            metric="e_n",
            form="bound",
            bound_column="bound_D2_over_n",
            predicted_slope=-1.0,
            where={"target": "y"},
            conditions=("target_in_hull",),
            source="Proposition A (docs/theory.md)",
        ),
        Claim(
            "greedy_fast_rate",
            "greedy from a pretrained net: training loss ~ n^-2",
            "rate",
            "greedy_pretrained",
            predicted_slope=-2.0,
            tolerance=0.4,
            direction="at_most",
            conditions=("target_in_hull", "b_n_bounded"),
            source="the paper's O(1/n^2) theorem; Proposition B (docs/theory.md)",
        ),
        Claim(
            "gd_scratch_rate",
            "GD from scratch at the same budget: loss falls no faster than ~1/n",
            "rate",
            "gd_scratch",
            predicted_slope=-1.0,
            tolerance=0.3,
            direction="at_least",
            source="mean-field rates, the paper's contrast (docs/theory.md)",
        ),
        Claim(
            "greedy_faster_than_gd",
            "greedy's log-log slope is steeper than GD from scratch's",
            "rate",
            "greedy_pretrained",
            form="faster_than",
            versus="gd_scratch",
            source="the authors' toy figure",
        ),
        Claim(
            "random_subset_rate",
            "random subsets (with replacement) toward f_N: E e_n = B_var / n, slope -1",
            "rate",
            "random_subset",
            metric="discrepancy",
            predicted_slope=-1.0,
            tolerance=0.25,
            direction="about",
            source="random subsets (docs/theory.md)",
        ),
        Claim(
            "corrective_exponential",
            "re-weighted greedy: log loss falls linearly in n (exponential rate)",
            "rate",
            "greedy_corrective",
            form="exponential",
            n_range=corrective_range,
            source="Ye, Wu, Liu 2020; fully-corrective Frank-Wolfe",
        ),
        Claim(
            "random_weights_floor",
            "greedy from random-weight nets: the loss floor falls as N grows",
            "random_weights",
            "greedy_random",
            form="decreasing",
            by="N",
            source="docs/theory.md, random-weight networks",
        ),
        Claim(
            "finetune_beats_retrain",
            "fine-tuning the greedy subnetwork beats re-training it from scratch (same budget)",
            "finetune",
            "greedy_finetuned",
            metric="loss_test",
            form="less_than",
            versus="gd_retrain",
            source="the paper's advice",
        ),
    ]
    return levels + claims


def deep_claims(sizes, *, replacement: bool | None = None) -> list[Claim]:
    """The claims checked by ``greedyprune verify deep`` for one setting (see docs/deep.md).

    sizes: the per-layer sizes n the setting measures, or the setting itself (anything with a
    ``sizes`` attribute, e.g. a ``DeepSetting``). ``deep_local_beats_gd_large_n`` is judged on n
    from a quarter of the largest size (at least the smallest) up to the largest.
    replacement: whether the greedy selection picks with replacement (None: the setting's
    ``replacement`` when ``sizes`` is a setting, else True). ``deep_local_bound`` (Proposition C
    of docs/theory.md) is derived for selection with replacement only and is left out otherwise.

    Every threshold here is either derived (the bound) or is the statement itself (a ratio below
    1, a slope difference below 0); docs/theory.md gives the derivation and says which claims
    it dropped for want of one.
    """
    if replacement is None:
        replacement = bool(getattr(sizes, "replacement", True))
    sizes = tuple(getattr(sizes, "sizes", sizes))
    if not sizes:
        raise GreedypruneError("deep_claims needs at least one size n")
    big = max(sizes)
    upper = (max(min(sizes), big / 4), big)
    levels = level_claims(
        "deep_local_below_gd",
        "greedy_local",
        "gd_scratch",
        halves(min(sizes), big) if len(set(sizes)) > 1 else [(big, big)],
        what="greedy (local)",
    )
    bound = [
        Claim(
            "deep_local_bound",
            "layer-wise greedy (local imitation, with replacement): discrepancy to f_N <= "
            "K_n^2 / (2n) for every n",
            "rate",
            "greedy_local",
            metric="discrepancy",
            form="bound",
            bound_column="bound_local",
            predicted_slope=-1.0,
            source="Proposition C: Proposition A layer by layer through Lipschitz layers "
            "(docs/theory.md)",
        )
    ]
    test_metric = "loss_test"
    claims = [
        Claim(
            "deep_local_faster_than_gd",
            "greedy (local)'s training-loss slope is steeper than GD from scratch's",
            "rate",
            "greedy_local",
            form="faster_than",
            versus="gd_scratch",
            source="the authors' toy figure, here for deep networks",
        ),
        Claim(
            "deep_local_beats_gd_large_n",
            f"greedy (local) has lower test loss than GD from scratch for n in {upper[0]:g}..{big}",
            "rate",
            "greedy_local",
            metric=test_metric,
            form="less_than",
            versus="gd_scratch",
            n_range=upper,
            source="the paper: pruning a large network beats training the small one",
        ),
        Claim(
            "deep_local_beats_random",
            "greedy (local) has lower test loss than random subsets",
            "rate",
            "greedy_local",
            metric=test_metric,
            form="less_than",
            versus="random_subset",
            source="the paper's baselines",
        ),
        Claim(
            "deep_local_beats_magnitude",
            "greedy (local) has lower test loss than magnitude pruning",
            "rate",
            "greedy_local",
            metric=test_metric,
            form="less_than",
            versus="magnitude",
            source="the paper's baselines",
        ),
        Claim(
            "deep_global_beats_local",
            "greedy with the global loss has lower test loss than local imitation",
            "rate",
            "greedy_global",
            metric=test_metric,
            form="less_than",
            versus="greedy_local",
            source="Ye, Wu, Liu 2020 (global vs local objectives)",
        ),
        Claim(
            "deep_pretrained_beats_random_net",
            "greedy (global) from the pretrained net beats greedy from its random initialisation",
            "rate",
            "greedy_global",
            metric=test_metric,
            form="less_than",
            versus="greedy_random_net",
            source="docs/theory.md, random-weight networks",
        ),
        Claim(
            "deep_finetune_beats_retrain",
            "fine-tuning the greedy subnetwork beats re-training its widths from scratch",
            "finetune",
            "greedy_finetuned",
            metric=test_metric,
            form="less_than",
            versus="gd_retrain",
            source="the paper's advice",
        ),
    ]
    return levels + (bound if replacement else []) + claims
