"""Deep experiments end to end in a tiny setting: records, reproducibility, resume, data, CLI."""

import random

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import DEEP_TINY

from greedyprune.cli import main
from greedyprune.runs import RunDir
from greedyprune.sims import deep as dx
from greedyprune.sims.deep import deep_teacher, digits_data, load_data, mnist1d_data

TINY = DEEP_TINY


# Every tensor here is tiny: one torch thread (see conftest's one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _strip(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in df.columns if c != "seconds"]
    return df[cols].sort_values(["unit", "method", "n"]).reset_index(drop=True)


def test_rate_records_are_tidy_and_reproducible():
    dx.PRETRAINED.clear()
    a = dx.rate_experiment(TINY, 0, "greedy_local")
    dx.PRETRAINED.clear()
    b = dx.rate_experiment(TINY, 0, "greedy_local")
    assert [r["n"] for r in a] == list(TINY.sizes)
    for ra, rb in zip(a, b):
        ra.pop("seconds"), rb.pop("seconds")
        assert ra == rb
    c = dx.rate_experiment(TINY, 1, "greedy_local")
    assert a[0]["loss_train"] != c[0]["loss_train"]
    # with replacement greedy never keeps more distinct neurons than steps
    assert all(r["kept"] <= TINY.depth * r["n"] for r in a)


def test_gd_scratch_has_the_stated_width():
    recs = dx.rate_experiment(TINY, 0, "gd_scratch")
    assert [r["widths"] for r in recs] == ["2-2", "4-4", "8-8"]


def test_run_resumes_after_an_interruption(tmp_path, monkeypatch):
    full = dx.run_deep(TINY, (0,), tmp_path / "a", n_boot=50)[0]
    real = dx.finetune_experiment

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dx.experiments, "finetune_experiment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dx.run_deep(TINY, (0,), tmp_path / "b", n_boot=50)
    partial = pd.read_csv(tmp_path / "b/results.csv")
    assert "tiny/seed0/finetune" not in set(partial["unit"])
    monkeypatch.setattr(dx.experiments, "finetune_experiment", real)
    ran = []
    resumed = dx.run_deep(TINY, (0,), tmp_path / "b", log=ran.append, n_boot=50)[0]
    assert len(ran) == 1 and "finetune" in ran[0]
    pd.testing.assert_frame_equal(_strip(resumed), _strip(full))
    ran.clear()
    dx.run_deep(TINY, (0,), tmp_path / "b", log=ran.append, n_boot=50)
    assert ran == []
    with pytest.raises(ValueError, match="other settings"):
        dx.run_deep(TINY, (0, 1), tmp_path / "b")


def _slow_forward(net, x: np.ndarray) -> np.ndarray:
    """The defining formula in numpy, one layer at a time: ``h_1 = act(W_0 x + b_0)``,
    ``h_{l+1} = act(W_l h_l / N_l + b_l)``, output ``W_L h_L / N_L`` (no output bias)."""
    act = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}[net.activation]
    w = [p.detach().numpy() for p in net.weights]
    b = [p.detach().numpy() for p in net.biases]
    out = []
    for xj in x:
        h = act(w[0] @ xj + b[0])
        for l in range(1, len(b)):
            h = act(w[l] @ h / h.size + b[l])
        out.append(w[-1] @ h / h.size)
    return np.array(out)


def test_discrepancy_is_the_distance_to_the_full_network_on_the_training_inputs():
    """``discrepancy = (1/m) sum_j ||f(x_j) - f_N(x_j)||^2 / 2``, recomputed with a slow forward
    pass for the random-weight start and for random subsets (the verdicts are checked end to end
    in test_verdicts_e2e.py). Tolerance: two float64 forward passes of a width-12 net agree to
    ~1e-15 relative; 1e-9 is rounding margin, far below the factor a wrong formula makes."""
    data, big, init = dx.pretrain_deep(TINY, 0)
    x, y = data.x_train.numpy(), data.y_train.numpy()
    f_big = _slow_forward(big, x)

    def disc(net) -> float:
        return float(0.5 * ((_slow_forward(net, x) - f_big) ** 2).sum(1).mean())

    ref = {r["method"]: r for r in dx.reference_experiment(TINY, 0)}
    assert ref["random_init"]["discrepancy"] == pytest.approx(disc(init), rel=1e-9)
    assert ref["full"]["loss_train"] == pytest.approx(
        float(0.5 * ((f_big - y) ** 2).sum(1).mean()), rel=1e-9
    )
    for rec in dx.rate_experiment(TINY, 0, "random_subset"):
        sub = dx.select_subnetwork(TINY, "random_subset", rec["n"], data, big, init, 0).network
        assert sub.widths == [rec["n"]] * TINY.depth  # without replacement: n distinct per layer
        assert rec["discrepancy"] == pytest.approx(disc(sub), rel=1e-9)
        assert rec["discrepancy"] > 0


def test_setting_validation_names_the_field():
    with pytest.raises(ValueError, match="data="):
        dx.DeepSetting(data="cifar")
    with pytest.raises(ValueError, match="exceed width"):
        dx.DeepSetting(width=8, sizes=(4, 16))
    with pytest.raises(ValueError, match="unknown methods"):
        dx.DeepSetting(methods=("greedy_local", "oracle"))
    with pytest.raises(ValueError, match="preset="):
        dx.deep_preset("huge")


# -- data ----------------------------------------------------------------------------------------


def test_teacher_data_is_seeded_and_shaped():
    a, b = deep_teacher(20, 4, m_test=10, seed=3), deep_teacher(20, 4, m_test=10, seed=3)
    assert a.x_train.shape == (20, 4) and a.y_train.shape == (20, 1) and a.x_test.shape == (10, 4)
    assert torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_train, deep_teacher(20, 4, m_test=10, seed=4).y_train)


def test_mnist1d_is_generated_offline_and_leaves_global_rngs_alone():
    np.random.seed(123)  # noqa: NPY002
    random.seed(5)
    before = (np.random.rand(), random.random())  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(5)
    ds = mnist1d_data(num_samples=200, seed=1)
    after = (np.random.rand(), random.random())  # noqa: NPY002
    assert before == after
    assert ds.x_train.shape == (160, 40) and ds.x_test.shape == (40, 40)
    assert ds.y_train.dtype == torch.long and int(ds.y_train.max()) <= 9
    again = mnist1d_data(num_samples=200, seed=1)
    assert torch.equal(ds.x_train, again.x_train)


def test_digits_split_is_standardised_on_the_training_part():
    ds = digits_data(seed=0, dtype=torch.float64)
    assert ds.x_train.shape[1] == 64 and ds.x_train.shape[0] + ds.x_test.shape[0] == 1797
    torch.testing.assert_close(ds.x_train.mean(0), torch.zeros(64, dtype=torch.float64))
    with pytest.raises(ValueError, match="test_fraction"):
        digits_data(test_fraction=1.5)
    with pytest.raises(ValueError, match="data='cifar'"):
        load_data("cifar")


# -- command line --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--preset", "huge"],
        ["--data", "cifar"],
        ["--seeds", "a,b"],
        ["--device", "nonsense"],
    ],
)
def test_cli_errors_are_one_line_and_exit_2(argv, capsys):
    try:
        code = main(["verify", "deep", *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("greedyprune: error:") and len(err.splitlines()) == 1


def test_cli_refuses_a_folder_with_other_settings(tmp_path, capsys):
    RunDir(tmp_path, {"kind": "two-layer"}).append("u", [{"n": 1}])  # a run with a result
    assert main(["verify", "deep", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings" in err and len(err.splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cli_asks_for_a_missing_gpu(tmp_path, capsys):
    assert main(["verify", "deep", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_seeds_a_generator_cannot_take_are_refused_before_the_folder(tmp_path):
    """A seed list is checked as seeds (ints in 0..2^63-1, each once), not cast with int(): 2.7
    ran as seed 2 and -1 reached torch, which refuses it only when the unit runs."""
    from greedyprune.errors import GreedypruneError
    from greedyprune.sims.deep.presets import deep_preset, run_deep, study

    setting, _ = deep_preset("quick")
    for bad in ([2.7], [-1], ["a"]):
        with pytest.raises(GreedypruneError, match=r"^seeds\[0\]="):
            run_deep(setting, bad, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert study(setting, [1, 1, 0]).config["seeds"] == [1, 0]
