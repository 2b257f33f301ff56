"""Global greedy channel selection (greedyprune.prune.greedy_prune): batched equals sequential,
the first step against a slow reference, the gate rule, MACs targets, the tolerance stop, and
the gates' device and dtype."""

import pytest
import torch
import torch.nn.functional as F
from prune_nets import SIZE, make_batches, make_model

import greedyprune.prune as gp

_CACHE = {}


def _groups_mbv2():
    if "mbv2" not in _CACHE:
        _CACHE["mbv2"] = gp.find_prunable_groups(
            make_model("mobilenet_v2"), torch.zeros(1, 3, SIZE, SIZE)
        )
    return _CACHE["mbv2"]


def _select(arch, mode, groups_slice, n_keep=3, size=SIZE, **kw):
    """Greedy selection of ``n_keep`` channels in each group of ``groups_slice`` (float64).

    groups_slice: a slice of the model's groups, or a tuple of group names (in forward order).
    """
    model = make_model(arch, torch.float64)
    example = torch.zeros(1, 3, size, size, dtype=torch.float64)
    groups = gp.find_prunable_groups(model, example)
    if isinstance(groups_slice, slice):
        groups = groups[groups_slice]
    else:
        by_name = {g.name: g for g in groups}
        missing = [n for n in groups_slice if n not in by_name]
        assert not missing, f"{arch}: no prunable group {missing}; groups: {list(by_name)}"
        groups = [by_name[n] for n in groups_slice]
    batches = iter(make_batches(400, 4, torch.float64, size=size))
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
    model = make_model(arch, torch.float64)
    example = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.float64)
    group = gp.find_prunable_groups(model, example)[sl][0]
    x, y = make_batches(1, 4, torch.float64)[0]
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
    model = make_model("mobilenet_v2")
    example = torch.zeros(1, 3, SIZE, SIZE)
    full = gp.count_macs(model, example)
    groups = _groups_mbv2()[1:4]
    mm = gp.MacsModel(gp.profile_layers(model, example), groups)
    # A target that leaves about a tenth of these groups' channels (a few greedy steps).
    frac = mm.macs({g.name: g.n_channels // 10 for g in groups}) / full
    gm, res = gp.greedy_prune(
        model, iter(make_batches(200, 2)), example, target_macs=frac, candidates=3, groups=groups
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
    model = make_model("resnet18", torch.float64)
    example = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.float64)
    groups = gp.find_prunable_groups(model, example)[:1]
    eval_batch = make_batches(1, 16, torch.float64, seed=9)[0]
    # Labels the unpruned model predicts: its accuracy is 1, the stop needs >= 0.9.
    with torch.no_grad():
        eval_batch = (eval_batch[0], model(eval_batch[0]).argmax(1))
    gm, res = gp.greedy_prune(
        model,
        iter(make_batches(200, 4, torch.float64)),
        example,
        tol=0.1,
        eval_data=eval_batch,
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


def test_gates_respect_device_and_dtype(device):
    model = make_model("resnet18", torch.float64, device)
    example = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.float64, device=device)
    groups = gp.find_prunable_groups(model, example)[:1]
    name, d = groups[0].name, groups[0].n_channels
    batches = make_batches(50, 2, torch.float64, device)
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


BAD_SETTINGS = {
    "candidates": 0,
    "candidate_order": "best",
    "loss": "l2",
    "mode": "fast",
    "tol": 1.0,
    "precheck": 0.0,
    "replacement": "no",
    "chunk_size": 0,
    "max_bytes": -1,
    "eval_chunk": 0,
    "eval_cache_bytes": -1,
    "widths": [3, 4],
}


@pytest.mark.parametrize("name", sorted(BAD_SETTINGS))
def test_greedy_settings_refuse_each_bad_field_by_name_before_any_model(name):
    """Every field is checked when the settings are made, in one message naming it; greedy_prune
    given it as a keyword refuses it before touching the model or drawing a batch."""
    from greedyprune.errors import GreedypruneError

    base = {"tol": 0.02} if name in ("widths",) else {"target_macs": 0.5}
    if name == "tol":
        base = {}
    with pytest.raises(GreedypruneError, match=rf"^{name}="):
        gp.GreedySettings(**base, **{name: BAD_SETTINGS[name]})

    def no_batches():
        raise AssertionError("a batch was drawn before the settings were checked")

    with pytest.raises(GreedypruneError, match=rf"^{name}="):
        gp.greedy_prune(None, no_batches, None, **base, **{name: BAD_SETTINGS[name]})


def test_greedy_settings_need_one_stop_and_know_their_fields():
    from greedyprune.errors import GreedypruneError, GreedypruneTypeError

    with pytest.raises(GreedypruneError, match="pass target_macs"):
        gp.GreedySettings()
    with pytest.raises(GreedypruneError, match="not both"):
        gp.GreedySettings(target_macs=0.5, widths={"a": 1})
    with pytest.raises(GreedypruneTypeError, match=r"unknown keywords \['eval_batch'\]"):
        gp.greedy_prune(None, iter([]), None, target_macs=0.5, eval_batch=None)
    with pytest.raises(GreedypruneTypeError, match="must be a GreedySettings"):
        gp.greedy_prune(None, iter([]), None, {"target_macs": 0.5})


def test_a_settings_object_and_its_keywords_select_alike():
    """greedy_prune(settings) picks what greedy_prune(**its fields) picks; a keyword replaces
    the settings' field (here the seed of the candidate draws)."""
    import dataclasses

    model = make_model("resnet18", torch.float64)
    example = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.float64)
    groups = gp.find_prunable_groups(model, example)[:2]
    st = gp.GreedySettings(widths={g.name: 3 for g in groups}, candidates=4, generator=1)

    def orders(*args, **kw):
        m = make_model("resnet18", torch.float64)
        batches = iter(make_batches(40, 2, torch.float64))
        _, res = gp.greedy_prune(m, batches, example, *args, groups=groups, **kw)
        return [r.order for r in res.layers]

    fields = {f.name: getattr(st, f.name) for f in dataclasses.fields(st)}
    assert orders(st) == orders(**fields)
    reseeded = orders(st, generator=2)
    assert reseeded == orders(**{**fields, "generator": 2})
    assert reseeded != orders(st)  # the keyword was used, not the settings' seed
