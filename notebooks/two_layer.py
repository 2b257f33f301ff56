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
# # Two-layer mean-field networks: greedy selection from a pretrained network
#
# A two-layer network in mean-field scaling is the average of its neurons,
# `f_N(x) = (1/N) sum_i b_i act(a_i . x)`. Greedy forward selection starts from an empty
# network and adds, one at a time, the neuron of the big network that lowers the loss most; the
# subnetwork of size n is the 1/n average of the picks (a neuron may be picked again).
#
# The paper's claim: a size-n subnetwork found this way from a big *pretrained* network reaches
# loss ~1/n^2, against ~1/n for a width-n network trained by gradient descent. The fast rate needs
# a condition (the target lies inside the hull of the neurons' features with a margin); this
# notebook measures the rate and the diagnostic that tells whether the condition holds.
# Set `GREEDYPRUNE_TINY=1` for a seconds-long run (the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import greedyprune as gp
from greedyprune.plots import apply_style, axis_label, method_style
from greedyprune.sims import Setting, pretrain
from greedyprune.theory import b_n, bound_constants, fit_rate, hull_membership

TINY = os.environ.get("GREEDYPRUNE_TINY") == "1"
torch.set_num_threads(1)  # tiny tensors: one thread is faster than two
apply_style()

# %% [markdown]
# ## Data and a pretrained network
# Teacher-student regression in d = 5 dimensions with few data points (m = 10): the setting of
# the `quick` preset where the labels lie well inside the hull of the pretrained features.
# The width-N student is trained by full-batch mean-field gradient descent (the learning rate on
# each neuron scales with the width).

# %%
if TINY:
    setting = Setting(name="nb", m=10, d=5, width=200, steps=200, teacher_width=200, m_test=100)
    n_max = 60
else:
    setting = Setting(name="nb", m=10, d=5, width=1000, steps=1000)
    n_max = 300
data, big, _ = pretrain(setting, seed=0)
features = big.features(data.x_train)  # [N, m]: each neuron's output on the m training points
print(f"pretrained width N = {big.width}, features {tuple(features.shape)}")
print(f"loss of the big network: {0.5 * (big(data.x_train) - data.y_train).pow(2).mean():.3g}")

# %% [markdown]
# ## Greedy selection toward the labels, and a random subset for comparison
# `SquaredLoss` scores all N candidates with one matrix-vector product per step. A random subset
# (with replacement) converges to the big network f_N at rate 1/n in expectation, so its loss
# toward the labels levels off near the big network's own loss; greedy can go below it.

# %%
objective = gp.SquaredLoss(features, data.y_train)
sel = gp.greedy_select(objective, n_max)  # with replacement: the theory's version
objective.reset()  # objectives hold the current subnetwork; start the baseline from empty
rnd = gp.random_subset(objective, n_max, replacement=True, generator=0)
n = np.arange(1, n_max + 1)
curves = pd.DataFrame({"n": n, "greedy": sel.losses.numpy(), "random subset": rnd.losses.numpy()})
print(curves.iloc[[0, 9, n_max // 2, n_max - 1]].to_string(index=False))

# %% [markdown]
# ## The rate, and whether its condition holds
# `fit_rate` fits log loss against log n. Proposition B's condition is checked two ways: a linear
# program says whether the labels lie in the hull of the features, and the diagnostic
# `b_n = n ||f_n - y||` stays bounded when they lie inside with a margin (it grows like sqrt(n)
# when they lie on the boundary).

# %%
lo = max(2, n_max // 10)
fit = fit_rate(n, sel.losses.numpy(), n_range=(lo, n_max), n_boot=200)
fit_rnd = fit_rate(n, rnd.losses.numpy(), n_range=(lo, n_max), n_boot=200)
print(f"greedy slope over n = {lo}..{n_max}: {fit.slope:.2f}")
print(f"random subset slope over n = {lo}..{n_max}: {fit_rnd.slope:.2f}")
consts = bound_constants(features, data.y_train)
hull = hull_membership(features, data.y_train)
e_n = 2 * sel.losses.numpy()  # e_n = ||f_n - y||^2 = 2 * loss
bn = b_n(n, e_n)
print(f"D = {consts['D']:.3g}; labels in the hull: {bool(hull['in_hull'])}")
print(f"largest e_n / (D^2 / n): {np.max(e_n / (consts['D'] ** 2 / n)):.3g} (Proposition A: <= 1)")
print(f"b_n at n = {lo}: {bn[lo - 1]:.3g}, at n = {n_max}: {bn[-1]:.3g}")

# %%
# colours and labels from greedyprune.plots.METHOD_STYLES, the same as in every figure
fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
g, r = method_style("greedy_pretrained"), method_style("random_subset")
axes[0].loglog(n, curves["greedy"], color=g.color, label=f"{g.label} (slope {fit.slope:.2f})")
axes[0].loglog(
    n, curves["random subset"], color=r.color, label=f"{r.label} (slope {fit_rnd.slope:.2f})"
)
axes[0].loglog(n, 0.5 * consts["D"] ** 2 / n, "k--", lw=1, label="bound D²/2n (Prop. A)")
axes[0].set(xlabel=axis_label("n"), ylabel=axis_label("loss_train"))
axes[0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
axes[1].loglog(n, bn, color=g.color)
axes[1].set(xlabel=axis_label("n"), ylabel=axis_label("b_n"))

# %% [markdown]
# ## Re-weighting the selected neurons
# `weights="corrective"` re-solves the simplex-constrained least squares over the selected set after
# every pick (the follow-up paper's idea): the loss falls exponentially until the selected neurons
# can interpolate the m training points.

# %%
corr = gp.greedy_select(gp.SquaredLoss(features, data.y_train), setting.m + 1, weights="corrective")
print("re-weighted greedy, loss per step:", np.array2string(corr.losses.numpy(), precision=2))

# %% [markdown]
# The whole experiment, with gradient descent from scratch, magnitude pruning, random-weight
# networks, fine-tuning against re-training and verdicts with confidence intervals, is one command:
# `greedyprune verify two-layer --preset quick` (or `--preset paper`).
