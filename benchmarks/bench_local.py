"""Local imitation at 224 px: whole-network selection time over one dense forward pass, and peak RSS.

Each measurement is one step, run in its own process (so its peak RSS is its own) and saved to
``benchmarks/results/local.json`` as it finishes; a step already there is skipped, so the
benchmark resumes. In one process: one forward pass of the calibration images through the dense
network (read from the generated folder with the evaluation transform, 32 at a time), then the
whole local selection (every internal group, 50% kept, ``--method``) on the same images, then the
forward pass again; the ratio is given against both passes.

    python benchmarks/bench_local.py --arch mobilenet_v2 --images 1024
    python benchmarks/bench_local.py --arch resnet50 --images 256 --method greedy-local-omp
    python benchmarks/bench_local.py --arch mobilenet_v2 --global-group 0   # global greedy

``--global-group i``: global batched greedy with the default recipe's settings (50 random
candidates per step, 128 images per step) on internal group ``i`` alone, for ``--global-steps``
steps; its seconds per step times the group's steps at 50% kept is set against local imitation's
seconds for that group (its ``select_s`` in the whole run above, plus an equal share of the
dense targets pass).

The weights are a random initialisation with randomised batch norms: the timing does not depend
on them (the layer problems' sizes do not), unlike the selection's quality (docs/prune.md).
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

RESULTS = Path(__file__).parent / "results" / "local.json"
# glibc hands large freed blocks back to the OS, so every new activation tensor page-faults
# (about a third of a ResNet-50 forward pass on 2 cores); these keep them in the process
KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 40), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def _folder(classes: int, per_class: int) -> Path:
    import greedyprune.prune as gp

    folder = Path(f"runs/bench-local-{classes}x{per_class}")
    if not (folder / "train").is_dir():
        gp.write_image_folder(folder, n_classes=classes, n_train=per_class, n_val=1, size=256)
    return folder


def _model(args, n_classes: int):
    """The architecture, randomly initialised (seed 0), batch norms randomised, in eval mode."""
    import torch

    import greedyprune.prune as gp

    torch.manual_seed(0)
    model = gp.build_model(args.arch, n_classes).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model


def _global_step(args) -> dict:
    """Global batched greedy (default recipe: 50 random candidates, 128 images per step) on one
    internal group for ``args.global_steps`` steps."""
    import torch

    import greedyprune.prune as gp

    train, _, n_classes = gp.load_data(f"folder:{args.folder}", 224)
    model = _model(args, n_classes)
    example = torch.zeros(1, 3, 224, 224)
    group = gp.find_prunable_groups(model, example, residual=False)[args.global_group]
    recipe = gp.RECIPES["default"]
    batch = args.global_batch or recipe.batch_size
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    _, res = gp.greedy_prune(
        model,
        gp.batch_stream(train, batch, generator=gen, num_workers=0),
        example,
        widths={group.name: args.global_steps},
        candidates=recipe.candidates,
        candidate_order=recipe.candidate_order,
        groups=[group],
        generator=0,
    )
    wall = time.perf_counter() - t0
    layer = res.layers[0]
    steps = len(layer.order)
    full = max(1, group.n_channels // 2)
    return {
        "arch": args.arch,
        "group": group.name,
        "channels": group.n_channels,
        "steps_measured": steps,
        "seconds_measured": layer.seconds,
        "wall_s": wall,
        "seconds_per_step": layer.seconds / steps,
        "steps_at_half": full,
        # a step's passes are linear in its images: scaled to the recipe's batch when smaller
        "group_s_at_half": layer.seconds / steps * full * recipe.batch_size / batch,
        "candidates": recipe.candidates,
        "batch": batch,
        "recipe_batch": recipe.batch_size,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "threads": torch.get_num_threads(),
    }


def _step(args) -> dict:
    import torch
    from torch.utils.data import DataLoader

    import greedyprune.prune as gp
    from greedyprune.prune._local import calibration_set

    train, test, n_classes = gp.load_data(f"folder:{args.folder}", 224)
    model = _model(args, n_classes)
    data = calibration_set(
        train, test, args.images, torch.Generator().manual_seed(0), gp.labels_of(train)
    )

    def forward_pass() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for x, _ in DataLoader(data, batch_size=32):
                model(x)
        return time.perf_counter() - t0

    example = torch.zeros(1, 3, 224, 224)
    groups = gp.find_prunable_groups(model, example, residual=False)
    widths = {g.name: max(1, g.n_channels // 2) for g in groups}
    before = forward_pass()
    settings = gp.LocalSettings(
        method=args.method, calibration_images=args.images, memory_budget=args.budget_mib << 20
    )
    request = gp.SelectionRequest(
        model=model,
        example=example,
        groups=groups,
        widths=widths,
        generator=torch.Generator().manual_seed(0),
        data=data,
        options={"local": settings},
    )
    t0 = time.perf_counter()
    choice = gp.select_channels(args.method, request)
    select = time.perf_counter() - t0
    maths = sum(r["select_s"] - r["pass_s"] for r in choice.info["layers"])
    # the same dense network again (the selection refitted the consumers of its own copy)
    model = _model(args, n_classes)
    after = forward_pass()
    return {
        "arch": args.arch,
        "method": args.method,
        "images": args.images,
        "groups": len(groups),
        "forward_s": [before, after],
        "select_s": select,
        "criterion_and_refit_s": maths,
        "ratio": [select / before, select / after],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "memory_budget_mib": args.budget_mib,
        "threads": torch.get_num_threads(),
        "phases": choice.info.get("phases", {}),
        "layers": [
            {k: r[k] for k in ("layer", "channels", "kept", "pass_s", "select_s", "refit_error")}
            for r in choice.info["layers"]
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--method", default="greedy-local-refit")
    p.add_argument("--budget-mib", type=int, default=1024)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--global-group", type=int, default=None, help="internal group index")
    p.add_argument("--global-steps", type=int, default=2)
    p.add_argument(
        "--global-batch",
        type=int,
        default=None,
        help="images per global step (default: the recipe's 128); the group's time is scaled to "
        "128 linearly",
    )
    p.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="run the step with glibc's malloc keeping freed memory (MALLOC_MMAP_THRESHOLD_, "
        "MALLOC_TRIM_THRESHOLD_): no page faults on every new activation",
    )
    p.add_argument("--tag", default="", help="appended to the result's key (a code version)")
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    key = f"{args.arch}-{args.method}-{args.images}-{args.budget_mib}"
    if args.global_group is not None:
        key = f"{args.arch}-global-group{args.global_group}-{args.global_steps}-steps"
        key += f"-batch{args.global_batch}" if args.global_batch else ""
    key += ("-kept-memory" if args.keep_freed_memory else "") + (f"-{args.tag}" if args.tag else "")
    if args.child:
        print(json.dumps(_step(args) if args.global_group is None else _global_step(args)))
        return
    done = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if key in done:
        print(f"{key}: done already", json.dumps(done[key]))
        return
    # 11 per class (1100 images) for up to 1024, 21 (2100) for 2048
    folder = _folder(args.classes, max(11, -(-args.images // args.classes)))
    out = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--folder", str(folder), "--child"],
        capture_output=True,
        text=True,
        env={**os.environ, **(KEEP_FREED if args.keep_freed_memory else {})},
    )
    if out.returncode:
        sys.exit(out.stderr)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    done[key] = row
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(done, indent=1) + "\n")
    print(key, json.dumps(row))


if __name__ == "__main__":
    main()
