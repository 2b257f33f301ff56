"""compare's fine-tune against re-train methods: scratch-E, scratch-B, metapruner, the per-epoch
accuracy curves, resuming and the paired latency phase (tiny synthetic runs)."""

import json

import pandas as pd
import pytest
from safetensors.torch import load_file

import greedyprune.prune as gp
from greedyprune.cli import main
from greedyprune.prune import _finetune
from greedyprune.prune._width_rules import META_STEPS, SCRATCH_LR

FAKE_IMAGES = 1234  # what the stand-in greedy selection reports as images through the classifier
SETTINGS = {
    "targets": [0.5],
    "methods": ["scratch-E", "greedy", "scratch-B", "metapruner"],
    "seeds": [0],
    "image_size": 16,
    "train_epochs": 0.05,
    "finetune_epochs": 2,
    "curves": True,
    "latency_runs": 20,
    "progress": False,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run, interrupted in its second unit and resumed; greedy's selection is replaced by L1's
    channels (a real selection takes minutes) that report ``FAKE_IMAGES`` forward passes."""
    out = tmp_path_factory.mktemp("cmp") / "run"
    mp = pytest.MonkeyPatch()
    real_ft = _finetune.finetune
    l1 = gp.SELECTION_METHODS["l1"]

    def stand_in(request):
        request.on_images(FAKE_IMAGES)
        return l1.select(request)

    calls = []  # (conv1 weight when fine-tuning starts, epochs) per unit

    def finetune(model, *args, **kwargs):
        if "on_epoch" not in kwargs:  # the base model's training
            return real_ft(model, *args, **kwargs)
        calls.append((model.conv1.weight.detach().clone(), kwargs["epochs"]))
        if len(calls) == 2 and not first_done["resumed"]:
            raise KeyboardInterrupt
        return real_ft(model, *args, **kwargs)

    first_done = {"resumed": False}
    mp.setitem(gp.SELECTION_METHODS, "greedy", gp.MethodSpec("greedy", "stand-in", stand_in))
    mp.setattr(_finetune, "finetune", finetune)
    try:
        with pytest.raises(KeyboardInterrupt):
            gp.compare("resnet18", "synthetic", out, **SETTINGS)
        first = (out / "results.csv").read_text().splitlines()
        n_first = len(calls)
        first_done["resumed"] = True
        df = gp.compare("resnet18", "synthetic", out, **SETTINGS)
    finally:
        mp.undo()
    return {
        "out": out,
        "df": df.set_index("method"),
        "calls": calls,
        "n_first": n_first,
        "first": first,
    }


def test_resume_does_not_redo_finished_units(run):
    # the first call finished greedy (run first: scratch-B needs its count) and was stopped in
    # scratch-E; the second ran the three units left, and kept greedy's row as it was
    assert run["n_first"] == 2
    assert len(run["calls"]) == 2 + 3
    lines = (run["out"] / "results.csv").read_text().splitlines()
    assert lines[:2] == run["first"]
    assert sorted(run["df"].index) == sorted(SETTINGS["methods"])
    config = json.loads((run["out"] / "config.json").read_text())
    assert config["curves"] is True and config["scratch_lr"] == SCRATCH_LR
    assert config["metapruner_steps"] == META_STEPS


def test_scratch_e_trains_fresh_weights(run):
    base = load_file(str(run["out"] / "base.safetensors"))["conv1.weight"]
    # the calls of the second run: scratch-E, scratch-B, metapruner
    scratch_e, greedy = run["calls"][2][0], run["calls"][0][0]
    part = base[tuple(slice(0, d) for d in scratch_e.shape)]
    assert (scratch_e - part).abs().max() > 1e-3, "scratch-E starts from the base weights"
    # the fine-tuned methods start from them (the stem convolution keeps all its channels)
    part = base[tuple(slice(0, d) for d in greedy.shape)]
    assert greedy.shape == base.shape and (greedy - part).abs().max() == 0
    assert run["calls"][2][1] == SETTINGS["finetune_epochs"]


def test_scratch_b_budget_is_the_formula(run):
    df = run["df"]
    g, b = df.loc["greedy"], df.loc["scratch-B"]
    assert g["select_images"] == FAKE_IMAGES
    n_train = 512  # the synthetic training set
    e = SETTINGS["finetune_epochs"]
    s_epochs = FAKE_IMAGES / (3 * n_train)
    want = (SETTINGS["train_epochs"] * b["macs_full"] + s_epochs * b["macs_full"]) / b["macs"] + e
    assert b["epochs"] == pytest.approx(want, rel=1e-9)
    assert run["calls"][3][1] == pytest.approx(want, rel=1e-9)
    assert b["epochs"] > e


def test_curves_have_one_entry_per_epoch(run):
    df = run["df"]
    for method, row in df.iterrows():
        curve = json.loads(row["acc_curve"])
        assert len(curve) == -(-row["epochs"] // 1), method
        assert curve[-1] == row["acc_finetuned"], method
    assert len(json.loads(df.loc["greedy", "acc_curve"])) == SETTINGS["finetune_epochs"]


def test_metapruner_hits_the_macs_target(run):
    row = run["df"].loc["metapruner"]
    assert row["macs"] <= row["macs_target"]
    assert row["macs"] >= 0.97 * row["macs_target"]
    # its own widths: a different network from the planned one
    assert row["params"] != run["df"].loc["greedy", "params"]


def test_latency_phase_is_paired_with_enough_samples(run):
    lat = pd.read_csv(run["out"] / "latency.csv")
    assert set(lat["unit"]) == {"full"} | {f"{m}-0.5-s0" for m in SETTINGS["methods"]}
    assert (lat["runs"] >= 20).all()
    samples = pd.read_csv(run["out"] / "latency_samples.csv")
    assert (samples.groupby("unit").size() >= 20).all()
    assert (lat["q25_ms"] <= lat["median_ms"]).all() and (lat["median_ms"] <= lat["q75_ms"]).all()


@pytest.mark.parametrize(
    "extra, word",
    [
        (["--latency-runs", "-1"], "latency"),
        (["--methods", "scratch-B"], "greedy"),
        (["--methods", "greedy,scratch-C"], "scratch-C"),
    ],
)
def test_bad_new_options_fail_before_any_folder(capsys, tmp_path, extra, word):
    out = tmp_path / "r"
    argv = ["compare", "--arch", "resnet18", "--data", "synthetic", "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err, err
    assert not out.exists()
