"""Pruning over 2 gloo processes on the CPU: launched by torchrun, the same picks as one process,
distributed fine-tuning that resumes, and the errors of a bad launch."""

import datetime
import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
import torchvision
from torch import nn
from torch.utils.data import TensorDataset

import greedyprune.prune as gp
from greedyprune.cli import main

TIMEOUT = 300  # seconds for one torchrun launch: a hung rank fails the test instead of CI


# Small tensors, and 2 processes share the 2 cores: one thread each.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _torchrun(args, tmp_path, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GREEDYPRUNE_DIST_TIMEOUT": "60"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "greedyprune", *args]
    return subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


@pytest.mark.parametrize(
    "arch, target", [("resnet18", "0.08"), ("mobilenet_v2", "0.05")], ids=["resnet18", "mbv2"]
)
def test_two_processes_pick_what_one_picks(tmp_path, arch, target):
    torch.manual_seed(0)
    ckpt = tmp_path / "base.pth"
    torch.save(torchvision.models.get_model(arch, num_classes=10).state_dict(), ckpt)
    args = ["prune", "--arch", arch, "--data", "synthetic", "--image-size", "16"]
    args += ["--weights", str(ckpt), "--target-macs", target, "--candidates", "3"]
    args += ["--batch-size", "8", "--seeds", "3"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    res = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "selected" / "pruned.json").read_text())
    two = json.loads((tmp_path / "two" / "selected" / "pruned.json").read_text())
    assert one["kept"] == two["kept"]
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s1["macs"] == s2["macs"] and s1["acc_pruned"] == s2["acc_pruned"]
    # rank 0 alone printed the report
    assert res.stdout.count("pruned model:") == 1


def test_compare_on_two_processes_writes_once_and_resumes(tmp_path):
    """compare over run_study under torchrun: the rows one process writes (the same widths, the
    same pruned accuracy), rank 0 alone reports, and a rerun redoes no unit."""
    torch.manual_seed(0)
    ckpt = tmp_path / "base.pth"
    torch.save(torchvision.models.get_model("resnet18", num_classes=10).state_dict(), ckpt)
    args = ["compare", "--arch", "resnet18", "--data", "synthetic", "--image-size", "16"]
    args += ["--weights", str(ckpt), "--target-macs", "0.08", "--methods", "greedy,l1"]
    args += ["--candidates", "3", "--batch-size", "8", "--finetune-epochs", "0.05"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    res = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("results:") == 1  # rank 0 alone printed the table
    one = pd.read_csv(tmp_path / "one" / "results.csv").set_index("unit")
    two = pd.read_csv(tmp_path / "two" / "results.csv").set_index("unit")
    assert list(two.index) == list(one.index) == ["greedy-0.08-s0", "l1-0.08-s0"]
    for col in ("macs", "params", "acc_full", "acc_pruned"):
        assert list(two[col]) == list(one[col]), col
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["processes"] == 2
    results = (tmp_path / "two" / "results.csv").read_bytes()
    res = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "two" / "results.csv").read_bytes() == results  # no unit was run again


def test_a_batch_that_cannot_be_split_is_refused(tmp_path):
    args = ["prune", "--arch", "resnet18", "--data", "synthetic", "--image-size", "16"]
    args += ["--target-macs", "0.5", "--batch-size", "3", "--out", str(tmp_path / "r")]
    res = _torchrun(args, tmp_path)
    assert res.returncode != 0
    ours = [line for line in res.stderr.splitlines() if line.startswith("greedyprune: error")]
    assert len(ours) == 1 and "multiple of 2" in ours[0], res.stderr[-2000:]
    assert not (tmp_path / "r").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Interrupt(Exception):
    pass


class _Crashing(TensorDataset):
    """Raises after ``limit`` reads: a run killed in its second epoch."""

    def __init__(self, *tensors, limit):
        super().__init__(*tensors)
        self.limit, self.reads = limit, 0

    def __getitem__(self, i):
        self.reads += 1
        if self.reads > self.limit:
            raise _Interrupt
        return super().__getitem__(i)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 4)
    )


def _ddp_worker(rank, world, port, folder, out):
    torch.set_num_threads(1)
    tdist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 4, (64,), generator=g)
        kw = dict(epochs=3, lr=0.05, batch_size=16, generator=7)
        whole = _net()
        gp.finetune(whole, TensorDataset(x, y), checkpoint=f"{folder}/whole.pt", **kw)
        # 32 images per rank and epoch: the crash comes in the second epoch
        resumed = _net()
        try:
            gp.finetune(resumed, _Crashing(x, y, limit=40), checkpoint=f"{folder}/resumed.pt", **kw)
        except _Interrupt:
            pass
        epoch_after_crash = torch.load(f"{folder}/resumed.pt", weights_only=True)["epoch"]
        gp.finetune(resumed, TensorDataset(x, y), checkpoint=f"{folder}/resumed.pt", **kw)
        state = {k: v.clone() for k, v in whole.state_dict().items()}
        torch.save(
            {
                "whole": state,
                "resumed": resumed.state_dict(),
                "epoch_after_crash": epoch_after_crash,
            },
            f"{out}/rank{rank}.pt",
        )
    finally:
        tdist.destroy_process_group()


def test_ddp_finetune_resumes_without_losing_or_repeating_an_epoch(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), str(tmp_path)), nprocs=2)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["epoch_after_crash"] == 1
    for key, value in r0["whole"].items():
        # the ranks hold one model, and the resumed run ends where the uninterrupted one did
        assert torch.equal(value, r1["whole"][key]), key
        assert torch.allclose(value.float(), r0["resumed"][key].float(), atol=1e-6), key


_EXIT_PROBE = """
import atexit, sys
import torch.distributed as tdist
# registered first, so it runs last (atexit is last in, first out): after greedyprune's own hook
atexit.register(lambda: print("initialized at exit:", tdist.is_initialized(), flush=True))
from greedyprune.dist import init_from_env
init_from_env("cpu")
box = [sys.argv[1] if tdist.get_rank() == 0 else None]
tdist.broadcast_object_list(box, src=0)
print("got", box[0], flush=True)
"""


def test_the_group_made_from_the_environment_is_closed_at_exit(tmp_path):
    """Left open to interpreter teardown, gloo aborted a rank now and then (SIGABRT, 'terminate
    called without an active exception'): a resumed torchrun run with nothing to do failed."""
    base = {**os.environ, "OMP_NUM_THREADS": "1", "GREEDYPRUNE_DIST_TIMEOUT": "60"}
    base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _EXIT_PROBE, "hello"],
            env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for r in range(2)
    ]
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:  # a hung rank fails the test and leaves no process behind
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "got hello" in out
        assert "initialized at exit: False" in out, out
