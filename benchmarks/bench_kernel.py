"""Benchmark of the greedy kernel's squared-loss fast path against its two yardsticks.

For every N in {1k, 10k, 50k} and m in {256, 4096}, float32, on each requested device:

- ``step/gemv``: the median time of one greedy step (``greedy_select`` on ``SquaredLoss``, exact,
  with replacement; and without replacement, the authors' variant) divided by the median time of
  one ``[N, m]`` matrix-vector product, each step paired with a GEMV timed right after it (so
  load from other processes hits both alike). docs/theory.md says a step is one GEMV; the target is a
  ratio <= 1.3. ``step_over_gemv_min`` (fastest step / fastest GEMV) is the same ratio with the
  interference of other processes taken out as far as timing can.
- ``speed-up``: the median time of one step of the slow, obvious loop (for each candidate build the
  candidate subnetwork's prediction and its loss, one candidate at a time) divided by the kernel's
  median step. The slow loop is timed on a few steps only (``--slow-steps``), as it takes seconds
  per step at large N. Target >= 100x at N = 10k.
- ``end-to-end with setup``: at N = 20k, m = 1024 (``--setup-n``, ``--setup-m``), the median time of
  a whole ``greedy_select(SquaredLoss(features, target), 60)`` (building the objective, its input
  checks and cached norms included) divided by the median time of 60 back-to-back ``[N, m]``
  GEMVs, the two timed alternately in one run (``--setup-repeats`` pairs) so load from other
  processes hits both alike. Target <= 1.3: setup must cost a few GEMVs, not tens. The time of
  building the objective alone is reported too, in GEMVs.

Step times are taken from timestamps in the ``stop`` callback, which ``greedy_select`` calls once
per step after the step's loss has reached the host (so a CUDA step has finished); the GEMV and the
slow loop are timed with ``torch.cuda.synchronize`` on CUDA. The squared-loss fast path does not
chunk, so no row reports chunking, N = 50k, m = 4096 (800 MB of float32 features) included.

Prints a table and writes ``benchmarks/results/kernel_<device>.json`` (the grid) and
``benchmarks/results/kernel_setup_<device>.json`` (the end-to-end row). Not a test: numbers depend
on the machine and its load.

    python benchmarks/bench_kernel.py                  # full grid, CPU (and CUDA if present)
    python benchmarks/bench_kernel.py --quick          # N in {1k, 10k}, m = 256, fewer repeats
    python benchmarks/bench_kernel.py --device cpu --threads 1
    python benchmarks/bench_kernel.py --only setup     # the end-to-end-with-setup row only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from greedyprune.select import SquaredLoss, greedy_select

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_gemv(features: torch.Tensor, repeats: int) -> list[float]:
    """Seconds per ``features @ v`` for a fresh v each call (features: [N, m])."""
    device = features.device
    vs = torch.randn(repeats, features.shape[1], dtype=features.dtype, device=device)
    out = torch.empty(features.shape[0], dtype=features.dtype, device=device)
    times = []
    _sync(device)
    for v in vs:
        t0 = time.perf_counter()
        torch.mv(features, v, out=out)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def time_greedy_steps(
    features: torch.Tensor, target: torch.Tensor, steps: int, replacement: bool
) -> tuple[list[float], list[float]]:
    """Seconds per greedy step and, between consecutive steps, seconds per ``[N, m]`` GEMV.

    The stop callback, which ``greedy_select`` calls once per step after the step's loss has
    reached the host, times one GEMV and then restarts the step clock: each step is paired with
    a GEMV taken right after it, so load from other processes hits both alike. The first step
    (setup) is dropped.
    """
    device = features.device
    v = torch.randn(features.shape[1], dtype=features.dtype, device=device)
    out = torch.empty(features.shape[0], dtype=features.dtype, device=device)
    step_s: list[float] = []
    gemv_s: list[float] = []
    clock = [0.0]

    def pair(step: int, loss: float) -> bool:
        t0 = time.perf_counter()
        step_s.append(t0 - clock[0])
        torch.mv(features, v, out=out)
        _sync(device)
        t1 = time.perf_counter()
        gemv_s.append(t1 - t0)
        clock[0] = time.perf_counter()
        return False

    objective = SquaredLoss(features, target)
    _sync(device)
    clock[0] = time.perf_counter()
    greedy_select(objective, steps, replacement=replacement, stop=pair)
    return step_s[1:], gemv_s[1:]


def slow_step_times(features: torch.Tensor, target: torch.Tensor, steps: int) -> list[float]:
    """Seconds per step of the obvious loop: one candidate prediction and loss at a time.

    The per-candidate losses are stacked before the argmin, so on CUDA the loop does not wait for
    every candidate (a kinder yardstick than a host comparison per candidate).
    """
    device = features.device
    N, m = features.shape
    total = torch.zeros(m, dtype=features.dtype, device=device)
    times = []
    for k in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        losses = []
        for i in range(N):
            pred = (total + features[i]) / (k + 1)
            losses.append((pred - target).pow(2).sum() / (2 * m))
        j = int(torch.argmin(torch.stack(losses)))
        total += features[j]
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def bench_one(N: int, m: int, device: torch.device, *, steps: int, slow_steps: int) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(N * 7919 + m)
    features = torch.randn(N, m, generator=gen).to(device)
    # A target inside the hull (the full average) plus noise, as in the experiments.
    target = features.mean(0) + 0.1 * torch.randn(m, generator=gen).to(device)
    # Warm-up: allocator, kernels, lazy initialisation.
    time_gemv(features, 5)
    time_greedy_steps(features, target, 5, True)

    step_repl, gemv_repl = time_greedy_steps(features, target, steps, True)
    step_norepl, gemv_norepl = time_greedy_steps(features, target, min(steps, N), False)
    slow = slow_step_times(features, target, slow_steps)

    gemv_s = statistics.median(gemv_repl + gemv_norepl)
    repl_s = statistics.median(step_repl)
    norepl_s = statistics.median(step_norepl)
    slow_s = statistics.median(slow)
    return {
        "N": N,
        "m": m,
        "dtype": "float32",
        "device": str(device),
        "feature_bytes": N * m * 4,
        "gemv_us": gemv_s * 1e6,
        "step_us": repl_s * 1e6,
        "step_norepl_us": norepl_s * 1e6,
        "step_over_gemv": repl_s / statistics.median(gemv_repl),
        "step_norepl_over_gemv": norepl_s / statistics.median(gemv_norepl),
        "step_over_gemv_min": min(step_repl) / min(gemv_repl),
        "slow_step_s": slow_s,
        "speedup_vs_slow": slow_s / repl_s,
        "steps_timed": len(step_repl),
        "gemv_timed": len(gemv_repl) + len(gemv_norepl),
        "slow_steps_timed": len(slow),
    }


def bench_setup(N: int, m: int, device: torch.device, *, steps: int, repeats: int) -> dict:
    """End to end, setup included: ``greedy_select(SquaredLoss(...), steps)`` against ``steps`` GEMVs.

    Each repeat times one whole selection (objective construction, input checks, cached norms,
    the steps, the record) and then ``steps`` back-to-back GEMVs with fresh vectors; the ratio is
    of the medians. One untimed selection and GEMV batch first warm the allocator and kernels.
    """
    gen = torch.Generator(device="cpu").manual_seed(N * 7919 + m)
    features = torch.randn(N, m, generator=gen).to(device)
    target = features.mean(0) + 0.1 * torch.randn(m, generator=gen).to(device)
    vs = torch.randn(steps, m, generator=gen).to(device)
    out = torch.empty(N, dtype=features.dtype, device=device)

    def run_select() -> tuple[float, float]:
        """Seconds for the whole selection, and for building the objective alone (within it)."""
        _sync(device)
        t0 = time.perf_counter()
        objective = SquaredLoss(features, target)
        _sync(device)
        t1 = time.perf_counter()
        greedy_select(objective, steps)
        _sync(device)
        return time.perf_counter() - t0, t1 - t0

    def run_gemvs() -> float:
        _sync(device)
        t0 = time.perf_counter()
        for v in vs:
            torch.mv(features, v, out=out)
        _sync(device)
        return time.perf_counter() - t0

    run_select()
    run_gemvs()
    sel_s, setup_s, gemv_s = [], [], []
    for _ in range(repeats):
        whole, setup = run_select()
        sel_s.append(whole)
        setup_s.append(setup)
        gemv_s.append(run_gemvs())
    sel_med, gemv_med = statistics.median(sel_s), statistics.median(gemv_s)
    setup_med = statistics.median(setup_s)
    return {
        "N": N,
        "m": m,
        "dtype": "float32",
        "device": str(device),
        "steps": steps,
        "repeats": repeats,
        "select_with_setup_ms": sel_med * 1e3,
        "gemvs_ms": gemv_med * 1e3,
        "gemv_us": gemv_med / steps * 1e6,
        "setup_over_gemvs": sel_med / gemv_med,
        "setup_over_gemvs_min": min(sel_s) / min(gemv_s),
        # Building the objective alone (checks and cached norms), in GEMVs.
        "setup_ms": setup_med * 1e3,
        "setup_in_gemvs": setup_med / (gemv_med / steps),
        # What the selection costs beyond its steps' GEMVs, in GEMVs (setup plus per-step extras).
        "extra_in_gemvs": (sel_med - gemv_med) / (gemv_med / steps),
    }


def _meta(args, dev: str, device: torch.device, steps: int) -> dict:
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "device_name": torch.cuda.get_device_name(device) if dev == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        # Other processes on the machine move medians; the load says how busy it was.
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "quick": args.quick,
        "steps": steps,
        "slow_steps": args.slow_steps,
        "note": (
            "SquaredLoss scores all N candidates with one fused addmv over the [N, m] features; "
            "its fast path is not chunked (extra memory O(N))."
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto: CPU, plus CUDA when present",
    )
    p.add_argument("--quick", action="store_true", help="N in {1k, 10k}, m = 256, fewer repeats")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads on the CPU")
    p.add_argument(
        "--steps", type=int, default=None, help="greedy steps timed (default 60, quick 30)"
    )
    p.add_argument(
        "--slow-steps", type=int, default=2, help="steps of the slow per-candidate loop timed"
    )
    p.add_argument(
        "--only",
        choices=["all", "grid", "setup"],
        default="all",
        help="grid: the step/GEMV grid; setup: the end-to-end-with-setup row; all: both",
    )
    p.add_argument("--setup-n", type=int, default=20000, help="N of the end-to-end row")
    p.add_argument("--setup-m", type=int, default=1024, help="m of the end-to-end row")
    p.add_argument("--setup-repeats", type=int, default=7, help="timed pairs of the end-to-end row")
    args = p.parse_args(argv)
    for name in ("setup_n", "setup_m", "setup_repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device on this machine", file=sys.stderr)
        return 2
    devices = {
        "auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
        "cpu": ["cpu"],
        "cuda": ["cuda"],
    }[args.device]
    Ns = (1000, 10000) if args.quick else (1000, 10000, 50000)
    ms = (256,) if args.quick else (256, 4096)
    steps = args.steps or (30 if args.quick else 60)

    RESULTS.mkdir(parents=True, exist_ok=True)
    header = (
        f"{'device':6} {'N':>6} {'m':>5} {'gemv us':>9} {'step us':>9} {'step/gemv':>9} "
        f"{'min ratio':>9} {'norepl/gemv':>11} {'slow s/step':>11} {'speed-up':>9}"
    )
    for dev in devices:
        device = torch.device(dev)
        if args.only in ("all", "setup"):
            setup_steps = args.steps or 60
            r = bench_setup(
                args.setup_n, args.setup_m, device, steps=setup_steps, repeats=args.setup_repeats
            )
            print(
                f"end-to-end with setup ({dev}, N={r['N']}, m={r['m']}, {setup_steps} steps): "
                f"select {r['select_with_setup_ms']:.1f} ms, {setup_steps} GEMVs "
                f"{r['gemvs_ms']:.1f} ms, ratio {r['setup_over_gemvs']:.2f} "
                f"(fastest/fastest {r['setup_over_gemvs_min']:.2f}); building the objective "
                f"{r['setup_ms']:.1f} ms = {r['setup_in_gemvs']:.1f} GEMVs, "
                f"{r['extra_in_gemvs']:.1f} GEMVs beyond the steps in all",
                flush=True,
            )
            out = RESULTS / f"kernel_setup_{dev}.json"
            out.write_text(
                json.dumps({"meta": _meta(args, dev, device, setup_steps), "rows": [r]}, indent=1)
                + "\n"
            )
            print(f"wrote {out}")
        if args.only == "setup":
            continue
        rows = []
        print(header)
        for N in Ns:
            for m in ms:
                r = bench_one(
                    N,
                    m,
                    device,
                    steps=steps,
                    slow_steps=args.slow_steps,
                )
                rows.append(r)
                print(
                    f"{dev:6} {N:>6} {m:>5} {r['gemv_us']:>9.1f} {r['step_us']:>9.1f} "
                    f"{r['step_over_gemv']:>9.2f} {r['step_over_gemv_min']:>9.2f} "
                    f"{r['step_norepl_over_gemv']:>11.2f} "
                    f"{r['slow_step_s']:>11.3f} {r['speedup_vs_slow']:>8.0f}x",
                    flush=True,
                )
        meta = _meta(args, dev, device, steps)
        out = RESULTS / f"kernel_{dev}.json"
        out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
