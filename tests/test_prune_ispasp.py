"""i-SpaSP as a CNN channel criterion (``baseline_channels("ispasp", ...)``).

Checked against a literal reading of the adaptation: each channel's contribution measured by
running the network with only that channel kept at the consumers' inputs, and the support
iteration written out here on those contributions (residual, proxy, merge, threshold).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision
from tiny import randomise_batch_norms
from torch import nn

from greedyprune.prune import BASELINES, METHODS, baseline_channels, find_prunable_groups


def _batch(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=gen), torch.zeros(n, dtype=torch.long)


def _convs(*channels: int, seed: int) -> nn.Sequential:
    """conv -> bn -> relu for each pair of ``channels`` (3x3, padding 1), then pool -> linear to
    10 classes; eval mode with randomised batch norms. Sequential names: conv k at index 3 k."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(channels):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], 10)]
    return randomise_batch_norms(nn.Sequential(*layers))


def _chain(hidden: int = 16) -> nn.Sequential:
    """stem conv -> bn -> relu -> conv "3" (the tested group) -> bn -> relu -> conv "6" -> bn
    -> relu -> pool -> linear."""
    return _convs(3, 8, hidden, 6, seed=0)


def _literal_contributions(model, group, x, bn_of: dict[str, nn.Module]) -> torch.Tensor:
    """[C, D]: each channel's contribution to the pre-activations after the consumers' batch norms:
    for each consumer, the network run with only that channel kept at this consumer's input (the
    other consumers untouched), less the run with none kept; concatenated over the consumers."""
    mods = dict(model.named_modules())
    C, B = group.n_channels, x.shape[0]
    # slice k of C + 1 stacked copies of the batch keeps channel k only; the last keeps none
    masks = torch.cat([torch.eye(C), torch.zeros(1, C)])

    def gate(module, args):
        h = args[0]
        hs = h.reshape(C + 1, B, C, *h.shape[2:])
        return ((hs * masks.reshape(C + 1, 1, C, *([1] * (h.dim() - 2)))).reshape(h.shape),)

    out: dict[str, torch.Tensor] = {}

    def grab(module, args, y):
        out["y"] = y.detach().double().reshape(C + 1, B, -1)

    blocks = []
    for c in group.consumers:
        handles = [mods[c].register_forward_pre_hook(gate), bn_of[c].register_forward_hook(grab)]
        try:
            with torch.no_grad():
                model(x.repeat(C + 1, 1, 1, 1))
        finally:
            for h in handles:
                h.remove()
        blocks.append(out["y"][:C] - out["y"][C:])
    return torch.cat(blocks, 2).reshape(C, -1)


def _reference_ispasp(F: torch.Tensor, n: int, iterations: int = 20) -> list[int]:
    """The support iteration on contributions F [C, D] toward their sum (the dense output)."""
    return _support_iteration(F, F.sum(0), n, iterations)


def _support_iteration(F: torch.Tensor, target: torch.Tensor, n: int, iterations: int = 20):
    """The support iteration on contributions F [C, D] toward ``target``: the pruned output is the
    plain sum of the kept rows; ties to the lower index."""
    mag = F.abs().sum(1)
    support: list[int] | None = None
    for _ in range(iterations):
        residual = target if support is None else target - F[support].sum(0)
        proxy = (F @ residual).tolist()
        omega = sorted(range(len(proxy)), key=lambda i: (-proxy[i], i))[: 2 * n]
        merged = sorted(set(omega) | set(support or []))
        new = sorted(sorted(merged, key=lambda i: (-float(mag[i]), i))[:n])
        if new == support:
            break
        support = new
    assert support is not None
    return support


def test_ispasp_is_a_compare_method():
    assert "ispasp" in BASELINES and "ispasp" in METHODS
    assert "i-SpaSP" in BASELINES["ispasp"]


def test_resnet18_every_group_gets_sorted_channels_of_its_width():
    model = torchvision.models.resnet18(num_classes=10).eval()
    ex = torch.zeros(1, 3, 16, 16)
    groups = find_prunable_groups(model, ex)
    assert any(len(g.consumers) > 1 for g in groups)  # residual streams are covered
    widths = {g.name: max(1, g.n_channels // (2 + i % 3)) for i, g in enumerate(groups)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    kept = baseline_channels("ispasp", model, ex, groups, widths, batch=_batch(4, 16))
    assert model.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(kept) == {g.name for g in groups}
    for g in groups:
        k = kept[g.name]
        assert k == sorted(set(k)) and len(k) == widths[g.name]
        assert 0 <= k[0] and k[-1] < g.n_channels


def test_keeps_exactly_the_channels_the_consumer_reads():
    model = _chain(16)
    wanted = [2, 5, 11]
    with torch.no_grad():
        cut = torch.ones(16, dtype=torch.bool)
        cut[wanted] = False
        model[6].weight[:, cut] = 0.0
    ex = torch.zeros(1, 3, 8, 8)
    groups = find_prunable_groups(model, ex)
    assert [g.name for g in groups] == ["3"] and groups[0].consumers == ["6"]
    kept = baseline_channels("ispasp", model, ex, groups, {"3": 3}, batch=_batch(6, 8))
    assert kept == {"3": wanted}


@pytest.mark.parametrize("n", [1, 2, 3, 6, 10])
def test_matches_the_literal_support_iteration_on_a_chain(n):
    model = _chain(24)
    ex = torch.zeros(1, 3, 4, 4)
    x = _batch(5, 4, seed=n)  # 4 x 4 maps: every output position is used
    groups = find_prunable_groups(model, ex)
    F = _literal_contributions(model, groups[0], x[0], {"6": model[7]})
    kept = baseline_channels("ispasp", model, ex, groups, {"3": n}, batch=x)
    assert kept["3"] == _reference_ispasp(F, n)


def test_matches_the_literal_support_iteration_on_a_residual_stream():
    torch.manual_seed(1)
    model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.2, 0.5)
    ex = torch.zeros(1, 3, 16, 16)
    groups = {g.name: g for g in find_prunable_groups(model, ex)}
    stream = groups["layer2.0.conv2"]  # layer2's residual stream: three consumers
    assert stream.consumers == ["layer2.1.conv1", "layer3.0.conv1", "layer3.0.downsample.0"]
    mods = dict(model.named_modules())
    bn_of = {
        "layer2.1.conv1": mods["layer2.1.bn1"],
        "layer3.0.conv1": mods["layer3.0.bn1"],
        "layer3.0.downsample.0": mods["layer3.0.downsample.1"],
    }
    x = _batch(3, 16, seed=3)
    F = _literal_contributions(model, stream, x[0], bn_of)
    for n in (8, 40):
        kept = baseline_channels("ispasp", model, ex, [stream], {stream.name: n}, batch=x)
        assert kept[stream.name] == _reference_ispasp(F, n)


def test_deterministic_and_independent_of_the_generator():
    model = _chain(16)
    ex = torch.zeros(1, 3, 16, 16)
    groups = find_prunable_groups(model, ex)
    x = _batch(4, 16)
    runs = [
        baseline_channels(
            "ispasp",
            model,
            ex,
            groups,
            {"3": 5},
            batch=x,
            generator=torch.Generator().manual_seed(s),
        )
        for s in (0, 0, 7)
    ]
    assert runs[0] == runs[1] == runs[2]
    assert len(runs[0]["3"]) == 5


def test_full_width_keeps_everything_and_batch_is_required():
    model = _chain(16)
    ex = torch.zeros(1, 3, 8, 8)
    groups = find_prunable_groups(model, ex)
    assert baseline_channels("ispasp", model, ex, groups, {"3": 16}, batch=_batch(2, 8)) == {
        "3": list(range(16))
    }
    with pytest.raises(ValueError, match="batch"):
        baseline_channels("ispasp", model, ex, groups, {"3": 4})


# -- group after group (ispasp-seq) ---------------------------------------------------------------
def _chain2() -> nn.Sequential:
    """Two prunable groups in a row: conv "3" (read by "6") and conv "6" (read by "9")."""
    return _convs(3, 8, 12, 10, 6, seed=2)


# (6, 4, 0) and (2, 2, 5): the second group's choice differs with the pruned network's own output
# as the target instead of the dense one's (and, for the first, from the one-shot choice)
@pytest.mark.parametrize("n3, n6, seed", [(3, 2, 0), (6, 4, 0), (2, 2, 5), (11, 1, 1)])
def test_group_after_group_matches_a_literal_partly_pruned_network(n3, n6, seed):
    """ispasp-seq: the first group as one shot; the second group's features measured literally on
    a copy of the network whose first group is cut (the removed channels' batch norm set to
    output 0, so they reach the consumer as zeros), its target the dense network's."""
    import copy

    model = _chain2()
    ex = torch.zeros(1, 3, 4, 4)
    x = _batch(5, 4, seed=seed)
    groups = find_prunable_groups(model, ex)
    assert [g.name for g in groups] == ["3", "6"]
    widths = {"3": n3, "6": n6}
    kept = baseline_channels("ispasp-seq", model, ex, groups, widths, batch=x)
    first = _reference_ispasp(_literal_contributions(model, groups[0], x[0], {"6": model[7]}), n3)
    assert kept["3"] == first
    assert baseline_channels("ispasp", model, ex, groups, widths, batch=x)["3"] == first
    cut = copy.deepcopy(model)
    gone = [c for c in range(12) if c not in first]
    with torch.no_grad():
        cut[4].weight[gone] = 0.0
        cut[4].bias[gone] = 0.0
    dense = _literal_contributions(model, groups[1], x[0], {"9": model[10]})
    pruned = _literal_contributions(cut, groups[1], x[0], {"9": cut[10]})
    assert kept["6"] == _support_iteration(pruned, dense.sum(0), n6)


def test_group_after_group_differs_from_one_shot_and_leaves_the_model_alone():
    """Somewhere on ResNet-18 the partly pruned network changes a later group's choice (else the
    sequential variant would be the one-shot one under another name); weights and mode kept."""
    model = torchvision.models.resnet18(num_classes=10).eval()
    ex = torch.zeros(1, 3, 16, 16)
    groups = find_prunable_groups(model, ex)
    widths = {g.name: max(1, g.n_channels // 4) for g in groups}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    x = _batch(4, 16)
    seq = baseline_channels("ispasp-seq", model, ex, groups, widths, batch=x)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    one = baseline_channels("ispasp", model, ex, groups, widths, batch=x)
    assert seq[groups[0].name] == one[groups[0].name]
    assert any(seq[g.name] != one[g.name] for g in groups)
    for g in groups:
        assert seq[g.name] == sorted(set(seq[g.name])) and len(seq[g.name]) == widths[g.name]


def test_group_after_group_is_a_compare_method_and_needs_a_batch():
    assert "ispasp-seq" in BASELINES and "ispasp-seq" in METHODS
    model = _chain2()
    ex = torch.zeros(1, 3, 8, 8)
    groups = find_prunable_groups(model, ex)
    with pytest.raises(ValueError, match="method='ispasp-seq' needs batch"):
        baseline_channels("ispasp-seq", model, ex, groups, {"3": 4, "6": 4})
