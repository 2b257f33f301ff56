"""Channel gates and surgery (greedyprune.prune): the groups found in a model, gates that
reproduce it, a pruned model that computes the gated function, and saving and loading one."""

import copy

import pytest
import torch
from prune_nets import SIZE, make_model, random_gates

import greedyprune.prune as gp


def test_groups_found_from_the_model(arch_model):
    arch, model, _example, groups = arch_model
    mods = dict(model.named_modules())
    assert groups, arch
    for g in groups:
        root = mods[g.name]
        assert isinstance(root, torch.nn.Conv2d) and root.out_channels == g.n_channels
        for c in g.consumers:
            m = mods[c]
            n_in = m.in_channels if isinstance(m, torch.nn.Conv2d) else m.in_features
            assert n_in == g.n_channels
    # Each block's inner width, plus the residual streams of layer2 and layer3 as one group each
    # (named by their first producer); layer1's stream is the stem's and layer4's feeds the head.
    if arch == "resnet18":
        streams = {"layer2.0.conv2", "layer3.0.conv2"}
        inner = {f"layer{i}.{j}.conv1" for i in range(1, 5) for j in range(2)}
        assert {g.name for g in groups} == inner | streams
        for g in groups:
            if g.name in streams:
                stage = g.name[:6]
                # every conv that writes the stream is a producer, every conv that reads it a consumer
                assert {f"{stage}.0.conv2", f"{stage}.0.downsample.0", f"{stage}.1.conv2"} <= set(
                    g.producers
                )
                assert f"{stage}.1.conv1" in g.consumers


def test_full_gates_and_splits_reproduce_the_model(arch_model):
    _, model, example, groups = arch_model
    x = torch.randn(3, 3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        gm = gp.GatedModel(model, example, groups)
        try:
            for g in groups:
                # The authors' gate at full selection: D * w with w uniform = 1 per channel.
                gm.gates[g.name].value = g.n_channels * torch.full(
                    (g.n_channels,), 1.0 / g.n_channels, dtype=torch.float64
                )
            torch.testing.assert_close(model(x), ref, rtol=1e-12, atol=1e-12)
            for g in groups:
                prefix, suffix = gm.split(g.name)
                torch.testing.assert_close(suffix(prefix(x)), ref, rtol=1e-12, atol=1e-12)
        finally:
            gm.detach()
    with torch.no_grad():
        assert torch.equal(model(x), ref)


def test_surgery_computes_the_gated_function(arch_model):
    _arch, base, example, groups = arch_model
    model = copy.deepcopy(base)
    gm = gp.GatedModel(model, example, groups)
    for name, value in random_gates(groups, 0, torch.float64).items():
        gm.gates[name].value = value
    x = torch.randn(4, 3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        gated = model(x)
    before = gp.count_params(model)
    pruned, kept = gp.fold_and_prune(gm)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), gated, rtol=1e-9, atol=1e-9)
    assert gp.count_params(pruned) < before
    mods = dict(pruned.named_modules())
    for g in groups:
        assert mods[g.name].out_channels == len(kept[g.name])


def test_save_load_round_trip(tmp_path):
    model = make_model("mobilenet_v3_small")
    example = torch.zeros(1, 3, SIZE, SIZE)
    groups = gp.find_prunable_groups(model, example)
    gm = gp.GatedModel(model, example, groups)
    for name, value in random_gates(groups, 1, torch.float32).items():
        gm.gates[name].value = value
    pruned, kept = gp.fold_and_prune(gm)
    gp.save_pruned(
        tmp_path / "m",
        pruned,
        arch="mobilenet_v3_small",
        num_classes=10,
        image_size=SIZE,
        kept=kept,
    )
    loaded, record = gp.load_pruned(tmp_path / "m")
    assert record["kept"] == kept
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    assert gp.count_macs(loaded, example) == gp.count_macs(pruned, example)


def test_load_rejects_corrupt_files(tmp_path):
    model = make_model("resnet18")
    gp.save_pruned(tmp_path, model, arch="resnet18", num_classes=10, image_size=SIZE, kept={})
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        gp.load_pruned(tmp_path)
    (tmp_path / "pruned.json").write_text("{broken")
    with pytest.raises(ValueError, match="JSON"):
        gp.load_pruned(tmp_path)
    with pytest.raises(FileNotFoundError):
        gp.load_pruned(tmp_path / "nowhere")


class _Plain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(torch.relu(self.stem(x)))))
        return self.fc(self.conv2(h).mean((2, 3)))


class _Branchy(_Plain):
    """_Plain whose forward branches on its data: torch.fx cannot trace it."""

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(torch.relu(self.stem(x)))))
        if h.sum() > 0:
            h = h * 2
        return self.fc(self.conv2(h).mean((2, 3)))


def test_an_untraceable_model_is_one_type_error_naming_what_needs_the_graph():
    from greedyprune.errors import GreedypruneTypeError
    from greedyprune.prune._local import _Segments

    model, example = _Branchy().eval(), torch.zeros(1, 3, 8, 8)
    groups = gp.find_prunable_groups(_Plain().eval(), example)  # the same modules, traceable
    assert groups
    with pytest.raises(GreedypruneTypeError, match=r"^_Branchy could not be traced by torch\.fx"):
        gp.GatedModel(model, example, groups)
    with pytest.raises(GreedypruneTypeError, match=r"local imitation needs a traceable model$"):
        _Segments(model)
