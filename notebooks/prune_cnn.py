# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Pruning a CNN by greedy forward selection
#
# Ye et al. (ICML 2020) grow each layer of a trained network one channel at a time, always adding
# the channel that lowers the loss most; the kept channels are rescaled by D/n (D channels, n
# kept). This notebook does it on scikit-learn's handwritten digits with a torchvision ResNet-18:
# train, find the prunable channel groups, select, cut the model with Torch-Pruning, check that
# the cut model computes the gated one, save and reload, and compare with L1-magnitude pruning at
# the same MACs. `GREEDYPRUNE_TINY=1` runs a tiny version (used by the test suite).

# %%
import os
import time

import torch

import greedyprune.prune as gp

TINY = os.environ.get("GREEDYPRUNE_TINY") == "1"
SIZE = 16
torch.manual_seed(0)
train, test, n_classes = gp.load_data("digits", SIZE)
print(f"{len(train)} training and {len(test)} test images of {SIZE} px, {n_classes} classes")

# %% [markdown]
# ## A model trained here
# Nothing is downloaded: the model starts from random weights and is trained on digits with the
# authors' fine-tuning recipe (SGD Nesterov, cosine schedule, label smoothing 0.1).

# %%
model = gp.build_model("resnet18", n_classes)
gp.finetune(model, train, epochs=0.2 if TINY else 10, lr=0.05, generator=0)
example = torch.zeros(1, 3, SIZE, SIZE)
full_macs = gp.count_macs(model, example)
print(f"accuracy {gp.evaluate(model, test):.3f}, {full_macs / 1e6:.2f}M MACs")

# %% [markdown]
# ## Prunable groups, found from the model
# A group is a set of channels coupled by Torch-Pruning's dependency graph that can be removed on
# its own; groups tied by residual additions stay whole.

# %%
groups = gp.find_prunable_groups(model, example)
for g in groups:
    print(f"{g.name:>16}: {g.n_channels:4d} channels, read by {', '.join(g.consumers)}")

# %% [markdown]
# ## Greedy selection to half the MACs
# Each step scores `candidates` random channels on a fresh mini-batch: the activation below the
# layer is computed once and the rest of the network runs once on the stacked gated copies.

# %%
import copy

selected = copy.deepcopy(model)
gen = torch.Generator().manual_seed(0)
batches = gp.batch_stream(train, 8, generator=gen)
t = time.perf_counter()
use = groups[:2] if TINY else groups
gm, result = gp.greedy_prune(
    selected,
    batches,
    example,
    target_macs=0.9 if TINY else 0.5,
    candidates=4 if TINY else 8,
    groups=use,
)
print(f"selection took {time.perf_counter() - t:.1f} s")
for r in result.layers:
    print(f"{r.name:>16}: kept {len(r.kept):4d} of {r.n_channels}")

# %% [markdown]
# ## Surgery: a smaller real model computing the same function

# %%
x = next(iter(torch.utils.data.DataLoader(test, batch_size=16)))[0]
with torch.no_grad():
    gated_out = selected(x)
pruned, kept = gp.fold_and_prune(gm)
with torch.no_grad():
    err = float((pruned(x) - gated_out).abs().max())
macs = gp.count_macs(pruned, example)
print(f"max |pruned - gated| = {err:.2e}; MACs {macs / 1e6:.2f}M = {macs / full_macs:.3f} of full")
print(f"params {gp.count_params(model)} -> {gp.count_params(pruned)}")
assert err < 1e-3

# %% [markdown]
# ## Fine-tune, save, reload

# %%
acc_pruned = gp.evaluate(pruned, test)
gp.finetune(pruned, train, epochs=0.1 if TINY else 1, lr=0.01, generator=0)
acc_ft = gp.evaluate(pruned, test)
gp.save_pruned(
    "pruned-resnet18", pruned, arch="resnet18", num_classes=10, image_size=SIZE, kept=kept
)
reloaded, record = gp.load_pruned("pruned-resnet18")
with torch.no_grad():
    assert torch.equal(reloaded(x), pruned(x))
print(
    f"accuracy: pruned {acc_pruned:.3f}, fine-tuned {acc_ft:.3f}; reloaded from safetensors + JSON"
)

# %% [markdown]
# ## The same widths by L1 magnitude

# %%
widths = {name: len(v) for name, v in kept.items()}
l1 = copy.deepcopy(model)
gp.prune_channels(l1, example, gp.baseline_channels("l1", l1, example, use, widths))
assert gp.count_macs(l1, example) == macs
acc_l1 = gp.evaluate(l1, test)
gp.finetune(l1, train, epochs=0.1 if TINY else 1, lr=0.01, generator=0)
print(
    f"L1 magnitude at equal MACs: {acc_l1:.3f} before, {gp.evaluate(l1, test):.3f} after fine-tuning"
)
