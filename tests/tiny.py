"""Tiny settings shared by several test files: runs of seconds that still exercise every unit,
and small networks' helpers."""

from dataclasses import replace

import torch
from torch import nn

from greedyprune.sims import PRESETS
from greedyprune.sims import deep as dx
from greedyprune.sims.two_layer import with_overrides

DEEP_TINY = dx.DeepSetting(
    name="tiny",
    m=32,
    m_test=40,
    d=3,
    teacher_widths=(4, 4),
    width=12,
    steps=40,
    finetune_steps=10,
    sizes=(2, 4, 8),
)


def tiny_two_layer_preset(setting):
    """The quick preset cut to seconds: ``setting`` (interior) and a ReLU boundary variant of it,
    2 seeds, n up to 16."""
    return with_overrides(
        PRESETS["quick"],
        name="tiny",
        settings=(setting, replace(setting, name="boundary", activation="relu", m=12)),
        seeds=2,
        grid=(1, 2, 4, 8, 16),
        fit_range=(2, 16),
        gd_widths=(4, 8, 16),
        corrective_max=6,
        bounds_n_max=16,
        random_widths=(10, 40),
        random_grid=(1, 4, 16),
        finetune_sizes=(2, 4),
        finetune_steps=10,
    )


def randomise_batch_norms(net: nn.Module) -> nn.Module:
    """Non-trivial eval-mode batch norms (running statistics, scales and mostly positive shifts),
    so that folding and imitation are tested off the identity; returns ``net`` in eval mode."""
    with torch.no_grad():
        for bn in net.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 2.0)
                bn.bias.uniform_(0.2, 1.0)
    return net.eval()
