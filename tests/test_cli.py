"""The command line: usage errors are one line on stderr and exit code 2."""

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
    from greedyprune.prune import _cli_compare, _cli_prune

    parser = build_parser()
    common = ["--arch", "resnet18", "--data", "digits"]
    args = parser.parse_args(["prune", *common, "--out", "r", "--candidates", "all"])
    assert args._run is _cli_prune.run
    assert args.candidates is None and args.out == "r"
    args = parser.parse_args(
        ["compare", *common, "--out", "c", "--methods", "l1, bn", "--seeds", "0,2"]
    )
    assert args._run is _cli_compare.run
    assert args.methods == ["l1", "bn"] and args.seeds == [0, 2]


def test_console_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "greedyprune.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0
    assert "greedyprune" in out.stdout
