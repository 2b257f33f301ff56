"""Time to select channels of one layer: batched (cached prefix, stacked copies) vs sequential;
and the inference latency of a model cut to half its MACs against the unpruned one.

The sequential mode is the authors' reference (one full forward pass of the whole network per
candidate). Both modes get the same batches and candidate draws, so they must pick the same
channels; the script checks it and reports the median ratio of wall times measured side by side
(``--repeats`` alternating runs of each). The latency rows time ``model(x)`` for a batch of
``--batch`` images, the full and the pruned model alternating, medians of ``--latency-repeats``.

    .venv/bin/python benchmarks/bench_prune.py                       # MobileNetV2, 64 px, CPU
    .venv/bin/python benchmarks/bench_prune.py --device cuda --size 224 --batch 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import greedyprune.prune as gp


def _run(mode, args, device, dtype):
    torch.manual_seed(0)
    model = gp.build_model(args.arch, 1000).to(device=device, dtype=dtype).eval()
    example = torch.zeros(1, 3, args.size, args.size, device=device, dtype=dtype)
    groups = gp.find_prunable_groups(model, example)
    group = groups[args.layer]
    gen = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(device, dtype),
            torch.randint(0, 1000, (args.batch,), generator=gen).to(device),
        )
        for _ in range(args.steps + 1)
    ]
    # A MACs target that lets this one group keep exactly `steps` channels.
    mm = gp.MacsModel(gp.profile_layers(model, example), groups)
    target = mm.macs({group.name: args.steps})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    _, res = gp.greedy_prune(
        model,
        iter(batches),
        example,
        target_macs=target,
        candidates=args.candidates,
        mode=mode,
        groups=[group],
        generator=0,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t
    rec = res.layers[0]
    return seconds, rec


def _latency(args, device, dtype) -> dict:
    """Median latency of the unpruned model and of one cut to 50% of its MACs (L1 channels:
    the shapes, hence the speed, are those of any selection at that target)."""
    torch.manual_seed(0)
    full = gp.build_model(args.arch, 1000).to(device=device, dtype=dtype).eval()
    example = torch.zeros(1, 3, args.size, args.size, device=device, dtype=dtype)
    groups = gp.find_prunable_groups(full, example)
    mm = gp.MacsModel(gp.profile_layers(full, example), groups)
    widths = mm.plan(gp.parse_macs(0.5, mm.full_macs))
    pruned = gp.build_model(args.arch, 1000).to(device=device, dtype=dtype).eval()
    pruned.load_state_dict(full.state_dict())
    kept = gp.baseline_channels("l1", pruned, example, groups, widths)
    gp.prune_channels(pruned, example, kept)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device, dtype=dtype)
    times = {"full": [], "pruned": []}
    with torch.no_grad():
        for _ in range(args.latency_repeats):
            for name, model in (("full", full), ("pruned", pruned)):
                times[name].append(gp.latency_ms(model, x, repeats=1))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "macs_full": gp.count_macs(full, example),
        "macs_pruned": gp.count_macs(pruned, example),
        "latency_full_ms": round(med["full"], 2),
        "latency_pruned_ms": round(med["pruned"], 2),
        "latency_speedup": round(med["full"] / med["pruned"], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--layer", type=int, default=6, help="index among the prunable groups")
    p.add_argument("--steps", type=int, default=6, help="channels selected")
    p.add_argument("--candidates", type=int, default=50, help="the authors' 50")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each mode")
    p.add_argument("--latency-repeats", type=int, default=20)
    p.add_argument("--out", default="runs/bench/bench_prune.json")
    args = p.parse_args()
    if args.repeats < 1 or args.latency_repeats < 1:
        p.error("--repeats and --latency-repeats must be >= 1")
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    t_seq, t_bat, same = [], [], True
    for _ in range(args.repeats):
        t, r_seq = _run("sequential", args, device, dtype)
        t_seq.append(t)
        t, r_bat = _run("batched", args, device, dtype)
        t_bat.append(t)
        same = same and r_seq.order == r_bat.order
    row = {
        "arch": args.arch,
        "size": args.size,
        "layer": r_bat.name,
        "channels": r_bat.n_channels,
        "steps": len(r_bat.order),
        "candidates": args.candidates,
        "batch": args.batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "sequential_s": round(statistics.median(t_seq), 3),
        "batched_s": round(statistics.median(t_bat), 3),
        "speedup": round(statistics.median(a / b for a, b in zip(t_seq, t_bat)), 2),
        "same_selection": same,
        "order": r_bat.order,
        **_latency(args, device, dtype),
    }
    width = max(len(k) for k in row)
    for k, v in row.items():
        print(f"{k:<{width}}  {v}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(row, indent=1) + "\n")
    if not same:
        raise SystemExit("batched and sequential selections differ")


if __name__ == "__main__":
    main()
