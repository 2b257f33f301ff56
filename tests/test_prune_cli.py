"""greedyprune prune / compare: bad input gives one line and exit code 2; tiny end-to-end runs."""

import csv
import json

import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

import greedyprune.prune as gp
from greedyprune.cli import main
from greedyprune.prune import _finetune, _greedy_prune, _io

TINY = ["--image-size", "16", "--train-epochs", "0.05"]


def _fails(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def test_unknown_arch(capsys, tmp_path):
    argv = ["prune", "--arch", "resnet19", "--data", "digits", "--target-macs", "0.5"]
    _fails(
        capsys,
        [*argv, "--out", str(tmp_path / "r")],
        "arch='resnet19'",
        "resnet18",
    )
    assert not (tmp_path / "r").exists()


def test_missing_data_path(capsys, tmp_path):
    argv = ["prune", "--arch", "resnet18", "--data", f"folder:{tmp_path}/none"]
    _fails(capsys, [*argv, "--out", str(tmp_path / "r"), "--tol", "0.02"], "does not exist")
    (tmp_path / "img" / "train").mkdir(parents=True)
    argv = ["compare", "--arch", "resnet18", "--data", f"folder:{tmp_path}/img"]
    _fails(capsys, [*argv, "--out", str(tmp_path / "r")], "val")


def test_target_above_model_macs(capsys, tmp_path):
    argv = ["prune", "--arch", "resnet18", "--data", "digits", "--out", str(tmp_path / "r")]
    _fails(capsys, [*argv, "--target-macs", "5G"], "above", "MACs")
    _fails(capsys, [*argv, "--target-macs", "lots"], "220M")
    assert not (tmp_path / "r").exists()


def test_corrupt_checkpoint_and_weight_names(capsys, tmp_path):
    bad = tmp_path / "ckpt.pth"
    bad.write_bytes(b"\x80\x04garbage")
    argv = ["prune", "--arch", "resnet18", "--data", "digits", "--out", str(tmp_path / "r")]
    _fails(capsys, [*argv, "--tol", "0.02", "--weights", str(bad)], "not a readable checkpoint")
    _fails(capsys, [*argv, "--tol", "0.02", "--weights", "IMAGENET1K_V1"], "download")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    _fails(
        capsys,
        [*argv, "--tol", "0.02", "--weights", str(tmp_path / "other.pth")],
        "does not fit",
    )


def test_bad_method_and_missing_stop(capsys, tmp_path):
    argv = ["compare", "--arch", "resnet18", "--data", "digits", "--out", str(tmp_path / "r")]
    _fails(capsys, [*argv, "--methods", "greedy,oracle"], "oracle")
    argv = ["prune", "--arch", "resnet18", "--data", "digits", "--out", str(tmp_path / "r")]
    _fails(capsys, argv, "--target-macs")


def _files(folder):
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in folder.rglob("*") if f.is_file()}


class _Calls:
    """Wraps ``module.name`` (where the jobs look it up) and counts its calls; ``before`` runs
    first with the call count and may raise (an interruption)."""

    def __init__(self, monkeypatch, module, name, before=None):
        self.n, self.before, real = 0, before, getattr(module, name)

        def wrapper(*args, **kwargs):
            self.n += 1
            if self.before is not None:
                self.before(self.n)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)


def _interrupt(n):
    raise KeyboardInterrupt


def test_prune_end_to_end_and_resume(capsys, monkeypatch, tmp_path):
    out = tmp_path / "run"
    argv = ["prune", "--arch", "resnet18", "--data", "synthetic", "--out", str(out), *TINY]
    argv += ["--tol", "0.9", "--n-eval", "8", "--candidates", "2", "--batch-size", "2"]
    argv += ["--finetune-epochs", "0.05"]
    # First run: interrupted in the fine-tuning that follows the selection (the selection, like
    # the base model's training, is done by then).
    with monkeypatch.context() as m:
        select = _Calls(m, _greedy_prune, "greedy_prune")
        _Calls(m, _finetune, "finetune", before=lambda n: select.n and _interrupt(n))
        assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    assert select.n == 1
    assert not (out / "summary.json").exists()
    interrupted = _files(out)
    # Second run with the same settings: the selected model is loaded, not selected again, and
    # every file the first run left (base model, selection, layer table) is reused byte for byte.
    with monkeypatch.context() as m:
        select = _Calls(m, _greedy_prune, "greedy_prune")
        assert main(argv) == 0
    assert select.n == 0
    after = _files(out)
    # the training checkpoints (model + optimizer, only for resuming) are removed once finished
    assert "base-train.pt" in interrupted
    assert not {"base-train.pt", "finetune.pt"} & set(after)
    for name, data in interrupted.items():
        if not name.endswith(".pt"):
            assert after.get(name) == data, f"{name} was rewritten on resume"
    first = json.loads((out / "summary.json").read_text())
    model, record = gp.load_pruned(out)
    assert record["macs"] == first["macs"] == gp.count_macs(model, torch.zeros(1, 3, 16, 16))
    assert first["macs"] < first["macs_full"]
    layers = pd.read_csv(out / "layers.csv")
    assert (layers["kept"] <= layers["channels"]).all()
    # A finished run started again redoes nothing: no selection, no training, every file unchanged.
    with monkeypatch.context() as m:
        select = _Calls(m, _greedy_prune, "greedy_prune")
        tune = _Calls(m, _finetune, "finetune")
        assert main(argv) == 0
    assert select.n == 0 and tune.n == 0
    assert _files(out) == after
    # --keep-checkpoints keeps them
    kept = tmp_path / "kept"
    assert main([*argv[:6], str(kept), *argv[7:], "--keep-checkpoints"]) == 0
    assert {"base-train.pt", "finetune.pt"} <= set(_files(kept))
    # Other settings in the same folder are refused.
    _fails(capsys, [*argv[:-1], "0.1"], "other settings")


def _rows(path):
    """results.csv as {unit: the row's text, byte for byte}."""
    lines = path.read_text().splitlines()
    col = next(csv.reader(lines[:1])).index("unit")
    return {next(csv.reader([line]))[col]: line for line in lines[1:]}


# What a compare run folder holds (as in the runs made before compare used greedyprune.study).
COMPARE_CONFIG = [
    "arch",
    "candidates",
    "data",
    "finetune_epochs",
    "finetune_lr",
    "greedy_batch",
    "image_size",
    "job",
    "loss",
    "train_epochs",
    "uniform_epochs",
    "weights",
]
COMPARE_COLUMNS = [
    "arch",
    "method",
    "target",
    "seed",
    "macs_target",
    "macs",
    "macs_full",
    "macs_fraction",
    "params",
    "acc_full",
    "acc_pruned",
    "acc_finetuned",
    "latency_ms",
    "latency_full_ms",
    "select_s",
    "finetune_s",
    "base_hash",
    "unit",
]


def test_compare_equal_macs_and_resume(capsys, monkeypatch, tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", "--arch", "mobilenet_v3_small", "--data", "synthetic", "--out", str(out)]
    argv += [*TINY, "--methods", "l1,taylor,bn,random,uniform", "--target-macs", "0.7"]
    argv += ["--finetune-epochs", "0.05", "--seeds", "0,1"]
    base = out / "base.safetensors"
    # First run: the third unit is interrupted while it trains (after the base model is trained).
    trained = {"units": 0}

    def third_unit_interrupted(n):
        if base.is_file():
            trained["units"] += 1
            if trained["units"] == 3:
                raise KeyboardInterrupt

    with monkeypatch.context() as m:
        _Calls(m, _finetune, "finetune", before=third_unit_interrupted)
        assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    finished = _rows(out / "results.csv")
    assert len(finished) == 2
    base_bytes = base.read_bytes()
    # Second run: only the eight unfinished units run; the finished rows are kept byte for byte.
    with monkeypatch.context() as m:
        calls = _Calls(m, _finetune, "finetune")
        assert main(argv) == 0
    assert calls.n == 8
    assert "uniform" in capsys.readouterr().out
    rows = _rows(out / "results.csv")
    assert len(rows) == 10
    for unit, line in finished.items():
        assert rows[unit] == line, f"finished unit {unit} was redone or rewritten"
    assert base.read_bytes() == base_bytes
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 10 and df["unit"].is_unique
    # The folder's format is that of the runs made before compare ran on greedyprune.study (their
    # config.json, columns and unit names), so such a run resumes: nothing is renamed or redone.
    assert sorted(json.loads((out / "config.json").read_text())) == sorted(COMPARE_CONFIG)
    assert list(df.columns) == COMPARE_COLUMNS
    assert set(rows) == {
        f"{m}-0.7-s{s}" for m in ("l1", "taylor", "bn", "random", "uniform") for s in (0, 1)
    }
    # Equal widths for every method: one MACs count per target.
    assert df["macs"].nunique() == 1
    assert (df["macs"] <= df["macs_target"]).all()
    assert (df["macs"] >= 0.98 * df["macs_target"]).all()
    # A finished run started again loads and trains nothing and leaves the results as they were.
    results = (out / "results.csv").read_bytes()
    with monkeypatch.context() as m:
        calls = _Calls(m, _finetune, "finetune")
        loads = _Calls(m, _io, "load_state")
        assert main(argv) == 0
    assert calls.n == 0 and loads.n == 0
    assert (out / "results.csv").read_bytes() == results


def test_parse_macs():
    assert gp.parse_macs("220M", 314_000_000) == 220_000_000
    assert gp.parse_macs("50%", 1000) == 500
    assert gp.parse_macs(0.25, 1000) == 250
    assert gp.parse_macs("1.5k", 2000) == 1500
    for bad in ("0", "-1", "x"):
        with pytest.raises(ValueError, match="target_macs"):
            gp.parse_macs(bad, 1000)


def test_finetune_resume_matches_uninterrupted(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(40, 3, 8, 8, generator=g), torch.randint(0, 3, (40,)))

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.BatchNorm2d(4),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 36, 3),
        )

    a = net()
    gp.finetune(a, data, epochs=3, lr=0.1, batch_size=8, generator=5)

    class Interrupting(torch.utils.data.Dataset):
        """The same samples; raises during the third epoch (40 samples per epoch)."""

        def __init__(self):
            self.reads = 0

        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            self.reads += 1
            if self.reads > 85:
                raise KeyboardInterrupt
            return data[i]

    b = net()
    ckpt = tmp_path / "ft.pt"
    with pytest.raises(KeyboardInterrupt):
        gp.finetune(b, Interrupting(), epochs=3, lr=0.1, batch_size=8, generator=5, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    c = net()
    gp.finetune(c, data, epochs=3, lr=0.1, batch_size=8, generator=5, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3
    for pa, pc in zip(a.state_dict().values(), c.state_dict().values()):
        torch.testing.assert_close(pa, pc)


def test_param_groups_no_decay_on_bn_and_bias():
    model = gp.build_model("resnet18", 10)
    decay, no_decay = gp.param_groups(model, 1e-4)
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0


def test_baseline_channels_widths_and_reproducibility():
    model = gp.build_model("resnet18", 10)
    example = torch.zeros(1, 3, 32, 32)
    groups = gp.find_prunable_groups(model, example)
    widths = {g.name: max(1, g.n_channels // 3) for g in groups}
    batch = (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    for method in gp.BASELINES:
        kept = gp.baseline_channels(
            method,
            model,
            example,
            groups,
            widths,
            batch=batch,
            generator=torch.Generator().manual_seed(0),
        )
        again = gp.baseline_channels(
            method,
            model,
            example,
            groups,
            widths,
            batch=batch,
            generator=torch.Generator().manual_seed(0),
        )
        assert kept == again
        assert {k: len(v) for k, v in kept.items()} == widths
    # l1 on a group with one conv producer: the filters with the largest L1 norms, in a group
    # whose only other members (batch norm and the consumer's input slice) are scored too; check
    # that the chosen set is exactly the top by Torch-Pruning's group score recomputed by hand.
    g0 = groups[0]
    mods = dict(model.named_modules())
    bn = mods[g0.name.replace("conv1", "bn1")]
    w1 = mods[g0.name].weight.detach().abs().flatten(1).sum(1)
    w2 = mods[g0.consumers[0]].weight.detach().abs().transpose(0, 1).flatten(1).sum(1)
    score = (w1 + bn.weight.detach().abs() + w2) / 3
    top = sorted(
        sorted(range(g0.n_channels), key=lambda i: (-float(score[i]), i))[: widths[g0.name]]
    )
    kept = gp.baseline_channels("l1", model, example, groups[:1], widths)
    assert kept[g0.name] == top


def _image_folder(root, classes, per_class, sizes=((40, 30), (24, 36))):
    """An ImageNet-layout folder of real PNG files with solid colours (one colour per class)."""
    from PIL import Image

    for split in ("train", "val"):
        for k, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                w, h = sizes[i % len(sizes)]
                Image.new("RGB", (w, h), (80 * k, 255 - 80 * k, 40 * i)).save(d / f"{i}.png")


def test_folder_data_loads_an_imagenet_layout(tmp_path):
    _image_folder(tmp_path / "img", ["cat", "dog", "emu"], per_class=2)
    train, val, n_classes = gp.load_data(f"folder:{tmp_path / 'img'}", 16)
    assert n_classes == 3 and len(train) == 6 and len(val) == 6
    for ds in (train, val):
        x, y = ds[3]
        assert tuple(x.shape) == (3, 16, 16) and x.dtype == torch.float32 and y == 1
    # The test transform is deterministic: a solid image stays solid after resize and crop.
    x, _ = val[0]
    assert torch.allclose(x, x[:, :1, :1].expand_as(x), atol=1e-5)
    (tmp_path / "img" / "val" / "emu").rename(tmp_path / "img" / "val" / "owl")
    with pytest.raises(ValueError, match="different class folders"):
        gp.load_data(f"folder:{tmp_path / 'img'}", 16)


def test_prune_runs_on_a_folder_with_a_local_checkpoint(capsys, tmp_path):
    _image_folder(tmp_path / "img", ["a", "b"], per_class=4)
    model = gp.build_model("resnet18", 2)
    torch.save(model.state_dict(), tmp_path / "ckpt.pth")
    out = tmp_path / "run"
    argv = [
        "prune",
        "--arch",
        "resnet18",
        "--data",
        f"folder:{tmp_path / 'img'}",
        "--out",
        str(out),
    ]
    argv += ["--weights", str(tmp_path / "ckpt.pth"), "--image-size", "16", "--target-macs", "0.1"]
    argv += ["--candidates", "4", "--batch-size", "4"]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["macs"] <= 0.1 * summary["macs_full"]
    assert (out / "model.safetensors").is_file() and (out / "pruned.json").is_file()


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        (["--tol", "2"], "--tol=2.0"),
        (["--tol", "0.02", "--batch-size", "0"], "--batch-size=0"),
        (["--tol", "0.02", "--train-epochs", "0"], "--train-epochs=0"),
        (["--tol", "0.02", "--device", "cuda"], "cuda"),
    ],
)
def test_bad_settings_fail_before_any_work(capsys, tmp_path, extra, word):
    if "cuda" in word and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    argv = ["prune", "--arch", "resnet18", "--data", "digits", "--out", str(tmp_path / "r")]
    _fails(capsys, [*argv, *extra], word)
    assert not (tmp_path / "r").exists()


PRUNE_BAD = {
    "recipe": "fastest",
    "seed": -1,
    "replacement": "no",
    "loss": "l2",
    "mode": "fast",
    "train_epochs": float("nan"),
    "local": "yes",
}


@pytest.mark.parametrize("name", sorted(PRUNE_BAD))
def test_prune_settings_name_each_bad_field_when_made(name, tmp_path):
    """PruneSettings checks every field when made; prune() given the field as a keyword refuses
    it the same way before the model is built or the folder made."""
    from greedyprune.errors import GreedypruneError

    with pytest.raises(GreedypruneError, match=rf"^{name}="):
        gp.PruneSettings(target_macs=0.5, **{name: PRUNE_BAD[name]})
    out = tmp_path / "r"
    with pytest.raises(GreedypruneError, match=rf"^{name}="):
        gp.prune("resnet18", "synthetic", out, target_macs=0.5, **{name: PRUNE_BAD[name]})
    assert not out.exists()


def test_prune_takes_settings_a_recipe_or_keywords_alike(tmp_path):
    from greedyprune.errors import GreedypruneError, GreedypruneTypeError

    with pytest.raises(
        GreedypruneTypeError, match=r"prune\(\) got unknown keywords \['candidats'\]"
    ):
        gp.prune("resnet18", "synthetic", tmp_path / "r", target_macs=0.5, candidats=3)
    with pytest.raises(GreedypruneError, match=r"pass target_macs=0\.5"):
        gp.PruneSettings()
    authors = gp.resolve_recipe("authors", candidates=4)
    st = gp.PruneSettings(recipe=authors, target_macs=0.5, seed=3)
    assert st.recipe is authors
    assert gp.PruneSettings(recipe="authors", target_macs=0.5).recipe is gp.RECIPES["authors"]
    # the config written is the settings' own, the recipe in full
    config = st.config("resnet18", "synthetic", None, 16)
    assert config["recipe"] == authors.as_dict() and config["seed"] == 3
    assert "objective" not in config  # local keys only for local runs (older folders match)
    g = st.greedy(1000, gp.Runtime(eval_cache_mb=2))
    assert (g.target_macs, g.candidates, g.tol, g.generator) == (1000, 4, authors.tol, 3)
    assert g.eval_cache_bytes == 2 << 20
