"""Small CNNs for the pruning tests: a model with random batch-norm statistics (so channels
differ), seeded batches and random gates (the fixture ``arch_model`` is in conftest.py)."""

import torch

import greedyprune.prune as gp

SIZE = 32


def make_model(arch, dtype=torch.float32, device="cpu", seed=0):
    torch.manual_seed(seed)
    model = gp.build_model(arch, 10).to(device=device, dtype=dtype)
    # Random batch-norm statistics so that channels differ (fresh ones are all identity).
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def make_batches(n, batch, dtype=torch.float32, device="cpu", seed=1, size=None):
    g = torch.Generator().manual_seed(seed)
    size = SIZE if size is None else size
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, size, size, generator=g).to(device=device, dtype=dtype)
        out.append((x, torch.randint(0, 10, (batch,), generator=g).to(device)))
    return out


def random_gates(groups, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    gates = {}
    for grp in groups:
        keep = torch.rand(grp.n_channels, generator=g) < 0.5
        keep[torch.randint(grp.n_channels, (1,), generator=g)] = True
        gates[grp.name] = (keep * (0.5 + torch.rand(grp.n_channels, generator=g))).to(dtype)
    return gates
