"""Fine-tuning the greedy subnetwork against re-training the same width from a new random
initialisation with the same budget (train and test loss against n)."""

from _two_layer_paper import results, save

from greedyprune.plots import plot_finetune

save(plot_finetune(results()), "two_layer_finetune")
