"""Settings checked before anything is written: each bad value is one line naming its flag, exit
2, and no run folder (a corrected rerun in the same ``--out`` is then not refused as "other
settings"). The cases are the reproductions that used to be caught only after ``config.json``
(or not at all: a traceback), run in-process through ``cli.main``."""

import pytest

from greedyprune.cli import main

P = ["--arch", "resnet18", "--data", "synthetic", "--image-size", "16", "--target-macs", "0.5"]
P += ["--train-epochs", "0.05", "--no-progress"]
CASES = {
    "prune-finetune-lr": (["prune", *P, "--finetune-lr", "-1"], "--finetune-lr=-1.0"),
    "prune-precheck": (["prune", *P, "--precheck", "nan"], "--precheck=nan"),
    "prune-between-lr": (["prune", *P, "--recipe", "authors", "--between-lr", "0"], "--between-lr"),
    "prune-train-epochs": (["prune", *P, "--train-epochs", "inf"], "--train-epochs=inf"),
    "prune-finetune-epochs": (["prune", *P, "--finetune-epochs", "inf"], "--finetune-epochs=inf"),
    "prune-image-size": (["prune", *P, "--image-size", "100000"], "--image-size=100000"),
    "prune-seed": (["prune", *P, "--seeds", str(10**20)], "--seeds"),
    "prune-googlenet": (["prune", *P, "--arch", "googlenet"], "--arch='googlenet'"),
    "prune-vit": (["prune", *P, "--arch", "vit_b_16"], "--arch='vit_b_16'"),
    "prune-shufflenet": (["prune", *P, "--arch", "shufflenet_v2_x0_5"], "torch-pruning"),
    "prune-squeezenet-16px": (["prune", *P, "--arch", "squeezenet1_1"], "--image-size=16"),
    "compare-finetune-lr": (["compare", *P, "--finetune-lr", "nan"], "--finetune-lr=nan"),
    "compare-seed": (["compare", *P, "--seeds", f"0,{2**63}"], "--seeds"),
    "two-layer-noise": (["verify", "two-layer", "--set", "noise=-1"], "noise=-1.0"),
    "two-layer-decay": (["verify", "two-layer", "--set", "weight_decay=-1"], "weight_decay=-1.0"),
    "two-layer-width": (["verify", "two-layer", "--set", f"width={10**13}"], "fits in memory"),
    "deep-batch": (["verify", "deep", "--set", "batch_size=0"], "batch_size=0"),
    "deep-teacher": (["verify", "deep", "--set", "teacher_widths=0"], "teacher_widths[0]=0"),
    "deep-candidates": (["verify", "deep", "--set", "global_candidates=0"], "global_candidates=0"),
    "deep-width": (["verify", "deep", "--set", f"width={10**10}"], "fits in memory"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_value_is_one_line_before_any_folder(case, tmp_path, capsys):
    argv, words = CASES[case]
    out = tmp_path / "run"
    try:
        code = main([*argv, "--out", str(out)])
    except SystemExit as exc:  # argparse's own refusals (--seeds)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("greedyprune: error: ") and err.count("\n") == 1, err
    assert words in err
    assert not out.exists()


def test_the_recipe_takes_what_greedy_prune_takes():
    """The recipe's ranges are greedy_prune's: tol in [0, 1) (0: no drop allowed), precheck in
    (0, 1]; a recipe refusing tol=0 would break a run the selection itself accepts."""
    from greedyprune.errors import GreedypruneError
    from greedyprune.prune import resolve_recipe

    assert resolve_recipe("authors", tol=0.0).tol == 0.0
    assert resolve_recipe("authors", precheck=1.0).precheck == 1.0
    for bad in (dict(tol=1.0), dict(tol=-0.1), dict(precheck=0.0), dict(finetune_lr=0.0)):
        with pytest.raises(GreedypruneError):
            resolve_recipe("authors", **bad)


def test_files_the_user_names_are_one_line_each(tmp_path, capsys):
    """A config file that is not UTF-8, and a data folder with one class: one line naming it."""
    import torch
    import torchvision

    import greedyprune.prune as gp

    config = tmp_path / "bad.toml"
    config.write_bytes(b"\xff\xfe m = 4\n")
    out = tmp_path / "run"
    assert main(["verify", "two-layer", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--config" in err and "UTF-8" in err, err
    folder = gp.write_image_folder(tmp_path / "img", n_classes=1, n_train=2, n_val=1, size=16)
    weights = tmp_path / "w.pth"
    torch.save(torchvision.models.resnet18(num_classes=1).state_dict(), weights)
    argv = ["prune", "--arch", "resnet18", "--data", f"folder:{folder}", "--weights", str(weights)]
    assert main([*argv, "--target-macs", "0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 class folder" in err and str(folder) in err, err
    assert not out.exists()
