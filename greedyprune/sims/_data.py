"""Synthetic data sets for the two-layer experiments, each with a held-out test set.

- ``teacher_student``: regression on the outputs of a wide random teacher network.
- ``gaussian_classification``: the isotropic Gaussian mixture of Mei, Montanari and Nguyen (2018):
  labels +-1 with equal probability, ``x | y=+1 ~ N(0, (1+delta)^2 I_d)``,
  ``x | y=-1 ~ N(0, (1-delta)^2 I_d)``; fitted with the squared loss on the +-1 labels.

All numbers are drawn on the CPU from ``seed`` and then moved, so a seed gives the same data on
every device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from greedyprune.errors import GreedypruneError, check_choice, check_int, check_number

from ._mean_field_net import TwoLayerNet, activation_fn

__all__ = ["Dataset", "gaussian_classification", "make_dataset", "teacher_student"]


@dataclass
class Dataset:
    """Train and test split of a data set.

    x_train: ``[m, d]``; y_train: ``[m]``; x_test: ``[m_test, d]``; y_test: ``[m_test]``.
    task: ``"regression"`` or ``"classification"`` (labels +-1, fitted by squared loss).
    info: how it was made (JSON-serialisable).
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    task: str
    info: dict = field(default_factory=dict)

    @property
    def m(self) -> int:
        return self.x_train.shape[0]

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]

    def to(self, device=None, dtype=None) -> Dataset:
        """A copy on ``device`` with floating tensors cast to ``dtype``."""

        def cast(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return Dataset(
            cast(self.x_train),
            cast(self.y_train),
            cast(self.x_test),
            cast(self.y_test),
            self.task,
            dict(self.info),
        )


def _check_common(m: int, d: int, m_test: int) -> None:
    check_int("m", m, minimum=1)
    check_int("d", d, minimum=1)
    check_int("m_test", m_test, minimum=1)


def teacher_student(
    m: int,
    d: int,
    *,
    m_test: int = 500,
    teacher_width: int = 1000,
    activation: str = "tanh",
    x_std: float | None = None,
    teacher_b_std: float = 2.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Dataset:
    """Regression on a wide mean-field teacher ``y = (1/K) sum_k b_k act(w_k . x)``.

    ``x ~ N(0, x_std^2 I_d)`` with ``x_std = 2 / sqrt(d)`` by default (so ``w . x`` has variance 4
    and the activations are not all in their linear part), ``w_k ~ N(0, I_d)``,
    ``b_k ~ N(0, teacher_b_std^2)``, K = ``teacher_width``. Labels carry no noise.
    Returns x ``[m, d]``, y ``[m]`` and a test set of ``m_test`` fresh points.
    """
    _check_common(m, d, m_test)
    check_int("teacher_width", teacher_width, minimum=1)
    activation_fn(activation)
    if x_std is None:
        x_std = 2.0 / d**0.5
    if not x_std > 0:
        raise GreedypruneError(f"x_std={x_std!r} must be > 0")
    g = torch.Generator().manual_seed(int(seed))
    teacher = TwoLayerNet.random(
        teacher_width, d, activation=activation, b_std=teacher_b_std, seed=int(seed) + 7919
    )
    x = torch.randn(m + m_test, d, generator=g, dtype=torch.float64) * x_std
    with torch.no_grad():
        y = teacher(x)
    ds = Dataset(
        x[:m],
        y[:m],
        x[m:],
        y[m:],
        "regression",
        dict(
            kind="teacher_student",
            m=m,
            d=d,
            m_test=m_test,
            teacher_width=teacher_width,
            activation=activation,
            x_std=x_std,
            teacher_b_std=teacher_b_std,
            seed=seed,
        ),
    )
    return ds.to(device, dtype)


def gaussian_classification(
    m: int,
    d: int,
    *,
    delta: float = 0.5,
    m_test: int = 500,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Dataset:
    """Isotropic Gaussian classification (Mei, Montanari and Nguyen 2018, section 2.1).

    ``y = +-1`` with probability 1/2 each; ``x = (1 + y delta) z`` with ``z ~ N(0, I_d)``, so the
    classes differ only in their radius. ``0 < delta < 1``. Returns x ``[m, d]``, y ``[m]`` (+-1 as
    floats) and a test set of ``m_test`` fresh points.
    """
    _check_common(m, d, m_test)
    check_number("delta", delta, above=0, below=1)
    g = torch.Generator().manual_seed(int(seed))
    n = m + m_test
    y = torch.randint(0, 2, (n,), generator=g).to(torch.float64) * 2 - 1
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = (1 + y[:, None] * delta) * z
    ds = Dataset(
        x[:m],
        y[:m],
        x[m:],
        y[m:],
        "classification",
        dict(kind="gaussian_classification", m=m, d=d, m_test=m_test, delta=delta, seed=seed),
    )
    return ds.to(device, dtype)


_KINDS = {"teacher_student": teacher_student, "gaussian_classification": gaussian_classification}


def make_dataset(kind: str, **kwargs) -> Dataset:
    """``teacher_student(**kwargs)`` or ``gaussian_classification(**kwargs)`` by name."""
    check_choice("data", kind, sorted(_KINDS))
    return _KINDS[kind](**kwargs)
