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


def test_parser_builds():
    assert build_parser().prog == "greedyprune"


def test_console_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "greedyprune.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0
    assert "greedyprune" in out.stdout
