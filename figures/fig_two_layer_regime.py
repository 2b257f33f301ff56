"""Where greedy selection beats GD from scratch and where GD wins: log10 of the loss ratio at
n = 300 over the data size m and the training budget (GD steps)."""

from _two_layer_paper import results, save

from greedyprune.plots import plot_regime

save(plot_regime(results()), "two_layer_regime")
