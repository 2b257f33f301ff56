"""The main figure: log loss against log n for greedy selection from a pretrained width-2000
network, width-n networks trained by GD from scratch (same data and budget), random subsets,
magnitude pruning and re-weighted greedy; fitted slopes with 95% seed-bootstrap intervals in the
legend. Left: labels inside the hull (tanh, m = 20); right: on its boundary (ReLU, m = 200)."""

from _two_layer_paper import FIT_RANGE, results, save

from greedyprune.plots import plot_rate

save(plot_rate(results(), FIT_RANGE), "two_layer_rate")
