"""Mean-field networks, synthetic data, mean-field training and the theory experiments.

Shared by both front ends: ``TwoLayerNet`` (f(x) = (1/N) sum_i b_i act(a_i . x)), the synthetic
data sets with held-out test sets, ``train_mean_field`` ((S)GD with the learning rate scaled by the
width, noise, weight decay).

- :mod:`greedyprune.sims.two_layer`: setting, experiments returning tidy records, presets and
  ``verify_two_layer`` (the ``greedyprune verify two-layer`` command),
- :mod:`greedyprune.sims.deep`: ``DeepMeanFieldNet``, layer-wise greedy selection, real data,
  setting, experiments, presets and ``run_deep`` (the ``greedyprune verify deep`` command).

Both run through :func:`greedyprune.study.run_study`; their claims are in
:mod:`greedyprune.theory`. The names most used are re-exported here.
"""

from greedyprune.theory import deep_claims  # the claims live in theory; kept importable here

from . import deep, two_layer
from ._data import Dataset, gaussian_classification, make_dataset, teacher_student
from ._mean_field_net import ACTIVATIONS, TwoLayerNet, activation_fn
from ._train import LOSSES, lr_scales, squared_loss, train_many_mean_field, train_mean_field
from .deep import (
    DATA_KINDS,
    DEEP_METHODS,
    LAYERWISE_METHODS,
    DeepMeanFieldNet,
    DeepSetting,
    LayerwiseResult,
    NeuronSelectSettings,
    deep_preset,
    deep_teacher,
    digits_data,
    layerwise_select,
    load_data,
    mnist1d_data,
    run_deep,
    summary_table,
)
from .two_layer import (
    EXPERIMENTS,
    PRESETS,
    Preset,
    Setting,
    bounds_experiment,
    finetune_experiment,
    geometric_grid,
    judge,
    load_results,
    make_data,
    pretrain,
    random_weights_experiment,
    rate_experiment,
    regime_experiment,
    verify_two_layer,
)
from .two_layer import METHODS as TWO_LAYER_METHODS

__all__ = [
    "ACTIVATIONS",
    "DATA_KINDS",
    "DEEP_METHODS",
    "EXPERIMENTS",
    "LAYERWISE_METHODS",
    "LOSSES",
    "PRESETS",
    "TWO_LAYER_METHODS",
    "Dataset",
    "DeepMeanFieldNet",
    "DeepSetting",
    "LayerwiseResult",
    "NeuronSelectSettings",
    "Preset",
    "Setting",
    "TwoLayerNet",
    "activation_fn",
    "bounds_experiment",
    "deep",
    "deep_claims",
    "deep_preset",
    "deep_teacher",
    "digits_data",
    "finetune_experiment",
    "gaussian_classification",
    "geometric_grid",
    "judge",
    "layerwise_select",
    "load_data",
    "load_results",
    "lr_scales",
    "make_data",
    "make_dataset",
    "mnist1d_data",
    "pretrain",
    "random_weights_experiment",
    "rate_experiment",
    "regime_experiment",
    "run_deep",
    "squared_loss",
    "summary_table",
    "teacher_student",
    "train_many_mean_field",
    "train_mean_field",
    "two_layer",
    "verify_two_layer",
]
