"""Wide 3D ResNet (3D-ResNets-PyTorch 2018 ``models/wide_resnet.py``; reference section 5.7).

ResNet-50 layout with :class:`WideBottleneck` (expansion 2) and stage widths ``64k, 128k, 256k,
512k``, so the feature is ``512 * k * 2`` wide. Module names equal the original's.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from sdn.models.resnet import ResNet, conv3x3x3

WIDE_RESNET_LAYERS: dict[int, list[int]] = {50: [3, 4, 6, 3]}


class WideBottleneck(nn.Module):
    expansion = 2

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def wide_resnet(depth: int, k: int = 2, **kwargs: Any) -> ResNet:
    """Wide ResNet-50 with width multiplier ``k`` (``--wide_resnet_k``); ``kwargs`` go to ``ResNet``."""
    planes = (64 * k, 128 * k, 256 * k, 512 * k)
    return ResNet(WideBottleneck, WIDE_RESNET_LAYERS[depth], stage_planes=planes, **kwargs)
