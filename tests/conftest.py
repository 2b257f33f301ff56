"""Shared test settings: a derandomised, time-bounded hypothesis profile for CI and a device list."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Run a test on the CPU and, where one is present, on a CUDA device (skipped otherwise)."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device(request.param)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run torch on one thread for a module whose tensors are tiny, as the two-layer runner does
    (``Study.cpu_threads``, see greedyprune.study): with 2 threads on a busy 2-core machine a tiny ``run_deep``
    took 22 s, on one thread 0.8 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["resnet18", "mobilenet_v2", "mobilenet_v3_small"])
def arch_model(request):
    """A small CNN of each kind in float64 with random batch-norm statistics, an example input and
    its prunable groups: ``(arch, model, example, groups)``."""
    from prune_nets import SIZE, make_model

    import greedyprune.prune as gp

    model = make_model(request.param, torch.float64)
    example = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.float64)
    return request.param, model, example, gp.find_prunable_groups(model, example)
