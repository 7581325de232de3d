"""Small building blocks shared by the BEV model's branches and heads."""
from __future__ import annotations

from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """``kernel`` x ``kernel`` conv (no bias, BN follows) -> BatchNorm2d -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
