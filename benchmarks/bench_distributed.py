"""Benchmark of the distributed kernel (greedyprune/dist.py) on CPU with gloo.

Two measurements, each run in jobs of 1, 2 (or more) processes spawned with
``torch.multiprocessing`` and a gloo process group on 127.0.0.1 (one thread per process):

1. ``time``: wall time of ``steps`` exact greedy steps (``method="central"``, with replacement) on
   two-layer-like features: ``phi_i(x_j) = b_i tanh(a_i . x_j)`` for N random neurons (d = 5) on m
   Gaussian points, float32, the target a random width-1000 teacher's output; median over
   ``repeats``, the objective built once outside the timing (``ShardedSquaredLoss`` on each rank's
   rows; a barrier before and after each repeat). Each rank builds the same features and keeps its
   rows only. The one-process rows are plain ``greedy_select(SquaredLoss(...))`` with 1 and with 2
   threads; the sharded rows check that their picks equal the one-process picks, and report the
   median time of rank 0's GEMV over its rows alone and of the step's all-gather alone.
2. ``greedi``: GreeDi's loss over central greedy's at n = 100 and n = 1000, on the features of the
   pretrained two-layer networks of a ``greedyprune verify two-layer`` preset (``paper`` by
   default: N = 2000, both settings, seed 0), with and without replacement, for each world size.

Prints tables and writes ``benchmarks/results/distributed_kernel.json``. Not a test: times depend
on the machine and its load (recorded in the JSON).

    python benchmarks/bench_distributed.py                     # N = 200k, m = 256, worlds 1 and 2
    python benchmarks/bench_distributed.py --preset quick --N 50000 --steps 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.multiprocessing as tmp

from greedyprune import dist as gd
from greedyprune import select as gs
from greedyprune.select import SquaredLoss, greedy_select

RESULTS = Path(__file__).resolve().parent / "results"


def timing_features(N: int, m: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-layer-like features [N, m] (float32) and a teacher's target [m]."""
    from greedyprune.sims import TwoLayerNet

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 5, generator=g, dtype=torch.float32)
    net = TwoLayerNet.random(N, 5, activation="tanh", seed=seed + 1, dtype=torch.float32)
    teacher = TwoLayerNet.random(1000, 5, activation="tanh", seed=seed + 2, dtype=torch.float32)
    return net.features(x), teacher(x).detach()


def preset_features(preset: str, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{setting: (Phi [N, m], y_train [m])}`` of the preset's pretrained width-N networks."""
    from greedyprune.sims import PRESETS, pretrain

    out = {}
    for setting in PRESETS[preset].settings:
        data, big, _ = pretrain(setting, seed)
        out[setting.name] = (big.features(data.x_train).contiguous(), data.y_train.contiguous())
    return out


def _time_steps(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        gd.barrier()
        t0 = time.perf_counter()
        fn()
        gd.barrier()
        times.append(time.perf_counter() - t0)
    return times


def _job(rank: int, world: int, port: int, work: str, cfg: dict) -> None:
    torch.set_num_threads(cfg["threads"])
    tdist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=dt.timedelta(seconds=600),
    )
    try:
        out: dict = {"world_size": world, "threads": cfg["threads"]}
        if cfg["time"]:
            f, t = timing_features(cfg["N"], cfg["m"])
            lo, count = gd.shard_range(cfg["N"])
            shard = f[lo : lo + count].clone()
            del f
            steps = cfg["steps"]
            obj = gs.ShardedSquaredLoss(shard, t)  # built once, as the one-process rows' objective
            greedy_select(obj, 2)  # warm-up

            def run():
                obj.reset()
                return greedy_select(obj, steps)

            out["time_s"] = _time_steps(run, cfg["repeats"])
            out["order"] = run().order.tolist()
            # The two parts of a step, alone: this rank's GEMV, and the all-gather of the step.
            r = torch.randn(shard.shape[1])
            gemv, gather = [], []
            for _ in range(steps):
                t0 = time.perf_counter()
                torch.addmv(obj._local._sqnorms, shard, r, alpha=2)
                gemv.append(time.perf_counter() - t0)
            msg = torch.zeros(2 + shard.shape[1], dtype=torch.float64)
            gd.barrier()
            for _ in range(steps):
                t0 = time.perf_counter()
                gd.all_gather(msg)
                gather.append(time.perf_counter() - t0)
            out["gemv_ms"] = 1e3 * statistics.median(gemv)
            out["allgather_ms"] = 1e3 * statistics.median(gather)
        if cfg["greedi"]:
            feats = torch.load(f"{work}/twolayer.pt")
            out["greedi"] = {}
            for name, (phi, y) in feats.items():
                lo, count = gd.shard_range(phi.shape[0])
                for repl in (True, False):
                    for n in cfg["ns"]:
                        if not repl and n > phi.shape[0]:
                            continue
                        sel = gs.sharded_greedy_select(
                            phi[lo : lo + count], y, n, replacement=repl, method="greedi"
                        )
                        key = f"{name}/n={n}/{'repl' if repl else 'norepl'}"
                        out["greedi"][key] = {
                            "loss": float(sel.losses[-1]),
                            "chosen": sel.info["distributed"]["chosen"],
                            "union_size": sel.info["distributed"]["union_size"],
                        }
        if rank == 0:
            Path(f"{work}/world{world}_t{cfg['threads']}.json").write_text(json.dumps(out))
    finally:
        tdist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_world(world: int, work: str, cfg: dict) -> dict:
    tmp.start_processes(
        _job, args=(world, _free_port(), work, cfg), nprocs=world, start_method="spawn"
    )
    return json.loads(Path(f"{work}/world{world}_t{cfg['threads']}.json").read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--N", type=int, default=200_000)
    p.add_argument("--m", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worlds", default="1,2", help="process counts to time, e.g. 1,2")
    p.add_argument("--greedi-worlds", default="2,4", help="process counts for GreeDi's ratio")
    p.add_argument("--preset", default="paper", choices=["quick", "paper"])
    p.add_argument("--ns", default="100,1000")
    p.add_argument("--out", default=str(RESULTS / "distributed_kernel.json"))
    args = p.parse_args(argv)
    worlds = [int(w) for w in args.worlds.split(",")]
    gworlds = [int(w) for w in args.greedi_worlds.split(",") if w]
    ns = [int(n) for n in args.ns.split(",")]
    base = dict(N=args.N, m=args.m, steps=args.steps, repeats=args.repeats, ns=ns)
    result: dict = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "config": {**base, "preset": args.preset, "dtype_timing": "float32"},
    }

    with tempfile.TemporaryDirectory() as work:
        # -- 1. time per step, 1 against K processes ---------------------------------------------
        rows = []
        if worlds:
            f, t = timing_features(args.N, args.m)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                obj = SquaredLoss(f, t)
                greedy_select(obj, 2)
                times = []
                for _ in range(args.repeats):
                    obj.reset()
                    t0 = time.perf_counter()
                    ref = greedy_select(obj, args.steps)
                    times.append(time.perf_counter() - t0)
                rows.append(
                    dict(label=f"1 process, {threads} thread(s), greedy_select", times=times)
                )
            del f, obj
            for w in worlds:
                res = run_world(w, work, dict(base, threads=1, time=True, greedi=False))
                same = res["order"] == ref.order.tolist()
                rows.append(
                    dict(
                        label=f"{w} process(es) x 1 thread, sharded",
                        times=res["time_s"],
                        same=same,
                        rank0_gemv_ms=res["gemv_ms"],
                        allgather_ms=res["allgather_ms"],
                    )
                )
            t_one = statistics.median(rows[0]["times"])
            print(
                f"\n{args.steps} exact greedy steps, N = {args.N}, m = {args.m}, float32, CPU gloo"
            )
            print(
                f"{'run':42s} {'median s':>9s} {'ms/step':>8s} {'vs 1x1':>7s} {'GEMV ms':>8s} "
                f"{'gather ms':>9s} same picks"
            )
            for r in rows:
                med = statistics.median(r["times"])
                r.update(median_s=med, ms_per_step=1e3 * med / args.steps, speedup=t_one / med)
                gemv = f"{r['rank0_gemv_ms']:8.2f}" if "rank0_gemv_ms" in r else f"{'':8s}"
                gath = f"{r['allgather_ms']:9.3f}" if "allgather_ms" in r else f"{'':9s}"
                print(
                    f"{r['label']:42s} {med:9.3f} {r['ms_per_step']:8.2f} {r['speedup']:7.2f} "
                    f"{gemv} {gath} {r.get('same', '')}"
                )
        result["timing"] = rows

        # -- 2. GreeDi against central greedy on the pretrained two-layer features --------------
        t0 = time.perf_counter()
        feats = preset_features(args.preset)
        result["pretrain_s"] = time.perf_counter() - t0
        torch.save(feats, f"{work}/twolayer.pt")
        central = {}
        for name, (phi, y) in feats.items():
            for repl in (True, False):
                for n in ns:
                    if not repl and n > phi.shape[0]:
                        continue
                    sel = greedy_select(SquaredLoss(phi, y), n, replacement=repl)
                    central[f"{name}/n={n}/{'repl' if repl else 'norepl'}"] = float(sel.losses[-1])
        greedi_rows = []
        for w in gworlds:
            res = run_world(w, work, dict(base, threads=1, time=False, greedi=True))
            for key, g in res["greedi"].items():
                name, n, rep = key.split("/")
                greedi_rows.append(
                    dict(
                        setting=name,
                        N=feats[name][0].shape[0],
                        m=feats[name][0].shape[1],
                        n=int(n[2:]),
                        replacement=rep == "repl",
                        world_size=w,
                        central_loss=central[key],
                        greedi_loss=g["loss"],
                        ratio=g["loss"] / central[key],
                        chosen=g["chosen"],
                        union_size=g["union_size"],
                    )
                )
        print(f"\nGreeDi / central greedy loss, preset {args.preset!r} two-layer features, seed 0")
        print(
            f"{'setting':9s} {'N':>5s} {'m':>4s} {'n':>5s} {'repl':>5s} {'K':>2s} "
            f"{'central':>11s} {'greedi':>11s} {'ratio':>7s} chosen"
        )
        for r in greedi_rows:
            print(
                f"{r['setting']:9s} {r['N']:5d} {r['m']:4d} {r['n']:5d} {r['replacement']!s:>5s} "
                f"{r['world_size']:2d} {r['central_loss']:11.4e} {r['greedi_loss']:11.4e} "
                f"{r['ratio']:7.4f} {r['chosen']}"
            )
        result["greedi"] = greedi_rows
    result["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
