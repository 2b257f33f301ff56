"""The ImageNet path at test size: a generated ImageNet-layout folder of JPEGs, the authors' recipe,
the tolerance rule's evaluation set, the pre-check, whole-layer restore, chunked passes, and the
checks that run before a run folder is written."""

import json

import pytest
import torch
import torchvision
from torch import nn

import greedyprune.prune as gp
from greedyprune.cli import main
from greedyprune.select import StackedObjective, greedy_select

N_CLASSES = 5


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    return gp.write_image_folder(root, n_classes=N_CLASSES, n_train=8, n_val=2, size=40)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=N_CLASSES).state_dict(), path)
    return path


def _fails(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err


def test_eval_set_spreads_over_every_class(folder):
    train, _, n_classes = gp.load_data(f"folder:{folder}", 16)
    labels = gp.labels_of(train)
    # the folder is sorted by class: the first n images would all be class 0
    assert labels[:8].unique().tolist() == [0]
    for idx in (
        gp.eval_indices(len(train), n_eval=N_CLASSES),
        gp.eval_indices(len(train), every=8),
        gp.eval_indices(len(train), n_eval=13),
    ):
        assert gp.class_count(labels[idx]) == n_classes
    assert gp.eval_indices(40, every=8) == [0, 8, 16, 24, 32]
    assert gp.eval_indices(40, n_eval=3) == [0, 13, 26]
    assert gp.eval_indices(5, n_eval=9) == [0, 1, 2, 3, 4]


def test_recipe_resolution():
    r = gp.resolve_recipe("authors", candidates=8)
    assert r.candidates == 8 and r.tol == 0.02 and r.precheck == 0.95
    assert (r.eval_every, r.n_eval) == (200, None)
    assert r.between.momentum == 0 and r.between.schedule == "constant" and r.between.decay_all
    assert r.final.epochs == 150 and r.final.batch_size == 256 and r.final.label_smoothing == 0.1
    # a count replaces the stride and the reverse
    assert gp.resolve_recipe("authors", n_eval=400).eval_every is None
    assert gp.resolve_recipe("default", eval_every=10).n_eval is None
    # None is a value (no tolerance), UNSET keeps the recipe's
    assert gp.resolve_recipe("authors", tol=None).tol is None
    assert gp.resolve_recipe("authors", tol=gp.UNSET).tol == 0.02
    assert gp.resolve_recipe("authors", finetune_epochs=1).final.epochs == 1
    with pytest.raises(ValueError, match="recipe='bogus'"):
        gp.resolve_recipe("bogus")


def test_prune_folder_with_the_authors_recipe(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "run"
    argv = ["prune", "--arch", "resnet18", "--data", f"folder:{folder}", "--out", str(out)]
    argv += ["--weights", str(checkpoint), "--image-size", "32", "--recipe", "authors"]
    argv += ["--candidates", "2", "--batch-size", "4", "--n-eval", "10", "--target-macs", "0.6"]
    argv += ["--between-epochs", "0.1", "--finetune-epochs", "0.1", "--finetune-batch-size", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "eval set" in printed and "10 images over 5 classes" in printed
    assert not printed.lstrip().startswith("{")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "authors"
    assert summary["eval_classes"] == N_CLASSES and summary["n_eval"] == 10
    assert summary["macs"] <= 0.6 * summary["macs_full"] * 1.02
    recipe = json.loads((out / "config.json").read_text())["recipe"]
    # explicit flags override the recipe, the rest is the authors'
    assert recipe["candidates"] == 2 and recipe["batch_size"] == 4 and recipe["n_eval"] == 10
    assert recipe["tol"] == 0.02 and recipe["precheck"] == 0.95
    assert recipe["crop_scale"] == [0.2, 1.0]
    assert recipe["between"]["epochs"] == 0.1 and recipe["between"]["momentum"] == 0.0
    assert recipe["final"]["batch_size"] == 8 and recipe["final"]["lr"] == 0.1
    model, _ = gp.load_pruned(out)
    assert gp.count_macs(model, torch.zeros(1, 3, 32, 32)) == summary["macs"]


def test_bad_input_is_caught_before_the_run_folder(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "run"
    base = ["prune", "--data", f"folder:{folder}", "--out", str(out), "--image-size", "32"]
    ok = [*base, "--arch", "resnet18", "--weights", str(checkpoint)]
    with pytest.raises(SystemExit) as exc:
        main([*ok, "--recipe", "bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--recipe" in err and "authors" in err
    # a checkpoint of another architecture, or of another class count
    other = tmp_path / "other.pth"
    torch.save(torchvision.models.resnet34(num_classes=N_CLASSES).state_dict(), other)
    _fails(capsys, [*base, "--arch", "resnet18", "--weights", str(other), "--tol", "0.1"], "fit")
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet18(num_classes=N_CLASSES + 1).state_dict(), wrong)
    _fails(capsys, [*base, "--arch", "resnet18", "--weights", str(wrong), "--tol", "0.1"], "fit")
    # a MACs target below what one channel per group costs
    _fails(capsys, [*ok, "--target-macs", "1K"], "smallest reachable")
    _fails(capsys, [*ok, "--target-macs", "0.5", "--amp", "bf16"], "CUDA")
    _fails(capsys, [*ok, "--target-macs", "0.5", "--n-eval", "0"], "--n-eval=0")
    assert not out.exists()
    # a folder with no images, and a folder with an unreadable one
    empty = tmp_path / "empty"
    for split in ("train", "val"):
        (empty / split / "a").mkdir(parents=True)
    _fails(capsys, [*ok[:2], f"folder:{empty}", *ok[3:], "--tol", "0.1"], "no usable images")
    broken = gp.write_image_folder(tmp_path / "broken", n_classes=2, n_train=2, n_val=1, size=16)
    bad = broken / "train" / "n1" / "bad.JPEG"
    bad.write_bytes(b"not a jpeg at all")
    _fails(capsys, [*ok[:2], f"folder:{broken}", *ok[3:], "--tol", "0.1"], "bad.JPEG")
    assert not out.exists()
    # the corrected command runs in the same place
    assert main([*ok, "--tol", "0.9", "--n-eval", "5", "--candidates", "2"]) == 0


class _Recorder:
    """Records the batch sizes a module sees."""

    def __init__(self, module: nn.Module):
        self.sizes = []
        module.register_forward_pre_hook(lambda m, args: self.sizes.append(args[0].shape[0]))


def _small_cnn(n_classes=3):
    torch.manual_seed(0)
    # the stem (0) and the head's group (6) stay whole: one prunable group, "3"
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, n_classes),
    ).eval()


def _data(n, seed=0):
    """Images whose class is the colour channel with the largest mean: learnable, not trivial."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    return x, x.mean((2, 3)).argmax(1)


@pytest.fixture(scope="module")
def trained_state():
    model = _small_cnn().train()
    x, y = _data(256, seed=5)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval().state_dict()


def test_every_pass_is_chunked():
    model = _small_cnn()
    rec = _Recorder(model[0])
    x, y = _data(6)
    ex, ey = _data(50, seed=1)
    gp.greedy_prune(
        model,
        lambda: (x, y),
        x[:1],
        tol=0.0,
        eval_data=(ex, ey),
        eval_chunk=7,
        candidates=2,
        widths={"3": 4},
    )
    # the stem sees the evaluation set 7 images at a time, never all 50 (nor 14 or more)
    assert max(rec.sizes) == 7 and rec.sizes.count(1) >= 1


def test_precheck_skips_full_evaluations_and_whole_layers_are_restored(trained_state):
    x, y = _data(12)
    ex, ey = _data(40, seed=1)
    records, wholes = {}, set()
    for tol, precheck in [(0.2, None), (0.2, 0.95), (0.0, None)]:
        model = _small_cnn()
        model.load_state_dict(trained_state)
        calls = []
        gm, res = gp.greedy_prune(
            model,
            lambda: (x, y),
            x[:1],
            tol=tol,
            eval_data=(ex, ey),
            precheck=precheck,
            candidates=None,
            between_layers=calls.append,
        )
        (layer,) = res.layers
        records[tol, precheck] = layer
        if len(layer.kept) == layer.n_channels:
            # every channel selected: restored whole, no gate, no between-layer step
            assert gm.gates[layer.name].value is None and calls == []
            wholes.add(True)
        else:
            assert gm.gates[layer.name].value is not None and len(calls) == 1
            assert layer.acc_after >= (1 - tol) * layer.acc_before
            wholes.add(False)
        if precheck is None:
            # without the pre-check the evaluation set is measured after every step
            assert layer.full_evaluations == len(layer.order)
    assert wholes == {True, False}, "both branches must be exercised"
    with_check = records[0.2, 0.95]
    assert with_check.full_evaluations < len(with_check.order)


@pytest.mark.parametrize("streamed", [False, True])
def test_cached_evaluations_equal_streamed_ones(trained_state, streamed):
    """The group's evaluation-set activations kept in memory give the same top-1 at every step,
    hence the same picks and stops, as streaming the images through the whole model; the
    streamed set is read once per group when they fit, and at every evaluation when they do
    not (a budget smaller than one chunk)."""
    x, y = _data(12)
    ex, ey = _data(40, seed=1)
    layers, passes = {}, {}
    for budget in (0, 1 << 30, 200):
        model = _small_cnn()
        model.load_state_dict(trained_state)
        passes[budget] = 0

        def stream(budget=budget):
            passes[budget] += 1
            return zip(ex.split(16), ey.split(16))

        _, res = gp.greedy_prune(
            model,
            lambda: (x, y),
            x[:1],
            tol=0.2,
            eval_data=stream if streamed else (ex, ey),
            precheck=None,
            candidates=None,
            eval_cache_bytes=budget,
        )
        (layers[budget],) = res.layers
    ref = layers[0]
    assert ref.full_evaluations >= 2 and ref.acc_after < ref.acc_before
    for budget in (1 << 30, 200):
        got = layers[budget]
        assert got.order == ref.order and got.kept == ref.kept
        assert (got.acc_before, got.acc_after) == (ref.acc_before, ref.acc_after)
        assert got.full_evaluations == ref.full_evaluations
    if streamed:
        assert passes[0] == passes[200] == 1 + ref.full_evaluations
        assert passes[1 << 30] == 1


def test_channels_last_selects_the_same_channels(trained_state):
    """NHWC memory (``--channels-last``, faster convolutions on CPUs and GPUs) changes neither the
    scores' ranking nor the tolerance rule: the same picks, stops and top-1 as NCHW."""
    x, y = _data(12)
    ex, ey = _data(40, seed=1)
    layers = {}
    for nhwc in (False, True):
        model = _small_cnn().double()
        model.load_state_dict(trained_state)
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        model.to(memory_format=fmt)
        xs, exs = (t.double().contiguous(memory_format=fmt) for t in (x, ex))
        _, res = gp.greedy_prune(
            model, lambda xs=xs: (xs, y), xs[:1], tol=0.2, eval_data=(exs, ey), candidates=3
        )
        (layers[nhwc],) = res.layers
    assert layers[True].order == layers[False].order
    assert layers[True].acc_after == layers[False].acc_after
    assert len(layers[False].order) >= 2


def test_tolerance_reached_stops_the_layer():
    x, y = _data(12)
    ex, ey = _data(40, seed=1)
    model = _small_cnn()
    _, res = gp.greedy_prune(
        model, lambda: (x, y), x[:1], tol=0.99, eval_data=(ex, ey), candidates=None
    )
    (layer,) = res.layers
    # with a 99% tolerance the first step's accuracy is enough unless it is zero
    assert layer.acc_after >= 0.01 * layer.acc_before
    assert len(layer.order) == 1 or layer.acc_before == 0


class _Spy(StackedObjective):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen = []

    def losses(self, candidates=None):
        self.seen.append(None if candidates is None else candidates.tolist())
        return super().losses(candidates)


def test_lowest_index_candidate_order():
    values = torch.linspace(-1, 1, 10)[
        torch.randperm(10, generator=torch.Generator().manual_seed(0))
    ]
    obj = _Spy(
        torch.zeros(1, 1),
        lambda xs, gates: xs + (gates @ values).unsqueeze(1),
        lambda out, t: (out - 0.3).pow(2).sum(1),
        10,
    )
    sel = greedy_select(obj, 5, replacement=False, candidates=3, candidate_order="lowest-index")
    taken = []
    for seen, pick in zip(obj.seen, sel.order.tolist()):
        open_ = [i for i in range(10) if i not in taken]
        assert seen == open_[:3]
        assert pick in seen
        taken.append(pick)
    obj.reset()
    with pytest.raises(ValueError, match="candidate_order"):
        greedy_select(obj, 2, candidates=3, candidate_order="first")
