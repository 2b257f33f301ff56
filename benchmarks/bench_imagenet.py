"""The ImageNet path at ImageNet shape, without ImageNet: a generated ImageNet-layout folder of
JPEGs, full-size models at 224 px. Not a test: it measures time and memory.

    python benchmarks/bench_imagenet.py memory      # peak RSS of the first layer's selection,
                                                    # --n-eval 256 against 2048 (MobileNetV2)
    python benchmarks/bench_imagenet.py rehearse --arch mobilenet_v2   # prune --recipe authors
    python benchmarks/bench_imagenet.py rehearse --arch mobilenet_v2 --objective local
    python benchmarks/bench_imagenet.py residual    # MACs that residual groups make reachable

Every measurement runs in a fresh subprocess, so each peak RSS (``ru_maxrss`` of the child) is
its own. Results go to ``benchmarks/results/imagenet_<what>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def _folder(path: Path, classes: int, n_train: int, n_val: int) -> Path:
    import greedyprune.prune as gp

    if not (path / "train").is_dir():
        print(f"writing {classes} classes x ({n_train} + {n_val}) JPEGs at 256 px to {path}")
        gp.write_image_folder(path, n_classes=classes, n_train=n_train, n_val=n_val, size=256)
    return path


def _checkpoint(path: Path, arch: str, classes: int, epochs: float = 0, folder=None) -> Path:
    """A state dict with the folder's class count: randomly initialised, or trained here for
    ``epochs`` on the folder at 64 px (cheap on a CPU; the classes are colours and stripes, which
    a CNN still reads at 224 px), so that the tolerance rule meets a network that classifies."""
    import torch

    import greedyprune.prune as gp

    if not path.is_file():
        torch.manual_seed(0)
        model = gp.build_model(arch, classes)
        if epochs:
            train, _, _ = gp.load_data(f"folder:{folder}", 64)
            gp.finetune(
                model, train, epochs=epochs, lr=0.05, batch_size=64, generator=0, num_workers=2
            )
        torch.save(model.state_dict(), path)
    return path


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line; add the child's peak RSS."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stderr[-3000:]}")
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    rec["wall_s"] = wall
    return rec


_MEMORY_CHILD = """
import json, resource, time, torch
import greedyprune.prune as gp
from torch.utils.data import Subset
torch.set_num_threads({threads})
train, _, classes = gp.load_data("folder:{folder}", 224)
model = gp.build_model("mobilenet_v2", classes, "{ckpt}")
example = torch.zeros(1, 3, 224, 224)
groups = gp.find_prunable_groups(model, example)
first = groups[0]
idx = gp.eval_indices(len(train), n_eval={n_eval})
eval_data = gp.stream_batches(Subset(train, idx), 64, num_workers={workers})
gen = torch.Generator().manual_seed(0)
t = time.perf_counter()
_, res = gp.greedy_prune(
    model, gp.batch_stream(train, {batch}, generator=gen, num_workers={workers}), example,
    widths={{first.name: {steps}}}, tol=0.0, eval_data=eval_data, precheck=None,
    candidates={candidates}, groups=[first], eval_cache_bytes={cache_mb} << 20,
)
layer = res.layers[0]
print(json.dumps(dict(n_eval=len(idx), layer=first.name, steps=len(layer.order),
    full_evaluations=layer.full_evaluations, select_s=time.perf_counter() - t,
    peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def memory(args) -> dict:
    folder = _folder(Path(args.folder), args.classes, args.n_train, args.n_val)
    ckpt = _checkpoint(Path(args.folder) / "mobilenet_v2.pth", "mobilenet_v2", args.classes)
    rows = []
    for n_eval in args.n_evals:
        code = _MEMORY_CHILD.format(
            folder=folder,
            ckpt=ckpt,
            n_eval=n_eval,
            threads=args.threads,
            workers=args.workers,
            batch=args.batch,
            steps=args.steps,
            candidates=args.candidates,
            cache_mb=args.eval_cache_mb,
        )
        rec = _child(code)
        rows.append(rec)
        print(
            f"n_eval {rec['n_eval']:5d}: peak RSS {rec['peak_rss_mib']:8.0f} MiB, "
            f"{rec['full_evaluations']} passes over the eval set, {rec['select_s']:.1f} s"
        )
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"peak RSS ratio, n_eval {args.n_evals[-1]} / {args.n_evals[0]}: {ratio:.3f}")
    return {"rows": rows, "ratio": ratio}


def rehearse(args) -> dict:
    folder = _folder(Path(args.folder), args.classes, args.n_train, args.n_val)
    name = (
        f"{args.arch}-trained{args.weights_epochs:g}.pth"
        if args.weights_epochs
        else f"{args.arch}.pth"
    )
    ckpt = _checkpoint(
        Path(args.folder) / name, args.arch, args.classes, args.weights_epochs, folder
    )
    local = args.objective == "local"
    out = Path(args.out or f"runs/rehearse-{args.arch}" + ("-local" if local else ""))
    common = ["--arch", args.arch, "--data", f"folder:{folder}", "--weights", str(ckpt)]
    common += ["--finetune-epochs", str(args.finetune_epochs)]
    common += ["--finetune-batch-size", str(args.finetune_batch), "--workers", str(args.workers)]
    common += ["--out", str(out), "--no-progress"]
    if local:  # the default recipe's final phase at the same length; no tolerance, no between
        knobs = ["--objective", "local", "--calibration-images", str(args.images)]
        knobs += ["--target-macs", args.target_macs or "0.5"]
    else:
        knobs = ["--recipe", "authors", "--n-eval", str(args.n_eval)]
        knobs += ["--candidates", str(args.candidates), "--batch-size", str(args.batch)]
        knobs += ["--between-epochs", str(args.between_epochs)]
        knobs += ["--eval-cache-mb", str(args.eval_cache_mb)]
    cmd = [sys.executable, "-m", "greedyprune", "prune", *common, *knobs]
    if args.channels_last:
        cmd.append("--channels-last")
    if args.target_macs and not local:
        cmd += ["--target-macs", args.target_macs]
    print(" ".join(cmd))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    load_before = os.getloadavg()[0]  # other work on the machine stretches the wall time
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = usage.ru_maxrss / 1024
    if proc.returncode != 0:
        raise SystemExit(f"prune exited {proc.returncode}")
    import pandas as pd

    layers = pd.read_csv(out / "layers.csv")
    summary = json.loads((out / "summary.json").read_text())
    cut = layers[layers["evaluations"] > 0] if "evaluations" in layers else layers
    rec = {
        "arch": args.arch,
        "out": str(out),
        "config": {
            "candidates": args.candidates,
            "batch": args.batch,
            "n_eval": args.n_eval,
            "eval_cache_mb": args.eval_cache_mb,
            "channels_last": args.channels_last,
        },
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load_before": load_before,
        "peak_rss_mib": peak,
        "select_s": summary["select_s"],
        "layers": len(layers),
        "layers_selected": len(cut),
        "per_layer_select_s_median": float(cut["select_s"].median()) if len(cut) else None,
        "per_layer_select_s_max": float(cut["select_s"].max()) if len(cut) else None,
        "steps": int(cut["kept"].sum()),
        "full_evaluations": int(layers["full_evaluations"].sum()) if not local else 0,
        "objective": args.objective,
        "summary": summary,
    }
    print(json.dumps({k: v for k, v in rec.items() if k != "summary"}, indent=1))
    print(layers.to_string(index=False))
    return rec


def _split_macs(arch: str, classes: int, size: int) -> tuple[int, dict[str, tuple[int, int]]]:
    """Full MACs per image and, per prunable group, (prefix, suffix) MACs per image: the layers
    that run before the group's first consumer, and the rest (the cut is at the block input, so
    the prefix is a slight underestimate)."""
    import torch

    import greedyprune.prune as gp

    model = gp.build_model(arch, classes)
    example = torch.zeros(1, 3, size, size)
    costs = gp.profile_layers(model, example)
    total = sum(c.macs for c in costs)
    order = {c.name: i for i, c in enumerate(costs)}
    split = {}
    for g in gp.find_prunable_groups(model, example):
        first = min(order[c] for c in g.consumers)
        prefix = sum(c.macs for c in costs[:first])
        split[g.name] = (prefix, total - prefix, g.n_channels)
    return total, split


def selection_macs(split, total, kept, full_evals, *, candidates, batch, n_eval) -> float:
    """MACs of a layer-wise selection: per step, the prefix on the batch, K stacked copies through
    the suffix, the pre-check's one copy; per full evaluation, the whole net on the eval set (one
    more per layer for the starting value)."""
    macs = 0.0
    for name, (prefix, suffix, _) in split.items():
        steps = kept.get(name, 0)
        if steps == 0:
            continue
        macs += steps * batch * (prefix + (candidates + 1) * suffix)
        macs += (full_evals.get(name, 0) + 1) * n_eval * total
    return macs


def cost(args) -> dict:
    """Operation counts of the authors' ImageNet run (exact for the architecture; the kept
    fraction per group is an assumption, ``sqrt(--target-fraction)``), and, when a finished
    rehearsal of the same architecture is on disk, the MACs/s it reached on this machine."""
    import pandas as pd

    total, split = _split_macs(args.arch, 1000, 224)
    keep = args.target_fraction**0.5
    k_full = {n: max(1, round(keep * d)) for n, (_, _, d) in split.items()}
    rows = []
    for label, per_step in (("1 evaluation pass per layer", 0.0), ("1 per step", 1.0)):
        ev = {n: round(per_step * k) for n, k in k_full.items()}
        macs = selection_macs(split, total, k_full, ev, candidates=50, batch=128, n_eval=6406)
        images = sum(k_full.values()) * 128 + (sum(ev.values()) + len(k_full)) * 6406
        rows.append({"case": label, "selection_macs": macs, "images_decoded": images})
        print(f"{label}: selection {macs / 1e15:.2f} PMAC, {images / 1e6:.2f}M images decoded")
    out = {
        "arch": args.arch,
        "macs_per_image": total,
        "groups": len(split),
        "keep_ratio_assumed": keep,
        "steps": sum(k_full.values()),
        "rows": rows,
    }
    print(f"{args.arch}: {total / 1e6:.0f}M MACs/image, {len(split)} groups, {out['steps']} steps")
    path = RESULTS / f"imagenet_rehearse_{args.arch}.json"
    if path.is_file():
        rec = json.loads(path.read_text())
        layers = pd.read_csv(Path(rec["out"]) / "layers.csv")
        _, small = _split_macs(args.arch, args.classes, 224)
        kept = {r.layer: int(r.kept) for r in layers.itertuples() if r.evaluations > 0}
        evals = {r.layer: int(r.full_evaluations) for r in layers.itertuples()}
        cfg = rec["config"]
        done = selection_macs(
            small,
            total,
            kept,
            evals,
            candidates=cfg["candidates"],
            batch=cfg["batch"],
            n_eval=cfg["n_eval"],
        )
        out["rehearsal_macs_per_s"] = done / rec["select_s"]
        print(f"rehearsal: {out['rehearsal_macs_per_s'] / 1e9:.1f} GMAC/s on this machine")
    return out


def residual(args) -> dict:
    import torch

    import greedyprune.prune as gp

    rows = []
    for arch in args.archs:
        model = gp.build_model(arch, 1000)
        example = torch.zeros(1, 3, 224, 224)
        costs = gp.profile_layers(model, example)
        for residual_groups in (False, True):
            groups = gp.find_prunable_groups(model, example, residual=residual_groups)
            mm = gp.MacsModel(costs, groups)
            names = [g.name for g in groups]
            row = {
                "arch": arch,
                "residual_groups": residual_groups,
                "groups": len(groups),
                "prunable_channels": sum(g.n_channels for g in groups),
                "macs_full_M": mm.full_macs / 1e6,
                "macs_smallest_M": mm.macs({n: 1 for n in names}) / 1e6,
                "macs_half_width_M": mm.macs(mm.uniform_widths(0.5, names)) / 1e6,
            }
            rows.append(row)
            print(
                f"{arch:14s} residual groups {'on ' if residual_groups else 'off'}: "
                f"{row['groups']:3d} groups, {row['prunable_channels']:6d} channels; MACs "
                f"{row['macs_full_M']:.0f}M full, {row['macs_half_width_M']:.0f}M at half "
                f"width, {row['macs_smallest_M']:.0f}M at one channel per group"
            )
    return {"rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--folder", default="runs/imagenet-rehearsal-data")
    common.add_argument("--classes", type=int, default=100)
    common.add_argument("--n-train", type=int, default=24, help="training images per class")
    common.add_argument("--n-val", type=int, default=2, help="validation images per class")
    common.add_argument("--threads", type=int, default=2)
    common.add_argument("--workers", type=int, default=0)
    common.add_argument("--candidates", type=int, default=2)
    common.add_argument("--batch", type=int, default=4, help="images per greedy step")
    m = sub.add_parser("memory", parents=[common])
    m.add_argument("--n-evals", type=int, nargs="+", default=[256, 2048])
    m.add_argument("--steps", type=int, default=2, help="channels selected in the first layer")
    m.add_argument(
        "--eval-cache-mb",
        type=int,
        default=0,
        help="greedy_prune's evaluation cache in MiB (0, the default: every pass streamed, the "
        "bound this benchmark checks; with a budget, peak memory grows up to it)",
    )
    r = sub.add_parser("rehearse", parents=[common])
    r.add_argument("--arch", default="mobilenet_v2")
    r.add_argument(
        "--objective",
        choices=["global", "local"],
        default="global",
        help="global: --recipe authors (greedy on the network's loss); local: --objective local "
        "with greedy-local-refit on --images calibration images, target 0.5 unless given",
    )
    r.add_argument("--images", type=int, default=1024, help="calibration images (local)")
    r.add_argument("--n-eval", type=int, default=400)
    r.add_argument("--target-macs", default=None)
    r.add_argument("--between-epochs", type=float, default=0.01)
    r.add_argument("--finetune-epochs", type=float, default=0.01)
    r.add_argument("--finetune-batch", type=int, default=16)
    r.add_argument("--out", default=None)
    r.add_argument(
        "--eval-cache-mb", type=int, default=2048, help="prune's --eval-cache-mb (0: stream)"
    )
    r.add_argument(
        "--nchw", dest="channels_last", action="store_false", help="without --channels-last"
    )
    r.add_argument(
        "--weights-epochs",
        type=float,
        default=0,
        help="train the checkpoint this many epochs at 64 px first (0: random weights)",
    )
    c = sub.add_parser("cost", parents=[common])
    c.add_argument("--arch", default="mobilenet_v2")
    c.add_argument(
        "--target-fraction", type=float, default=0.7, help="MACs kept (the paper: 220M/314M)"
    )
    s = sub.add_parser("residual")
    s.add_argument("--archs", nargs="+", default=["resnet50", "mobilenet_v2", "resnet34"])
    args = p.parse_args()
    rec = {"memory": memory, "rehearse": rehearse, "residual": residual, "cost": cost}[args.what](
        args
    )
    RESULTS.mkdir(exist_ok=True)
    name = args.what + (f"_{args.arch}" if args.what in ("rehearse", "cost") else "")
    if args.what == "rehearse" and args.objective == "local":
        name += "_local"
    out = RESULTS / f"imagenet_{name}.json"
    out.write_text(json.dumps(rec, indent=1, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
