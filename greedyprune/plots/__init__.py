"""One figure style for every figure, and every figure, by front end.

Everyone calls :func:`apply_style` before drawing and :func:`savefig` to write PNG and PDF. A method
is drawn with :func:`method_style` (one colour, label, marker and line style per method name, the
same in every figure) and an axis is labelled with :func:`axis_label` (words, not column names):
``greedyprune.plots._style``. The plotting functions read long-format result tables (see
``greedyprune.sims`` and ``greedyprune.prune.compare``); they never train. Two-layer
(``greedyprune.plots.two_layer``): :func:`plot_rate`, :func:`plot_random_weights`,
:func:`plot_finetune`, :func:`plot_bounds`, :func:`plot_regime`, the knee sweep's
:func:`plot_knee` and the budget study's :func:`plot_budget`. Deep (``greedyprune.plots.deep``):
:func:`plot_deep_rate`, :func:`plot_deep_accuracy`. Channel pruning
(``greedyprune.plots.prune``): :func:`plot_prune_compare`, :func:`plot_prune_finetune`.

Importing it chooses no matplotlib backend: matplotlib's own choice stands (``MPLBACKEND``, or a
non-interactive one where there is no display), so a notebook keeps its inline backend.
"""

from ._style import (
    AXIS_LABELS,
    METHOD_COLORS,
    METHOD_STYLES,
    SETTING_TITLES,
    MethodStyle,
    apply_style,
    axis_label,
    method_style,
    savefig,
)
from .deep import (
    DEEP_ACCURACY_METHODS,
    DEEP_RATE_DISCREPANCY,
    DEEP_RATE_TEST,
    deep_accuracy_table,
    deep_rate_fits,
    plot_deep_accuracy,
    plot_deep_rate,
)
from .prune import plot_prune_compare, plot_prune_finetune
from .two_layer import (
    RATE_METHODS,
    plot_bounds,
    plot_budget,
    plot_finetune,
    plot_knee,
    plot_random_weights,
    plot_rate,
    plot_regime,
    two_layer_figures,
)

__all__ = [
    "AXIS_LABELS",
    "DEEP_ACCURACY_METHODS",
    "DEEP_RATE_DISCREPANCY",
    "DEEP_RATE_TEST",
    "METHOD_COLORS",
    "METHOD_STYLES",
    "RATE_METHODS",
    "SETTING_TITLES",
    "MethodStyle",
    "apply_style",
    "axis_label",
    "deep_accuracy_table",
    "deep_rate_fits",
    "method_style",
    "plot_bounds",
    "plot_budget",
    "plot_deep_accuracy",
    "plot_deep_rate",
    "plot_finetune",
    "plot_knee",
    "plot_prune_compare",
    "plot_prune_finetune",
    "plot_random_weights",
    "plot_rate",
    "plot_regime",
    "savefig",
    "two_layer_figures",
]
