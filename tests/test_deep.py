"""Deep mean-field networks and layer-wise greedy selection: exact references and properties."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from greedyprune.select import FactoredSquaredLoss, SquaredLoss, greedy_select
from greedyprune.sims import train_mean_field
from greedyprune.sims.deep import (
    DeepMeanFieldNet,
    global_objective,
    layerwise_select,
    local_objective,
    per_sample_loss,
)


def _net(widths=(5, 4), dim=3, outputs=2, seed=0, activation="tanh", **kw):
    net = DeepMeanFieldNet.random(
        dim, list(widths), outputs, activation=activation, seed=seed, **kw
    )
    return net.requires_grad_(False)


def _x(m=7, dim=3, seed=1, dtype=torch.float64):
    return torch.randn(m, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _slow_forward(net: DeepMeanFieldNet, x: torch.Tensor, gates=None) -> torch.Tensor:
    """The defining formula, one neuron and one data point at a time."""
    act = net._act
    L = net.depth
    gates = gates or [None] * L
    out = torch.zeros(x.shape[0], net.n_outputs, dtype=x.dtype)
    for j in range(x.shape[0]):
        h = [act(net.weights[0][i] @ x[j] + net.biases[0][i]) for i in range(net.widths[0])]
        for l in range(1, L + 1):
            N = net.widths[l - 1]
            g = gates[l - 1]
            gh = [h[i] * (1.0 if g is None else g[i]) for i in range(N)]
            rows = net.weights[l].shape[0]
            pre = [sum(net.weights[l][r, i] * gh[i] for i in range(N)) / N for r in range(rows)]
            if l < L:
                h = [act(pre[r] + net.biases[l][r]) for r in range(rows)]
            else:
                out[j] = torch.stack(pre)
    return out


def _duplicate(net: DeepMeanFieldNet, k: int) -> DeepMeanFieldNet:
    """Every hidden neuron copied k times (incoming and outgoing weights copied)."""
    w = [p.detach() for p in net.weights]
    b = [p.detach() for p in net.biases]
    weights = [w[0].repeat_interleave(k, 0)]
    for l in range(1, net.depth):
        weights.append(w[l].repeat_interleave(k, 0).repeat_interleave(k, 1))
    weights.append(w[-1].repeat_interleave(k, 1))
    biases = [t.repeat_interleave(k) for t in b]
    return DeepMeanFieldNet(weights, biases, net.activation)


# -- the network ---------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_forward_equals_the_defining_formula(activation):
    net = _net((4, 3, 5), activation=activation)
    x = _x(5)
    g = [torch.rand(4, dtype=torch.float64) * 3, None, torch.rand(5, dtype=torch.float64)]
    torch.testing.assert_close(net(x), _slow_forward(net, x))
    torch.testing.assert_close(net(x, gates=g), _slow_forward(net, x, g))


def test_mean_field_scaling_duplicating_neurons_keeps_function_and_training():
    net = _net((3, 4), outputs=1)
    dup = _duplicate(net, 3)
    x = _x(9)
    y = torch.sin(x.sum(1, keepdim=True))
    torch.testing.assert_close(dup(x), net(x))
    # mean-field learning rates: every copy moves like the original, so the function trajectory
    # is width-independent
    net.requires_grad_(True)
    dup.requires_grad_(True)
    train_mean_field(net, x, y, steps=25, lr=0.3)
    train_mean_field(dup, x, y, steps=25, lr=0.3)
    torch.testing.assert_close(dup(x), net(x), rtol=1e-9, atol=1e-11)
    assert not torch.allclose(net(x), _net((3, 4), outputs=1)(x))


def test_mean_field_scaling_outputs_stay_order_one_as_width_grows():
    x = _x(50, dim=4)
    with torch.no_grad():
        sizes = [float(_net((N, N), dim=4, seed=2)(x).std()) for N in (16, 256, 2048)]
    # averages concentrate: the output's spread across inputs shrinks with width, never blows up
    assert sizes[2] < sizes[0] and sizes[2] < 1.0


def test_all_ones_gates_and_gated_subnetwork_match():
    net = _net((6, 5))
    x = _x()
    ones = [torch.ones(6, dtype=torch.float64), torch.ones(5, dtype=torch.float64)]
    torch.testing.assert_close(net(x, gates=ones), net(x))
    counts = [torch.tensor([0, 2, 1, 0, 0, 3]), torch.tensor([1, 0, 0, 4, 1])]
    gates = [c.double() * (c.numel() / c.double().sum()) for c in counts]
    sub = net.subnetwork(counts)
    assert sub.widths == [3, 3]
    torch.testing.assert_close(sub(x), net(x, gates=gates))


def test_input_errors_name_the_argument():
    net = _net()
    with pytest.raises(ValueError, match=r"^x\.shape=\(3, 7\) must be \(m, 3\)$"):
        net(torch.zeros(3, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="convert with"):
        net(_x(dtype=torch.float32))
    with pytest.raises(ValueError, match="reshape y"):
        layerwise_select(net, _x(), torch.zeros(7, dtype=torch.float64), method="global")
    with pytest.raises(ValueError, match=r"^len\(gates\)=1 must be 2, one per hidden layer"):
        net(_x(), gates=[None])
    with pytest.raises(ValueError, match=r"counts\[0\] keeps no neuron"):
        net.subnetwork([torch.zeros(5), None])
    with pytest.raises(ValueError, match="widths"):
        DeepMeanFieldNet.random(3, [])
    with pytest.raises(TypeError, match="dim"):
        DeepMeanFieldNet.random(2.5, [3])
    with pytest.raises(ValueError, match="method="):
        layerwise_select(net, _x(), method="best")
    with pytest.raises(ValueError, match="pass the targets y"):
        layerwise_select(net, _x(), method="global")
    with pytest.raises(ValueError, match=r"sizes\[0\]=9 exceeds"):
        layerwise_select(net, _x(), sizes=9, replacement=False)
    with pytest.raises(ValueError, match="loss_tol="):
        layerwise_select(net, _x(), loss_tol=-1.0)


# -- factored vs dense objectives ----------------------------------------------------------------


@settings(max_examples=25)
@given(
    n=st.integers(2, 12),
    m=st.integers(1, 9),
    c=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    replacement=st.booleans(),
)
def test_factored_and_dense_squared_loss_pick_the_same_neurons(n, m, c, seed, replacement):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, m, generator=g, dtype=torch.float64)
    w = torch.randn(n, c, generator=g, dtype=torch.float64)
    t = torch.randn(m, c, generator=g, dtype=torch.float64)
    steps = n if not replacement else 2 * n
    dense = greedy_select(
        SquaredLoss(a[:, :, None] * w[:, None, :], t), steps, replacement=replacement
    )
    fact = greedy_select(FactoredSquaredLoss(a, w, t), steps, replacement=replacement)
    assert dense.order.tolist() == fact.order.tolist()
    torch.testing.assert_close(dense.losses, fact.losses)


def _slow_local_losses(net, x, layer, gates, weights_now, k):
    """Imitation loss of each candidate by building its gate and the next pre-activation."""
    N = net.widths[layer]
    h = net.hidden(x, layer + 1, gates)
    w_out = net.weights[layer + 1].detach()
    target = net.hidden(x, layer + 1) @ w_out.T / N
    out = []
    for i in range(N):
        w_new = (k * weights_now + torch.nn.functional.one_hot(torch.tensor(i), N)) / (k + 1)
        pre = (h * (N * w_new)) @ w_out.T / N
        out.append(0.5 * (pre - target).pow(2).sum(1).mean())
    return torch.stack(out)


def test_local_objective_equals_slow_reference_at_every_step():
    net = _net((6, 5), outputs=2)
    x = _x(8)
    gates = [torch.tensor([0, 3, 0, 1.5, 1.5, 0], dtype=torch.float64), None]
    obj = local_objective(net, x, 1, gates, 2**20)
    w = torch.zeros(5, dtype=torch.float64)
    for k, pick in enumerate([3, 0, 3, 4]):
        torch.testing.assert_close(obj.losses(None), _slow_local_losses(net, x, 1, gates, w, k))
        obj.add(pick)
        w = (k * w + torch.nn.functional.one_hot(torch.tensor(pick), 5)) / (k + 1)


# -- cached prefix, stacked suffix ----------------------------------------------------------------


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_stacked_scoring_equals_one_forward_pass_per_candidate(device, loss):
    net = _net((6, 5, 4), outputs=3).to(device)
    x = _x(10).to(device)
    if loss == "squared":
        y = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    else:
        y = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1, 2, 1])
    y = y.to(device)
    below = torch.tensor([2.0, 0, 0, 2, 0, 2], dtype=torch.float64, device=device)
    for layer, gates in ((0, [None, None, None]), (1, [below, None, None])):
        obj = global_objective(net, x, y, layer, gates, loss, max_bytes=2_000)
        assert obj.chunk_size < net.widths[layer]  # several chunks are exercised
        N = net.widths[layer]
        w = torch.zeros(N, dtype=torch.float64, device=device)
        for k, pick in enumerate([1, 1, 3]):
            fast = obj.losses(None)
            slow = []
            for i in range(N):
                e = torch.zeros(N, dtype=torch.float64, device=device)
                e[i] = 1.0
                g = list(gates)
                g[layer] = N * (k * w + e) / (k + 1)
                slow.append(per_sample_loss(loss, net(x, gates=g), y).mean())
            torch.testing.assert_close(fast, torch.stack(slow))
            assert fast.device.type == device.type
            obj.add(pick)
            e = torch.zeros(N, dtype=torch.float64, device=device)
            e[pick] = 1.0
            w = (k * w + e) / (k + 1)


@torch.no_grad()
def _slow_layerwise(net, x, y, method, sizes, replacement, loss="squared"):
    """Layer-wise greedy by brute force: every candidate scored by a full forward pass."""
    gates = [None] * net.depth
    orders = []
    f_full_pre = None
    for l in range(net.depth):
        N = net.widths[l]
        w = torch.zeros(N, dtype=torch.float64)
        order = []
        if method == "local":
            w_out = net.weights[l + 1].detach()
            f_full_pre = net.hidden(x, l + 1) @ w_out.T / N
            h = net.hidden(x, l + 1, gates)
        for k in range(sizes[l]):
            best, best_loss = None, None
            for i in range(N):
                if not replacement and i in order:
                    continue
                e = torch.zeros(N, dtype=torch.float64)
                e[i] = 1.0
                g_new = N * (k * w + e) / (k + 1)
                if method == "local":
                    pre = (h * g_new) @ w_out.T / N
                    val = float(0.5 * (pre - f_full_pre).pow(2).sum(1).mean())
                else:
                    g = list(gates)
                    g[l] = g_new
                    val = float(per_sample_loss(loss, net(x, gates=g), y).mean())
                if best_loss is None or val < best_loss:
                    best, best_loss = i, val
            order.append(best)
            e = torch.zeros(N, dtype=torch.float64)
            e[best] = 1.0
            w = (k * w + e) / (k + 1)
        orders.append(order)
        gates[l] = N * w
    return orders


@pytest.mark.parametrize("method", ["local", "global"])
@pytest.mark.parametrize("replacement", [True, False])
def test_layerwise_greedy_equals_brute_force(method, replacement):
    net = _net((7, 6), outputs=2, seed=3)
    x = _x(9, seed=5)
    y = torch.randn(9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    sizes = [5, 4]
    res = layerwise_select(net, x, y, method=method, sizes=sizes, replacement=replacement)
    want = _slow_layerwise(net, x, y, method, sizes, replacement)
    assert [s.order.tolist() for s in res.selections] == want
    torch.testing.assert_close(res.network(x), net(x, gates=res.gates(net)))


@pytest.mark.parametrize("method", ["local", "global", "random", "magnitude"])
def test_selecting_every_neuron_without_replacement_is_the_full_network(method):
    net = _net((6, 5), outputs=2, seed=7)
    x = _x(8)
    y = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    res = layerwise_select(net, x, y, method=method, sizes=None, replacement=False)
    assert res.widths == net.widths
    assert torch.equal(res.network(x), net(x))


def test_local_greedy_first_layer_obeys_proposition_a():
    # layer 1's imitation target is the average of its own features, so it lies in their hull
    net = _net((20, 6), outputs=2, seed=11)
    x = _x(15, seed=12)
    obj = local_objective(net, x, 0, [None, None], 2**20)
    phi = obj.activations[:, :, None] * obj.out_weights[:, None, :]
    D2 = float(((phi - obj.target).pow(2).sum((1, 2)) / x.shape[0]).max())
    sel = greedy_select(obj, 60)
    n = torch.arange(1, 61, dtype=torch.float64)
    e_n = 2 * sel.losses
    assert bool((e_n <= D2 / n * (1 + 1e-9)).all())


def test_stopping_by_tolerance_and_size():
    net = _net((30, 30), outputs=1, seed=4)
    x = _x(20, seed=2)
    y = net(x).detach() + 0.1
    loss_tol = 0.05
    res = layerwise_select(net, x, method="local", sizes=25, loss_tol=loss_tol)
    gates = [None, None]
    for l, sel in enumerate(res.selections):
        obj = local_objective(net, x, l, gates, 2**20)
        threshold = loss_tol * float(obj.target.pow(2).sum()) / (2 * x.shape[0])
        losses = sel.losses.tolist()
        # stops at the first size whose imitation loss reaches the tolerance, never later
        assert all(v > threshold for v in losses[:-1])
        assert losses[-1] <= threshold or len(losses) == 25
        gates[l] = res.gates(net)[l]
    assert min(len(s.losses) for s in res.selections) < 25
    res_g = layerwise_select(net, x, y, method="global", sizes=30, loss_tol=0.5, replacement=False)
    full_loss = float(per_sample_loss("squared", net(x), y).mean())
    first = res_g.selections[0].losses.tolist()
    assert first[-1] <= 1.5 * full_loss and all(v > 1.5 * full_loss for v in first[:-1])
    assert res_g.widths[0] < 30


def test_reproducible_with_a_seed():
    net = _net((12, 10), outputs=2, seed=9)
    x = _x(11)
    y = torch.randn(11, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    runs = [
        layerwise_select(net, x, y, method="global", sizes=6, candidates=4, generator=5)
        for _ in range(2)
    ]
    assert [s.order.tolist() for s in runs[0].selections] == [
        s.order.tolist() for s in runs[1].selections
    ]
    other = layerwise_select(net, x, y, method="random", sizes=6, generator=6)
    again = layerwise_select(net, x, y, method="random", sizes=6, generator=6)
    assert [s.order.tolist() for s in other.selections] == [
        s.order.tolist() for s in again.selections
    ]


def test_layerwise_respects_device_and_dtype(device):
    net = _net((8, 6), outputs=2, dtype=torch.float32, device=device)
    x = _x(9, dtype=torch.float32).to(device)
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1], device=device)
    res = layerwise_select(net, x, y, method="global", sizes=4, loss="cross_entropy")
    out = res.network(x)
    assert out.device.type == device.type and out.dtype == torch.float32
    res = layerwise_select(net, x, method="local", sizes=4)
    assert res.network(x).dtype == torch.float32


# -- Proposition C: the bound on local greedy's discrepancy ----------------------------------------


def _slow_local_bound(net: DeepMeanFieldNet, counts, x: torch.Tensor) -> float:
    """K of Proposition C (docs/theory.md) from the defining formulas, neuron by neuron: the
    pruned activations of each layer from the gated network, the features h_i (x) W_{:, i} as a
    [N, m, c] tensor, their spread around their mean, the spectral norms from numpy's SVD."""
    import numpy as np

    lip = {"tanh": 1.0, "relu": 1.0, "sigmoid": 0.25}[net.activation]
    gates = [c.double() * (c.numel() / c.double().sum()) for c in counts]
    m = x.shape[0]
    k = 0.0
    for l in range(net.depth):
        # layer l's activations with the layers below pruned (slow formula, data point by point)
        h = torch.zeros(m, net.widths[l], dtype=torch.float64)
        for j in range(m):
            a = [
                net._act(net.weights[0][i] @ x[j] + net.biases[0][i]) for i in range(net.widths[0])
            ]
            for q in range(1, l + 1):
                N = net.widths[q - 1]
                pre = [
                    sum(net.weights[q][r, i] * a[i] * gates[q - 1][i] for i in range(N)) / N
                    + net.biases[q][r]
                    for r in range(net.widths[q])
                ]
                a = [net._act(p) for p in pre]
            h[j] = torch.stack(a)
        w = net.weights[l + 1]
        phi = torch.stack([torch.outer(h[:, i], w[:, i]) for i in range(net.widths[l])])
        mean = phi.mean(0)
        spread = float(((phi - mean) ** 2).sum((1, 2)).mean() / m)
        if l > 0:
            k *= lip * float(np.linalg.svd(w.numpy(), compute_uv=False)[0]) / net.widths[l]
        k += (spread / float(counts[l].sum())) ** 0.5
    return k


@pytest.mark.parametrize(
    "widths, activation, n", [((6, 5, 4), "tanh", 3), ((5, 4), "relu", 4), ((7,), "sigmoid", 5)]
)
def test_local_bound_equals_its_slow_formula_and_holds(widths, activation, n):
    from greedyprune.sims.deep.experiments import local_bound

    net = _net(widths, outputs=2, seed=5, activation=activation)
    x = _x(6, seed=6)
    res = layerwise_select(net, x, method="local", sizes=n, replacement=True)
    got = local_bound(net, res.counts, x)
    k = _slow_local_bound(net, res.counts, x)
    # float64 sums of a few dozen O(1) terms: 1e-10 relative is rounding margin
    assert got["bound_K"] == pytest.approx(k, rel=1e-10)
    assert got["bound_local"] == pytest.approx(0.5 * k * k, rel=1e-10)
    with torch.no_grad():
        disc = float(per_sample_loss("squared", res.network(x), net(x)).mean())
    assert disc <= got["bound_local"] * (1 + 1e-9)


@settings(max_examples=25, deadline=None)
@given(
    widths=st.sampled_from([(8,), (8, 6), (6, 6, 5)]),
    n=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    activation=st.sampled_from(["tanh", "relu", "sigmoid"]),
)
def test_local_greedy_obeys_proposition_c_layer_by_layer(widths, n, seed, activation):
    """Proposition C is an inequality: on every run (depth 1 to 3, any activation, widths that
    the picks with replacement revisit) the discrepancy to the full network is at most K^2 / 2."""
    from greedyprune.sims.deep.experiments import local_bound

    net = _net(widths, outputs=2, seed=seed, activation=activation, standard_scale=True)
    x = _x(9, seed=seed + 1)
    res = layerwise_select(net, x, method="local", sizes=n, replacement=True)
    with torch.no_grad():
        disc = float(per_sample_loss("squared", res.network(x), net(x)).mean())
    assert disc <= local_bound(net, res.counts, x)["bound_local"] * (1 + 1e-9)


def test_local_bound_of_one_hidden_layer_is_proposition_a():
    """Depth 1: the output layer's target is the mean of its own features, so K^2 / 2 is
    Proposition A's B / (2n) with B the features' spread around f_N (bound_constants' B_var)."""
    from greedyprune.sims.deep.experiments import local_bound
    from greedyprune.theory import bound_constants

    net = _net((9,), outputs=1, seed=3)
    x = _x(8, seed=4)
    res = layerwise_select(net, x, method="local", sizes=5, replacement=True)
    phi = net.hidden(x, 1).T * net.weights[1][0][:, None]  # [N, m]
    b_var = bound_constants(phi, phi.mean(0))["B"]
    assert local_bound(net, res.counts, x)["bound_local"] == pytest.approx(b_var / 10, rel=1e-10)


@pytest.mark.parametrize(
    "field, bad",
    [
        ("method", "best"),
        ("loss_tol", -1.0),
        ("replacement", "no"),
        ("batch_size", 0),
        ("max_bytes", 0),
    ],
)
def test_select_settings_name_each_bad_field_when_made(field, bad):
    from greedyprune.errors import GreedypruneError
    from greedyprune.sims.deep import NeuronSelectSettings

    with pytest.raises(GreedypruneError, match=rf"^{field}="):
        NeuronSelectSettings(**{field: bad})
    with pytest.raises(GreedypruneError, match=rf"^{field}="):
        layerwise_select(_net(), _x(), **{field: bad})


def test_a_settings_object_and_its_keywords_select_alike():
    """layerwise_select(settings) picks what layerwise_select(**its fields) picks; a keyword
    replaces the settings' field; an unknown keyword is named."""
    from greedyprune.errors import GreedypruneTypeError
    from greedyprune.sims.deep import NeuronSelectSettings

    net, x = _net(), _x()
    st = NeuronSelectSettings(method="local", sizes=3, replacement=False, candidates=2, generator=1)

    def picks(*args, **kw):
        return [s.order.tolist() for s in layerwise_select(net, x, None, *args, **kw).selections]

    fields = {k: getattr(st, k) for k in st.__dataclass_fields__}
    assert picks(st) == picks(**fields)
    assert picks(st, generator=2) == picks(**{**fields, "generator": 2})
    assert picks(st, generator=2) != picks(st)  # the keyword is used, not the settings' seed
    with pytest.raises(GreedypruneTypeError, match=r"unknown keywords \['size'\]"):
        layerwise_select(net, x, size=3)
