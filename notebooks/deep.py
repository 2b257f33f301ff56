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
# # Deep mean-field networks: layer-wise greedy selection
#
# A deep network in mean-field scaling averages its neurons at every layer:
# `h^l = act((1/N) W^l h^{l-1} + b^l)` and `f = (1/N) W^{L+1} h^L`. Greedy forward selection
# prunes it one layer at a time, from the input to the output, with the layers below already
# pruned. Two objectives score a candidate neuron:
#
# - **local**: the next layer's pre-activations should match the full network's (squared loss);
#   the features factor as (activation) x (outgoing weights), so scoring is two matrix products;
# - **global**: the training loss of the whole network with the candidate added; everything below
#   the layer is computed once and the layers above run once on all candidates stacked.
#
# This notebook runs both on a deep teacher-student task and on scikit-learn's digits. Set
# `GREEDYPRUNE_TINY=1` for a seconds-long run (the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd
import torch

from greedyprune.plots import apply_style, axis_label, method_style
from greedyprune.sims.deep import DeepSetting, layerwise_select, pretrain_deep, rate_experiment
from greedyprune.theory import fit_rate

TINY = os.environ.get("GREEDYPRUNE_TINY") == "1"
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
apply_style()

# %% [markdown]
# ## A pretrained deep network
# A depth-2 student of width N is trained by mean-field gradient descent on data from a deep
# random teacher. `pretrain_deep` also returns the random network it started from.

# %%
if TINY:
    setting = DeepSetting(
        name="nb", m=48, m_test=100, d=4, width=24, steps=150, sizes=(2, 4, 8, 16)
    )
else:
    setting = DeepSetting(name="nb", width=96, m=256, steps=800, sizes=(2, 4, 8, 16, 32, 48))
data, big, init = pretrain_deep(setting, seed=0)
print(big)

# %% [markdown]
# ## One selection
# `layerwise_select` returns one `Selection` per hidden layer and the compact subnetwork. With
# replacement a neuron may be picked twice, so the kept width can be below the number of steps.

# %%
res = layerwise_select(big, data.x_train, method="local", sizes=8)
print("kept widths:", res.widths)
with torch.no_grad():
    gap = 0.5 * (res.network(data.x_train) - big(data.x_train)).pow(2).sum(1).mean()
print(f"discrepancy to the full network: {float(gap):.3g}")

# %% [markdown]
# ## Discrepancy against subnetwork width, per method
# Each row of the table is one subnetwork; `discrepancy` is `||f_n - f_N||^2 / 2` on the training
# inputs. The slopes come from a log-log fit over the measured sizes.

# %%
methods = ["greedy_local", "greedy_global", "random_subset", "magnitude"]
records = [r for m in methods for r in rate_experiment(setting, 0, m)]
df = pd.DataFrame(records)
fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
for m in methods:
    rows = df[df["method"] == m]
    fit = fit_rate(rows["n"], rows["discrepancy"], seed=rows["seed"], n_boot=200)
    s = method_style(m)  # the colour and label of this method in every figure
    ax.loglog(
        rows["n"], rows["discrepancy"], **{**s.kwargs(), "label": f"{s.label}: {fit.slope:.2f}"}
    )
ax.set_xlabel("neurons per hidden layer n")
ax.set_ylabel(axis_label("discrepancy") + ", ||f_n - f_N||²/2")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
df.pivot_table(index="n", columns="method", values="discrepancy")

# %% [markdown]
# ## Real data: digits
# On scikit-learn's digits (offline), the same selection keeps a few neurons per layer and we
# read the test accuracy against the number of kept neurons.

# %%
digits = DeepSetting(
    name="digits",
    data="digits",
    dtype="float32",
    replacement=False,
    batch_size=128,
    width=32 if TINY else 96,
    steps=200 if TINY else 1500,
    sizes=(4, 8, 16) if TINY else (4, 8, 16, 32, 64),
)
rows = []
for m in ["greedy_local", "greedy_global", "random_subset"]:
    rows += rate_experiment(digits, 0, m)
acc = pd.DataFrame(rows).pivot_table(index="n", columns="method", values="acc_test")
acc
