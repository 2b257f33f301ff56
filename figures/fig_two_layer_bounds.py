"""The bound diagnostics: measured e_n against D^2/n (Proposition A) and b_n = n ||f_n - t||
(bounded when the target is interior, growing like sqrt(n) on the boundary), toward f_N and y."""

from _two_layer_paper import results, save

from greedyprune.plots import plot_bounds

save(plot_bounds(results()), "two_layer_bounds")
