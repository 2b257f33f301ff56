"""Deep mean-field networks: the network, layer-wise greedy selection, the data sets, the setting,
the experiments and the presets of ``greedyprune verify deep``.

- :class:`DeepMeanFieldNet` and :func:`layerwise_select` (with its objectives),
- :func:`load_data` (deep teacher, MNIST-1D, digits; all made offline),
- :mod:`.setting`: :class:`DeepSetting`,
- :mod:`.experiments`: each experiment a function of (setting, seed) returning tidy records, the
  resumable :func:`units` of a run and :func:`summary_table`,
- :mod:`.presets`: :data:`PRESETS` (records: per data set, the setting and the seeds),
  :func:`study` (a setting's units, claims and summary over :func:`greedyprune.study.run_study`)
  and :func:`run_deep`,
- :mod:`.cli`: the ``verify deep`` subcommand (``add_arguments``, ``run``).

The claims are :func:`greedyprune.theory.deep_claims`.
"""

from ._data import DATA_KINDS, deep_teacher, digits_data, load_data, mnist1d_data
from ._net import DeepMeanFieldNet
from ._neuron_select import METHODS as LAYERWISE_METHODS
from ._neuron_select import (
    LayerwiseResult,
    NeuronSelectSettings,
    global_objective,
    layerwise_select,
    local_objective,
    per_sample_loss,
)
from .experiments import (
    PRETRAINED,
    RECORD_METHODS,
    evaluate,
    finetune_experiment,
    make_deep_data,
    pretrain_deep,
    rate_experiment,
    reference_experiment,
    run_unit,
    select_subnetwork,
    summary_table,
    units,
)
from .presets import PRESETS, DeepPreset, deep_preset, run_deep, study
from .setting import DEEP_METHODS, SELECTION_METHODS, DeepSetting

__all__ = [
    "DATA_KINDS",
    "DEEP_METHODS",
    "LAYERWISE_METHODS",
    "PRESETS",
    "PRETRAINED",
    "RECORD_METHODS",
    "SELECTION_METHODS",
    "DeepMeanFieldNet",
    "DeepPreset",
    "DeepSetting",
    "LayerwiseResult",
    "NeuronSelectSettings",
    "deep_preset",
    "deep_teacher",
    "digits_data",
    "evaluate",
    "finetune_experiment",
    "global_objective",
    "layerwise_select",
    "load_data",
    "local_objective",
    "make_deep_data",
    "mnist1d_data",
    "per_sample_loss",
    "pretrain_deep",
    "rate_experiment",
    "reference_experiment",
    "run_deep",
    "run_unit",
    "select_subnetwork",
    "study",
    "summary_table",
    "units",
]
