"""Prune torchvision CNNs by greedy forward selection of channels (Ye et al. 2020).

Gates on the prunable channel groups found from the model (:func:`find_prunable_groups`), layer-wise
greedy selection through the kernel's ``StackedObjective`` (:func:`greedy_prune`), surgery with
Torch-Pruning (:func:`fold_and_prune`), one MACs counter (:func:`count_macs`), fine-tuning, safe
save/load, one registry of selection methods (:data:`SELECTION_METHODS`, :func:`register_method`)
and one of width rules (:data:`WIDTH_RULES`), and the two jobs behind the CLI: :func:`prune` and
:func:`compare`. Smaller pieces
they use are public too: :func:`labels_of` and :func:`class_count` (a dataset's labels, read
without decoding images, and their class count) and :func:`param_groups` (the optimizer groups of
fine-tuning: no weight decay on batch norm and biases).
"""

from ._baselines import BASELINES, baseline_channels
from ._compare_job import METHODS, CompareSettings, compare, summarize
from ._data import (
    DataSpec,
    check_images,
    class_count,
    eval_indices,
    labels_of,
    load_data,
    parse_data,
    write_image_folder,
)
from ._finetune import (
    batch_stream,
    evaluate,
    finetune,
    fixed_batch,
    latency_ms,
    param_groups,
    stream_batches,
)
from ._gates import Gate, GatedModel, PrunableGroup, find_prunable_groups
from ._greedy_prune import GreedyPruneResult, GreedySettings, LayerRecord, greedy_prune
from ._io import load_pruned, save_pruned, state_hash
from ._latency import latency_phase
from ._local import CRITERIA as LOCAL_METHODS
from ._local import LocalSettings, calibration_set, local_select
from ._macs import MacsModel, count_macs, count_params, parse_macs, profile_layers
from ._models import build_model, list_archs, load_checkpoint
from ._proxyless import proxylessnas_mobile
from ._prune_job import PruneSettings, Runtime, prune
from ._recipes import RECIPES, UNSET, FinetuneSettings, Recipe, resolve_recipe
from ._registry import (
    SELECTION_METHODS,
    Choice,
    MethodSpec,
    SelectionRequest,
    apply_choice,
    register_method,
    select_channels,
)
from ._surgery import fold_and_prune, prune_channels
from ._width_rules import WIDTH_RULES, RuleContext, WidthRule, scratch_budget

__all__ = [
    "BASELINES",
    "LOCAL_METHODS",
    "METHODS",
    "RECIPES",
    "SELECTION_METHODS",
    "UNSET",
    "WIDTH_RULES",
    "Choice",
    "CompareSettings",
    "DataSpec",
    "FinetuneSettings",
    "Gate",
    "GatedModel",
    "GreedyPruneResult",
    "GreedySettings",
    "LayerRecord",
    "LocalSettings",
    "MacsModel",
    "MethodSpec",
    "PrunableGroup",
    "PruneSettings",
    "Recipe",
    "RuleContext",
    "Runtime",
    "SelectionRequest",
    "WidthRule",
    "apply_choice",
    "baseline_channels",
    "batch_stream",
    "build_model",
    "calibration_set",
    "check_images",
    "class_count",
    "compare",
    "count_macs",
    "count_params",
    "eval_indices",
    "evaluate",
    "find_prunable_groups",
    "finetune",
    "fixed_batch",
    "fold_and_prune",
    "greedy_prune",
    "labels_of",
    "latency_ms",
    "latency_phase",
    "list_archs",
    "load_checkpoint",
    "load_data",
    "load_pruned",
    "local_select",
    "param_groups",
    "parse_data",
    "parse_macs",
    "profile_layers",
    "proxylessnas_mobile",
    "prune",
    "prune_channels",
    "register_method",
    "resolve_recipe",
    "save_pruned",
    "scratch_budget",
    "select_channels",
    "state_hash",
    "stream_batches",
    "summarize",
    "write_image_folder",
]
