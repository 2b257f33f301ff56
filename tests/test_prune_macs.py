"""Multiply-add counting and the width plan (greedyprune.prune): the layer model against the
counter, the counter against a slow hook count, and plans within 2% under their target."""

import copy

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from prune_nets import SIZE, make_model

import greedyprune.prune as gp


def test_macs_model_predicts_the_counter(arch_model):
    _, base, example, groups = arch_model
    model = copy.deepcopy(base)
    mm = gp.MacsModel(gp.profile_layers(model, example), groups)
    assert mm.full_macs == gp.count_macs(model, example)
    g = torch.Generator().manual_seed(3)
    kept = {
        grp.name: sorted(torch.randperm(grp.n_channels, generator=g)[: 1 + grp.n_channels // 3])
        for grp in groups
    }
    gp.prune_channels(model, example, {k: [int(i) for i in v] for k, v in kept.items()})
    assert gp.count_macs(model, example) == mm.macs({k: len(v) for k, v in kept.items()})


def _reference_macs(model, example):
    """Slow, obvious count: out elements x (in_channels / groups) x kernel taps per layer."""
    total = 0

    def hook(m, args, out):
        nonlocal total
        if isinstance(m, torch.nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += out[0].numel() * (m.in_channels // m.groups) * k
        else:
            total += out[0].numel() * m.in_features

    hs = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.no_grad():
        model(example)
    for h in hs:
        h.remove()
    return total


def test_count_macs_matches_reference(arch_model):
    _, model, example, _ = arch_model
    assert gp.count_macs(model, example) == _reference_macs(model, example)


@settings(max_examples=40)
@given(frac=st.floats(0.2, 0.95))
def test_plan_meets_target_within_two_percent(frac):
    model = make_model("mobilenet_v2")
    example = torch.zeros(1, 3, SIZE, SIZE)
    groups = _groups_mbv2()
    mm = gp.MacsModel(gp.profile_layers(model, example), groups)
    target = int(frac * mm.full_macs)
    widths = mm.plan(target)
    got = mm.macs(widths)
    assert got <= target
    assert got >= 0.98 * target


def _groups_mbv2():
    return gp.find_prunable_groups(make_model("mobilenet_v2"), torch.zeros(1, 3, SIZE, SIZE))
