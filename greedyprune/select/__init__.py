"""The selection kernel: one greedy loop, objectives that score candidates in batches, baselines.

It knows nothing of networks: an objective scores "current subnetwork + candidate i" for a batch
of candidates; the loop commits the best. See :func:`greedy_select`.
"""

from ._baselines import backward_elimination, magnitude, random_subset
from ._greedy import candidates_per_step, greedy_select, make_generator
from ._losses import PER_SAMPLE_LOSSES, per_sample_loss
from ._objectives import (
    DEFAULT_MAX_BYTES,
    CrossEntropyLoss,
    ElementwiseLoss,
    FactoredSquaredLoss,
    FeatureObjective,
    Objective,
    SquaredLoss,
)
from ._selection import Selection
from ._simplex import project_simplex, solve_simplex_ls
from ._stacked import StackedObjective

__all__ = [
    "DEFAULT_MAX_BYTES",
    "PER_SAMPLE_LOSSES",
    "CrossEntropyLoss",
    "ElementwiseLoss",
    "FactoredSquaredLoss",
    "FeatureObjective",
    "Objective",
    "Selection",
    "SquaredLoss",
    "StackedObjective",
    "backward_elimination",
    "candidates_per_step",
    "greedy_select",
    "magnitude",
    "make_generator",
    "per_sample_loss",
    "project_simplex",
    "random_subset",
    "solve_simplex_ls",
]
