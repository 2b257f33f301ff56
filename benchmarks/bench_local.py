"""Local imitation at 224 px: whole-network selection time over one dense forward pass, and peak RSS.

Each measurement is one step, run in its own process (so its peak RSS is its own) and saved to
``benchmarks/results/local.json`` as it finishes; a step already there is skipped, so the
benchmark resumes. In one process: one forward pass of the calibration images through the dense
network (read from the generated folder with the evaluation transform, 32 at a time), then the
whole local selection (every internal group, 50% kept, ``--method``) on the same images, then the
forward pass again; the ratio is given against both passes.

    python benchmarks/bench_local.py --arch mobilenet_v2 --images 1024
    python benchmarks/bench_local.py --arch resnet50 --images 256 --method greedy-local-omp

The weights are a random initialisation with randomised batch norms: the timing does not depend
on them (the layer problems' sizes do not), unlike the selection's quality (docs/prune.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "local.json"
FOLDER = Path("runs/bench-local-folder")


def _folder(classes: int, per_class: int) -> Path:
    import greedyprune.prune as gp

    if not (FOLDER / "train").is_dir():
        gp.write_image_folder(FOLDER, n_classes=classes, n_train=per_class, n_val=1, size=256)
    return FOLDER


def _step(args) -> dict:
    import torch
    from torch.utils.data import DataLoader

    import greedyprune.prune as gp
    from greedyprune.prune._local import calibration_set

    torch.manual_seed(0)
    train, test, n_classes = gp.load_data(f"folder:{FOLDER}", 224)
    model = gp.build_model(args.arch, n_classes).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
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
    model = gp.build_model(args.arch, n_classes).eval()
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
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--method", default="greedy-local-refit")
    p.add_argument("--budget-mib", type=int, default=2048)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    key = f"{args.arch}-{args.method}-{args.images}-{args.budget_mib}"
    if args.child:
        print(json.dumps(_step(args)))
        return
    done = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if key in done:
        print(f"{key}: done already", json.dumps(done[key]))
        return
    _folder(args.classes, max(11, -(-args.images // args.classes)))  # 1100 images: up to 1024
    out = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--child"], capture_output=True, text=True
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
