"""ProxylessNAS-mobile (Cai, Zhu and Han, ICLR 2019) built from its published block specification.

The table below restates the authors' released net config ``proxyless_mobile.config`` (linked
from ``proxyless_nas/model_zoo.py`` in github.com/mit-han-lab/proxylessnas, hosted in
github.com/han-cai/files under ``proxylessnas/``): a 3x3 stride-2 stem of 32 channels, 22
mobile inverted bottleneck blocks (two of which the search made zero operations, so only their
identity shortcut is left and they are omitted here), a 1x1 feature-mix convolution to 1280
channels, global average pooling and a linear classifier. Every convolution is followed by a batch
norm (eps 1e-3, momentum 0.1, as in the config); ReLU6 after the stem, the expansion and the
depthwise convolutions and the feature mix, none after the projection. A block has an identity
shortcut exactly when its stride is 1 and its input and output widths agree (which is where the
config lists an ``IdentityLayer`` shortcut).

The module is made of standard layers only (Conv2d, BatchNorm2d, ReLU6, Linear), so Torch-Pruning
and ``torch.fx`` trace it like a torchvision model.
"""

from __future__ import annotations

from torch import Tensor, nn

from greedyprune.errors import check_int, check_number

__all__ = ["PROXYLESS_MOBILE_SPEC", "ProxylessNAS", "proxylessnas_mobile"]

STEM = 32
FEATURE_MIX = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.1

# (kernel size, expand ratio, stride, out channels) per block in order; None: a zero block (the
# search chose "skip": the block is its identity shortcut only).
PROXYLESS_MOBILE_SPEC: tuple[tuple[int, int, int, int] | None, ...] = (
    (3, 1, 1, 16),
    (5, 3, 2, 32),
    (3, 3, 1, 32),
    None,
    None,
    (7, 3, 2, 40),
    (3, 3, 1, 40),
    (5, 3, 1, 40),
    (5, 3, 1, 40),
    (7, 6, 2, 80),
    (5, 3, 1, 80),
    (5, 3, 1, 80),
    (5, 3, 1, 80),
    (5, 6, 1, 96),
    (5, 3, 1, 96),
    (5, 3, 1, 96),
    (5, 3, 1, 96),
    (7, 6, 2, 192),
    (7, 6, 1, 192),
    (7, 3, 1, 192),
    (7, 3, 1, 192),
    (7, 6, 1, 320),
)


def _divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never below it nor more than 10% down."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act=True):
    layers = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBInvertedBlock(nn.Module):
    """1x1 expansion (absent when the ratio is 1), k x k depthwise, 1x1 linear projection, and an
    identity shortcut when the stride is 1 and the widths agree."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int):
        super().__init__()
        mid = round(c_in * expand)
        self.expand = _conv_bn(c_in, mid, 1) if expand != 1 else None
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, c_out, 1, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return x + out if self.residual else out


class ProxylessNAS(nn.Module):
    """Stem, mobile inverted bottleneck blocks from ``spec``, feature mix, pooling, classifier."""

    def __init__(
        self,
        spec=PROXYLESS_MOBILE_SPEC,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        stem: int = STEM,
        feature_mix: int = FEATURE_MIX,
    ):
        super().__init__()
        c = _divisible(stem * width_mult)
        self.first_conv = _conv_bn(3, c, 3, stride=2)
        blocks = []
        for row in spec:
            if row is None:
                continue
            kernel, expand, stride, out = row
            c_out = _divisible(out * width_mult)
            blocks.append(MBInvertedBlock(c, c_out, kernel, expand, stride))
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        mix = _divisible(feature_mix * width_mult) if width_mult > 1.0 else feature_mix
        self.feature_mix_layer = _conv_bn(c, mix, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(mix, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.feature_mix_layer(self.blocks(self.first_conv(x)))
        return self.classifier(self.pool(x).flatten(1))


def proxylessnas_mobile(num_classes: int = 1000, width_mult: float = 1.0) -> ProxylessNAS:
    """ProxylessNAS-mobile, randomly initialised (no pretrained weights are downloaded).

    ``width_mult=1.0`` is the authors' published network (320M MACs at 224 px, 4.08M parameters
    with 1000 classes). Other values scale every width and round it to a multiple of 8 (the
    feature mix stays at 1280 below 1.0); the authors' own 1.4x net rounds a few widths
    differently, so ``width_mult=1.4`` is close to, not equal to, their ``proxyless_mobile_14``.
    """
    check_int("num_classes", num_classes, minimum=1)
    check_number("width_mult", width_mult, above=0)
    return ProxylessNAS(num_classes=num_classes, width_mult=float(width_mult))
