"""The setting of a two-layer experiment: data, network and training budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from greedyprune.errors import check_fits, check_int, check_number

from .._common import DTYPES, check_dtype
from .._mean_field_net import activation_fn

__all__ = ["Setting"]


@dataclass(frozen=True)
class Setting:
    """One experimental setting: data, network and training budget.

    data: ``"teacher_student"`` or ``"gaussian_classification"``; m / m_test: training / test
    points; d: input dimension; activation: of the student (and of the teacher);
    teacher_width: the teacher's width; delta: class separation of the Gaussian data.
    width: N, the pretrained network's width. steps, lr: the training budget (full-batch GD steps)
    and the mean-field step size (each neuron's gradient step is lr * width); noise, weight_decay:
    see ``train_mean_field``. init_b_std: std of the output weights at initialisation.
    dtype: ``"float64"`` (the rate experiments need it: losses reach 1e-9) or ``"float32"``.
    """

    name: str = "interior"
    data: str = "teacher_student"
    m: int = 20
    d: int = 5
    m_test: int = 500
    activation: str = "tanh"
    teacher_width: int = 1000
    delta: float = 0.5
    width: int = 2000
    steps: int = 1500
    lr: float = 0.05
    noise: float = 0.0
    weight_decay: float = 0.0
    init_b_std: float = 1.0
    dtype: str = "float64"

    def __post_init__(self):
        for key in ("m", "d", "m_test", "teacher_width", "width"):
            v = getattr(self, key)
            check_int(key, v, minimum=1, fix=f"setting {self.name!r}")
        check_int("steps", self.steps, minimum=0, fix=f"setting {self.name!r}")
        check_dtype(self.name, self.dtype)
        activation_fn(self.activation)
        check_number("lr", self.lr, above=0)
        for key in ("noise", "weight_decay", "init_b_std", "delta"):
            check_number(key, getattr(self, key), minimum=0)
        # the features of the N neurons on the larger data set: an allocation no run avoids
        points = max(self.m, self.m_test)
        nbytes = float(self.width) * points * DTYPES[self.dtype].itemsize
        check_fits("width", self.width, nbytes, f"the width x {points} feature matrix")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def as_dict(self) -> dict:
        return asdict(self)
