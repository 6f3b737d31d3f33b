"""3D ResNeXt (3D-ResNets-PyTorch 2018 ``models/resnext.py``).

:class:`ResNeXtBottleneck` (expansion 2) with a grouped 3x3x3 convolution of width
``cardinality * planes // 32``; stage planes 128, 256, 512, 1024, so the feature is 2048 wide.
Module names equal the original's.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sdn.models.resnet import Bottleneck, ResNet, resnet_options

RESNEXT_LAYERS: dict[int, list[int]] = {
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}


class ResNeXtBottleneck(Bottleneck):
    """The ResNet bottleneck with a grouped 3x3x3 convolution and expansion 2 (same forward)."""

    expansion = 2

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *, cardinality: int = 32
    ):
        nn.Module.__init__(self)
        mid_planes = cardinality * (planes // 32)
        self.conv1 = nn.Conv3d(inplanes, mid_planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid_planes)
        self.conv2 = nn.Conv3d(
            mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False
        )
        self.bn2 = nn.BatchNorm3d(mid_planes)
        self.conv3 = nn.Conv3d(mid_planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample


def resnext(depth: int, cardinality: int = 32, **kwargs: Any) -> ResNet:
    """ResNeXt-50/101/152 (``--resnext_cardinality``); ``kwargs`` go to ``ResNet``.

    The original sized ``fc`` as ``cardinality * 32 * 2``, which equals the real feature width
    (2048) only for cardinality 32 and crashed otherwise; here ``fc`` always takes 2048.
    """
    return ResNet(
        ResNeXtBottleneck,
        RESNEXT_LAYERS[depth],
        stage_planes=(128, 256, 512, 1024),
        block_kwargs={"cardinality": cardinality},
        **kwargs,
    )


def build(config: Any) -> ResNet:
    """``--model resnext`` (``config`` is a :class:`~sdn.models.factory.ModelConfig`)."""
    return resnext(config.model_depth, cardinality=config.resnext_cardinality, **resnet_options(config))
