"""Local imitation on networks: the recorded errors against a literal pruned network, seeded
positions and calibration images, the disk spill, and bad settings."""

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from tiny import randomise_batch_norms
from torch import nn
from torch.utils.data import TensorDataset

import greedyprune.prune as gp
from greedyprune.prune._local import _Consumer, _Run, calibration_indices, check_local

LOCAL = ["greedy-local", "greedy-local-omp", "greedy-local-refit", "thinet", "cp", "osscar"]


def _chain(seed=0) -> nn.Sequential:
    """stem conv "0" 3->8 (3x3) -> bn -> relu -> conv "3" 8->12 (3x3) -> bn -> relu -> conv "6"
    12->10 (3x3, stride 2) -> bn -> relu -> conv "9" 10->6 (1x1) -> bn -> relu -> pool -> linear;
    groups "3" (read by "6", strided) and "6" (read by "9"); randomised eval-mode batch norms,
    biases on the convolutions."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Conv2d(12, 10, 3, stride=2, padding=1),
        nn.BatchNorm2d(10),
        nn.ReLU(),
        nn.Conv2d(10, 6, 1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 10),
    )
    return randomise_batch_norms(net)


def _data(n=24, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 4)


def _run(model, method, widths, settings, data=None, seed=0, groups=None):
    ex = torch.zeros(1, 3, 8, 8)
    groups = groups or gp.find_prunable_groups(model, ex, residual=False)
    request = gp.SelectionRequest(
        model=model,
        example=ex,
        groups=groups,
        widths=widths,
        generator=torch.Generator().manual_seed(seed),
        data=data or _data(),
        seed=seed,
        options={"local": settings},
    )
    return gp.select_channels(method, request), groups


def _consumer_outputs(net, x):
    """Each consumer's output ("6", "9"), bias removed, times its batch norm's scale: [B, O, L]."""
    out = {}
    handles = []
    for conv, bn in (("6", "7"), ("9", "10")):
        m, b = net.get_submodule(conv), net.get_submodule(bn)

        def hook(mod, _a, y, b=b):
            scale = b.weight / torch.sqrt(b.running_var + b.eps)
            z = y - (mod.bias.reshape(1, -1, 1, 1) if mod.bias is not None else 0)
            out[mod] = (z * scale.reshape(1, -1, 1, 1)).flatten(2).detach()

        handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return [out[net.get_submodule("6")], out[net.get_submodule("9")]]


@pytest.mark.parametrize("method", LOCAL)
@pytest.mark.parametrize("widths", [{"3": 3, "6": 5}, {"3": 7, "6": 2}])
def test_recorded_refit_errors_are_those_of_the_literal_pruned_network(method, widths):
    """With every output position sampled and no ridge, each group's recorded refit error is the
    relative error of the pruned network's consumer output against the dense one's, measured on
    the literal network (surgery by Torch-Pruning with the refitted weights written in). The
    second group's features must come from the network pruned so far: from the dense network its
    refit would be fitted to inputs the pruned network never sees, and its error would differ."""
    model = _chain()
    dense = copy.deepcopy(model)
    settings = gp.LocalSettings(positions=10_000, calibration_images=24, ridge=0.0, chunk=5)
    choice, groups = _run(model, method, widths, settings)
    assert {k: len(v) for k, v in choice.kept.items()} == widths
    x = torch.stack([d[0] for d in _data()])
    z_dense = _consumer_outputs(dense, x)
    # group "3" measured with only its own cut (conv "6" keeps all its outputs), group "6" on the
    # network with both cuts
    first = gp.Choice({"3": choice.kept["3"]}, weights={"6": choice.weights["6"]})
    literal = []
    for part, which in ((first, 0), (choice, 1)):
        pruned = copy.deepcopy(dense)
        gp.apply_choice(pruned, torch.zeros(1, 3, 8, 8), groups, part)
        literal.append(_consumer_outputs(pruned, x)[which])
    records = choice.info["layers"]
    for rec, zd, zp in zip(records, z_dense, literal):
        measured = float((zd - zp).pow(2).sum() / zd.pow(2).sum())
        assert rec["refit_error"] == pytest.approx(measured, rel=1e-6, abs=1e-9)
        assert rec["refit_error"] <= rec["fixed_error"] + 1e-9  # the refit never loses
        assert rec["rows"] == 24 * zd.shape[2]


class _Bottleneck(nn.Module):
    """stem conv 3->8 -> bn -> relu, then one bottleneck: conv1 8->6 (1x1), conv2 6->6 (3x3),
    conv3 6->8 (1x1), each with a batch norm, added to the stem's output: the internal groups
    "conv1" (read by conv2) and "conv2" (read by conv3) lie in one block, with no cut between."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv1, self.bn1 = nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv3, self.bn3 = nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        s = F.relu(self.bn0(self.stem(x)))
        y = F.relu(self.bn1(self.conv1(s)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = F.relu(self.bn3(self.conv3(y)) + s)
        return self.fc(y.mean((2, 3)))


def _conv3_output(net, x):
    """conv3's output, bias removed, times its batch norm's scale: [B, O, L]."""
    got = {}

    def hook(mod, _a, y):
        scale = net.bn3.weight / torch.sqrt(net.bn3.running_var + net.bn3.eps)
        got["z"] = ((y - mod.bias.reshape(1, -1, 1, 1)) * scale.reshape(1, -1, 1, 1)).flatten(2)

    handle = net.conv3.register_forward_hook(hook)
    with torch.no_grad():
        net(x)
    handle.remove()
    return got["z"]


@pytest.mark.parametrize("method", ["greedy-local-refit", "thinet"])
def test_a_bottleneck_s_second_group_reads_the_refitted_first(method):
    """Within a block the pruned stream runs from the first consumer to the second through the
    first consumer as refitted (its kept inputs, its new weights), not the dense one: the second
    group's recorded refit error is that of the literal pruned network."""
    torch.manual_seed(0)
    model = randomise_batch_norms(_Bottleneck())
    dense = copy.deepcopy(model)
    settings = gp.LocalSettings(positions=10_000, calibration_images=24, ridge=0.0, chunk=5)
    widths = {"conv1": 3, "conv2": 4}
    choice, groups = _run(model, method, widths, settings)
    assert {k: len(v) for k, v in choice.kept.items()} == widths
    x = torch.stack([d[0] for d in _data()])
    pruned = copy.deepcopy(dense)
    gp.apply_choice(pruned, torch.zeros(1, 3, 8, 8), groups, choice)
    zd, zp = _conv3_output(dense, x), _conv3_output(pruned, x)
    measured = float((zd - zp).pow(2).sum() / zd.pow(2).sum())
    second = choice.info["layers"][1]
    assert second["layer"] == "conv2"
    assert second["refit_error"] == pytest.approx(measured, rel=1e-6, abs=1e-9)


def test_the_same_seed_gives_the_same_picks_and_another_seed_other_positions():
    settings = gp.LocalSettings(positions=3, calibration_images=24, chunk=7)
    widths = {"3": 3, "6": 4}
    runs = [_run(_chain(), "greedy-local-refit", widths, settings, seed=s)[0] for s in (0, 0, 1)]
    assert runs[0].kept == runs[1].kept
    for a, b in zip(runs[0].weights.values(), runs[1].weights.values()):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b) for a, b in zip(runs[0].weights.values(), runs[2].weights.values())
    )


def test_spilling_to_disk_changes_nothing():
    widths = {"3": 4, "6": 3}
    mem = _run(
        _chain(), "greedy-local-omp", widths, gp.LocalSettings(calibration_images=24, chunk=5)
    )[0]
    disk = _run(
        _chain(),
        "greedy-local-omp",
        widths,
        gp.LocalSettings(calibration_images=24, chunk=5, memory_budget=1),
    )[0]
    assert mem.kept == disk.kept
    for a, b in zip(mem.weights.values(), disk.weights.values()):
        assert torch.equal(a, b)


def test_the_cache_holds_one_stream_within_its_budget_and_frees_everything():
    """The store never holds more than its budget in memory and ends empty; with room for all,
    it holds the inputs, the targets and one stream at a time (the stream at the next position
    takes the memory of the one it was computed from), never two streams."""
    model = _chain()
    groups = gp.find_prunable_groups(model, torch.zeros(1, 3, 8, 8), residual=False)
    n, P = 24, 10
    inputs = n * 3 * 8 * 8 * 4
    targets = n * P * (10 + 6) * 4  # consumers "6" (10 outputs) and "9" (6), float32
    largest = n * 12 * 8 * 8 * 4  # conv "3"'s output: the largest tensor at any position
    for budget in (1 << 30, 3000):
        settings = gp.LocalSettings(
            positions=P, calibration_images=n, chunk=5, memory_budget=budget
        )
        request = gp.SelectionRequest(
            model=copy.deepcopy(model),
            example=torch.zeros(1, 3, 8, 8),
            groups=groups,
            widths={"3": 4, "6": 3},
            generator=torch.Generator().manual_seed(0),
            data=_data(n),
            options={"local": settings},
        )
        run = _Run(request, settings, "greedy-local-omp")
        run.run()
        assert run.store.used == 0
        assert 0 < run.store.peak <= min(budget, inputs + targets + largest)


def test_swaps_never_raise_the_refit_criterion():
    widths = {"3": 3, "6": 3}
    plain = _run(_chain(2), "greedy-local-omp", widths, gp.LocalSettings(calibration_images=24))[0]
    swapped = _run(
        _chain(2), "greedy-local-omp", widths, gp.LocalSettings(calibration_images=24, swaps=4)
    )[0]
    for a, b in zip(plain.info["layers"][:1], swapped.info["layers"][:1]):
        assert b["criterion_error"] <= a["criterion_error"] + 1e-12


def test_calibration_images_are_spread_over_the_classes_and_seeded():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 5 + [3] * 15)
    idx = calibration_indices(labels, 20, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels[idx], minlength=4).tolist()
    assert counts == [5, 5, 5, 5]
    assert idx == calibration_indices(labels, 20, torch.Generator().manual_seed(0))
    assert idx != calibration_indices(labels, 20, torch.Generator().manual_seed(1))
    idx = calibration_indices(labels, 40, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[idx], minlength=4).tolist() == [12, 12, 5, 11]
    with pytest.raises(ValueError, match="more than the training split holds"):
        calibration_indices(labels, 101, torch.Generator())


@pytest.mark.parametrize(
    "change, word",
    [
        ({"positions": 0}, "positions"),
        ({"calibration_images": 0}, "calibration_images"),
        ({"swaps": -1}, "swaps"),
        ({"ridge": -1.0}, "ridge"),
        ({"ridge": float("nan")}, "ridge"),
        ({"memory_budget": 0}, "memory_budget"),
    ],
)
def test_bad_settings_are_one_line_naming_the_setting(change, word):
    settings = gp.LocalSettings(**change)
    with pytest.raises(ValueError, match=word):
        check_local(settings, "greedy-local-refit")


def test_methods_and_consumers_the_refit_cannot_handle_are_refused():
    with pytest.raises(ValueError, match="swaps need a refit criterion"):
        check_local(gp.LocalSettings(swaps=1), "greedy-local")
    model = _chain()
    model[9] = nn.Conv2d(10, 6, 1, groups=2)  # a grouped consumer
    grouped = [gp.PrunableGroup("6", 10, ["6"], ["9"])]
    with pytest.raises(ValueError, match="groups=2"):
        _run(
            model, "greedy-local", {"6": 4}, gp.LocalSettings(calibration_images=24), groups=grouped
        )
    resnet = gp.build_model("resnet18", 10)
    ex = torch.zeros(1, 3, 16, 16)
    stream = [g for g in gp.find_prunable_groups(resnet, ex) if len(g.consumers) > 1][:1]
    with pytest.raises(ValueError, match="residual-stream"):
        _run(resnet, "greedy-local", {stream[0].name: 4}, gp.LocalSettings(), groups=stream)


def test_every_internal_group_of_real_networks_is_selected_and_cut():
    """ResNet (basic and bottleneck middles) and MobileNetV2 expansions: every group cut to its
    width, the pruned network's MACs those the widths predict."""
    for arch in ("resnet18", "mobilenet_v2"):
        model = gp.build_model(arch, 10).eval()
        ex = torch.zeros(1, 3, 16, 16)
        groups = gp.find_prunable_groups(model, ex, residual=False)
        widths = {g.name: max(1, g.n_channels // 3) for g in groups}
        data = TensorDataset(torch.randn(6, 3, 16, 16), torch.zeros(6, dtype=torch.long))
        request = gp.SelectionRequest(
            model, ex, groups, widths, torch.Generator().manual_seed(0), data=data,
            options={"local": gp.LocalSettings(calibration_images=6, positions=2)},
        )  # fmt: skip
        choice = gp.select_channels("greedy-local-omp", request)
        assert {k: len(v) for k, v in choice.kept.items()} == widths
        macs = gp.MacsModel(gp.profile_layers(model, ex), groups).macs(widths)
        gp.apply_choice(model, ex, groups, choice)
        assert gp.count_macs(model, ex) == macs
        assert all(r["refit_error"] <= r["fixed_error"] + 1e-9 for r in choice.info["layers"])


def test_local_methods_are_registered_selection_methods():
    assert set(LOCAL) <= set(gp.SELECTION_METHODS)
    assert set(LOCAL) == set(gp.LOCAL_METHODS)
    assert list(itertools.islice(gp.SELECTION_METHODS, 1)) == ["greedy"]


# -- prune --objective local -----------------------------------------------------------------------
LOCAL_ARGV = ["prune", "--arch", "resnet18", "--data", "synthetic", "--image-size", "16"]
LOCAL_ARGV += ["--train-epochs", "0.05", "--target-macs", "0.8", "--finetune-epochs", "0.05"]
LOCAL_ARGV += ["--objective", "local", "--calibration-images", "24", "--positions", "3"]
LOCAL_ARGV += ["--method", "greedy-local-omp", "--no-progress"]


def test_prune_local_end_to_end_resumes_and_repeats(tmp_path, capsys):
    import json

    import pandas as pd

    from greedyprune.cli import main

    out = tmp_path / "a"
    assert main([*LOCAL_ARGV, "--out", str(out)]) == 0, capsys.readouterr().err
    layers = pd.read_csv(out / "layers.csv")
    assert list(layers.columns) == [
        "layer", "channels", "kept", "rows", "criterion_error", "fixed_error", "refit_error",
        "swaps", "pass_s", "select_s",
    ]  # fmt: skip
    assert (layers["refit_error"] <= layers["fixed_error"] + 1e-9).all()
    # 3 positions per image, or all of them where the consumer's output is smaller (1x1 at 16 px)
    assert layers["rows"].tolist() == [72] * 4 + [24] * 4
    config = json.loads((out / "config.json").read_text())
    assert config["objective"] == "local" and config["local"]["method"] == "greedy-local-omp"
    assert "memory_budget" not in config["local"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["macs"] <= summary["macs_target"]
    # the same command in another folder gives the same picks; a finished run redoes nothing
    again = tmp_path / "b"
    assert main([*LOCAL_ARGV, "--out", str(again), "--memory-budget", "1"]) == 0
    kept = [json.loads((d / "pruned.json").read_text())["kept"] for d in (out, again)]
    assert kept[0] == kept[1]
    before = (out / "model.safetensors").read_bytes()
    assert main([*LOCAL_ARGV, "--out", str(out)]) == 0
    assert (out / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--positions", "0"], ["--positions=0", "int >= 1"]),
        (["--swaps", "-1"], ["--swaps=-1"]),
        (["--ridge", "nan"], ["--ridge=nan"]),
        (["--ridge", "-1"], ["--ridge=-1"]),
        (["--calibration-images", "100000"], ["--calibration-images=100000", "training split"]),
        (["--memory-budget", "0"], ["--memory-budget"]),
        (["--recipe", "authors"], ["--objective local", "authors"]),
        (["--method", "greedy"], ["--method='greedy' must be one of 'greedy-local'"]),
        (["--method", "greedy-local", "--swaps", "1"], ["swaps need a refit criterion"]),
    ],
)
def test_bad_local_input_is_one_line_before_any_folder(tmp_path, capsys, extra, words):
    from greedyprune.cli import main

    out = tmp_path / "r"
    assert main([*LOCAL_ARGV, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    assert not out.exists()


def test_local_flags_under_the_global_objective_are_refused(tmp_path, capsys):
    from greedyprune.cli import main

    argv = ["prune", "--arch", "resnet18", "--data", "synthetic", "--target-macs", "0.8"]
    assert main([*argv, "--positions", "4", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--positions: only with --objective local" in err
    assert not (tmp_path / "r").exists()


def test_compare_needs_internal_groups_for_local_methods_in_one_line(tmp_path, capsys):
    from greedyprune.cli import main

    argv = ["compare", "--arch", "resnet18", "--data", "synthetic", "--out", str(tmp_path / "r")]
    for extra, words in (
        (["--methods", "greedy,greedy-local"], "--groups internal"),
        (["--calibration-images", "8"], "--calibration-images: only with --groups internal"),
        (["--groups", "internal", "--methods", "osscar", "--positions", "0"], "positions=0"),
    ):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
        assert not (tmp_path / "r").exists()


def test_compare_runs_local_and_global_methods_on_the_internal_groups(tmp_path, capsys):
    """With --groups internal, every method prunes the internal groups to the same widths: the
    local methods (calibration set and refit) beside the others, at equal MACs; the folder's
    config says so, and the run resumes without redoing a unit."""
    import json

    import pandas as pd

    from greedyprune.cli import main

    out = tmp_path / "r"
    argv = ["compare", "--arch", "resnet18", "--data", "synthetic", "--image-size", "16"]
    argv += ["--train-epochs", "0.05", "--finetune-epochs", "0.05", "--out", str(out)]
    argv += ["--methods", "greedy-local-refit,thinet,l1", "--groups", "internal"]
    argv += ["--calibration-images", "16", "--positions", "3", "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    df = pd.read_csv(out / "results.csv").set_index("method")
    assert set(df.index) == {"greedy-local-refit", "thinet", "l1"}
    assert df["macs"].nunique() == 1 and (df["macs"] < df["macs_full"]).all()
    config = json.loads((out / "config.json").read_text())
    assert config["groups"] == "internal" and config["local"]["calibration_images"] == 16
    before = (out / "results.csv").read_bytes()
    assert main(argv) == 0
    assert (out / "results.csv").read_bytes() == before


def test_the_peers_choose_what_their_slow_references_choose():
    """ThiNet: backward removal by the dense-weight error; OSSCAR: backward removal by the full
    refit's error, then swaps to a better (or equal) set; CP: the LASSO's support at the width."""
    from test_select_gram import (
        _backward_reference,
        _fixed_error,
        _full_error,
        _problem,
        _scalar_error,
    )

    from greedyprune.prune._local import CRITERIA
    from greedyprune.select import PatchGram, channel_gram, lasso_support

    X, W, Z, _A, acc = _problem(seed=13)
    G, b = channel_gram(acc.H, acc.U, W)
    s = gp.LocalSettings(ridge=0.0)
    # ThiNet on a target the dense weights do not fit (each output rescaled), where the error with
    # the dense weights and the one with a refitted scale per channel rank removals differently
    X2, W2, Z2, A2, _ = _problem(seed=19)
    Z2 = Z2 * torch.linspace(-1.0, 2.0, Z2.shape[1], dtype=Z2.dtype)
    acc2 = PatchGram(7, 3, 5)
    acc2.update(X2, Z2)
    G2, b2 = channel_gram(acc2.H, acc2.U, W2)
    keep, crit, _ = CRITERIA["thinet"].choose(acc2, G2, b2, 3, s)
    assert keep == _backward_reference(lambda S: _fixed_error(A2, Z2, S), 7, 3)
    assert keep != _backward_reference(lambda S: _scalar_error(A2, Z2, S), 7, 3)
    assert crit == pytest.approx(_scalar_error(A2, Z2, keep) / acc2.const, rel=1e-9)
    keep, crit, swaps = CRITERIA["osscar"].choose(acc, G, b, 3, s)
    backward = _backward_reference(lambda S: _full_error(X, Z, S), 7, 3)
    assert _full_error(X, Z, keep) <= _full_error(X, Z, backward) * (1 + 1e-9)
    assert crit == pytest.approx(_full_error(X, Z, keep) / acc.const, rel=1e-9)
    if swaps == 0:
        assert keep == backward
    keep, crit, _ = CRITERIA["cp"].choose(acc, G, b, 4, s)
    assert keep == lasso_support(G, b, 4)


@hyp_settings(max_examples=40, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    size=st.tuples(st.integers(5, 9), st.integers(5, 9)),
    seed=st.integers(0, 2**16),
)
def test_sampled_patches_are_the_unfolded_columns_at_those_positions(
    kernel, stride, padding, dilation, size, seed
):
    """The consumer's patch gather (only the sampled positions, from the padded input) equals
    F.unfold's columns at the same output positions, channel-major then kernel row and column."""
    conv = nn.Conv2d(4, 3, kernel, stride=stride, padding=padding, dilation=dilation)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, *size, generator=g)
    cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # [B, CK, L]
    L = cols.shape[2]
    pos = torch.stack([torch.randperm(L, generator=g)[: min(4, L)] for _ in range(2)])
    ref = cols.gather(2, pos.unsqueeze(1).expand(2, cols.shape[1], pos.shape[1]))
    ref = ref.permute(0, 2, 1).reshape(-1, 4, kernel[0] * kernel[1])
    got = _Consumer("c", conv, conv, torch.ones(3)).patches(x, pos)
    assert torch.equal(got, ref)
