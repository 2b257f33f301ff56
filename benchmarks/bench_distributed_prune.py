"""Pruning over K processes (gloo on the CPU, NCCL on GPUs): fine-tuning throughput and one layer's
selection time, 1 process against 2. Not a test: it measures time.

    python benchmarks/bench_distributed_prune.py [--device cpu] [--worlds 1,2]

Each world size runs in fresh processes (``torch.multiprocessing.spawn``, one thread each on the
CPU), alternating world sizes over ``--repeats`` rounds; medians are reported. Writes
``benchmarks/results/distributed_prune_<device>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

RESULTS = Path(__file__).resolve().parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, cfg, out):
    import greedyprune.prune as gp

    torch.set_num_threads(1)
    backend = "nccl" if cfg["device"] == "cuda" else "gloo"
    device = f"cuda:{rank}" if cfg["device"] == "cuda" else "cpu"
    if cfg["device"] == "cuda":
        torch.cuda.set_device(rank)
    tdist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    try:
        g = torch.Generator().manual_seed(0)
        size, n = cfg["size"], cfg["images"]
        data = TensorDataset(
            torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)
        )
        torch.manual_seed(0)
        model = gp.build_model(cfg["arch"], 10).to(device)
        example = torch.zeros(1, 3, size, size, device=device)
        group = gp.find_prunable_groups(model, example)[cfg["layer"]]
        gen = torch.Generator().manual_seed(1)
        stream = gp.batch_stream(data, cfg["batch"], generator=gen, device=device)
        t0 = time.perf_counter()
        _, res = gp.greedy_prune(
            model,
            stream,
            example,
            widths={group.name: cfg["steps"]},
            candidates=cfg["candidates"],
            groups=[group],
        )
        if cfg["device"] == "cuda":
            torch.cuda.synchronize()
        select_s = time.perf_counter() - t0
        # fine-tuning a fresh copy (selection first, on the same weights in every world size, so
        # the picks can be compared)
        torch.manual_seed(0)
        model = gp.build_model(cfg["arch"], 10).to(device)
        t0 = time.perf_counter()
        gp.finetune(model, data, epochs=1, lr=0.01, batch_size=cfg["batch"], generator=0)
        if cfg["device"] == "cuda":
            torch.cuda.synchronize()
        ft_s = time.perf_counter() - t0
        if rank == 0:
            out.put(
                {
                    "world": world,
                    "finetune_images_per_s": n / ft_s,
                    "select_s": select_s,
                    "layer": group.name,
                    "kept": res.layers[0].kept,
                }
            )
    finally:
        tdist.destroy_process_group()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--worlds", default="1,2")
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--images", type=int, default=512, help="training images (one epoch)")
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument("--layer", type=int, default=8, help="index among the prunable groups")
    p.add_argument("--steps", type=int, default=8, help="channels selected")
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    cfg = vars(args)
    worlds = [int(w) for w in args.worlds.split(",")]
    ctx = mp.get_context("spawn")
    runs: dict[int, list[dict]] = {w: [] for w in worlds}
    for _ in range(args.repeats):
        for w in worlds:
            q = ctx.SimpleQueue()
            mp.spawn(_worker, args=(w, _free_port(), cfg, q), nprocs=w)
            runs[w].append(q.get())
    rows = []
    for w in worlds:
        rows.append(
            {
                "world": w,
                "finetune_images_per_s": statistics.median(
                    r["finetune_images_per_s"] for r in runs[w]
                ),
                "select_s": statistics.median(r["select_s"] for r in runs[w]),
                "same_picks_as_1": runs[w][0]["kept"] == runs[worlds[0]][0]["kept"],
            }
        )
    base = rows[0]
    print(f"{args.arch} {args.size}px, {args.device}, medians of {args.repeats}")
    print("world  fine-tune img/s  (x)    selection s  (x)    same picks")
    for r in rows:
        print(
            f"{r['world']:5d}  {r['finetune_images_per_s']:15.1f}  "
            f"{r['finetune_images_per_s'] / base['finetune_images_per_s']:4.2f}  "
            f"{r['select_s']:11.2f}  {base['select_s'] / r['select_s']:4.2f}  "
            f"{r['same_picks_as_1']}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"distributed_prune_{args.device}.json"
    out.write_text(json.dumps({"config": cfg, "rows": rows, "runs": runs}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
