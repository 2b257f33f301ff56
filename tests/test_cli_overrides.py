"""``--set KEY=VALUE`` and ``--config FILE.toml`` on ``verify two-layer`` and ``verify deep``.

The runs are stubbed: the library functions are replaced to capture the settings they get, or
their units are replaced by one fake unit so the real run folder (config.json, resume) is used.
"""

import json

import pandas as pd
import pytest

from greedyprune.cli import main
from greedyprune.errors import GreedypruneError
from greedyprune.overrides import Override, SettingError, apply_overrides, parse_set
from greedyprune.sims.deep import DeepSetting
from greedyprune.sims.deep import presets as deep_presets
from greedyprune.sims.two_layer import Setting
from greedyprune.sims.two_layer import cli as two_layer_cli
from greedyprune.sims.two_layer import presets as two_layer_presets

TWO = ["verify", "two-layer", "--no-figures", "--no-progress"]
DEEP = ["verify", "deep", "--no-progress"]


def _verdicts():
    return pd.DataFrame(
        {
            "claim": ["c"],
            "setting": ["interior"],
            "predicted_slope": [float("nan")],
            "measured_slope": [float("nan")],
            "ci_low": [float("nan")],
            "ci_high": [float("nan")],
            "n_min": [float("nan")],
            "n_max": [float("nan")],
            "verdict": ["no data"],
            "reason": ["stub"],
        }
    )


@pytest.fixture
def two_layer(monkeypatch):
    """Run ``verify two-layer ARGS``; returns the Preset the library received (or None)."""
    got = []

    def fake(preset, out, **kwargs):
        got.append(preset)
        return pd.DataFrame(), _verdicts()

    monkeypatch.setattr(two_layer_cli, "verify_two_layer", fake)

    def call(*args, out):
        code = main([*TWO, "--out", str(out), *args])
        return code, (got.pop() if got else None)

    return call


@pytest.fixture
def deep(monkeypatch):
    """Run ``verify deep ARGS``; returns the DeepSetting run_deep received (or None)."""
    got = []
    summary = pd.DataFrame(
        {"experiment": "rate", "n": [4], "method": "greedy_local", "mean": [0.5], "metric": "loss"}
    )

    def fake(setting, seeds, out, **kwargs):
        got.append(setting)
        return pd.DataFrame(), _verdicts(), summary

    monkeypatch.setattr(deep_presets, "run_deep", fake)

    def call(*args, out):
        code = main([*DEEP, "--out", str(out), *args])
        return code, (got.pop() if got else None)

    return call


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("greedyprune: error: ")
    for w in words:
        assert w in err, (w, err)
    return err


# -- parsing by type ------------------------------------------------------------------------------


def test_two_layer_values_are_parsed_by_the_field_type(two_layer, tmp_path):
    code, preset = two_layer(
        "--set",
        "activation=sigmoid",
        "--set",
        "d=8",
        "--set",
        "m=40",
        "--set",
        "lr=1e-2",
        "--set",
        "dtype=float32",
        out=tmp_path,
    )
    assert code == 0
    for s in preset.settings:  # no prefix: every setting of the preset
        assert (s.activation, s.d, s.m, s.lr, s.dtype) == ("sigmoid", 8, 40, 0.01, "float32")
        assert type(s.d) is int and type(s.lr) is float
    assert [s.name for s in preset.settings] == ["interior", "boundary"]
    # the rest of the preset is untouched
    assert preset.grid == two_layer_presets.PRESETS["quick"].grid
    assert preset.settings[0].width == two_layer_presets.PRESETS["quick"].settings[0].width


def test_deep_parses_bools_tuples_and_optionals(deep, tmp_path):
    args = ["--set", "replacement=false", "--set", "sizes=2, 4,8", "--set", "batch_size=32"]
    code, s = deep(*args, "--set", "methods=greedy_local, magnitude,", out=tmp_path)
    assert code == 0
    assert s.replacement is False and s.sizes == (2, 4, 8) and s.batch_size == 32
    assert s.methods == ("greedy_local", "magnitude")
    code, s = deep("--set", "replacement=TRUE", "--set", "global_candidates=none", out=tmp_path)
    assert s.replacement is True and s.global_candidates is None


def test_prefix_selects_one_setting_and_order_decides(two_layer, tmp_path):
    _, p = two_layer("--set", "m=40", "--set", "interior.m=7", out=tmp_path)
    assert [s.m for s in p.settings] == [7, 40]
    _, p = two_layer("--set", "interior.m=7", "--set", "m=40", out=tmp_path)
    assert [s.m for s in p.settings] == [40, 40]


def test_deep_prefix_is_the_data_set_name(deep, tmp_path):
    assert deep("--set", "teacher.width=64", out=tmp_path)[1].width == 64


def test_settings_are_checked_together_not_one_override_at_a_time(deep, tmp_path):
    # sizes up to 128 exceed the preset's width 96 until width=128 is applied
    _, s = deep("--set", "sizes=2,128", "--set", "width=128", out=tmp_path)
    assert (s.sizes, s.width) == ((2, 128), 128)


def test_an_error_names_the_override_it_is_about(deep, tmp_path, capsys):
    assert deep("--set", "width=64", "--set", "m=0", out=tmp_path)[0] == 2
    err = _one_error_line(capsys, "--set m:", "m=0")
    assert "--set width" not in err
    # both named when the setting's message is about both
    assert deep("--set", "width=8", "--set", "sizes=2,9", out=tmp_path)[0] == 2
    _one_error_line(capsys, "--set width, --set sizes:", "exceed width=8")


# -- errors: one line, exit 2, nothing written ----------------------------------------------------


@pytest.mark.parametrize(
    "arg, words",
    [
        ("mm=3", ["--set mm", "did you mean m"]),
        ("zzzz=1", ["--set zzzz", "valid keys:", "activation", "width"]),
        ("m=abc", ["--set m", "'abc'", "int"]),
        ("m=1.5", ["--set m", "int"]),
        ("m=0", ["--set m", "m=0", ">= 1"]),  # the setting's own check
        ("lr=nan", ["--set lr", "float"]),
        ("activation=swish", ["--set activation", "swish"]),
        ("data=mnist", ["--set data", "teacher_student"]),
        ("name=x", ["--set name", "cannot be set"]),
        ("foo.m=3", ["--set foo.m", "interior, boundary"]),
        ("m", ["--set 'm'", "KEY=VALUE"]),
    ],
)
def test_two_layer_bad_set_is_one_line_and_exit_2(arg, words, two_layer, tmp_path, capsys):
    out = tmp_path / "run"
    code, got = two_layer("--set", arg, out=out)
    assert code == 2 and got is None and not out.exists()
    _one_error_line(capsys, *words)


@pytest.mark.parametrize(
    "arg, words",
    [
        ("replacment=true", ["--set replacment", "did you mean replacement"]),
        ("replacement=yes", ["--set replacement", "bool"]),
        ("sizes=2,a", ["--set sizes", "comma list of int"]),
        ("sizes=2,500", ["--set sizes", "exceed width"]),
        ("data=digits", ["--set data", "--data"]),
        ("methods=greedy,magnitude", ["--set methods", "greedy"]),
    ],
)
def test_deep_bad_set_is_one_line_and_exit_2(arg, words, deep, tmp_path, capsys):
    out = tmp_path / "run"
    code, got = deep("--set", arg, out=out)
    assert code == 2 and got is None and not out.exists()
    err = _one_error_line(capsys, *words)
    assert "--data=" not in err  # the message is not rewritten into flags


# -- config files ---------------------------------------------------------------------------------


def test_config_file_then_set(two_layer, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('m = 40\nactivation = "sigmoid"\nlr = 1\n[boundary]\nm = 9\nd = 3\n')
    _, p = two_layer("--config", str(cfg), out=tmp_path / "a")
    i, b = p.settings
    assert (i.m, i.activation, i.lr, i.d) == (40, "sigmoid", 1.0, 5)
    assert (b.m, b.activation, b.d) == (9, "sigmoid", 3)
    # --set comes after the file, so it wins
    _, p = two_layer("--config", str(cfg), "--set", "boundary.m=11", out=tmp_path / "a")
    assert [s.m for s in p.settings] == [40, 11]


def test_deep_config_lists_and_bools(deep, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("sizes = [2, 4]\nreplacement = false\nteacher.width = 64\n")
    _, s = deep("--config", str(cfg), out=tmp_path)
    assert (s.sizes, s.replacement, s.width) == ((2, 4), False, 64)


@pytest.mark.parametrize(
    "text, words",
    [
        ("mm = 3\n", ["c.toml: mm", "did you mean m"]),
        ('m = "many"\n', ["c.toml: m", "'many'", "int"]),
        ("m = true\n", ["c.toml: m", "int"]),
        ("noise = true\n", ["c.toml: noise", "float"]),  # no check of its own in Setting
        ("[inner]\nm = 3\n", ["c.toml: inner.m", "interior, boundary"]),
        ("m = \n", ["c.toml", "not valid TOML"]),
    ],
)
def test_bad_config_is_one_line_and_exit_2(text, words, two_layer, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    code, got = two_layer("--config", str(cfg), out=tmp_path / "run")
    assert code == 2 and got is None and not (tmp_path / "run").exists()
    _one_error_line(capsys, "--config", *words)


def test_missing_config_file(two_layer, tmp_path, capsys):
    code, _ = two_layer("--config", str(tmp_path / "nope.toml"), out=tmp_path / "run")
    assert code == 2
    _one_error_line(capsys, "--config", "nope.toml", "no such file")


def test_library_helpers_directly():
    with pytest.raises(SettingError, match="KEY=VALUE"):
        parse_set("=3")
    (s,) = apply_overrides([Setting()], [parse_set("noise=0.1")])
    assert s.noise == 0.1
    (d,) = apply_overrides([DeepSetting()], [parse_set("teacher_widths=8,8,8")])
    assert d.teacher_widths == (8, 8, 8)
    # a TOML bool is not an int, even where the setting itself does not check
    with pytest.raises(SettingError, match="batch_size: True is not a valid int or none"):
        apply_overrides([DeepSetting()], [Override(None, "batch_size", True, "f.toml: batch_size")])


# -- the run folder records the resolved settings; resume only with the same ones ----------------


def test_two_layer_run_folder_records_overrides_and_resumes_only_with_them(
    monkeypatch, tmp_path, capsys
):
    import greedyprune.theory

    runs = []

    def units(preset, seeds, device):
        def unit():
            runs.append(preset.settings[0].m)
            row = dict(experiment="rate", method="greedy", n=1, seed=0, setting="interior")
            return [dict(row, loss=1.0)]

        yield ("fake/interior/0", unit)

    monkeypatch.setattr(two_layer_presets, "units", units)
    monkeypatch.setattr(
        greedyprune.theory, "check", lambda results, claims, n_boot, n_range: _verdicts()
    )
    out = tmp_path / "run"
    argv = [*TWO, "--out", str(out), "--set", "m=7", "--set", "boundary.activation=sigmoid"]
    assert main(argv) == 0
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert [s["m"] for s in settings] == [7, 7]
    assert [s["activation"] for s in settings] == ["tanh", "sigmoid"]
    assert runs == [7]
    capsys.readouterr()
    assert main(argv) == 0  # same overrides: resumes, the finished unit is not run again
    assert runs == [7]
    capsys.readouterr()
    assert main([*TWO, "--out", str(out), "--set", "m=8"]) == 2  # other overrides: refused
    _one_error_line(capsys, "other settings", "--out")
    assert runs == [7]


def test_deep_run_folder_records_overrides_and_resumes_only_with_them(
    monkeypatch, tmp_path, capsys
):
    import greedyprune.theory

    runs = []

    def units(setting, seeds):
        def unit(device=None, progress=False):
            runs.append(setting.width)
            return [
                dict(experiment="rate", method="greedy_local", n=2, seed=0, kept=2, loss_test=1)
            ]

        return [("teacher/seed0/fake", unit)]

    monkeypatch.setattr(deep_presets, "units", units)
    monkeypatch.setattr(greedyprune.theory, "check", lambda results, claims, n_boot: _verdicts())
    out = tmp_path / "run"
    argv = [*DEEP, "--out", str(out), "--seeds", "0", "--set", "width=64"]
    assert main(argv) == 0
    recorded = json.loads((out / "config.json").read_text())["setting"]
    assert recorded["width"] == 64 and runs == [64]
    assert main(argv) == 0 and runs == [64]
    capsys.readouterr()
    assert main([*DEEP, "--out", str(out), "--seeds", "0", "--set", "width=65"]) == 2
    _one_error_line(capsys, "other settings")


def test_help_documents_set_and_config(capsys):
    for cmd in (TWO[:2], DEEP[:2]):
        with pytest.raises(SystemExit):
            main([*cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--set [SETTING.]KEY=VALUE" in text and "--config FILE.toml" in text
        assert "width (int)" in text


def test_setting_errors_are_printed_as_written(monkeypatch, tmp_path, capsys):
    """Other library errors have their Python names rewritten as flags (data= -> --data=); a
    SettingError already names its --set, and a field called like a flag must stay as it is."""

    def fail(exc):
        def run_deep(*args, **kwargs):
            raise exc

        return run_deep

    argv = [*DEEP, "--out", str(tmp_path)]
    monkeypatch.setattr(deep_presets, "run_deep", fail(SettingError("--set x: data='y'")))
    assert main(argv) == 2
    assert _one_error_line(capsys).endswith("--set x: data='y'")
    monkeypatch.setattr(deep_presets, "run_deep", fail(GreedypruneError("data='y'")))
    assert main(argv) == 2
    assert _one_error_line(capsys).endswith("--data='y'")
    # any other exception is a bug, not bad input: it keeps its traceback (exit 1)
    monkeypatch.setattr(deep_presets, "run_deep", fail(ValueError("data='y'")))
    with pytest.raises(ValueError, match="data='y'"):
        main(argv)
