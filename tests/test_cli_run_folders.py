"""Run folders through the CLI: every command reports a bad --out, a folder without its config and
damaged files in one line with exit code 2 (the folder itself is tested in test_run_folders.py)."""

import json
import os
import stat

import pytest
import torch

from greedyprune.cli import build_parser, main
from greedyprune.prune import _finetune

TINY = ["--image-size", "16", "--train-epochs", "0.05"]
COMMANDS = {
    "two-layer": ["verify", "two-layer", "--preset", "quick", "--seeds", "0", "--no-figures"],
    "deep": ["verify", "deep"],
    "prune": ["prune", "--arch", "resnet18", "--data", "synthetic", "--tol", "0.9", *TINY],
    "compare": ["compare", "--arch", "resnet18", "--data", "synthetic", *TINY],
}


def _fails(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("greedyprune: error:"), err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unwritable_out_is_one_line(capsys, tmp_path, command):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sub"
    _fails(capsys, [*COMMANDS[command], "--out", str(out)], f"out={str(out)!r}", "--out")
    assert (tmp_path / "file").read_text() == "x"


def test_an_out_in_sys_is_one_line(capsys):
    if not os.path.isdir("/sys"):
        pytest.skip("needs a /sys (a file system nobody can make folders in)")
    out = "/sys/greedyprune-test"
    _fails(capsys, [*COMMANDS["two-layer"], "--out", out], f"out={out!r}", "cannot be written")
    assert not os.path.exists(out)


def test_a_results_table_without_config_is_refused(capsys, tmp_path):
    (tmp_path / "results.csv").write_text("claim,slope,unit\nrate,-1.0,u0\n")
    _fails(
        capsys,
        [*COMMANDS["two-layer"], "--out", str(tmp_path)],
        "holds results.csv but no config.json",
        "pass a new --out or delete the folder",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def _interrupted_prune(monkeypatch, out):
    """A prune run folder stopped in the base model's training (config.json written, no base)."""
    argv = [*COMMANDS["prune"], "--out", str(out)]

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(_finetune, "finetune", stop)
        assert main(argv) == 130
    assert (out / "config.json").is_file() and not (out / "base.safetensors").exists()
    return argv


def test_a_prune_folder_records_versions_with_plain_permissions(capsys, monkeypatch, tmp_path):
    out = tmp_path / "run"
    _interrupted_prune(monkeypatch, out)
    sessions = json.loads((out / "versions.json").read_text())["sessions"]
    assert (
        len(sessions) == 1 and sessions[0]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    )
    assert "torch" not in json.loads((out / "config.json").read_text())
    plain = tmp_path / "plain"
    plain.write_text("x")
    for name in ("config.json", "versions.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_a_damaged_base_model_is_one_line(capsys, monkeypatch, tmp_path):
    out = tmp_path / "run"
    argv = _interrupted_prune(monkeypatch, out)
    capsys.readouterr()
    (out / "base.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    _fails(capsys, argv, "base.safetensors", "damaged", "delete it and run again")


def test_a_damaged_training_checkpoint_is_one_line(capsys, monkeypatch, tmp_path):
    """The base model's training checkpoint (``finetune``'s, like ``finetune.pt``) cut short."""
    out = tmp_path / "run"
    argv = _interrupted_prune(monkeypatch, out)
    capsys.readouterr()
    torch.save({"model": {"w": torch.zeros(100)}, "epoch": 0}, out / "base-train.pt")
    data = (out / "base-train.pt").read_bytes()
    (out / "base-train.pt").write_bytes(data[: len(data) // 2])
    _fails(capsys, argv, "base-train.pt", "is damaged", "delete it and run again")


def test_repeated_deep_seeds_run_once():
    args = build_parser().parse_args(["verify", "deep", "--seeds", "2,0,2,1,0"])
    assert args.seeds == (2, 0, 1)
