"""The setting of a deep experiment: data, network, training budget and selection options."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from greedyprune.errors import GreedypruneError, check_fits, check_int, check_number, refuse

from .._common import DTYPES, check_dtype
from .._mean_field_net import activation_fn

__all__ = ["DEEP_METHODS", "SELECTION_METHODS", "DeepSetting"]

SELECTION_METHODS = (
    "greedy_local",
    "greedy_global",
    "greedy_random_net",
    "random_subset",
    "magnitude",
)
DEEP_METHODS = (*SELECTION_METHODS, "gd_scratch")


@dataclass(frozen=True)
class DeepSetting:
    """One deep experimental setting: data, network, training budget and selection options.

    data: ``"teacher"``, ``"mnist1d"`` or ``"digits"``. m, m_test, d, teacher_widths: the deep
    teacher's data (ignored by the real data sets); num_samples: MNIST-1D's size.
    width: N, the width of every hidden layer of the pretrained network; depth: L.
    steps, lr, batch_size: pretraining budget (mean-field SGD; batch_size None is full batch);
    finetune_steps: the fine-tuning / re-training budget. sizes: the per-layer sizes n measured.
    replacement: greedy with (theory) or without (the authors) replacement.
    global_batch, global_candidates: data points and candidates per step of the global objective.
    """

    name: str = "teacher"
    data: str = "teacher"
    m: int = 256
    m_test: int = 1000
    d: int = 10
    teacher_widths: tuple[int, ...] = (16, 16)
    num_samples: int = 5000
    activation: str = "tanh"
    width: int = 128
    depth: int = 2
    steps: int = 1000
    lr: float = 0.5
    batch_size: int | None = None
    finetune_steps: int = 300
    sizes: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    replacement: bool = True
    global_batch: int | None = None
    global_candidates: int | None = None
    dtype: str = "float64"
    methods: tuple[str, ...] = DEEP_METHODS
    finetune: bool = True
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.data not in ("teacher", "mnist1d", "digits"):
            raise GreedypruneError(
                f"setting {self.name!r}: data={self.data!r}; pass teacher, mnist1d or digits"
            )
        for key in ("m", "m_test", "d", "num_samples", "width", "depth", "steps", "finetune_steps"):
            v = getattr(self, key)
            check_int(key, v, minimum=0 if "steps" in key else 1, fix=f"setting {self.name!r}")
        check_dtype(self.name, self.dtype)
        if not self.sizes:
            raise refuse("sizes", self.sizes, "one size n or more", f"setting {self.name!r}")
        for i, n in enumerate(self.sizes):
            check_int(f"sizes[{i}]", n, minimum=1, fix=f"setting {self.name!r}")
        if max(self.sizes) > self.width:
            raise GreedypruneError(
                f"setting {self.name!r}: sizes up to {max(self.sizes)} exceed width={self.width}"
            )
        for i, w in enumerate(self.teacher_widths):
            check_int(f"teacher_widths[{i}]", w, minimum=1)
        for key in ("batch_size", "global_batch", "global_candidates"):
            if getattr(self, key) is not None:
                check_int(key, getattr(self, key), minimum=1)  # None: every point or candidate
        check_number("lr", self.lr, above=0)
        # a hidden layer's weights and its activations on the larger data set
        points = max(self.m, self.m_test, self.num_samples if self.data == "mnist1d" else 0)
        nbytes = float(self.width) * (self.width + points) * DTYPES[self.dtype].itemsize
        check_fits("width", self.width, nbytes, "one hidden layer's weights and activations")
        bad = set(self.methods) - set(DEEP_METHODS)
        if bad:
            raise GreedypruneError(
                f"setting {self.name!r}: unknown methods {sorted(bad)}; pick from {list(DEEP_METHODS)}"
            )
        activation_fn(self.activation)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def task(self) -> str:
        return "regression" if self.data == "teacher" else "multiclass"

    @property
    def loss(self) -> str:
        return "squared" if self.data == "teacher" else "cross_entropy"

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d
