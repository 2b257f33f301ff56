"""Every flag of every command, and every ``--set`` key of the studies, with its bad values (NaN,
inf, negative, zero where zero is not allowed, a wrong type), in-process through ``cli.main``:
exit 2, one line naming the flag or key, and no run folder. The flags and keys are read from the
parser and the setting classes, so a new one is walked without editing this file. A value that
passed every check would open the run folder; that is replaced by an exception here, so the walk
never runs a job. Per command, the corrected rerun in the same ``--out`` then runs for real (the
studies' units stubbed: the folder machinery is what is tested)."""

import argparse
import typing

import pandas as pd
import pytest

from greedyprune import runs
from greedyprune.cli import build_parser, main
from greedyprune.overrides import _fields
from greedyprune.prune.cli.prune import _LOCAL_FLAGS
from greedyprune.sims.deep import DeepSetting
from greedyprune.sims.deep import presets as deep_presets
from greedyprune.sims.two_layer import Setting
from greedyprune.sims.two_layer import presets as two_layer_presets

P = ["--arch", "resnet18", "--data", "synthetic", "--image-size", "16", "--target-macs", "0.5"]
P += ["--train-epochs", "0.05", "--no-progress"]
BASE = {
    "prune": ["prune", *P],
    "compare": ["compare", *P],
    "two-layer": ["verify", "two-layer", "--no-figures", "--no-progress"],
    "deep": ["verify", "deep", "--no-progress"],
    "two-layer-knee": ["verify", "two-layer-knee", "--no-progress"],
    "two-layer-budget": ["verify", "two-layer-budget", "--no-progress"],
}
# a local flag is walked where it applies (elsewhere it is refused for that alone)
LOCAL = {"prune": ["--objective", "local"], "compare": ["--groups", "internal"]}
BAD = ("nan", "inf", "-1", "0", "x")
# (command, flag or key, value) that are not bad, and why
ALLOWED = {
    ("prune", "--tol", "0"): "no drop in top-1 allowed",
    ("prune", "--between-epochs", "0"): "no fine-tuning between layers",
    ("prune", "--finetune-epochs", "0"): "no final fine-tuning",
    ("prune", "--seeds", "0"): "seed 0",
    ("prune", "--seed", "0"): "seed 0",
    ("compare", "--seeds", "0"): "seed 0",
    ("two-layer", "--seeds", "0"): "seed 0",
    ("deep", "--seeds", "0"): "seed 0",
    ("prune", "--workers", "0"): "images decoded in the main process",
    ("compare", "--workers", "0"): "images decoded in the main process",
    ("prune", "--eval-cache-mb", "0"): "the evaluation cache off",
    ("compare", "--latency-runs", "0"): "no latency phase",
    ("prune", "--ridge", "0"): "the plain least-squares refit",
    ("compare", "--ridge", "0"): "the plain least-squares refit",
    ("prune", "--swaps", "0"): "no swap search",
    ("compare", "--swaps", "0"): "no swap search",
    ("two-layer", "steps", "0"): "no pretraining: the random-weight network",
    ("two-layer", "delta", "0"): "classes not separated",
    ("two-layer", "noise", "0"): "noiseless labels",
    ("two-layer", "weight_decay", "0"): "no weight decay",
    ("two-layer", "init_b_std", "0"): "second-layer weights start at 0",
    ("deep", "steps", "0"): "no pretraining: the random-weight network",
    ("deep", "finetune_steps", "0"): "no fine-tuning",
}


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _commands():
    top = _subparsers(build_parser())
    verify = _subparsers(top["verify"])
    return {"prune": top["prune"], "compare": top["compare"]} | {
        name: verify[name] for name in BASE if name in verify
    }


def _flag_cases():
    for command, parser in _commands().items():
        names = parser.get_default("_flags")  # dest -> the flag messages name (an alias's twin)
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            flag = action.option_strings[-1]
            if flag in ("--help", "--out", "--set"):
                continue
            local = action.dest in _LOCAL_FLAGS and command in LOCAL
            base = [*BASE[command], *(LOCAL[command] if local else [])]
            for value in BAD:
                if (command, flag, value) not in ALLOWED:
                    argv = [*base, flag, value]
                    named = (flag, names.get(action.dest, flag))  # as typed, or as its twin
                    yield pytest.param(command, argv, named, id=f"{command}{flag}={value}")


def _set_values(tp) -> tuple[str, ...]:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    inner = args[0] if typing.get_origin(tp) is not tuple and args else tp
    if typing.get_origin(inner) is tuple:
        inner = typing.get_args(inner)[0]
    if inner is bool:
        return ("maybe", "2")
    if inner is str:
        return ("bogus",)
    if inner is int:
        return (*BAD, "1.5")
    return BAD


def _set_cases():
    for command, cls in (("two-layer", Setting), ("deep", DeepSetting)):
        for key, tp in _fields(cls).items():
            for value in _set_values(tp):
                if (command, key, value) not in ALLOWED:
                    argv = [*BASE[command], "--set", f"{key}={value}"]
                    named = (f"--set {key}",)
                    yield pytest.param(command, argv, named, id=f"{command}:{key}={value}")


class _Reached(Exception):
    """The run folder was about to be opened: every check had passed."""


@pytest.fixture
def no_run(monkeypatch):
    def refuse(*args, **kwargs):
        raise _Reached

    monkeypatch.setattr(runs.RunDir, "__init__", refuse)


def _walk(argv, words, tmp_path, capsys):
    out = tmp_path / "run"
    try:
        code = main([*argv, "--out", str(out)])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    except _Reached:
        pytest.fail(f"{' '.join(argv)}: accepted (add it to ALLOWED, with why, if it is valid)")
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("greedyprune: error: ") and err.count("\n") == 1, err
    assert any(w in err for w in words), err
    assert not out.exists()


@pytest.mark.parametrize(("command", "argv", "words"), list(_flag_cases()))
def test_every_flag_refuses_its_bad_values(command, argv, words, tmp_path, capsys, no_run):
    _walk(argv, words, tmp_path, capsys)


@pytest.mark.parametrize(("command", "argv", "words"), list(_set_cases()))
def test_every_set_key_refuses_its_bad_values(command, argv, words, tmp_path, capsys, no_run):
    _walk(argv, words, tmp_path, capsys)


def test_the_walk_covers_every_command_and_the_allowed_values_are_real():
    walked = {p.values[0] for p in [*_flag_cases(), *_set_cases()]}
    assert walked == set(BASE)
    flags = {(c, f) for c, f, _ in ALLOWED}
    known = {(p.values[0], p.values[1][-2]) for p in _flag_cases()}
    known |= {(p.values[0], p.values[2][0].removeprefix("--set ")) for p in _set_cases()}
    assert flags <= known, flags - known  # no stale entry


def _stub_units(monkeypatch):
    """The studies' units replaced by one trivial unit each (their real ones take minutes)."""
    import greedyprune.theory

    def two_layer_units(preset, seeds, device):
        row = dict(experiment="rate", method="greedy", n=1, seed=0, setting="interior", loss=1.0)
        yield ("fake/interior/0", lambda: [row])

    def deep_units(setting, seeds):
        row = dict(experiment="rate", method="greedy_local", n=2, seed=0, kept=2, loss_test=1)
        return [("teacher/seed0/fake", lambda device=None, progress=False: [row])]

    monkeypatch.setattr(two_layer_presets, "units", two_layer_units)
    monkeypatch.setattr(deep_presets, "units", deep_units)
    monkeypatch.setattr(greedyprune.theory, "check", lambda *a, **k: pd.DataFrame())


QUICK_LOCAL = ["--method", "greedy-local", "--calibration-images", "10", "--finetune-epochs", "0"]
CORRECTED = {
    "prune": (
        [*BASE["prune"], *LOCAL["prune"], *QUICK_LOCAL],
        ["--positions", "0"],
    ),
    "compare": (
        [*BASE["compare"], "--methods", "l1", "--finetune-epochs", "0.1"],
        ["--finetune-lr", "nan"],
    ),
    "two-layer": (BASE["two-layer"], ["--set", "noise=-1"]),
    "deep": ([*BASE["deep"], "--seeds", "0"], ["--set", "batch_size=0"]),
}


@pytest.mark.parametrize("command", list(CORRECTED))
def test_the_corrected_rerun_runs_in_the_same_folder(command, tmp_path, capsys, monkeypatch):
    _stub_units(monkeypatch)
    argv, bad = CORRECTED[command]
    out = ["--out", str(tmp_path / "run")]
    assert main([*argv, *bad, *out]) == 2
    assert not (tmp_path / "run").exists()
    capsys.readouterr()
    assert main([*argv, *out]) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "config.json").is_file()
