"""Training and fine-tuning (the authors' recipe), evaluation, batch streams and latency.

Recipe (PAPER.md): SGD with Nesterov momentum 0.9, cosine learning-rate schedule, label smoothing
0.1, weight decay on convolution and linear weights only (none on batch norm and biases).
Checkpoints hold tensors and plain numbers only and load with ``weights_only=True``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

__all__ = ["batch_stream", "evaluate", "finetune", "fixed_batch", "latency_ms", "param_groups"]


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups: weights of dim >= 2 (decayed) and batch norm / biases (not decayed)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int = 256) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` in eval mode on ``dataset`` of
    ``(x [3, H, W], y)`` pairs; the model's training flag is restored."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x, y = x.to(device), y.to(device)
            correct += int((model(x).argmax(1) == y).sum())
            total += int(y.numel())
    finally:
        model.train(was_training)
    return correct / max(1, total)


def fixed_batch(
    dataset: Dataset, n: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """The first ``n`` samples of ``dataset`` as one batch ``(x [n, 3, H, W], y [n])``."""
    n = min(int(n), len(dataset))
    xs, ys = zip(*(dataset[i] for i in range(n)))
    return torch.stack(xs).to(device), torch.as_tensor(ys).to(device)


def batch_stream(
    dataset: Dataset, batch_size: int, *, generator: torch.Generator, device="cpu"
) -> Callable[[], tuple[Tensor, Tensor]]:
    """A callable returning a fresh random mini-batch ``(x [B, 3, H, W], y [B])`` per call
    (samples without replacement within a batch, independent between calls)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)
    tensors = getattr(dataset, "tensors", None)

    def next_batch() -> tuple[Tensor, Tensor]:
        idx = torch.randperm(n, generator=generator)[: min(batch_size, n)]
        if tensors is not None:
            return tensors[0][idx].to(device), tensors[1][idx].to(device)
        xs, ys = zip(*(dataset[int(i)] for i in idx))
        return torch.stack(xs).to(device), torch.as_tensor(ys).to(device)

    return next_batch


def _save_checkpoint(path: Path, model, optimizer, epoch: int, gen: torch.Generator) -> None:
    tmp = path.with_name(path.name + ".tmp")
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "generator": gen.get_state(),
    }
    torch.save(state, tmp)
    os.replace(tmp, path)


def finetune(
    model: nn.Module,
    train_set: Dataset,
    *,
    epochs: float,
    lr: float = 0.1,
    batch_size: int = 64,
    weight_decay: float = 4e-5,
    label_smoothing: float = 0.1,
    momentum: float = 0.9,
    generator: torch.Generator | int = 0,
    checkpoint: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> list[float]:
    """Train ``model`` in place for ``epochs`` (fractions allowed: 0.1 = a tenth of an epoch, the
    authors' between-layer step) and return the mean training loss of each epoch.

    SGD Nesterov, cosine schedule from ``lr`` to 0 over all steps, label smoothing, no weight decay
    on batch norm and biases. ``checkpoint``: a file written after every epoch; if it exists, training
    resumes after the last finished epoch (same model architecture required).
    """
    if not epochs > 0:
        raise ValueError(f"epochs must be > 0, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    device = _device_of(model)
    gen = (
        generator
        if isinstance(generator, torch.Generator)
        else torch.Generator().manual_seed(int(generator))
    )
    loader = DataLoader(
        train_set,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(train_set) > batch_size,
        generator=gen,
        num_workers=num_workers,
    )
    per_epoch = len(loader)
    total_steps = max(1, math.ceil(epochs * per_epoch))
    n_epochs = math.ceil(epochs)
    opt = torch.optim.SGD(
        param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=True
    )
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        # The shuffling generator's state is restored so a resumed run sees the batches an
        # uninterrupted one would.
        gen.set_state(state["generator"])
    history: list[float] = []
    step = start * per_epoch
    model.train()
    for epoch in range(start, n_epochs):
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{n_epochs}", disable=not progress, leave=False)
        for x, y in bar:
            if step >= total_steps:
                break
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # the cosine schedule is a function of the step alone, so a resumed run needs no state
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            opt.step()
            step += 1
            total += float(loss.detach()) * y.numel()
            count += y.numel()
        history.append(total / max(1, count))
        if ckpt is not None:
            _save_checkpoint(ckpt, model, opt, epoch + 1, gen)
    model.eval()
    return history


@torch.no_grad()
def latency_ms(model: nn.Module, example: Tensor, *, repeats: int = 10) -> float:
    """Median wall time in milliseconds of ``model(example)`` in eval mode (after one warm-up).

    example: [B, C, H, W] on the model's device. Measured, so it varies with machine load.
    """
    was_training = model.training
    model.eval()
    try:
        model(example)
        if example.device.type == "cuda":
            torch.cuda.synchronize(example.device)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(example)
            if example.device.type == "cuda":
                torch.cuda.synchronize(example.device)
            times.append(time.perf_counter() - t)
    finally:
        model.train(was_training)
    times.sort()
    return 1000.0 * times[len(times) // 2]
