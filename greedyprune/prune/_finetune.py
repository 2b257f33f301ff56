"""Training and fine-tuning, evaluation, batch streams and latency.

``finetune`` defaults to the authors' final fine-tuning: SGD with Nesterov momentum 0.9, cosine
learning-rate schedule, label smoothing 0.1, weight decay on convolution and linear weights only
(none on batch norm and biases). Their between-layer step differs (momentum 0, a fixed rate, decay
on every parameter, plain cross-entropy): see ``greedyprune.prune.RECIPES``. Checkpoints hold
tensors and plain numbers only and load with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from greedyprune.dist import (
    all_sum,
    barrier,
    is_distributed,
    is_main,
    local_slice,
    rank,
    world_size,
)
from greedyprune.errors import (
    GreedypruneError,
    GreedypruneTypeError,
    check_choice,
    check_int,
    check_number,
)
from greedyprune.runs import atomic_write_bytes, load_checkpoint_file

from ._data import seeded_draws
from ._models import load_into
from ._recipes import FinetuneSettings

__all__ = [
    "AMP_DTYPES",
    "autocast",
    "batch_stream",
    "evaluate",
    "finetune",
    "fixed_batch",
    "latency_ms",
    "param_groups",
    "stream_batches",
]

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, amp: str | None):
    """``torch.autocast`` for ``amp`` in ``AMP_DTYPES`` on CUDA; a no-op context otherwise."""
    device = torch.device(device)
    if amp is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=AMP_DTYPES[amp])


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def param_groups(model: nn.Module, weight_decay: float, *, decay_all: bool = False) -> list[dict]:
    """Two optimizer groups: weights of dim >= 2 (decayed) and batch norm / biases (not decayed,
    unless ``decay_all``)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if decay_all or p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    amp: str | None = None,
    channels_last: bool = False,
) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` in eval mode on ``dataset`` of
    ``(x [3, H, W], y)`` pairs, in chunks of ``batch_size`` (memory does not grow with the
    dataset); the model's training flag is restored."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    correct = total = 0
    batches = stream_batches(
        dataset, batch_size, device=device, num_workers=num_workers, channels_last=channels_last
    )
    try:
        for x, y in batches():
            with autocast(device, amp):
                logits = model(x)
            correct += int((logits.argmax(1) == y).sum())
            total += int(y.numel())
    finally:
        model.train(was_training)
    return correct / max(1, total)


def _to(x: Tensor, device: torch.device, channels_last: bool = False) -> Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def stream_batches(
    dataset: Dataset,
    batch_size: int,
    *,
    device="cpu",
    num_workers: int = 0,
    channels_last: bool = False,
) -> Callable[[], Iterator[tuple[Tensor, Tensor]]]:
    """A callable returning a fresh pass over ``dataset`` in order, ``batch_size`` samples at a
    time, on ``device``: a dataset with random transforms is re-augmented on every pass (as the
    authors' evaluation set is), and memory holds one batch, never the whole set."""
    device = torch.device(device)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        for x, y in loader:
            yield _to(x, device, channels_last), y.to(device, non_blocking=True)

    return batches


def fixed_batch(
    dataset: Dataset, n: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """The first ``n`` samples of ``dataset`` as one batch ``(x [n, 3, H, W], y [n])``."""
    n = min(int(n), len(dataset))
    xs, ys = zip(*(dataset[i] for i in range(n)))
    return torch.stack(xs).to(device), torch.as_tensor(ys).to(device)


class _RandomBatches:
    """An endless batch sampler: each batch is ``batch_size`` indices drawn without replacement,
    batches independent; the draws come from ``generator`` in the main process, so a stream is
    the same whatever the number of loader workers."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, share: slice):
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.share = share

    def __iter__(self):
        while True:
            batch = torch.randperm(self.n, generator=self.generator)[: self.batch_size]
            yield batch[self.share].tolist()


def batch_stream(
    dataset: Dataset,
    batch_size: int,
    *,
    generator: torch.Generator,
    device="cpu",
    num_workers: int = 0,
    channels_last: bool = False,
    shard: bool = True,
) -> Callable[[], tuple[Tensor, Tensor]]:
    """A callable returning a fresh random mini-batch ``(x [B, 3, H, W], y [B])`` per call
    (samples without replacement within a batch, independent between calls). With
    ``num_workers`` > 0, images are decoded by DataLoader workers into pinned memory (on CUDA).
    In a ``torch.distributed`` process group every rank draws the same global batch and returns
    its contiguous slice (the batch size must be a multiple of the world size); ``shard=False``
    gives every rank the whole batch."""
    check_int("batch_size", batch_size, minimum=1)
    n = len(dataset)
    device = torch.device(device)
    tensors = getattr(dataset, "tensors", None)
    share = local_slice(min(batch_size, n)) if shard else slice(None)
    if tensors is not None:

        def next_tensor_batch() -> tuple[Tensor, Tensor]:
            idx = torch.randperm(n, generator=generator)[: min(batch_size, n)][share]
            return _to(tensors[0][idx], device, channels_last), tensors[1][idx].to(device)

        return next_tensor_batch
    loader = DataLoader(
        dataset,
        batch_sampler=_RandomBatches(n, batch_size, generator, share),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
    )
    it = iter(loader)

    def next_batch() -> tuple[Tensor, Tensor]:
        x, y = next(it)
        return _to(x, device, channels_last), y.to(device, non_blocking=True)

    return next_batch


def _train_loader(model, train_set, batch_size: int, gen, num_workers: int, device):
    """(loader, the module to step, the distributed sampler or None): shuffled by ``gen``; in a
    process group a ``DistributedSampler`` (every rank derives the same seed from ``gen``) over
    the batch split among the ranks, and the model wrapped in ``DistributedDataParallel``."""
    if not is_distributed():
        loader = DataLoader(
            train_set,
            batch_size=batch_size,
            shuffle=True,
            drop_last=len(train_set) > batch_size,
            generator=gen,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        return loader, model, None
    seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
    sampler = DistributedSampler(train_set, shuffle=True, seed=seed, drop_last=True)
    local_batch = max(1, batch_size // world_size())
    loader = DataLoader(
        train_set,
        batch_size=local_batch,
        sampler=sampler,
        drop_last=len(sampler) > local_batch,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    return loader, DDP(model, device_ids=[device] if device.type == "cuda" else None), sampler


def _resume(ckpt: Path | None, model, optimizer, gen: torch.Generator, device) -> int:
    """Load the checkpoint ``ckpt`` when there is one (model, optimizer, the shuffling
    generator, so a resumed run sees the batches an uninterrupted one would); returns the epochs
    it had finished (0 without one). A checkpoint of another model is refused, naming it."""
    if ckpt is None or not ckpt.is_file():
        return 0
    state = load_checkpoint_file(
        ckpt, map_location=device, keys=("model", "optimizer", "epoch", "generator")
    )
    try:
        load_into(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        return int(state["epoch"])
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise GreedypruneError(
            f"{str(ckpt)!r} does not fit the model being trained ({detail}); it is another "
            "run's: delete it to start this training again"
        ) from None


def _save_checkpoint(path: Path, model, optimizer, epoch: int, gen: torch.Generator) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "generator": gen.get_state(),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# the SGD phase of a call that gives no FinetuneSettings: the fields it does not give
DEFAULT_PHASE = {
    "lr": 0.1,
    "batch_size": 64,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 4e-5,
    "decay_all": False,
    "label_smoothing": 0.1,
    "schedule": "cosine",
}


def _phase(phase: FinetuneSettings | None, knobs: dict) -> FinetuneSettings:
    """``phase`` (or :data:`DEFAULT_PHASE` with ``epochs``) with the fields given as keywords."""
    names = {f.name for f in fields(FinetuneSettings)}
    unknown = sorted(set(knobs) - names)
    if unknown:
        raise GreedypruneTypeError(
            f"finetune() got unknown keywords {unknown}; the phase's are {sorted(names)}"
        )
    if phase is None:
        if "epochs" not in knobs:
            raise GreedypruneTypeError("finetune() needs epochs= (or a FinetuneSettings phase)")
        return FinetuneSettings(**{**DEFAULT_PHASE, **knobs})
    if not isinstance(phase, FinetuneSettings):
        raise GreedypruneTypeError(f"phase={phase!r} must be a FinetuneSettings or None")
    return replace(phase, **knobs)


def finetune(
    model: nn.Module,
    train_set: Dataset,
    phase: FinetuneSettings | None = None,
    *,
    generator: torch.Generator | int = 0,
    checkpoint: str | os.PathLike | None = None,
    num_workers: int = 0,
    amp: str | None = None,
    channels_last: bool = False,
    progress: bool = False,
    on_epoch: Callable[[int], None] | None = None,
    **knobs,
) -> list[float]:
    """Train ``model`` in place for one SGD phase and return the mean training loss of each epoch.

    phase: a :class:`~greedyprune.prune.FinetuneSettings` (epochs, fractions allowed: 0.1 = a
    tenth of an epoch, the authors' between-layer step; lr, batch size, momentum, Nesterov,
    weight decay, label smoothing, schedule); any of its fields may be given as a keyword instead
    or on top (``finetune(model, data, epochs=3, lr=0.05)``: :data:`DEFAULT_PHASE` for the rest).
    SGD (Nesterov when ``nesterov`` and ``momentum`` > 0), ``schedule`` "cosine" (from ``lr`` to 0
    over all steps) or "constant", label smoothing, weight decay on weights of dim >= 2 only
    unless ``decay_all``. ``amp``: "bf16" or "fp16" autocast on CUDA (fp16 with a gradient
    scaler). ``checkpoint``: a file written after every epoch; if it exists, training resumes after
    the last finished epoch (same model architecture required).
    """
    ph = _phase(phase, knobs)
    check_number("epochs", ph.epochs, above=0)
    check_number("lr", ph.lr, above=0)
    check_choice("schedule", ph.schedule, ("cosine", "constant"))
    if amp is not None:
        check_choice("amp", amp, AMP_DTYPES)
    device = _device_of(model)
    gen = (
        generator
        if isinstance(generator, torch.Generator)
        else torch.Generator().manual_seed(int(generator))
    )
    loader, net, sampler = _train_loader(model, train_set, ph.batch_size, gen, num_workers, device)
    sgd = _SGDPhase(ph, net, loader, device, amp, channels_last)
    opt = sgd.optimizer(model)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    start = _resume(ckpt, model, opt, gen, device)
    n_epochs = math.ceil(ph.epochs)
    sgd.step = start * len(loader)
    history: list[float] = []
    model.train()
    for epoch in range(start, n_epochs):
        if is_distributed():
            sampler.set_epoch(epoch)
        # the epoch's draws that take no generator (random crops and flips, dropout) start from
        # a seed the shuffling generator gives, which the checkpoint saves: a resumed run
        # repeats them; each rank its own
        epoch_seed = int(torch.randint(2**62, (1,), generator=gen)) + rank()
        with seeded_draws(epoch_seed, device):
            label = f"epoch {epoch + 1}/{n_epochs}"
            total, count = sgd.epoch(tqdm(loader, desc=label, disable=not progress, leave=False))
        if is_distributed():
            total, count = all_sum(total, count)
            # DDP keeps the parameters equal; batch-norm statistics are each rank's own until
            # rank 0's are sent to all (what a checkpoint holds and the next selection sees)
            for buf in model.buffers():
                tdist.broadcast(buf, 0)
        history.append(total / max(1, count))
        if on_epoch is not None:
            on_epoch(epoch)
            model.train()
        if ckpt is not None:
            if is_main():
                _save_checkpoint(ckpt, model, opt, epoch + 1, gen)
            barrier()
    model.eval()
    return history


class _SGDPhase:
    """One phase's optimiser steps: SGD on ``net`` (the model, or its DDP wrapper) with the
    phase's schedule, counted over the whole phase (``step`` of ``total_steps``; the schedule is
    a function of the step alone, so a resumed run needs no more state than the step)."""

    def __init__(self, ph: FinetuneSettings, net, loader, device, amp, channels_last):
        self.ph, self.net, self.device = ph, net, device
        self.amp, self.channels_last = amp, channels_last
        self.total_steps = max(1, math.ceil(ph.epochs * len(loader)))
        self.step = 0
        self.opt = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16" and device.type == "cuda")

    def optimizer(self, model: nn.Module) -> torch.optim.SGD:
        ph = self.ph
        self.opt = torch.optim.SGD(
            param_groups(model, ph.weight_decay, decay_all=ph.decay_all),
            lr=ph.lr,
            momentum=ph.momentum,
            nesterov=bool(ph.nesterov and ph.momentum > 0),
        )
        return self.opt

    def epoch(self, batches) -> tuple[float, int]:
        """Steps on ``batches`` until the phase's last step; the summed loss and image count."""
        ph, opt, scaler, device = self.ph, self.opt, self.scaler, self.device
        total, count = 0.0, 0
        for x, y in batches:
            if self.step >= self.total_steps:
                break
            x, y = _to(x, device, self.channels_last), y.to(device, non_blocking=True)
            with autocast(device, self.amp):
                loss = F.cross_entropy(self.net(x), y, label_smoothing=ph.label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if ph.schedule == "cosine":
                lr = ph.lr * 0.5 * (1 + math.cos(math.pi * self.step / self.total_steps))
                for group in opt.param_groups:
                    group["lr"] = lr
            scaler.step(opt)
            scaler.update()
            self.step += 1
            total += float(loss.detach()) * y.numel()
            count += y.numel()
        return total, count


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
