"""Mean-field networks, synthetic data, mean-field training and the theory experiments.

Two-layer: ``TwoLayerNet`` (f(x) = (1/N) sum_i b_i act(a_i . x)), data sets with held-out test
sets, ``train_mean_field`` ((S)GD with the learning rate scaled by the width, noise, weight decay),
experiments returning tidy records, presets and ``verify_two_layer`` (the ``greedyprune verify
two-layer`` command).
"""

from ._data import Dataset, gaussian_classification, make_dataset, teacher_student
from ._experiments import (
    EXPERIMENTS,
    Setting,
    bounds_experiment,
    finetune_experiment,
    make_data,
    pretrain,
    random_weights_experiment,
    rate_experiment,
    regime_experiment,
)
from ._presets import PRESETS, Preset, geometric_grid, judge, load_results, verify_two_layer
from ._train import LOSSES, lr_scales, squared_loss, train_many_mean_field, train_mean_field
from ._twolayer import ACTIVATIONS, TwoLayerNet, activation_fn

__all__ = [
    "ACTIVATIONS",
    "EXPERIMENTS",
    "LOSSES",
    "PRESETS",
    "Dataset",
    "Preset",
    "Setting",
    "TwoLayerNet",
    "activation_fn",
    "bounds_experiment",
    "finetune_experiment",
    "gaussian_classification",
    "geometric_grid",
    "judge",
    "load_results",
    "lr_scales",
    "make_data",
    "make_dataset",
    "pretrain",
    "random_weights_experiment",
    "rate_experiment",
    "regime_experiment",
    "squared_loss",
    "teacher_student",
    "train_many_mean_field",
    "train_mean_field",
    "verify_two_layer",
]

# --- deep mean-field networks (greedyprune/sims/_deep*.py, owned by the deep-network engineer) ---
# Add their public names below (imports and `__all__ += [...]`); nothing above depends on them.
from ._deep import DeepMeanFieldNet
from ._deep_experiments import (
    DEEP_METHODS,
    DeepSetting,
    deep_claims,
    deep_preset,
    run_deep,
    summary_table,
)
from ._layerwise import METHODS as LAYERWISE_METHODS
from ._layerwise import LayerwiseResult, layerwise_select
from ._realdata import DATA_KINDS, deep_teacher, digits_data, load_data, mnist1d_data

__all__ += [
    "DATA_KINDS",
    "DEEP_METHODS",
    "LAYERWISE_METHODS",
    "DeepMeanFieldNet",
    "DeepSetting",
    "LayerwiseResult",
    "deep_claims",
    "deep_preset",
    "deep_teacher",
    "digits_data",
    "layerwise_select",
    "load_data",
    "mnist1d_data",
    "run_deep",
    "summary_table",
]
