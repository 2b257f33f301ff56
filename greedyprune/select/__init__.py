"""The selection kernel: one greedy loop, objectives that score candidates in batches, baselines.

It knows nothing of networks: an objective scores "current subnetwork + candidate i" for a batch
of candidates; the loop commits the best. See :func:`greedy_select`.

Also public: the selection over rows sharded among processes (:class:`ShardedSquaredLoss`,
:func:`sharded_greedy_select`, GreeDi among them), and, for front ends built on the kernel (the CNN and mean-field
front ends): the memory budgets of one chunk of candidate predictions (:data:`DEFAULT_MAX_BYTES`
for the feature objectives and on accelerators, :data:`CPU_MAX_BYTES` for a
:class:`StackedObjective` on the CPU) and the kernel's argument checks
(:func:`check_positive_int`, :func:`check_bool`), so that a front end taking the same arguments
refuses them in the same words.
"""

from ._baselines import backward_elimination, magnitude, random_subset
from ._checks import check_bool, check_positive_int
from ._gram import (
    FixedWeightLoss,
    GramLoss,
    PatchGram,
    RefitLoss,
    backward_to,
    channel_gram,
    lasso_gram,
    lasso_support,
    swap_search,
)
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
from ._peers import empirical_sensitivity, ispasp, losses_at_sizes, sensitivity_sampling
from ._selection import Selection
from ._sharded import ShardedSquaredLoss, sharded_greedy_select
from ._simplex import project_simplex, simplex_terms, solve_simplex_gram, solve_simplex_ls
from ._stacked import CPU_MAX_BYTES, StackedObjective

__all__ = [
    "CPU_MAX_BYTES",
    "DEFAULT_MAX_BYTES",
    "PER_SAMPLE_LOSSES",
    "CrossEntropyLoss",
    "ElementwiseLoss",
    "FactoredSquaredLoss",
    "FeatureObjective",
    "FixedWeightLoss",
    "GramLoss",
    "Objective",
    "PatchGram",
    "RefitLoss",
    "Selection",
    "ShardedSquaredLoss",
    "SquaredLoss",
    "StackedObjective",
    "backward_elimination",
    "backward_to",
    "candidates_per_step",
    "channel_gram",
    "check_bool",
    "check_positive_int",
    "empirical_sensitivity",
    "greedy_select",
    "ispasp",
    "lasso_gram",
    "lasso_support",
    "losses_at_sizes",
    "magnitude",
    "make_generator",
    "per_sample_loss",
    "project_simplex",
    "random_subset",
    "sensitivity_sampling",
    "sharded_greedy_select",
    "simplex_terms",
    "solve_simplex_gram",
    "solve_simplex_ls",
    "swap_search",
]
