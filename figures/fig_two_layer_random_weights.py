"""Greedy selection from random-weight networks of width N = 100 .. 50000: loss against n, with
the floor set by N; the pretrained network's curve for reference."""

from _two_layer_paper import results, save

from greedyprune.plots import plot_random_weights

save(plot_random_weights(results()), "two_layer_random_weights")
