"""greedyprune.prune: gates, layer-wise selection (batched == sequential), surgery, MACs, save/load."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import greedyprune.prune as gp

SIZE = 32


def _model(arch, dtype=torch.float32, device="cpu", seed=0):
    torch.manual_seed(seed)
    model = gp.build_model(arch, 10).to(device=device, dtype=dtype)
    # Random batch-norm statistics so that channels differ (fresh ones are all identity).
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _batches(n, batch, dtype=torch.float32, device="cpu", seed=1, size=None):
    g = torch.Generator().manual_seed(seed)
    size = SIZE if size is None else size
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, size, size, generator=g).to(device=device, dtype=dtype)
        out.append((x, torch.randint(0, 10, (batch,), generator=g).to(device)))
    return out


ARCHS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small"]


@pytest.fixture(scope="module", params=ARCHS)
def arch_model(request):
    model = _model(request.param, torch.float64)
    example = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.float64)
    return request.param, model, example, gp.find_prunable_groups(model, example)


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


def _random_gates(groups, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    gates = {}
    for grp in groups:
        keep = torch.rand(grp.n_channels, generator=g) < 0.5
        keep[torch.randint(grp.n_channels, (1,), generator=g)] = True
        gates[grp.name] = (keep * (0.5 + torch.rand(grp.n_channels, generator=g))).to(dtype)
    return gates


def test_surgery_computes_the_gated_function(arch_model):
    _arch, base, example, groups = arch_model
    model = copy.deepcopy(base)
    gm = gp.GatedModel(model, example, groups)
    for name, value in _random_gates(groups, 0, torch.float64).items():
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
    model = _model("mobilenet_v2")
    example = torch.zeros(1, 3, SIZE, SIZE)
    groups = _groups_mbv2()
    mm = gp.MacsModel(gp.profile_layers(model, example), groups)
    target = int(frac * mm.full_macs)
    widths = mm.plan(target)
    got = mm.macs(widths)
    assert got <= target
    assert got >= 0.98 * target


_CACHE = {}


def _groups_mbv2():
    if "mbv2" not in _CACHE:
        _CACHE["mbv2"] = gp.find_prunable_groups(
            _model("mobilenet_v2"), torch.zeros(1, 3, SIZE, SIZE)
        )
    return _CACHE["mbv2"]


def _select(arch, mode, groups_slice, n_keep=3, size=SIZE, **kw):
    """Greedy selection of ``n_keep`` channels in each group of ``groups_slice`` (float64).

    groups_slice: a slice of the model's groups, or a tuple of group names (in forward order).
    """
    model = _model(arch, torch.float64)
    example = torch.zeros(1, 3, size, size, dtype=torch.float64)
    groups = gp.find_prunable_groups(model, example)
    if isinstance(groups_slice, slice):
        groups = groups[groups_slice]
    else:
        by_name = {g.name: g for g in groups}
        missing = [n for n in groups_slice if n not in by_name]
        assert not missing, f"{arch}: no prunable group {missing}; groups: {list(by_name)}"
        groups = [by_name[n] for n in groups_slice]
    batches = iter(_batches(400, 4, torch.float64, size=size))
    widths = {g.name: n_keep for g in groups}
    gm, res = gp.greedy_prune(
        model, batches, example, groups=groups, mode=mode, generator=0, widths=widths, **kw
    )
    return model, gm, res


# MobileNetV2 at 16 px (its last blocks see 1 x 1 maps): a gate whose consumer is a depthwise conv
# in a strided block (features.2), the residual stream through the skip of an inverted residual
# (features.2.conv.2 feeds features.3 and its skip), a gate inside an inverted residual
# (features.3) and the deepest group (features.17's projection, consumed by features.18). Every
# candidate runs through the rest of the net, down to the classifier, in both modes.
MBV2_GROUPS = (
    "features.2.conv.0.0",
    "features.2.conv.2",
    "features.3.conv.0.0",
    "features.17.conv.2",
)


@pytest.mark.parametrize(
    ("arch", "sl", "kw"),
    [
        ("resnet18", slice(0, 3, 2), {"candidates": 5}),
        ("mobilenet_v2", MBV2_GROUPS, {"candidates": 12, "size": 16}),
        ("mobilenet_v3_small", slice(2, 4), {"candidates": 6}),
        ("resnet18", slice(6, 7), {"candidates": 4, "loss": "imitation"}),
    ],
)
def test_batched_equals_sequential(arch, sl, kw):
    _, _, a = _select(arch, "batched", sl, **kw)
    _, _, b = _select(arch, "sequential", sl, **kw)
    assert [r.order for r in a.layers] == [r.order for r in b.layers]
    # every group chose its channels (none was skipped as already narrow enough)
    assert all(len(r.order) == 3 for r in a.layers), [r.order for r in a.layers]
    for ra, rb in zip(a.layers, b.layers):
        torch.testing.assert_close(
            torch.tensor(ra.losses), torch.tensor(rb.losses), rtol=1e-9, atol=1e-12
        )


def test_first_step_matches_a_slow_reference():
    """Step 1 picks the channel whose gate D * e_c gives the lowest batch cross-entropy."""
    arch, sl = "resnet18", slice(0, 1)
    model = _model(arch, torch.float64)
    example = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.float64)
    group = gp.find_prunable_groups(model, example)[sl][0]
    x, y = _batches(1, 4, torch.float64)[0]
    d = group.n_channels
    gm = gp.GatedModel(model, example, [group])
    ref = []
    with torch.no_grad():
        for c in range(d):
            gate = torch.zeros(d, dtype=torch.float64)
            gate[c] = d
            gm.gates[group.name].value = gate
            ref.append(float(F.cross_entropy(model(x), y)))
    gm.detach()
    _, _, res = _select(arch, "batched", sl, n_keep=1, candidates=None)
    rec = res.layers[0]
    best = min(range(d), key=lambda c: (ref[c], c))
    assert rec.order[0] == best
    assert rec.losses[0] == pytest.approx(ref[best], rel=1e-10)


def test_gate_rule_without_and_with_replacement():
    _, gm, res = _select("resnet18", "batched", slice(0, 1), n_keep=6, candidates=8)
    rec = res.layers[0]
    n = len(rec.order)
    assert n == len(set(rec.order)) == len(rec.kept)
    gate = torch.tensor(rec.gate, dtype=torch.float64)
    expected = torch.zeros(rec.n_channels, dtype=torch.float64)
    expected[rec.order] = rec.n_channels / n
    torch.testing.assert_close(gate, expected)
    gm.detach()
    _, _gm2, res2 = _select(
        "resnet18", "batched", slice(0, 1), n_keep=6, candidates=8, replacement=True
    )
    rec2 = res2.layers[0]
    counts = torch.bincount(torch.tensor(rec2.order), minlength=rec2.n_channels).double()
    torch.testing.assert_close(
        torch.tensor(rec2.gate, dtype=torch.float64), rec2.n_channels * counts / len(rec2.order)
    )
    assert len(rec2.kept) <= len(rec.kept)


def test_greedy_prune_meets_macs_target_and_surgery_matches():
    model = _model("mobilenet_v2")
    example = torch.zeros(1, 3, SIZE, SIZE)
    full = gp.count_macs(model, example)
    groups = _groups_mbv2()[1:4]
    mm = gp.MacsModel(gp.profile_layers(model, example), groups)
    # A target that leaves about a tenth of these groups' channels (a few greedy steps).
    frac = mm.macs({g.name: g.n_channels // 10 for g in groups}) / full
    gm, res = gp.greedy_prune(
        model, iter(_batches(200, 2)), example, target_macs=frac, candidates=3, groups=groups
    )
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        gated = model(x)
    pruned, kept = gp.fold_and_prune(gm)
    macs = gp.count_macs(pruned, example)
    assert macs == res.planned_macs
    assert 0.98 * frac * full <= macs <= frac * full
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), gated, rtol=1e-4, atol=1e-4)
    assert kept == res.kept()


def test_tol_stop_reaches_tolerance():
    model = _model("resnet18", torch.float64)
    example = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.float64)
    groups = gp.find_prunable_groups(model, example)[:1]
    eval_batch = _batches(1, 16, torch.float64, seed=9)[0]
    # Labels the unpruned model predicts: its accuracy is 1, the stop needs >= 0.9.
    with torch.no_grad():
        eval_batch = (eval_batch[0], model(eval_batch[0]).argmax(1))
    gm, res = gp.greedy_prune(
        model,
        iter(_batches(200, 4, torch.float64)),
        example,
        tol=0.1,
        eval_batch=eval_batch,
        candidates=4,
        groups=groups,
    )
    rec = res.layers[0]
    assert rec.acc_before == 1.0
    assert rec.acc_after >= 0.9
    # It stopped early, at the first subnetwork that met the tolerance: the recorded accuracy is
    # the gated model's, and one pick fewer is below it.
    n = len(rec.order)
    assert 2 <= n < rec.n_channels and len(rec.kept) == n
    gate = gm.gates[groups[0].name]

    def accuracy(order):
        value = torch.zeros(rec.n_channels, dtype=torch.float64)
        value[order] = rec.n_channels / len(order)
        gate.value = value
        with torch.no_grad():
            return float((model(eval_batch[0]).argmax(1) == eval_batch[1]).double().mean())

    assert accuracy(rec.order) == rec.acc_after
    assert accuracy(rec.order[:-1]) < 0.9


def test_save_load_round_trip(tmp_path):
    model = _model("mobilenet_v3_small")
    example = torch.zeros(1, 3, SIZE, SIZE)
    groups = gp.find_prunable_groups(model, example)
    gm = gp.GatedModel(model, example, groups)
    for name, value in _random_gates(groups, 1, torch.float32).items():
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
    model = _model("resnet18")
    gp.save_pruned(tmp_path, model, arch="resnet18", num_classes=10, image_size=SIZE, kept={})
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        gp.load_pruned(tmp_path)
    (tmp_path / "pruned.json").write_text("{broken")
    with pytest.raises(ValueError, match="JSON"):
        gp.load_pruned(tmp_path)
    with pytest.raises(FileNotFoundError):
        gp.load_pruned(tmp_path / "nowhere")


def test_gates_respect_device_and_dtype(device):
    model = _model("resnet18", torch.float64, device)
    example = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.float64, device=device)
    groups = gp.find_prunable_groups(model, example)[:1]
    name, d = groups[0].name, groups[0].n_channels
    batches = _batches(50, 2, torch.float64, device)
    gm, res = gp.greedy_prune(
        model, iter(batches), example, widths={name: 3}, candidates=5, groups=groups
    )
    rec = res.layers[0]
    assert len(rec.order) == len(rec.kept) == 3
    # The gate stays in the model's dtype and on its device: exactly D / 3 on the picks (1/3 is
    # not a float32 number, so a float32 gate would differ here).
    value = gm.gates[name].value
    assert value.dtype == torch.float64 and value.device.type == torch.device(device).type
    expected = torch.zeros(d, dtype=torch.float64, device=device)
    expected[rec.order] = d / 3
    torch.testing.assert_close(value, expected, rtol=1e-15, atol=0)
    # The last step's loss (on the third batch drawn) is the float64 loss of that gated model.
    x, y = batches[2]
    with torch.no_grad():
        loss = F.cross_entropy(model(x), y)
    assert loss.dtype == torch.float64
    assert rec.losses[-1] == pytest.approx(float(loss), rel=1e-12)
    pruned, _ = gp.fold_and_prune(gm)
    for p in pruned.parameters():
        assert p.dtype == torch.float64 and p.device.type == torch.device(device).type
