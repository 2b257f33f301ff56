"""One error type for bad input (``greedyprune.errors``), its checkers, and where it is raised."""

import ast
import importlib.metadata
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import greedyprune
from greedyprune import errors
from greedyprune.errors import (
    GreedypruneError,
    GreedypruneTypeError,
    check_bool,
    check_choice,
    check_device,
    check_int,
    check_number,
    check_path,
    check_range,
    check_seeds,
    check_type,
)

PACKAGE = Path(greedyprune.__file__).parent
# Every error the package raises for a caller's value is GreedypruneError (ValueError/TypeError
# from torch, pandas and the like still reach the CLI as bad input until Part 2 narrows it).
MIGRATED = sorted(PACKAGE.rglob("*.py"))  # every module of the package


def _refused(call, *args, **kwargs) -> GreedypruneError:
    with pytest.raises(GreedypruneError) as info:
        call(*args, **kwargs)
    return info.value


def test_the_error_types_are_value_and_type_errors():
    assert issubclass(GreedypruneError, ValueError)
    assert issubclass(GreedypruneTypeError, GreedypruneError)
    assert issubclass(GreedypruneTypeError, TypeError)
    assert greedyprune.GreedypruneError is GreedypruneError


@given(
    st.integers(-(2**70), 2**70),
    st.one_of(st.none(), st.integers(-50, 50)),
    st.one_of(st.none(), st.integers(-50, 50)),
)
def test_check_int_takes_exactly_the_ints_in_bounds(value, low, high):
    inside = (low is None or value >= low) and (high is None or value <= high)
    if inside:
        assert check_int("n", value, minimum=low, maximum=high) == value
    else:
        exc = _refused(check_int, "n", value, minimum=low, maximum=high)
        assert not isinstance(exc, TypeError)
        assert str(exc).startswith(f"n={value} must be an int") and exc.name == "n"


@pytest.mark.parametrize("value", [True, 1.0, "3", None, np.float64(2.0)])
def test_check_int_refuses_other_types_as_type_errors(value):
    exc = _refused(check_int, "width", value, minimum=1)
    assert isinstance(exc, TypeError)
    assert str(exc) == f"width={value!r} must be an int >= 1"


def test_check_int_takes_numpy_ints():
    assert check_int("n", np.int64(3), minimum=1) == 3
    assert type(check_int("n", np.int32(3))) is int


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_number_bounds_and_non_finite_values(value):
    ok = math.isfinite(value) and 0 <= value < 1
    if ok:
        assert check_number("lr", value, minimum=0, below=1) == value
    else:
        exc = _refused(check_number, "lr", value, minimum=0, below=1)
        assert str(exc) == f"lr={value!r} must be a finite number >= 0 and < 1"


def test_check_number_edges():
    assert check_number("x", math.inf, finite=False) == math.inf
    _refused(check_number, "x", math.nan, finite=False)
    _refused(check_number, "x", 0.0, above=0)
    assert check_number("x", 3, maximum=3) == 3.0
    assert isinstance(_refused(check_number, "x", True), TypeError)
    assert isinstance(_refused(check_number, "x", "1"), TypeError)


def test_check_bool_choice_range():
    assert check_bool("flag", np.bool_(True)) is True
    exc = _refused(check_bool, "flag", "no")
    assert isinstance(exc, TypeError) and str(exc) == "flag='no' must be True or False"
    assert check_choice("loss", "ce", ["ce", "mse"]) == "ce"
    assert str(_refused(check_choice, "loss", "l1", ["ce", "mse"])) == (
        "loss='l1' must be one of 'ce', 'mse'"
    )
    assert check_range("n_range", (1, 10), minimum=1) == (1.0, 10.0)
    for bad in [(10, 1), (1,), (0, 5), (1, math.nan)]:
        _refused(check_range, "n_range", bad, minimum=1)
    assert isinstance(_refused(check_range, "n_range", "1,10"), TypeError)


def test_check_device_and_path(tmp_path):
    assert check_device("device", None) == "cpu"
    assert check_device("device", "cpu") == "cpu"
    assert str(_refused(check_device, "device", "tpu")).startswith("device='tpu' must be a device")
    f = tmp_path / "w.pt"
    exc = _refused(check_path, "weights", f)
    assert str(exc) == f"weights={str(f)!r} must be an existing file; check the path"
    f.write_bytes(b"")
    assert check_path("weights", str(f)) == f
    _refused(check_path, "weights", f, kind="dir")
    assert isinstance(_refused(check_path, "weights", 3), TypeError)


@given(st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=6))
def test_check_seeds_keeps_each_seed_once_in_order(seeds):
    assert check_seeds("seeds", seeds) == tuple(dict.fromkeys(seeds))
    assert check_seeds("seeds", np.int64(seeds[0])) == (seeds[0],)


def test_check_seeds_refuses_what_a_generator_cannot_take():
    for bad, message in [
        (["a"], "seeds[0]='a' must be an int in 0..9223372036854775807"),
        ([0, 2.0], "seeds[1]=2.0 must be an int in 0..9223372036854775807"),
        ([-1], "seeds[0]=-1 must be an int in 0..9223372036854775807"),
        ([2**63], "seeds[0]=9223372036854775808 must be an int in 0..9223372036854775807"),
        ([], "seeds=[] must be at least one seed"),
        ("0,1", "seeds='0,1' must be a seed or a list of seeds"),
        (True, "seeds=True must be a seed or a list of seeds"),
    ]:
        assert str(_refused(check_seeds, "seeds", bad)) == message


def test_check_type_names_the_value_in_one_line():
    import torch

    assert check_type("x", 3, int, "an int") == 3
    exc = _refused(check_type, "x", "abc", (int, float), "a number")
    assert isinstance(exc, TypeError) and str(exc) == "x='abc' must be a number"
    # a value whose repr spans lines is shown by its type: the message stays one line
    exc = _refused(check_type, "model", torch.nn.Sequential(torch.nn.ReLU()), str, "a name")
    assert str(exc) == "model=<Sequential> must be a name"
    assert "\n" not in str(_refused(check_int, "n", torch.zeros(20, 20)))


def test_a_message_names_its_argument():
    assert GreedypruneError("tol=-1 must be >= 0").name == "tol"
    assert GreedypruneError("n_eval must be set").name == "n_eval"
    assert GreedypruneError("the features are zero").name == "the"  # a word, not checked
    assert GreedypruneError("'x' is bad").name is None
    assert GreedypruneError("x", name="y").name == "y"


def _raises(path: Path) -> list[tuple[str, int]]:
    found = []
    for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in ("ValueError", "TypeError"):
                    found.append((str(file.relative_to(PACKAGE)), node.lineno))
    return found


def test_the_package_raises_only_the_one_error_type():
    assert [hit for path in MIGRATED for hit in _raises(path)] == []


# messages about two values together keep their own words (see docs/kernel.md)
TWO_VALUES = (
    "must share",
    "must be on one device",
    "got unknown keywords",
    "must have the same shape",
)


def _old_wording(path: Path) -> list[tuple[str, int]]:
    """Messages raised in the older wording 'x must be ..., got ...'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            text = ast.unparse(node.exc.args[0])
            if (", got " in text or "; got " in text) and not any(t in text for t in TWO_VALUES):
                found.append((str(path.relative_to(PACKAGE)), node.lineno))
    return found


def test_no_message_is_left_in_the_older_wording():
    """Every value message reads 'NAME=VALUE must be WHAT; FIX' (the shared checkers, refuse)."""
    assert [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _old_wording(path)] == []


def test_the_version_is_written_once():
    from greedyprune._version import __version__

    assert greedyprune.__version__ == __version__
    assert importlib.metadata.version("greedyprune") == __version__
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and '\nversion = "' not in pyproject
    # no module below the package face reads the version from it
    for file in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "greedyprune":
                assert "__version__" not in [a.name for a in node.names], file


def test_the_cli_writes_flags_through_its_table():
    from greedyprune.cli import flag_message

    flags = {"n_eval": "--n-eval", "out": "--out", "tol": "--tol"}
    assert flag_message("tol must be >= 0; or set (n_eval).", flags) == (
        "--tol must be >= 0; or set (--n-eval)."
    )
    assert flag_message("x=1 and out=2, tol", flags) == "x=1 and --out=2, tol"


def test_bad_input_exits_2_and_a_bug_keeps_its_traceback(monkeypatch, tmp_path, capsys):
    import greedyprune.sims.two_layer.cli as two
    from greedyprune.cli import main

    argv = ["verify", "two-layer", "--out", str(tmp_path / "r")]

    def bad_input(args):
        raise errors.refuse("n_eval", 0, "an int >= 1")

    monkeypatch.setattr(two, "run", bad_input)
    assert main(argv) == 2
    assert capsys.readouterr().err == "greedyprune: error: n_eval=0 must be an int >= 1\n"

    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(two, "run", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(argv)


def _one_wording_cases():
    """Bad values at the sites that had their own wording ("x must be ..., got ..."), with the
    exact message each now gives: ``NAME=VALUE must be WHAT; FIX``."""
    import torch

    import greedyprune.prune as gp
    from greedyprune.layerwise import layer_generator
    from greedyprune.prune._data import eval_indices, parse_data
    from greedyprune.prune._finetune import batch_stream, finetune
    from greedyprune.prune._local import check_local
    from greedyprune.sims._data import gaussian_classification, make_dataset
    from greedyprune.sims._mean_field_net import TwoLayerNet, activation_fn
    from greedyprune.sims._train import train_mean_field
    from greedyprune.sims.deep import DeepMeanFieldNet
    from greedyprune.sims.deep._data import digits_data, load_data, mnist1d_data
    from greedyprune.sims.deep.presets import deep_preset
    from greedyprune.sims.deep.presets import study as deep_study
    from greedyprune.sims.two_layer.presets import PRESETS, get_preset
    from greedyprune.study import run_study

    net = TwoLayerNet(torch.zeros(2, 3), torch.zeros(2))
    deep = DeepMeanFieldNet([torch.zeros(2, 3), torch.zeros(1, 2)], [torch.zeros(2)])
    x, y = torch.zeros(4, 3), torch.zeros(4)
    data = torch.utils.data.TensorDataset(torch.zeros(4, 3, 8, 8), torch.zeros(4).long())
    return [
        (
            lambda: layer_generator("a"),
            "generator='a' must be a torch.Generator, an int seed or None (seed 0)",
        ),
        (lambda: train_mean_field("m", x, y, steps=1, lr=0.1), "model='m' must be an nn.Module"),
        (
            lambda: train_mean_field(net, x, y, steps=1, lr=0.1, loss=3),
            "loss=3 must be a name or a callable",
        ),
        (
            lambda: train_mean_field(net, x, y, steps=1, lr=0.1, batch_size=0),
            "batch_size=0 must be an int >= 1; or None for the full batch",
        ),
        (
            lambda: train_mean_field(net, x, y, steps=1, lr=0.1, record_every=0),
            "record_every=0 must be an int >= 1; or None",
        ),
        (
            lambda: net(x.tolist()),
            "x=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]] must be a tensor [m, d]",
        ),
        (lambda: deep.hidden(x, 2), "layer=2 must be an int in 1..1"),
        (lambda: deep.forward_from(x, 0), "layer=0 must be an int in 1..1"),
        (lambda: deep("x"), "x='x' must be a tensor [m, d]"),
        (lambda: deep_study("s", [0]), "setting='s' must be a DeepSetting"),
        (lambda: run_study("s", "out"), "study='s' must be a Study"),
        (
            lambda: gp.save_pruned("out", net, arch="", image_size=8, kept={}),
            "arch='' must be a non-empty string",
        ),
        (lambda: gp.GatedModel("m", None), "model='m' must be a torch.nn.Module"),
        (lambda: parse_data(3), "data=3 must be a string"),
        (lambda: batch_stream(data, 0, generator=None), "batch_size=0 must be an int >= 1"),
        (lambda: finetune(net, data, epochs=0), "epochs=0 must be a finite number > 0"),
        (
            lambda: finetune(net, data, epochs=1, lr=float("nan")),
            "lr=nan must be a finite number > 0",
        ),
        (
            lambda: gp.proxylessnas_mobile(10, width_mult=0),
            "width_mult=0 must be a finite number > 0",
        ),
        (
            lambda: eval_indices(10, every=0),
            "every=0 must be an int >= 1; the evaluation stride (the authors: 200)",
        ),
        (
            lambda: check_local(gp.LocalSettings(swaps=-1)),
            "swaps=-1 must be an int >= 0; rounds of swap search",
        ),
        (
            lambda: check_local(gp.LocalSettings(ridge=float("inf"))),
            "ridge=inf must be a finite number >= 0; relative to mean(diag)",
        ),
        (
            lambda: gp.GreedySettings(tol=1.5),
            "tol=1.5 must be a finite number >= 0 and < 1; the top-1 drop allowed, e.g. 0.02",
        ),
        (
            lambda: gp.GreedySettings(target_macs=0.5, mode="fast"),
            "mode='fast' must be one of 'batched', 'sequential'",
        ),
        (
            lambda: gp.baseline_channels("nope", None, None, None, None),
            "method='nope' must be one of 'l1', 'taylor', 'bn', 'ispasp', 'ispasp-seq', 'random'",
        ),
        (
            lambda: gp.select_channels("nope", None),
            f"method='nope' must be one of {_listing(gp.SELECTION_METHODS)}",
        ),
        (lambda: gp.resolve_recipe("nope"), f"recipe='nope' must be one of {_listing(gp.RECIPES)}"),
        (
            lambda: make_dataset("nope"),
            "data='nope' must be one of 'gaussian_classification', 'teacher_student'",
        ),
        (
            lambda: gaussian_classification(4, 2, delta=1),
            "delta=1 must be a finite number > 0 and < 1",
        ),
        (
            lambda: activation_fn("nope"),
            "activation='nope' must be one of 'relu', 'sigmoid', 'tanh'",
        ),
        (lambda: load_data("nope"), "data='nope' must be one of 'teacher', 'mnist1d', 'digits'"),
        (lambda: mnist1d_data(num_samples=5), "num_samples=5 must be an int >= 20"),
        (
            lambda: digits_data(test_fraction=1.0),
            "test_fraction=1.0 must be a finite number > 0 and < 1",
        ),
        (lambda: deep_preset("nope"), "preset='nope' must be one of 'quick', 'paper'"),
        (lambda: get_preset("nope"), f"preset='nope' must be one of {_listing(sorted(PRESETS))}"),
        (
            lambda: DeepMeanFieldNet([torch.zeros(2, 3)], []),
            "len(weights)=1 must be at least 2: a hidden layer and the output layer",
        ),
        (
            lambda: DeepMeanFieldNet([torch.zeros(2, 3), torch.zeros(1, 2)], []),
            "len(biases)=0 must be 1, one per hidden layer",
        ),
        (
            lambda: DeepMeanFieldNet([torch.zeros(2, 3), torch.zeros(1, 4)], [torch.zeros(2)]),
            "weights[1].shape=(1, 4) must be (rows, 2): as many columns as the width below",
        ),
        (
            lambda: deep.subnetwork([torch.zeros(2), torch.zeros(2)]),
            "len(counts)=2 must be 1, one per hidden layer",
        ),
        (lambda: net.subnetwork([0, 5]), "indices=[0, 5] must be neuron indices in 0..1"),
        (lambda: gp.count_macs(net, "x"), "example_input='x' must be a tensor [1, C, H, W]"),
        (
            lambda: TwoLayerNet(torch.zeros(2, 3), torch.zeros(3)),
            "b.shape=(3,) must be (2,) or (2, c): N=2 matching a",
        ),
    ]


def _listing(names) -> str:
    return ", ".join(repr(n) for n in names)


def test_the_migrated_messages_have_the_one_wording():
    wrong = []
    for call, message in _one_wording_cases():
        try:
            call()
        except GreedypruneError as exc:
            if str(exc) != message:
                wrong.append((str(exc), message))
        else:
            wrong.append(("no error", message))
    assert not wrong, wrong
