"""``make gpu-check``: the checks that need a CUDA GPU, in one run of under 8 minutes.

1. the CUDA tests (every test parametrised over devices, ``-k cuda``);
2. ``bench_kernel.py --device cuda --quick`` (a greedy step against one GEMV);
3. ``bench_prune.py`` at 224 px on CUDA (batched against sequential scoring: same picks,
   speed-up per layer; the target is >= 10x), on 5 of MobileNetV2's layers;
4. ``bench_imagenet.py memory`` is CPU-side and not repeated here.

Each step's output goes to the terminal; ``benchmarks/results/gpu_check.json`` records every
step's exit code and wall time, next to the JSON each benchmark writes. CI never runs this: it
has no GPU. Exit code: 0 when every step passed, 1 otherwise, 2 without a CUDA device.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

STEPS = [
    ("cuda tests", [sys.executable, "-m", "pytest", "-q", "-k", "cuda", "tests"], 240),
    (
        "bench_kernel cuda",
        [sys.executable, "benchmarks/bench_kernel.py", "--device", "cuda", "--quick"],
        90,
    ),
    (
        "bench_prune cuda 224px",
        [
            sys.executable,
            "benchmarks/bench_prune.py",
            "--device",
            "cuda",
            "--size",
            "224",
            "--batch",
            "128",
            "--layers",
            "0,4,8,12,16",
            "--steps",
            "2",
            "--repeats",
            "2",
            "--latency-repeats",
            "20",
            "--out",
            str(RESULTS / "prune_cuda_224.json"),
        ],
        150,
    ),
]


def main() -> int:
    try:
        import torch
    except ImportError:
        print("gpu-check: torch is not installed", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(
            "gpu-check: no CUDA device on this machine; run it where there is one", file=sys.stderr
        )
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "steps": [],
    }
    failed = False
    for name, cmd, limit in STEPS:
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, timeout=limit, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = 124
        wall = time.perf_counter() - t0
        record["steps"].append({"step": name, "rc": rc, "wall_s": round(wall, 1)})
        failed |= rc != 0
        print(f"== {name}: exit {rc} in {wall:.0f} s", flush=True)
    out = RESULTS / "gpu_check.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
