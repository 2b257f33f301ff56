"""Time to select channels of one layer: batched (cached prefix, stacked copies) vs sequential;
and the inference latency of a model cut to half its MACs against the unpruned one.

The sequential mode is the authors' reference (one full forward pass of the whole network per
candidate). Both modes get the same batches and candidate draws, so they must pick the same
channels; the script checks it and reports the median ratio of wall times measured side by side
(``--repeats`` alternating runs of each). The latency rows time ``model(x)`` for a batch of
``--batch`` images, the full and the pruned model alternating, medians of ``--latency-repeats``.

    .venv/bin/python benchmarks/bench_prune.py                 # MobileNetV2, 64 px, CPU, all layers
    .venv/bin/python benchmarks/bench_prune.py --layers 6 --repeats 5
    .venv/bin/python benchmarks/bench_prune.py --device cuda --size 224 --batch 128
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

import greedyprune.prune as gp


def _run(mode, layer, args, device, dtype):
    torch.manual_seed(0)
    model = gp.build_model(args.arch, 1000).to(device=device, dtype=dtype).eval()
    example = torch.zeros(1, 3, args.size, args.size, device=device, dtype=dtype)
    groups = gp.find_prunable_groups(model, example)
    group = groups[layer]
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
    pruned = copy.deepcopy(full)
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
    p.add_argument(
        "--layers",
        default="all",
        help="indices among the prunable groups, comma-separated, or 'all' (default)",
    )
    p.add_argument("--steps", type=int, default=4, help="channels selected per layer")
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
    example = torch.zeros(1, 3, args.size, args.size)
    n_groups = len(gp.find_prunable_groups(gp.build_model(args.arch, 1000), example))
    if args.layers == "all":
        layers = list(range(n_groups))
    else:
        try:
            layers = [int(v) for v in args.layers.split(",")]
        except ValueError:
            p.error(f"--layers {args.layers!r}: pass comma-separated ints or 'all'")
        if not all(0 <= v < n_groups for v in layers):
            p.error(f"--layers {args.layers!r}: {args.arch} has groups 0..{n_groups - 1}")
    rows = []
    print(f"{args.arch}, {args.size} px, {args.candidates} candidates x {args.batch} images, ")
    print(f"{args.steps} steps per layer, {device}, {torch.get_num_threads()} threads, medians of")
    print(f"{args.repeats} alternating runs (the same channels must be picked by both modes)\n")
    print(f"{'layer':<24} {'channels':>8} {'sequential s':>12} {'batched s':>10} {'speed-up':>9}")
    for layer in layers:
        t_seq, t_bat, same = [], [], True
        for _ in range(args.repeats):
            t, r_seq = _run("sequential", layer, args, device, dtype)
            t_seq.append(t)
            t, r_bat = _run("batched", layer, args, device, dtype)
            t_bat.append(t)
            same = same and r_seq.order == r_bat.order
        row = {
            "layer": r_bat.name,
            "index": layer,
            "channels": r_bat.n_channels,
            "steps": len(r_bat.order),
            "sequential_s": round(statistics.median(t_seq), 3),
            "batched_s": round(statistics.median(t_bat), 3),
            "speedup": round(statistics.median(a / b for a, b in zip(t_seq, t_bat)), 2),
            "same_selection": same,
        }
        rows.append(row)
        print(
            f"{row['layer']:<24} {row['channels']:>8} {row['sequential_s']:>12.3f} "
            f"{row['batched_s']:>10.3f} {row['speedup']:>8.2f}x" + ("" if same else "  DIFFERENT")
        )
    summary = {
        "arch": args.arch,
        "size": args.size,
        "candidates": args.candidates,
        "batch": args.batch,
        "steps": args.steps,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "median_speedup": statistics.median(r["speedup"] for r in rows),
        "total_speedup": round(
            sum(r["sequential_s"] for r in rows) / sum(r["batched_s"] for r in rows), 2
        ),
        **_latency(args, device, dtype),
        "layers": rows,
    }
    print(
        f"\nmedian speed-up over layers {summary['median_speedup']:.2f}x; whole selection "
        f"(sum over layers) {summary['total_speedup']:.2f}x"
    )
    print(
        f"latency of a batch of {args.batch}: unpruned {summary['latency_full_ms']} ms, cut to "
        f"{summary['macs_pruned'] / summary['macs_full']:.0%} of the MACs "
        f"{summary['latency_pruned_ms']} ms ({summary['latency_speedup']}x)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    if not all(r["same_selection"] for r in rows):
        raise SystemExit("batched and sequential selections differ")


if __name__ == "__main__":
    main()
