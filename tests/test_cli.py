"""The command line: usage errors are one line on stderr and exit code 2."""

import argparse
import subprocess
import sys

import pytest

from greedyprune.cli import build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("verify", "prune", "compare"):
        assert word in out


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["verify"], ["verify", "three-layer"]])
def test_usage_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("greedyprune: error:")
    assert len(err.splitlines()) == 1


def test_each_command_reaches_its_front_end():
    from greedyprune.prune.cli import compare as compare_cli
    from greedyprune.prune.cli import prune as prune_cli

    parser = build_parser()
    common = ["--arch", "resnet18", "--data", "digits"]
    args = parser.parse_args(["prune", *common, "--out", "r", "--candidates", "all"])
    assert args._run is prune_cli.run
    assert args.candidates is None and args.out == "r"
    args = parser.parse_args(
        ["compare", *common, "--out", "c", "--methods", "l1, bn", "--seeds", "0,2"]
    )
    assert args._run is compare_cli.run
    assert args.methods == ["l1", "bn"] and args.seeds == (0, 2)


def test_console_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "greedyprune.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0
    assert "greedyprune" in out.stdout


# -- one grammar for every subcommand ------------------------------------------------------------

SUBCOMMANDS = {
    ("verify", "two-layer"): [],
    ("verify", "deep"): [],
    ("prune",): ["--arch", "resnet18", "--data", "digits"],
    ("compare",): ["--arch", "resnet18", "--data", "digits"],
}


def _parsers(parser, path=()):
    """(command path, parser) for every parser under ``parser``, the top level included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _usage_error(argv, capsys):
    """The one-line usage error of ``argv``, from parsing alone (a missed error runs nothing)."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("greedyprune: error:") and len(err.splitlines()) == 1, err
    return err


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"greedyprune {version('greedyprune')}"
    out = subprocess.run(
        [sys.executable, "-m", "greedyprune", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.startswith("greedyprune "), out.stderr


def test_top_level_help_is_for_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "Thin" not in out and "front end" not in out
    assert "greedyprune COMMAND --help" in " ".join(out.split())


def test_every_flag_has_help_and_hidden_aliases_stay_hidden():
    seen = set()
    for path, parser in _parsers(build_parser()):
        seen.add(path)
        assert isinstance(parser.formatter_class, type)
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            assert action.help and action.help.strip(), (path, action.option_strings)
        assert "--greedy-batch" not in text and "--seed " not in text, path
    assert set(SUBCOMMANDS) <= seen


@pytest.mark.parametrize("path", sorted(SUBCOMMANDS))
def test_shared_flags_mean_the_same_everywhere(path):
    parser = build_parser()
    argv = [*path, *SUBCOMMANDS[path]]
    args = parser.parse_args(argv)
    assert args.device == "cpu" and args.progress is None and args.out is None
    args = parser.parse_args([*argv, "--device", "cuda:1", "--no-progress", "--out", "d"])
    assert args.device == "cuda:1" and args.progress is False and args.out == "d"
    assert parser.parse_args([*argv, "--progress"]).progress is True
    leaf = dict(_parsers(parser))[path]
    options = {o: a for a in leaf._actions for o in a.option_strings}
    assert isinstance(options["--progress"], argparse.BooleanOptionalAction)
    assert options["--out"].metavar == "DIR" and "default" in options["--out"].help
    help_ = " ".join(leaf.format_help().split())
    assert "where tensors live (default: cpu)" in help_
    assert "(default: on when stderr is a terminal)" in help_


@pytest.mark.parametrize("path", sorted(SUBCOMMANDS))
def test_bad_seeds_and_devices_are_usage_errors(path, capsys):
    argv = [*path, *SUBCOMMANDS[path]]
    for bad in (["--seeds", "a,b"], ["--seeds", "-1"], ["--device", "tpu"]):
        assert bad[0] in _usage_error([*argv, *bad], capsys)


def test_seeds_is_a_comma_list_on_every_subcommand(capsys):
    parser = build_parser()
    assert parser.parse_args(["verify", "two-layer", "--seeds", "0,1,2"]).seeds == (0, 1, 2)
    assert parser.parse_args(["verify", "deep", "--seeds", "2,0,2,1"]).seeds == (2, 0, 1)
    common = ["--arch", "resnet18", "--data", "digits"]
    assert parser.parse_args(["compare", *common, "--seeds", "0, 2,0"]).seeds == (0, 2)
    assert parser.parse_args(["compare", *common]).seeds == (0,)
    # prune takes one seed, with the same flag; the old --seed still works
    assert parser.parse_args(["prune", *common, "--seeds", "5"]).seeds == 5
    assert parser.parse_args(["prune", *common]).seeds == 0
    assert parser.parse_args(["prune", *common, "--seed", "4"]).seeds == 4
    err = _usage_error(["prune", *common, "--seeds", "0,1"], capsys)
    assert "--seeds" in err and "one seed" in err


def test_compare_batch_size_matches_prune():
    parser = build_parser()
    common = ["--arch", "resnet18", "--data", "digits"]
    assert parser.parse_args(["compare", *common]).batch_size == 8
    assert parser.parse_args(["compare", *common, "--batch-size", "4"]).batch_size == 4
    assert parser.parse_args(["compare", *common, "--greedy-batch", "3"]).batch_size == 3
    assert parser.parse_args(["prune", *common, "--batch-size", "4"]).batch_size == 4


def _verdicts(*verdicts):
    import pandas as pd

    return pd.DataFrame(
        {
            "claim": [f"claim{i}" for i in range(len(verdicts))],
            "setting": "interior",
            "predicted_slope": -1.0,
            "measured_slope": -0.9,
            "ci_low": -1.1,
            "ci_high": -0.7,
            "n_min": 30,
            "n_max": 300,
            "verdict": list(verdicts),
            "reason": "made up",
        }
    )


@pytest.mark.parametrize(
    "verdicts, strict, code",
    [
        (("holds", "fails"), True, 1),
        (("holds", "fails"), False, 0),
        (("holds", "inconclusive", "conditions not met"), True, 0),
        (("holds",), True, 0),
    ],
)
def test_two_layer_strict_exits_1_on_a_failing_claim(
    verdicts, strict, code, monkeypatch, tmp_path, capsys
):
    import pandas as pd

    from greedyprune.sims.two_layer import cli as two_layer_cli

    calls = []

    def fake(preset, out, **kwargs):
        calls.append(kwargs)
        return pd.DataFrame(), _verdicts(*verdicts)

    monkeypatch.setattr(two_layer_cli, "verify_two_layer", fake)
    argv = ["verify", "two-layer", "--out", str(tmp_path), "--no-figures"]
    assert main([*argv, *(["--strict"] if strict else [])]) == code
    assert calls[0]["progress"] is None and calls[0]["device"] == "cpu"
    out = capsys.readouterr().out
    assert "seeds: 0,1,2" in out  # the quick preset's, printed
    assert "fails" in out or "fails" not in verdicts


def test_two_layer_seeds_are_seeds_not_a_count(monkeypatch, tmp_path, capsys):
    import pandas as pd

    from greedyprune.sims.two_layer import cli as two_layer_cli

    calls = []
    monkeypatch.setattr(
        two_layer_cli,
        "verify_two_layer",
        lambda preset, out, **kw: calls.append(kw) or (pd.DataFrame(), _verdicts("holds")),
    )
    argv = ["verify", "two-layer", "--out", str(tmp_path), "--no-figures", "--no-progress"]
    assert main([*argv, "--seeds", "1,0"]) == 0
    assert calls[-1]["seeds"] == 2 and calls[-1]["progress"] is False
    assert "seeds: 0,1" in capsys.readouterr().out
    # the old count form means seed 3 alone, which this preset's library does not run: refused
    assert main([*argv, "--seeds", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("greedyprune: error: --seeds 3") and len(err.splitlines()) == 1
    assert len(calls) == 1


@pytest.mark.parametrize("strict, code", [(True, 1), (False, 0)])
def test_deep_strict_exits_1_on_a_failing_claim(strict, code, monkeypatch, tmp_path, capsys):
    import pandas as pd

    from greedyprune.sims.deep import presets as deep_presets

    summary = pd.DataFrame(
        {
            "experiment": "rate",
            "n": [4, 8],
            "method": "greedy",
            "mean": [0.5, 0.3],
            "metric": "loss",
        }
    )

    def fake(setting, seeds, out, **kwargs):
        assert seeds == (0, 2) and kwargs["progress"] is False
        return pd.DataFrame(), _verdicts("holds", "fails", "inconclusive"), summary

    monkeypatch.setattr(deep_presets, "run_deep", fake)
    argv = ["verify", "deep", "--out", str(tmp_path), "--seeds", "0,2", "--no-progress"]
    assert main([*argv, *(["--strict"] if strict else [])]) == code
    assert "fails" in capsys.readouterr().out


def test_library_errors_name_the_flags(capsys, tmp_path):
    out = str(tmp_path / "r")
    argv = ["prune", "--arch", "resnet18", "--data", "synthetic", "--out", out]
    assert main([*argv, "--tol", "0.02", "--n-eval", "0"]) == 2
    assert capsys.readouterr().err == "greedyprune: error: --n-eval=0 must be an int >= 1\n"
    argv = ["compare", "--arch", "resnet18", "--data", "synthetic", "--out", out]
    for flag in ("--batch-size", "--greedy-batch"):
        assert main([*argv, flag, "0"]) == 2
        assert capsys.readouterr().err == "greedyprune: error: --batch-size=0 must be an int >= 1\n"
    assert not (tmp_path / "r").exists()


def test_flag_message_rewrites_python_names_only():
    from greedyprune.cli import flag_message

    flags = {"n_eval": "--n-eval", "eval_every": "--eval-every", "tol": "--tol", "out": "--out"}
    assert flag_message("n_eval=0 must be an int >= 1", flags) == "--n-eval=0 must be an int >= 1"
    assert (
        flag_message("tol needs n_eval or eval_every: the images", flags)
        == "--tol needs --n-eval or --eval-every: the images"
    )
    assert flag_message("out='/a/n_eval/out=1' is bad", flags) == "--out='/a/n_eval/out=1' is bad"
    assert flag_message("toll=1 or tol_x", flags) == "toll=1 or tol_x"
    assert flag_message("pass --n-eval\nor not", flags) == "pass --n-eval or not"


def test_prune_out_has_a_default_like_compare(monkeypatch, tmp_path, capsys):
    from greedyprune.prune import _prune_job
    from greedyprune.prune import _recipes as gp_recipes

    calls = []
    summary = {
        "recipe": "default",
        "macs": 1e6,
        "macs_full": 2e6,
        "macs_fraction": 0.5,
        "params": 1e5,
        "acc_full": 0.9,
        "acc_pruned": 0.8,
        "acc_finetuned": 0.85,
        "n_eval": 10,
        "eval_classes": 10,
        "select_s": 1.0,
    }
    monkeypatch.setattr(_prune_job, "prune", lambda *a, **kw: calls.append((a, kw)) or summary)
    monkeypatch.chdir(tmp_path)
    argv = ["prune", "--arch", "resnet18", "--data", "digits", "--target-macs", "0.5"]
    assert main([*argv, "--seeds", "7"]) == 0
    (_, _, out, settings), kw = calls[0]
    assert out == "runs/prune-digits-resnet18" and kw["runtime"].device == "cpu"
    assert settings.seed == 7 and settings.recipe == gp_recipes.RECIPES["default"]
    assert "runs/prune-digits-resnet18/model.safetensors" in capsys.readouterr().out
