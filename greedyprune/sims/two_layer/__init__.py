"""Two-layer mean-field networks: the setting, the experiments and the presets of ``greedyprune
verify two-layer``.

- :mod:`.setting`: :class:`Setting` (data, network, training budget),
- :mod:`.experiments`: each experiment a function of (setting, seed, sizes) returning tidy records,
  and :func:`pretrain` (the width-N network of a replicate, cached),
- :mod:`.presets`: :data:`PRESETS` (records of what a verify run does), :func:`study` (a preset's
  units and claims over :func:`greedyprune.study.run_study`) and :func:`verify_two_layer`,
- :mod:`.cli`: the ``verify two-layer`` subcommand (``add_arguments``, ``run``).
"""

from .experiments import (
    EXPERIMENTS,
    METHODS,
    PRETRAINED,
    bounds_experiment,
    finetune_experiment,
    make_data,
    pretrain,
    random_weights_experiment,
    rate_experiment,
    regime_experiment,
)
from .presets import (
    PRESETS,
    Preset,
    claims,
    geometric_grid,
    get_preset,
    grid_with,
    judge,
    load_results,
    study,
    units,
    verify_two_layer,
    with_overrides,
)
from .setting import Setting

__all__ = [
    "EXPERIMENTS",
    "METHODS",
    "PRESETS",
    "PRETRAINED",
    "Preset",
    "Setting",
    "bounds_experiment",
    "claims",
    "finetune_experiment",
    "geometric_grid",
    "get_preset",
    "grid_with",
    "judge",
    "load_results",
    "make_data",
    "pretrain",
    "random_weights_experiment",
    "rate_experiment",
    "regime_experiment",
    "study",
    "units",
    "verify_two_layer",
    "with_overrides",
]
