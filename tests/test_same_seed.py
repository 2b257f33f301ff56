"""The same seed gives the same result: two fresh runs of one command on a generated folder of
JPEGs (random crops and flips in training) write the same rows and the same weights; a run
interrupted and resumed equals one that was not, between units and inside fine-tuning; the base
model is initialised from the seed; a folder refuses to mix two base models, and rows that are
not a run's units."""

import pandas as pd
import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

import greedyprune.prune as gp
from greedyprune.errors import GreedypruneError
from greedyprune.prune import _finetune, _io
from greedyprune.prune._prepare import prepare

TIMING = ["select_s", "finetune_s", "latency_ms", "latency_full_ms"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return gp.write_image_folder(
        tmp_path_factory.mktemp("img"), n_classes=2, n_train=6, n_val=2, size=24
    )


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), path)
    return path


def _compare(folder, weights, out, **kw):
    return gp.compare(
        "resnet18",
        f"folder:{folder}",
        out,
        weights=str(weights),
        methods=["l1", "random"],
        targets=[0.5],
        seeds=[3],
        image_size=16,
        finetune_epochs=1,
        latency_runs=1,  # keeps every unit's weights in models/
        **kw,
    )


def _rows(out):
    return pd.read_csv(out / "results.csv").drop(columns=TIMING)


def _weights(out, unit):
    return load_file(str(out / "models" / f"{unit}.safetensors"))


def _same_weights(a, b, unit):
    wa, wb = _weights(a, unit), _weights(b, unit)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _global_random(req):
    """``random``'s picks from torch's global generator: a draw that takes no generator, as
    torchvision's crops and flips in a global selection's batches."""
    kept = {g.name: torch.randperm(g.n_channels)[: req.widths[g.name]] for g in req.groups}
    return gp.Choice({name: sorted(int(i) for i in k) for name, k in kept.items()})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, folder, weights):
    """Two fresh runs with the global generator in different states, and a third stopped in its
    second unit's fine-tuning and resumed; ``random`` draws from the global generator."""
    root = tmp_path_factory.mktemp("runs")
    real, calls = _finetune.finetune, []

    def stopped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        spec = gp.MethodSpec("random", "global draws", _global_random)
        mp.setitem(gp.SELECTION_METHODS, "random", spec)
        torch.manual_seed(1)
        _compare(folder, weights, root / "a")
        torch.manual_seed(2)
        _compare(folder, weights, root / "b")
        mp.setattr(_finetune, "finetune", stopped)
        with pytest.raises(KeyboardInterrupt):
            _compare(folder, weights, root / "c")
        assert len(pd.read_csv(root / "c" / "results.csv")) == 1
        torch.randn(1000)  # the global generator moves on before the rerun
        _compare(folder, weights, root / "c")
    return root


def test_two_fresh_runs_write_the_same_rows_and_weights(runs):
    pd.testing.assert_frame_equal(_rows(runs / "a"), _rows(runs / "b"))
    for unit in ("l1-0.5-s3", "random-0.5-s3"):
        assert _same_weights(runs / "a", runs / "b", unit), unit
    assert _rows(runs / "a")["base_hash"].nunique() == 1


def test_a_resumed_run_equals_an_uninterrupted_one(runs):
    pd.testing.assert_frame_equal(_rows(runs / "a"), _rows(runs / "c"))
    for unit in ("l1-0.5-s3", "random-0.5-s3"):
        assert _same_weights(runs / "a", runs / "c", unit), unit


def test_a_folder_refuses_a_second_base_model(folder, weights, tmp_path):
    w, out = tmp_path / "w.pth", tmp_path / "run"
    w.write_bytes(weights.read_bytes())
    kw = {"weights": str(w), "seeds": [3], "image_size": 16, "finetune_epochs": 0.1}
    gp.compare("resnet18", f"folder:{folder}", out, methods=["l1"], **kw)
    with torch.random.fork_rng():  # the file behind --weights changes
        torch.manual_seed(5)
        torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), w)
    with pytest.raises(GreedypruneError, match=r"results.csv' line 2 holds results of base model"):
        gp.compare("resnet18", f"folder:{folder}", out, methods=["random"], **kw)
    assert len(pd.read_csv(out / "results.csv")) == 1


class _Small(nn.Module):
    """A network with batch norm and dropout: both draw in training."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 2))

    def forward(self, x):
        return self.head(self.body(x))


def _train(train, checkpoint=None):
    torch.manual_seed(0)
    model = _Small()
    torch.randn(int(torch.randint(1, 100, (1,))))  # the global generator anywhere
    kw = {"epochs": 3, "batch_size": 4, "generator": 7, "checkpoint": checkpoint}
    _finetune.finetune(model, train, **kw)
    return model


def test_fine_tuning_stopped_after_an_epoch_resumes_as_if_not(folder, tmp_path):
    train, _, _ = gp.load_data(f"folder:{folder}", 16)
    whole = _train(train)
    real, saves = _finetune._save_checkpoint, []

    def save_then_stop(*args):
        real(*args)
        saves.append(1)
        if len(saves) == 1:
            raise KeyboardInterrupt

    ckpt = tmp_path / "finetune.pt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_finetune, "_save_checkpoint", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            _train(train, ckpt)
        torch.rand(17)
        resumed = _train(train, ckpt)
    assert len(saves) == 3  # epoch 1 saved before the stop, epochs 2 and 3 after
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_base_model_is_initialised_from_the_seed():
    def base(seed):
        torch.randn(int(torch.randint(1, 100, (1,))))
        prep = prepare("resnet18", "synthetic", 16, None, "cpu", [0.5], seed=seed)
        return _io.state_hash(prep.model)

    assert base(4) == base(4) != base(5)


def test_rows_of_units_not_the_runs_are_refused(tmp_path):
    from greedyprune.study import Study, run_study

    def study(belongs=None):
        units = lambda _d: [(f"u{i}", lambda i=i: [{"x": i}]) for i in range(2)]  # noqa: E731
        return Study(name="s", config={"k": 1}, units=units, belongs=belongs)

    run_study(study(), tmp_path)
    text = (tmp_path / "results.csv").read_text()
    (tmp_path / "results.csv").write_text(text + "7,u9\n")
    with pytest.raises(GreedypruneError, match=r"results.csv' line 4 holds unit 'u9'"):
        run_study(study(), tmp_path)
    # a study whose units vary between calls says which ids are its own
    run_study(study(belongs=lambda u: u.startswith("u")), tmp_path)


def _truncated(tmp_path):
    """A folder whose last training image is cut to 80% of its bytes (the header reads; decoding
    fails), the image and its whole bytes."""
    folder = gp.write_image_folder(tmp_path / "img", n_classes=2, n_train=4, n_val=1, size=24)
    image = sorted((folder / "train").rglob("*.JPEG"))[-1]
    whole = image.read_bytes()
    image.write_bytes(whole[: int(0.8 * len(whole))])
    return folder, image, whole


def test_a_truncated_image_is_named_and_the_run_resumes_once_fixed(tmp_path, weights, capsys):
    from greedyprune.cli import main

    folder, image, whole = _truncated(tmp_path)
    out = tmp_path / "run"
    argv = ["compare", "--arch", "resnet18", "--data", f"folder:{folder}", "--out", str(out)]
    argv += ["--weights", str(weights), "--image-size", "16", "--methods", "l1,random"]
    argv += ["--finetune-epochs", "0.5", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and image.name in err and "cannot be decoded" in err, err
    image.write_bytes(whole)
    assert main(argv) == 0
    assert sorted(pd.read_csv(out / "results.csv")["method"]) == ["l1", "random"]


def test_a_loader_worker_names_the_image_in_one_line(tmp_path):
    from torch.utils.data import DataLoader

    folder, image, _ = _truncated(tmp_path)
    train, _, _ = gp.load_data(f"folder:{folder}", 16)
    with pytest.raises(GreedypruneError) as exc:
        list(DataLoader(train, batch_size=2, num_workers=1))
    text = str(exc.value)  # raised again in this process: the worker's own line, no traceback
    assert image.name in text and "cannot be decoded" in text and "\n" not in text, text


def test_a_checkpoint_of_another_model_is_refused_naming_it(folder, tmp_path):
    """A ``finetune.pt`` with the right keys and other shapes (another run's) is one error naming
    the file, not a traceback from ``load_state_dict``."""
    train, _, _ = gp.load_data(f"folder:{folder}", 16)
    other, ckpt = _Small(), tmp_path / "finetune.pt"
    other.head[2] = nn.Linear(4, 3)
    _finetune.finetune(other, train, epochs=1, batch_size=4, checkpoint=ckpt)
    with pytest.raises(GreedypruneError, match=r"finetune.pt' does not fit the model"):
        _finetune.finetune(_Small(), train, epochs=2, batch_size=4, checkpoint=ckpt)


def test_two_fresh_prune_runs_pick_and_train_the_same(folder, weights, tmp_path):
    """Global greedy on the folder (its step batches are random crops and flips), then
    fine-tuning: two fresh runs, the global generator elsewhere each time, keep the same channels
    and end with the same weights and summary (its seconds aside)."""
    import json

    from greedyprune.cli import main

    argv = ["prune", "--arch", "resnet18", "--data", f"folder:{folder}", "--weights", str(weights)]
    argv += ["--image-size", "16", "--target-macs", "0.1", "--candidates", "2", "--batch-size"]
    argv += ["2", "--finetune-epochs", "0.5", "--seeds", "4", "--no-progress"]
    outs = []
    for k in (1, 2):
        torch.manual_seed(k)
        assert main([*argv, "--out", str(tmp_path / f"r{k}")]) == 0
        outs.append(tmp_path / f"r{k}")
    a, b = (json.loads((o / "pruned.json").read_text()) for o in outs)
    assert a["kept"] == b["kept"]
    assert {k: v for k, v in a.items() if k != "select_s"} == {
        k: v for k, v in b.items() if k != "select_s"
    }
    wa, wb = (load_file(str(o / "model.safetensors")) for o in outs)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
