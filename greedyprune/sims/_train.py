"""Mean-field (stochastic) gradient descent with optional Langevin noise and weight decay.

The loop is generic: any ``nn.Module`` can be trained. A model that defines
``mean_field_lr_scales() -> [(parameter, multiplier), ...]`` gets per-parameter step sizes
``lr * multiplier`` on the gradient (a multiplier is a number or a tensor broadcastable to the
parameter) (for a width-N mean-field layer the multiplier is N, so that
each neuron moves at a width-independent speed); parameters it does not list get multiplier 1.
A deep mean-field network reuses this loop by defining that method.

One step, for a parameter p with multiplier s:

    p <- p - lr * s * grad_p L  -  lr * weight_decay * p  +  sqrt(2 * lr * noise) * xi,

with xi ~ N(0, I): time is measured in mean-field units, so weight decay and noise act on each
neuron at a width-independent rate (noise is the temperature 1/beta of noisy SGD).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from greedyprune.errors import (
    GreedypruneError,
    GreedypruneTypeError,
    check_int,
    check_number,
    check_type,
    refuse,
)
from greedyprune.select import per_sample_loss

__all__ = [
    "LOSSES",
    "lr_scales",
    "squared_loss",
    "train_many_mean_field",
    "train_mean_field",
]


def squared_loss(output: Tensor, target: Tensor) -> Tensor:
    """``mean_j ||output_j - target_j||^2 / 2`` (summed over outputs), the loss of the theory: the
    mean of :func:`greedyprune.select.per_sample_loss` ``("squared", ...)``."""
    return per_sample_loss("squared", output, target).mean()


def _cross_entropy(output: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(output, target)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "squared": squared_loss,
    "cross_entropy": _cross_entropy,
}


def lr_scales(model: nn.Module) -> list[tuple[nn.Parameter, float]]:
    """Each trainable parameter of ``model`` with its learning-rate multiplier (see module doc)."""
    listed: dict[int, float | Tensor] = {}
    if hasattr(model, "mean_field_lr_scales"):
        for p, s in model.mean_field_lr_scales():
            if isinstance(s, Tensor):
                if not bool((s > 0).all()):
                    raise GreedypruneError(
                        "mean_field_lr_scales gave a multiplier tensor with entries <= 0"
                    )
                listed[id(p)] = s
                continue
            if not isinstance(s, (int, float)) or not s > 0:
                raise GreedypruneError(
                    f"mean_field_lr_scales gave multiplier {s!r}; it must be > 0"
                )
            listed[id(p)] = float(s)
    return [(p, listed.get(id(p), 1.0)) for p in model.parameters() if p.requires_grad]


def train_mean_field(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    lr: float,
    loss: str | Callable[[Tensor, Tensor], Tensor] = "squared",
    batch_size: int | None = None,
    noise: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    record_every: int | None = None,
    progress: bool = False,
) -> list[dict]:
    """Train ``model`` in place by mean-field (S)GD and return the recorded loss history.

    Parameters
    ----------
    model: maps ``x [m, ...]`` to outputs that ``loss`` compares with ``y [m, ...]``.
    steps: number of updates (the training budget).
    lr: step size in mean-field time (multiplied per parameter, see module doc).
    loss: ``"squared"`` (``mean ||f - y||^2 / 2``), ``"cross_entropy"`` or a callable
        ``(output, target) -> scalar``.
    batch_size: None for full-batch GD, else the mini-batch size (sampled with replacement).
    noise: Langevin temperature (0 for plain GD).
    weight_decay: decay rate per unit of mean-field time.
    seed: seeds the mini-batch sampling and the noise (a generator on ``x``'s device).
    record_every: record the full-batch training loss every this many steps (and at the end);
        None records only the first and the last.

    Returns a list of ``{"step": int, "loss": float}``. The loss is evaluated on all of
    ``(x, y)`` before the step with that number (step == steps is after the last update).
    """
    check_type("model", model, nn.Module, "an nn.Module")
    check_int("steps", steps, minimum=0)
    lr = check_number("lr", lr, above=0)
    noise = check_number("noise", noise, minimum=0)
    weight_decay = check_number("weight_decay", weight_decay, minimum=0)
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise GreedypruneError(
                f"loss={loss!r} is not known; pass one of {sorted(LOSSES)} or a callable"
            )
        loss_fn = LOSSES[loss]
    elif callable(loss):
        loss_fn = loss
    else:
        raise refuse("loss", loss, "a name or a callable", wrong_type=True)
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise GreedypruneTypeError("x and y must be tensors")
    m = x.shape[0]
    if y.shape[0] != m:
        raise GreedypruneError(f"x has {m} rows but y has {y.shape[0]}; pass matching data")
    if batch_size is not None:
        check_int("batch_size", batch_size, minimum=1, fix="or None for the full batch")
    if record_every is not None:
        check_int("record_every", record_every, minimum=1, fix="or None")

    groups = lr_scales(model)
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    history: list[dict] = []

    def full_loss() -> float:
        with torch.no_grad():
            return float(loss_fn(model(x), y))

    for step in tqdm(range(steps), desc="train", disable=not progress, leave=False):
        if step == 0 or (record_every is not None and step % record_every == 0):
            history.append({"step": step, "loss": full_loss()})
        if batch_size is None:
            xb, yb = x, y
        else:
            idx = torch.randint(0, m, (batch_size,), generator=gen, device=x.device)
            xb, yb = x[idx], y[idx]
        model.zero_grad(set_to_none=True)
        value = loss_fn(model(xb), yb)
        if not torch.isfinite(value):
            raise GreedypruneError(
                f"training diverged at step {step} (loss {float(value)}); lower lr={lr}"
            )
        value.backward()
        with torch.no_grad():
            for p, s in groups:
                if p.grad is not None:
                    if isinstance(s, Tensor):
                        p.sub_(p.grad * s, alpha=lr)
                    else:
                        p.add_(p.grad, alpha=-lr * s)
                if weight_decay:
                    p.mul_(1.0 - lr * weight_decay)
                if noise:
                    xi = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
                    p.add_(xi, alpha=math.sqrt(2.0 * lr * noise))
    history.append({"step": steps, "loss": full_loss()})
    return history


class _Stack(nn.Module):
    """K two-layer networks with shared input as one module: outputs ``[m, K]``.

    The loss is the sum of the K networks' losses, so each network's gradient is the one it would
    get alone; each neuron's learning-rate multiplier is its own network's width.
    """

    def __init__(self, nets):
        super().__init__()
        acts = {net.activation for net in nets}
        if len(acts) != 1 or any(net.n_outputs is not None for net in nets):
            raise GreedypruneError(
                "train_many_mean_field needs single-output nets with one activation"
            )
        self._act = nets[0]._act
        self.a = nn.Parameter(torch.cat([net.a.detach() for net in nets]))
        self.b = nn.Parameter(torch.cat([net.b.detach() for net in nets]))
        widths = torch.tensor([net.width for net in nets], device=self.a.device)
        owner = torch.repeat_interleave(torch.arange(len(nets), device=self.a.device), widths)
        self.register_buffer("owner", owner)
        self.register_buffer("widths", widths.to(self.a.dtype))
        # [sumN, K]: neuron i contributes 1/N_k to its own network k; a dense GEMM is faster
        # than a scatter for the few networks of a sweep
        assign = torch.zeros(len(owner), len(nets), dtype=self.a.dtype, device=self.a.device)
        assign[torch.arange(len(owner), device=owner.device), owner] = 1.0 / self.widths[owner]
        self.register_buffer("assign", assign)

    def forward(self, x: Tensor) -> Tensor:
        return (self._act(x @ self.a.T) * self.b) @ self.assign

    def mean_field_lr_scales(self):
        w = self.widths[self.owner]
        return [(self.a, w[:, None]), (self.b, w)]


def train_many_mean_field(nets, x: Tensor, y: Tensor, **kwargs) -> list[float]:
    """Train several single-output two-layer nets on the same ``(x [m, d], y [m])`` at once.

    Same result as calling ``train_mean_field(net, x, y, **kwargs)`` for each net with the
    squared loss (up to floating-point summation order), in one batched loop. The nets are updated
    in place; returns each net's final training loss. ``loss`` must not be passed.
    """
    nets = list(nets)
    if not nets:
        raise GreedypruneError("nets is empty; pass at least one network")
    if "loss" in kwargs:
        raise GreedypruneError("train_many_mean_field uses the squared loss; do not pass loss=")
    if kwargs.get("batch_size") is not None or kwargs.get("noise"):
        # mini-batches and noise would be shared across the nets, unlike separate runs
        raise GreedypruneError("train_many_mean_field supports full-batch noiseless training only")
    stack = _Stack(nets)

    def summed(out: Tensor, target: Tensor) -> Tensor:
        return 0.5 * (out - target[:, None]).pow(2).mean(0).sum()

    train_mean_field(stack, x, y, loss=summed, **kwargs)
    start = 0
    finals = []
    with torch.no_grad():
        for net in nets:
            net.a.copy_(stack.a[start : start + net.width])
            net.b.copy_(stack.b[start : start + net.width])
            start += net.width
            finals.append(float(squared_loss(net(x), y)))
    return finals
