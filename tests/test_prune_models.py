"""greedyprune.prune models: ProxylessNAS-mobile against its published figures, build/list, and
pruning, saving and loading a module defined outside the package."""

import pytest
import torch
from torch import nn

import greedyprune.prune as gp

SIZE = 16

# Published by the ProxylessNAS authors for ProxylessNAS-mobile at 224 px, 1000 classes: the log of
# their released model, github.com/mit-han-lab/proxylessnas, file logs/imagenet_mobile_log.txt:
# "Total training params: 4.08M" and "Total FLOPs: 320.4M" (their FLOPs count multiply-adds of the
# convolutions and the linear layer, as count_macs does).
PUBLISHED_MACS = 320.4e6
PUBLISHED_PARAMS = 4.08e6


def _randomize_bn(model):
    """Random batch-norm statistics so that channels differ (fresh ones are all identity)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _batches(n_classes, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    while True:
        yield (
            torch.randn(batch, 3, SIZE, SIZE, generator=g),
            torch.randint(0, n_classes, (batch,), generator=g),
        )


def test_proxylessnas_mobile_matches_the_published_macs_and_params():
    torch.manual_seed(0)
    model = gp.proxylessnas_mobile(num_classes=1000)
    macs = gp.count_macs(model, torch.zeros(1, 3, 224, 224))
    assert abs(macs - PUBLISHED_MACS) <= 0.01 * PUBLISHED_MACS, macs
    params = gp.count_params(model)
    assert abs(params - PUBLISHED_PARAMS) <= 0.01 * PUBLISHED_PARAMS, params
    # The released config: 20 mobile inverted blocks (2 zero blocks dropped), 13 of them with an
    # identity shortcut (where the config lists an IdentityLayer), these depthwise kernel sizes.
    blocks = list(model.blocks)
    assert len(blocks) == 20
    assert sum(b.residual for b in blocks) == 13
    assert [b.depthwise[0].kernel_size[0] for b in blocks] == [
        3, 5, 3, 7, 3, 5, 5, 7, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7,
    ]  # fmt: skip
    # ReLU6 after the stem, the 19 expansions, the 20 depthwise convolutions and the feature mix.
    assert sum(isinstance(m, nn.ReLU6) for m in model.modules()) == 41
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_residual_shortcuts_are_in_the_forward_pass():
    """A block with a shortcut returns x + f(x): zeroing f's projection leaves the identity."""
    model = gp.proxylessnas_mobile(num_classes=10).eval()
    block = model.blocks[2]
    assert block.residual
    with torch.no_grad():
        block.project[1].weight.zero_()
        block.project[1].bias.zero_()
        x = torch.randn(2, block.project[0].out_channels, 8, 8)
        torch.testing.assert_close(block(x), x)


def test_build_and_list_know_proxylessnas_and_torchvision():
    archs = gp.list_archs()
    assert "proxylessnas_mobile" in archs
    assert {"resnet18", "mobilenet_v2", "mobilenet_v3_small"} <= set(archs)
    assert archs == sorted(archs)
    model = gp.build_model("proxylessnas_mobile", 7)
    assert not model.training
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert gp.build_model("resnet18", 3).fc.out_features == 3
    with pytest.raises(ValueError, match=r"did you mean one of.*proxylessnas_mobile"):
        gp.build_model("proxylessnas_mobil", 10)
    with pytest.raises(ValueError, match=r"did you mean one of.*resnet18"):
        gp.build_model("resnet19", 10)
    with pytest.raises(ValueError, match="num_classes"):
        gp.build_model("proxylessnas_mobile", 1)


def test_proxylessnas_is_traced_pruned_and_reloaded_by_name(tmp_path):
    torch.manual_seed(0)
    model = _randomize_bn(gp.build_model("proxylessnas_mobile", 10))
    example = torch.zeros(1, 3, SIZE, SIZE)
    groups = gp.find_prunable_groups(model, example)
    names = {g.name for g in groups}
    # Every expansion convolution heads a group of its own (expand ratio 1 has none).
    assert {f"blocks.{i}.expand.0" for i in range(1, 20)} <= names
    # One group inside a residual block (a few greedy steps through the whole suffix).
    picked = [g for g in groups if g.name == "blocks.4.expand.0"]
    gm, res = gp.greedy_prune(
        model, _batches(10), example, groups=picked, widths={picked[0].name: 2}, candidates=3
    )
    assert [len(r.kept) for r in res.layers] == [2]
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        gated = model(x)
    full = gp.count_macs(model, example)
    pruned, kept = gp.fold_and_prune(gm)
    assert gp.count_macs(pruned, example) < full
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), gated, rtol=1e-4, atol=1e-4)
    gp.save_pruned(
        tmp_path, pruned, arch="proxylessnas_mobile", num_classes=10, image_size=SIZE, kept=kept
    )
    loaded, record = gp.load_pruned(tmp_path)
    assert record["arch"] == "proxylessnas_mobile" and record["kept"] == kept
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


class TinyNet(nn.Module):
    """A CNN defined outside the package: conv-bn-relu stacks, one residual add, a linear head."""

    def __init__(self, num_classes=5, width=16):
        super().__init__()

        def cbr(c_in, c_out, k, stride=1, act=True):
            layers = [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)]
            return nn.Sequential(*layers, *([nn.ReLU()] if act else []))

        self.stem = cbr(3, 8, 3)
        self.down = cbr(8, width, 3, stride=2)
        self.a = cbr(width, 12, 3)
        self.b = cbr(12, width, 3, act=False)
        self.c = cbr(width, 24, 3)
        self.d = cbr(24, 16, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        h = self.down(self.stem(x))
        h = torch.relu(h + self.b(self.a(h)))
        return self.fc(self.pool(self.d(self.c(h))).flatten(1))


@pytest.fixture(scope="module")
def pruned_tiny(tmp_path_factory):
    """TinyNet pruned by greedy selection, saved; (folder, pruned model, kept)."""
    torch.manual_seed(0)
    model = _randomize_bn(TinyNet())
    example = torch.zeros(1, 3, SIZE, SIZE)
    groups = gp.find_prunable_groups(model, example)
    names = {g.name for g in groups}
    assert {"a.0", "c.0"} <= names
    assert not names & {"stem.0", "d.0"}  # the stem's and the head's groups stay whole
    gm, res = gp.greedy_prune(
        model,
        _batches(5),
        example,
        widths={g.name: max(1, g.n_channels // 3) for g in groups},
        candidates=3,
    )
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        gated = model(x)
    pruned, kept = gp.fold_and_prune(gm)
    assert kept == res.kept()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), gated, rtol=1e-4, atol=1e-4)
    mods = dict(pruned.named_modules())
    assert mods["a.0"].out_channels == 4 and mods["c.0"].out_channels == 8
    folder = tmp_path_factory.mktemp("tiny")
    gp.save_pruned(folder, pruned, image_size=SIZE, kept=kept)
    return folder, pruned, kept


def test_custom_module_round_trip(pruned_tiny):
    folder, pruned, kept = pruned_tiny
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "pruned.json"]
    fresh = TinyNet()
    loaded, record = gp.load_pruned(folder, model=fresh)
    assert record["arch"] == "TinyNet" and record["num_classes"] is None
    assert record["kept"] == kept
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(loaded(x), pruned(x))
    assert gp.count_params(loaded) == gp.count_params(pruned)
    assert not loaded.training
    # The model passed is copied, not cut.
    assert fresh.a[0].out_channels == 12 and loaded is not fresh


def test_custom_module_needs_model(pruned_tiny):
    folder, _, _ = pruned_tiny
    with pytest.raises(ValueError, match=r"arch='TinyNet'.*model=YourModel"):
        gp.load_pruned(folder)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: TinyNet(width=12), "model="),  # narrower: kept channels out of range
        (lambda: TinyNet(num_classes=7), "model="),  # another head
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), "model="),  # kept names absent
    ],
)
def test_custom_module_that_does_not_fit(pruned_tiny, make, match):
    folder, _, _ = pruned_tiny
    with pytest.raises(ValueError, match=match):
        gp.load_pruned(folder, model=make())


def test_custom_module_already_pruned_is_refused(pruned_tiny):
    folder, pruned, _ = pruned_tiny
    with pytest.raises(ValueError, match="unpruned"):
        gp.load_pruned(folder, model=pruned)
    with pytest.raises(TypeError, match=r"^model='TinyNet' must be a torch\.nn\.Module or None$"):
        gp.load_pruned(folder, model="TinyNet")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_checkpoint_without_module_versions_loads(tmp_path, suffix):
    """torchvision's MNASNet refuses a state dict without its module version; a safetensors file
    never has one, and torch.load(weights_only=True)'s dict loses it once rebuilt. The model's
    own versions stand in (it was a traceback, then "version should be set to 1 or 2")."""
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = torchvision.models.mnasnet0_5(num_classes=3).state_dict()
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = gp.build_model("mnasnet0_5", 3, path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
