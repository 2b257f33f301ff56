"""greedyprune: greedy forward selection of subnetworks (Ye, Gong, Nie, Zhou, Klivans, Liu, ICML 2020).

Select a subnetwork from any set of candidate neurons::

    import greedyprune as gp
    sel = gp.greedy_select(gp.SquaredLoss(features, target), n=100)

``greedyprune.sims`` verifies the paper's rates on mean-field networks; ``greedyprune.prune`` prunes
torchvision CNNs with the same kernel. Both select a deep network layer by layer through one loop,
``greedyprune.layerwise.select_layerwise``.
"""

from ._version import __version__
from .errors import GreedypruneError, GreedypruneTypeError
from .select import (
    CrossEntropyLoss,
    ElementwiseLoss,
    FactoredSquaredLoss,
    Objective,
    Selection,
    SquaredLoss,
    StackedObjective,
    backward_elimination,
    greedy_select,
    magnitude,
    random_subset,
    solve_simplex_ls,
)

__all__ = [
    "CrossEntropyLoss",
    "ElementwiseLoss",
    "FactoredSquaredLoss",
    "GreedypruneError",
    "GreedypruneTypeError",
    "Objective",
    "Selection",
    "SquaredLoss",
    "StackedObjective",
    "__version__",
    "backward_elimination",
    "greedy_select",
    "magnitude",
    "random_subset",
    "solve_simplex_ls",
]
