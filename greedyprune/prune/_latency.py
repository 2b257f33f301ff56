"""compare's latency phase: every kept final model and the full one timed in one paired phase."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from greedyprune.dist import barrier, is_main

from . import _io
from ._macs import count_macs
from ._models import build_model, load_into
from ._prepare import Prepared

__all__ = ["latency_phase"]


def _fit_shapes(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """``model`` (the unpruned architecture) with every convolution, batch norm and linear layer
    resized to the tensors of ``state`` (a pruned model's state dict, any widths), loaded."""
    for name, m in model.named_modules():
        w = state.get(f"{name}.weight")
        if w is None:
            continue
        if isinstance(m, nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            m.out_channels = int(w.shape[0])
            m.groups = int(w.shape[0]) if depthwise else m.groups
            m.in_channels = int(w.shape[1]) * m.groups
        elif isinstance(m, nn.BatchNorm2d):
            m.num_features = int(w.shape[0])
        elif isinstance(m, nn.Linear):
            m.out_features, m.in_features = (int(d) for d in w.shape)
        else:
            continue
        for pname in list(m._parameters):
            if m._parameters[pname] is not None:  # bias=False leaves None
                m._parameters[pname] = nn.Parameter(torch.empty_like(state[f"{name}.{pname}"]))
        for bname in list(m._buffers):
            if f"{name}.{bname}" in state:
                m._buffers[bname] = state[f"{name}.{bname}"].clone()
    load_into(model, state)
    return model


def latency_phase(out, prep: Prepared, runs: int, device, *, batch: int = 32) -> pd.DataFrame:
    """Time every final model kept in ``out/models`` and the full model in one paired phase:
    ``runs`` turns, each model once per turn (one forward pass of ``batch`` images, the order
    rotated every turn), after two warm-up passes each. Writes ``latency_samples.csv`` (every
    sample) and ``latency.csv`` (median, quartiles and IQR in ms per unit); returns the latter.
    A ``latency.csv`` of the same models with at least ``runs`` turns is kept as it is."""
    folder = Path(out)
    kept = sorted(f.stem for f in (folder / "models").glob("*.safetensors"))
    if (folder / "latency.csv").is_file():  # measured already for these models: not again
        done = pd.read_csv(folder / "latency.csv")
        if sorted(done["unit"]) == sorted(["full", *kept]) and (done["runs"] >= runs).all():
            return done
    arch = json.loads((folder / "config.json").read_text())["arch"]
    models = {"full": prep.model}
    for f in sorted((folder / "models").glob("*.safetensors")):
        models[f.stem] = _fit_shapes(build_model(arch, prep.n_classes), _io.load_state(f))
    x = torch.zeros(batch, 3, prep.size, prep.size, device=device)
    names = list(models)
    samples = {n: [] for n in names}
    with torch.no_grad():
        for n in names:
            models[n].to(device).eval()
            for _ in range(2):
                models[n](x)
        for r in range(runs):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                t = time.perf_counter()
                models[n](x)
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                samples[n].append(1000.0 * (time.perf_counter() - t))
    long = pd.DataFrame(
        [{"unit": n, "run": i, "ms": v} for n in names for i, v in enumerate(samples[n])]
    )
    q = long.groupby("unit", sort=False)["ms"].quantile([0.25, 0.5, 0.75]).unstack()
    table = pd.DataFrame(
        {
            "unit": q.index,
            "runs": [len(samples[n]) for n in q.index],
            "batch": batch,
            "median_ms": q[0.5].to_numpy(),
            "q25_ms": q[0.25].to_numpy(),
            "q75_ms": q[0.75].to_numpy(),
            "iqr_ms": (q[0.75] - q[0.25]).to_numpy(),
            "macs": [count_macs(models[n], prep.example.to(device)) for n in q.index],
        }
    )
    if is_main():
        long.to_csv(folder / "latency_samples.csv", index=False)
        table.to_csv(folder / "latency.csv", index=False)
    barrier()
    return table
