"""Local imitation on real networks: each internal group's layer problem in Gram form.

For every internal group (one consumer convolution reading the group's channels, see
:func:`find_prunable_groups` with ``residual=False``), in forward order:

- features: the consumer's input patches in the network pruned so far (earlier groups' removed
  channels zeroed at their consumers, and those consumers refitted), at ``positions`` output
  positions per calibration image drawn from the run's seeded generator; a channel's own path
  (batch norm, activation, MobileNetV2's depthwise convolution) lies before the consumer's input,
  so it is included;
- target: the dense network's consumer output at the same positions, bias left out, times the
  eval-mode scale of the batch norm that reads it (and the consumer's weights scaled alike);
- the patch terms ``H, U, ||Z||^2`` accumulated chunk by chunk (:class:`~greedyprune.select.PatchGram`),
  the channel terms ``G, b`` from them (:func:`~greedyprune.select.channel_gram`);
- a criterion picks the group's channels (:data:`CRITERIA`), optionally improved by swaps, and
  then the consumer's full least-squares refit on the kept channels (all its weights, ridge
  ``ridge * mean(diag H)``) is written into the consumer before the next group is measured.

The network is traced by torch.fx and run between node positions. First one pass of the dense
network over the calibration set records every group's targets (P rows per image: small), so the
dense network's activations are never kept. Then the pruned stream is run block by block: a block
starts at a single-tensor point before its first consumer; the stream is run from there to each
consumer in turn (its input patches are read from the tensors live at that position), the
consumer is refitted, and the run goes on to the next consumer and to the block's end, so the
whole selection costs one dense and one pruned pass of the network. The pruned stream's tensors at
the current position are cached for the whole calibration set, in memory up to a byte budget and
on disk (raw bytes, exact) beyond it, so peak memory is the budget plus one chunk whatever the
number of images.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from greedyprune.errors import GreedypruneError, check_choice, check_int, check_number
from greedyprune.select import (
    FixedWeightLoss,
    GramLoss,
    PatchGram,
    RefitLoss,
    backward_to,
    channel_gram,
    greedy_select,
    lasso_support,
    swap_search,
)

from ._baselines import _bn_after, _bn_scale
from ._gates import PrunableGroup, _live_counts, find_prunable_groups, fx_trace
from ._registry import Choice, SelectionRequest, register_method

__all__ = [
    "CRITERIA",
    "LocalSettings",
    "calibration_set",
    "check_consumers",
    "check_local",
    "internal_groups",
    "largest_activation_bytes",
    "local_select",
]


@dataclass(frozen=True)
class LocalSettings:
    """The settings of local imitation. method: the criterion (:data:`CRITERIA`; ``prune`` reads
    it, a registered method uses its own name); positions: output positions sampled per image and
    consumer; calibration_images: calibration images (training split, evaluation transform, spread over the
    classes); ridge: the refit's ridge relative to mean(diag H); swaps: rounds of swap search after
    the criterion's picks (refit criteria only); memory_budget: bytes of cached activations kept in
    memory (the rest spills to disk); chunk: images per forward pass."""

    method: str = "greedy-local-refit"
    positions: int = 10
    calibration_images: int = 1024
    ridge: float = 1e-4
    swaps: int = 0
    memory_budget: int = 1 << 30  # MobileNetV2 fills it at 1024 images: see docs/imagenet.md
    chunk: int = 32

    def as_dict(self) -> dict:
        """The settings that change a result (``config.json``): all but the memory budget (the
        disk spill is exact)."""
        d = asdict(self)
        del d["memory_budget"]
        return d


OSSCAR_ROUNDS = 5  # osscar's rounds of swap search when --swaps is not given


def _relative(loss: float, acc: PatchGram) -> float:
    return loss / max(acc.const, 1e-300)


def _scalar_error(acc: PatchGram, G: Tensor, b: Tensor, keep: list[int], ridge: float) -> float:
    """The error of ``keep`` with one least-squares scale per channel."""
    obj = RefitLoss(G, b, acc.const, ridge=ridge)
    for c in keep:
        obj.add(c)
    return _relative(obj.current_loss(), acc)


def _forward(make: Callable):
    """Forward greedy on ``make``'s objective, then ``settings.swaps`` rounds of swaps."""

    def choose(acc, G, b, width, s):
        obj = make(acc, G, b, s)
        sel = greedy_select(obj, width, replacement=False)
        if isinstance(obj, GramLoss):  # the 1/k average: its loss is ||f - Z||^2 / (2 rows)
            return sorted(sel.order.tolist()), _relative(obj.current_loss() * 2 * acc.rows, acc), 0
        swaps = swap_search(obj, s.swaps) if s.swaps else []
        return sorted(obj.kept), _relative(obj.current_loss(), acc), len(swaps)

    return choose


def _thinet(acc, G, b, width, s):
    """ThiNet: remove channels one at a time by the error with the dense weights kept, then one
    least-squares scale per kept channel (its criterion error)."""
    obj = FixedWeightLoss(G, b, acc.const)
    backward_to(obj, width)
    keep = sorted(obj.kept)
    return keep, _scalar_error(acc, G, b, keep, s.ridge), 0


def _osscar(acc, G, b, width, s):
    """OSSCAR: backward elimination by the full refit's error (the OBS cost of a channel), then
    swap search (``swaps`` rounds, or OSSCAR_ROUNDS)."""
    obj = RefitLoss(acc.H, acc.U, acc.const, block=acc.taps, ridge=s.ridge)
    backward_to(obj, width)
    swaps = swap_search(obj, s.swaps or OSSCAR_ROUNDS)
    return sorted(obj.kept), _relative(obj.current_loss(), acc), len(swaps)


def _cp(acc, G, b, width, s):
    """Channel Pruning: the LASSO on the channel scales, its penalty bisected to the width; the
    criterion error is that of one least-squares scale per kept channel."""
    keep = lasso_support(G, b, width)
    return keep, _scalar_error(acc, G, b, keep, s.ridge), 0


def _avg(acc, G, b, s):
    return GramLoss(G, b, acc.const, rows=max(1, acc.rows), scale=float(G.shape[0]))


def _omp(acc, G, b, s):
    return RefitLoss(G, b, acc.const, ridge=s.ridge)


def _full(acc, G, b, s):
    return RefitLoss(acc.H, acc.U, acc.const, block=acc.taps, ridge=s.ridge)


@dataclass(frozen=True)
class Criterion:
    """A local method: what it minimises (the docs' table), and
    ``choose(acc, G, b, width, settings) -> (kept, criterion error / ||Z||^2, swaps made)``;
    ``swaps``: whether it takes ``--swaps``. Every one is followed by the consumer's full refit."""

    description: str
    choose: Callable
    swaps: bool = True


CRITERIA: dict[str, Criterion] = {
    "greedy-local": Criterion(
        "greedy on the kernel's 1/k average of the D-scaled contributions (the gate D * w of "
        "global greedy), without replacement",
        _forward(_avg),
        swaps=False,
    ),
    "greedy-local-omp": Criterion(
        "greedy with one least-squares scale per kept channel (OMP over channels)", _forward(_omp)
    ),
    "greedy-local-refit": Criterion(
        "greedy with the consumer's full least-squares refit on the kept channels' patch columns",
        _forward(_full),
    ),
    "thinet": Criterion(
        "ThiNet (Luo et al. 2017): backward removal by the error with the dense weights kept, "
        "then one scale per channel",
        _thinet,
        swaps=False,
    ),
    "cp": Criterion(
        "Channel Pruning (He et al. 2017): LASSO on the channel scales, penalty bisected to the "
        "width",
        _cp,
        swaps=False,
    ),
    "osscar": Criterion(
        "OSSCAR (Meng et al. 2024): backward elimination by the full refit's error, then swap "
        f"search ({OSSCAR_ROUNDS} rounds unless --swaps)",
        _osscar,
    ),
}


def check_local(settings: LocalSettings, criterion: str | None = None) -> None:
    """Every value of ``settings`` (with ``criterion`` for its method), before any work: one
    line naming the setting."""
    criterion = settings.method if criterion is None else criterion
    for name in ("positions", "calibration_images", "chunk", "memory_budget"):
        v = getattr(settings, name)
        check_int(name, v, minimum=1)
    check_int("swaps", settings.swaps, minimum=0, fix="rounds of swap search")
    check_number("ridge", settings.ridge, minimum=0, fix="relative to mean(diag)")
    check_choice("method", criterion, CRITERIA)
    if settings.swaps and not CRITERIA[criterion].swaps:
        takers = ", ".join(k for k, v in CRITERIA.items() if v.swaps)
        raise GreedypruneError(
            f"swaps need a refit criterion ({takers}); method={criterion!r} takes none: pass "
            "swaps=0"
        )


def check_consumers(model: nn.Module, groups: list[PrunableGroup]) -> None:
    """Each group must have one consumer, a convolution the refit can rewrite."""
    mods = dict(model.named_modules())
    for g in groups:
        if len(g.consumers) != 1:
            raise GreedypruneError(
                f"group {g.name!r} has {len(g.consumers)} consumers ({', '.join(g.consumers)}): "
                "local imitation handles internal groups with one consumer; residual-stream "
                "groups span a stage (use find_prunable_groups(residual=False))"
            )
        c = mods[g.consumers[0]]
        if not isinstance(c, nn.Conv2d):
            raise GreedypruneError(
                f"consumer {g.consumers[0]!r} of group {g.name!r} is a {type(c).__name__}: the "
                "refit rewrites convolutions only"
            )
        if c.groups != 1 or c.padding_mode != "zeros" or isinstance(c.padding, str):
            raise GreedypruneError(
                f"consumer {g.consumers[0]!r} of group {g.name!r} has groups={c.groups}, "
                f"padding_mode={c.padding_mode!r}, padding={c.padding!r}: the patches are read "
                "with zero integer padding and one group only"
            )


@torch.no_grad()
def largest_activation_bytes(model: nn.Module, example: Tensor) -> int:
    """Bytes of the largest module output for one image (``example`` [1, C, H, W]): what one
    image's cached activation at a cut can take, at most."""
    sizes = [0]

    def hook(_m, _a, out):
        if isinstance(out, Tensor):
            sizes.append(out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model.eval()(example)
    finally:
        for h in handles:
            h.remove()
    return max(sizes)


def _check_calibration_size(n: int, available: int) -> None:
    if n > available:
        raise GreedypruneError(
            f"calibration_images={n} is more than the training split holds ({available}); "
            f"pass at most {available}"
        )


def internal_groups(
    model: nn.Module, example: Tensor, settings: LocalSettings, n_train: int
) -> list[PrunableGroup]:
    """The internal groups local imitation selects, with every check a job runs before its run
    folder: at least one group, each consumer one the refit can rewrite, a memory budget above
    one image's activations at a cut and the next, and no more calibration images than the
    training split's ``n_train``."""
    groups = find_prunable_groups(model, example, residual=False)
    if not groups:
        raise GreedypruneError(
            "the model has no internal group (one consumer each), which local imitation needs"
        )
    check_consumers(model, groups)
    need = 2 * largest_activation_bytes(model, example)
    if settings.memory_budget < need:
        raise GreedypruneError(
            f"memory_budget={settings.memory_budget} bytes is below one image's activations at a "
            f"cut and at the next one ({need} bytes); pass at least {-(-need // 2**20)} MiB"
        )
    _check_calibration_size(settings.calibration_images, n_train)
    return groups


def calibration_indices(labels: Tensor, n: int, generator: torch.Generator) -> list[int]:
    """``n`` indices spread over every class: a random order (``generator``), each image ranked
    within its class, the n lowest (rank, order) taken, so every class gets ``n / classes`` or
    one fewer; sorted."""
    labels = torch.as_tensor(labels)
    _check_calibration_size(n, labels.numel())
    perm = torch.randperm(labels.numel(), generator=generator)
    seen: dict[int, int] = {}
    keys = []
    for pos, i in enumerate(perm.tolist()):
        c = int(labels[i])
        keys.append((seen.get(c, 0), pos, i))
        seen[c] = seen.get(c, 0) + 1
    return sorted(i for _, _, i in sorted(keys)[:n])


def calibration_set(
    train: Dataset, test: Dataset, n: int, generator: torch.Generator, labels: Tensor
) -> Dataset:
    """The calibration images: ``n`` training images spread over the classes
    (:func:`calibration_indices`), read with the test split's transform (no crops or flips)."""
    base = train
    if getattr(train, "transform", None) is not None and hasattr(test, "transform"):
        base = copy.copy(train)
        base.transform = test.transform
    return Subset(base, calibration_indices(labels, n, generator))


class _Store:
    """Chunks of activations: in memory while the shared budget allows, else on disk (the raw
    bytes in a private temporary folder, read back exactly and removed once read or by
    :meth:`close`; raw files write several times faster than safetensors' serialisation, and
    nothing but this class reads them)."""

    def __init__(self, budget: int):
        self.budget, self.used, self.peak = budget, 0, 0  # bytes in memory now, and at most
        self._dir: Path | None = None
        self._n = 0

    def put_all(self, ts: tuple[Tensor, ...]) -> tuple:
        return tuple(self.put(t) for t in ts)

    def get_all(self, items: tuple) -> tuple[Tensor, ...]:
        return tuple(self.get(item) for item in items)

    def drop_all(self, chunks) -> None:
        for items in chunks:
            self.drop(items)

    def put(self, t: Tensor):
        t = t.detach().contiguous()
        size = t.numel() * t.element_size()
        if self.used + size <= self.budget:
            self.used += size
            self.peak = max(self.peak, self.used)
            return ("mem", t, size)
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="greedyprune-local-"))
        self._n += 1
        path = self._dir / f"{self._n}.bin"
        t.cpu().reshape(-1).view(torch.uint8).numpy().tofile(path)
        return ("disk", path, (t.dtype, tuple(t.shape), size, t.device))

    def get(self, item) -> Tensor:
        if item[0] == "mem":
            return item[1]
        dtype, shape, size, device = item[2]
        raw = torch.from_file(str(item[1]), size=size, dtype=torch.uint8)
        return raw.view(dtype).reshape(shape).to(device)

    def drop(self, items) -> None:
        for item in items:
            if item[0] == "mem":
                self.used -= item[2]
            else:
                item[1].unlink(missing_ok=True)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


class _Segments:
    """The model traced by torch.fx, run between node positions: ``module(a, b)`` maps the
    tensors live at position ``a`` (``live[a]``, a tuple) to those live at ``b`` (the model's
    output if ``b`` is None), sharing the model's modules, so weight changes apply. A position
    before a consumer's node keeps the consumer's input among its live tensors."""

    def __init__(self, model: nn.Module):
        self.gm = fx_trace(model, "local imitation")
        self.nodes = list(self.gm.graph.nodes)
        self.live, self.index = _live_counts(self.nodes)
        self._cache: dict[tuple[int, int | None], nn.Module] = {}

    def node_of(self, module_name: str) -> int:
        """The position of the first call of ``module_name``."""
        return min(
            self.index[n] for n in self.nodes if n.op == "call_module" and n.target == module_name
        )

    def input_slot(self, module_name: str) -> int:
        """Which of the tensors live at the module's position is its input."""
        q = self.node_of(module_name)
        return self.live[q].index(self.nodes[q].args[0])

    def cut_before(self, module_name: str) -> int:
        """The last single-tensor position at or before the module's call (a block boundary)."""
        for p in range(self.node_of(module_name), 0, -1):
            if len(self.live[p]) == 1:
                return p
        raise GreedypruneError(f"no single-tensor cut before {module_name!r}")

    def module(self, a: int, b: int | None) -> nn.Module:
        if (a, b) in self._cache:
            return self._cache[(a, b)]
        g, env = torch.fx.Graph(), {}
        for k, n in enumerate(self.live[a]):
            env[n] = g.placeholder(f"h{k}")
        end = len(self.nodes) if b is None else b
        for n in self.nodes[:a]:
            if n.op == "get_attr" and any(self.index[u] >= a for u in n.users):
                env[n] = g.node_copy(n, lambda x: env[x])
        for n in self.nodes[a:end]:
            if n.op == "output":
                break
            env[n] = g.node_copy(n, lambda x: env[x])
        if b is None:
            g.output((env[next(n for n in self.nodes if n.op == "output").args[0]],))
        else:
            g.output(tuple(env[n] for n in self.live[b]))
        mod = torch.fx.GraphModule(self.gm, g)
        self._cache[(a, b)] = mod
        return mod


@dataclass
class _Consumer:
    """A group's consumer: the working and the dense module, the scale [O] of the batch norm
    that reads its output, and its weights times that scale [O, C, K] (float64)."""

    name: str
    conv: nn.Conv2d
    dense: nn.Conv2d
    scale: Tensor
    weight: Tensor = field(init=False)

    def __post_init__(self):
        w = self.dense.weight.detach().double()
        self.weight = w.reshape(w.shape[0], w.shape[1], -1) * self.scale.double().reshape(-1, 1, 1)

    def patches(self, x: Tensor, pos: Tensor) -> Tensor:
        """[B * P, C, K]: the input patches at output positions ``pos`` [B, P] (flat indices into
        the output map), read straight from the zero-padded input: only the sampled patches are
        gathered (``F.unfold`` would copy every position's, K times the input)."""
        c = self.conv
        (kh, kw), (sh, sw), (dh, dw), (ph, pw) = c.kernel_size, c.stride, c.dilation, c.padding
        B, C, _, Win = x.shape
        w_out = (Win + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
        rows = (pos // w_out) * sh  # [B, P]: the patch's top row in the padded input
        cols = (pos % w_out) * sw
        ky = torch.arange(kh, device=x.device) * dh
        kx = torch.arange(kw, device=x.device) * dw
        r = rows[:, :, None, None] + ky[:, None]  # [B, P, kh, 1]
        q = cols[:, :, None, None] + kx[None, :]  # [B, P, 1, kw]
        b = torch.arange(B, device=x.device)[:, None, None, None]
        got = xp[b, :, r, q]  # [B, P, kh, kw, C]: advanced indices first, the channel slice last
        P = pos.shape[1]
        return got.reshape(B * P, kh * kw, C).transpose(1, 2)

    def target(self, out: Tensor, pos: Tensor) -> Tensor:
        """[B * P, O]: the output at ``pos``, bias removed, BN-scaled."""
        B, O = out.shape[:2]
        flat = out.flatten(2)
        got = flat.gather(2, pos.unsqueeze(1).expand(B, O, pos.shape[1])).permute(0, 2, 1)
        if self.conv.bias is not None:
            got = got - self.conv.bias.detach()
        return (got * self.scale.to(got)).reshape(-1, O)


@dataclass
class LocalRecord:
    """One group's row of ``layers.csv`` (errors relative to ||Z||^2; pass_s: the pruned pass
    that measured its terms, select_s: the whole group with that pass, the criterion and refit)."""

    layer: str
    channels: int
    kept: int
    rows: int
    criterion_error: float
    fixed_error: float
    refit_error: float
    swaps: int
    pass_s: float
    select_s: float


def _positions(L: int, n_images: int, P: int, gen: torch.Generator) -> Tensor:
    """[n_images, min(P, L)]: distinct output positions per image."""
    p = min(P, L)
    return torch.stack([torch.randperm(L, generator=gen)[:p] for _ in range(n_images)])


def _hooked(module: nn.Module, fn, pre: bool):
    return module.register_forward_pre_hook(fn) if pre else module.register_forward_hook(fn)


def refit_error(acc: PatchGram, kept: list[int], ridge: float) -> float:
    """The relative error ||Z - Z_hat||^2 / ||Z||^2 of the consumer's full refit on ``kept``."""
    return _refit(acc, kept, ridge)[1]


def _refit(acc: PatchGram, kept: list[int], ridge: float) -> tuple[Tensor, float]:
    """The full refit on the kept channels: (beta [k*K, O], its relative error)."""
    K = acc.taps
    cols = torch.cat([torch.arange(c * K, (c + 1) * K) for c in kept])
    H = acc.H[cols][:, cols]
    U = acc.U[cols]
    rho = ridge * float(acc.H.diagonal().mean())
    beta = torch.linalg.solve(H + rho * torch.eye(len(cols), dtype=H.dtype), U)
    err = acc.const - 2 * float((beta * U).sum()) + float((beta * (H @ beta)).sum())
    return beta, err / max(acc.const, 1e-300)


class _Run:
    """One local selection: the dense and the working model, their segments, the caches."""

    def __init__(self, request: SelectionRequest, settings: LocalSettings, criterion: str):
        self.req, self.s, self.criterion = request, settings, criterion
        self.work = request.model.eval()
        self.dense = copy.deepcopy(self.work).eval()
        self.seg_work, self.seg_dense = _Segments(self.work), _Segments(self.dense)
        self.store = _Store(settings.memory_budget)
        self.gen = torch.Generator().manual_seed(int(request.seed))
        self.chunk_index = 0
        bns = _bn_after(self.work)
        work_mods, dense_mods = dict(self.work.named_modules()), dict(self.dense.named_modules())
        self.consumers = {}
        for g in request.groups:
            name = g.consumers[0]
            conv = work_mods[name]
            scale = _bn_scale(bns[name]).detach() if name in bns else torch.ones(conv.out_channels)
            self.consumers[g.name] = _Consumer(name, conv, dense_mods[name], scale)

    def _input_cache(self) -> list:
        data, step = self.req.data, self.s.chunk
        out = []
        for a in range(0, len(data), step):
            xs = [data[i][0] for i in range(a, min(len(data), a + step))]
            out.append(self.store.put_all((torch.stack(xs).to(self.req.example),)))
        return out

    @torch.no_grad()
    def _pass(
        self, seg: _Segments, chunks, a: int, b: int | None, *, hooks=(), each=None, keep=False
    ):
        """Run every cached chunk (a tuple of the tensors live at position ``a``) to position
        ``b``; ``hooks`` ((module, fn, pre)) are attached for the pass and ``each(k, outputs)``
        sees every chunk's outputs. Returns the chunks at ``b`` (empty if b is None). Unless
        ``keep``, each chunk is dropped (and its slot in ``chunks`` emptied) once read, so the
        stream at ``b`` takes the memory of the one at ``a``: one stream is held, not two."""
        mod = seg.module(a, b)
        handles = [_hooked(m, fn, pre) for m, fn, pre in hooks]
        out = []
        try:
            for k, items in enumerate(chunks):
                self.chunk_index = k
                x = self.store.get_all(items)
                if not keep:
                    self.store.drop(items)
                    chunks[k] = items = None
                h = mod(*x)
                del x
                if each is not None:
                    each(k, h)
                if b is not None:
                    out.append(self.store.put_all(h))
        finally:
            for handle in handles:
                handle.remove()
        return out

    def run(self) -> tuple[Choice, list[LocalRecord]]:
        try:
            return self._run()
        finally:
            self.store.close()

    def _blocks(self):
        """[(cut, the groups whose consumer follows it in call order, the next cut or None)]."""
        seg = self.seg_work
        groups = sorted(self.req.groups, key=lambda g: seg.node_of(g.consumers[0]))
        cuts = [seg.cut_before(g.consumers[0]) for g in groups]
        starts = sorted(set(cuts))
        return [
            (
                c,
                [g for g, k in zip(groups, cuts) if k == c],
                starts[i + 1] if i + 1 < len(starts) else None,
            )
            for i, c in enumerate(starts)
        ]

    def _run(self) -> tuple[Choice, list[LocalRecord]]:
        t0 = time.perf_counter()
        inputs = self._input_cache()
        t1 = time.perf_counter()
        targets, positions = self._targets(inputs)
        # seconds of reading the images and of the dense targets pass (the rest is in the records)
        phases = {"inputs_s": t1 - t0, "targets_s": time.perf_counter() - t1}
        work, here = inputs, 1  # the pruned stream, at the position right after the input
        kept, weights, records = {}, {}, []
        bar = tqdm(
            total=len(self.req.groups), desc="local", disable=not self.req.options.get("progress")
        )
        for cut, block, nxt in self._blocks():
            if cut != here:
                work = self._carry(work, here, cut)
            pos = cut
            for g in block:
                q = self.seg_work.node_of(g.consumers[0])
                new, rec, keep, w = self._group(
                    g, work, pos, q, targets.pop(g.name), positions[g.name]
                )
                work, pos = new, q
                kept[g.name], weights[g.consumers[0]] = keep, w
                records.append(rec)
                bar.update(1)
                bar.set_postfix(layer=g.name, refit=f"{rec.refit_error:.3g}")
            if nxt is None:
                break
            # carry the block on from its last consumer, through the refitted weights
            work, here = self._carry(work, pos, nxt), nxt
        self.store.drop_all(work)
        bar.close()
        phases["store_peak_bytes"] = self.store.peak
        return Choice(kept, weights=weights, info={"phases": phases}), records

    def _carry(self, work, a: int, b: int):
        return self._pass(self.seg_work, work, a, b)

    def _targets(self, inputs):
        """One pass of the dense network: per group, its positions [images, P] (drawn from the
        run's generator, in forward order) and its target chunks. The targets are small (P rows
        per image), so the dense network's activations are never cached."""
        n_img = len(self.req.data)
        positions, targets = {}, {g.name: [] for g in self.req.groups}

        def grab(g):
            cons = self.consumers[g.name]

            def fn(_m, _a, out):
                if g.name not in positions:
                    L = out.shape[2] * out.shape[3]
                    positions[g.name] = _positions(L, n_img, self.s.positions, self.gen)
                a = self.chunk_index * self.s.chunk
                pos = positions[g.name][a : a + out.shape[0]].to(out.device)
                targets[g.name].append(self.store.put(cons.target(out, pos)))

            return fn

        hooks = [(self.consumers[g.name].dense, grab(g), False) for g in self.req.groups]
        self._pass(self.seg_dense, inputs, 1, None, hooks=hooks, keep=True)
        return targets, positions

    def _group(self, g, stream, a: int, q: int, targets, positions):
        """Run the pruned stream from position ``a`` to the group's consumer (position ``q``),
        accumulating its terms from the consumer's input; choose; refit the consumer. Returns the
        stream's chunks at ``q``, the record, the kept channels and the consumer's new weight."""
        t0 = time.perf_counter()
        cons = self.consumers[g.name]
        C, K = cons.conv.in_channels, cons.weight.shape[2]
        acc = PatchGram(C, K, cons.conv.out_channels)
        slot = self.seg_work.input_slot(g.consumers[0])

        def each(k, outs):
            x = outs[slot]
            start = k * self.s.chunk
            pos = positions[start : start + x.shape[0]].to(x.device)
            acc.update(cons.patches(x, pos), self.store.get(targets[k]))

        new_stream = self._pass(self.seg_work, stream, a, q, each=each)
        pass_s = time.perf_counter() - t0
        self.store.drop(targets)
        G, b = channel_gram(acc.H, acc.U, cons.weight)
        width = self.req.widths.get(g.name, C)
        observe = self.req.options.get("observe")
        if observe is not None:  # e.g. a study scoring other criteria on this same layer problem
            observe(g, acc, G, b, cons.weight)
        keep, crit, swaps = CRITERIA[self.criterion].choose(acc, G, b, width, self.s)
        fixed = FixedWeightLoss(G, b, acc.const)
        for c in keep:
            fixed.add(c)
        beta, refit_err = _refit(acc, keep, self.s.ridge)
        w = torch.zeros(cons.weight.shape, dtype=torch.float64)
        w[:, keep, :] = beta.reshape(len(keep), K, -1).permute(2, 0, 1)
        w = (w / cons.scale.double().reshape(-1, 1, 1)).reshape(cons.conv.weight.shape)
        with torch.no_grad():
            cons.conv.weight.copy_(w.to(cons.conv.weight))
        rec = LocalRecord(
            g.name, C, len(keep), acc.rows, crit, _relative(fixed.current_loss(), acc),
            refit_err, swaps, pass_s, time.perf_counter() - t0,
        )  # fmt: skip
        return new_stream, rec, keep, cons.conv.weight.detach().clone()


def local_select(
    request: SelectionRequest, settings: LocalSettings, criterion: str
) -> tuple[Choice, list[LocalRecord]]:
    """Local imitation over ``request.data`` (the calibration set) for every group of
    ``request.groups`` (internal ones), in forward order; the consumers of ``request.model`` are
    refitted in place. Returns the choice (kept channels and the refitted consumer weights) and
    one record per group."""
    check_local(settings, criterion)
    check_consumers(request.model, request.groups)
    return _Run(request, settings, criterion).run()


def _register(name: str) -> None:
    def select(request: SelectionRequest) -> Choice:
        settings = replace(request.options.get("local", LocalSettings()), method=name)
        choice, records = local_select(request, settings, name)
        choice.info["layers"] = [asdict(r) for r in records]
        return choice

    register_method(
        name,
        f"local imitation, group after group on the partly pruned network: "
        f"{CRITERIA[name].description}; "
        "then the consumer's full least-squares refit",
    )(select)


for _name in CRITERIA:
    _register(_name)
