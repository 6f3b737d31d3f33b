"""Pre-activation 3D ResNet (3D-ResNets-PyTorch 2018 ``models/pre_act_resnet.py``).

Blocks run BN -> ReLU -> conv and add the shortcut without a ReLU after the addition. The network
around them (stem, stages, pooling, ``fc``) is :class:`~sdn.models.resnet.ResNet`; module names
follow the original (``bn1, conv1, bn2, conv2[, bn3, conv3]``, registered in that order).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from sdn.models.resnet import RESNET_LAYERS, ResNet, conv3x3x3, resnet_options

# The ResNet stage layouts, without depth 10 (the original has no pre-activation ResNet-10).
PRE_ACT_RESNET_LAYERS: dict[int, tuple[str, list[int]]] = {d: v for d, v in RESNET_LAYERS.items() if d != 10}


class PreActivationBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm3d(inplanes)
        self.conv1 = conv3x3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + residual


class PreActivationBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm3d(inplanes)
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + residual


def pre_act_resnet(depth: int, **kwargs: Any) -> ResNet:
    """Pre-activation ResNet-18/34/50/101/152/200; ``kwargs`` go to :class:`~sdn.models.resnet.ResNet`."""
    kind, layers = PRE_ACT_RESNET_LAYERS[depth]
    block = PreActivationBasicBlock if kind == "basic" else PreActivationBottleneck
    return ResNet(block, layers, **kwargs)


def build(config: Any) -> ResNet:
    """``--model preresnet`` (``config`` is a :class:`~sdn.models.factory.ModelConfig`); ``--resnet_width`` narrows it."""
    width = config.resnet_width
    return pre_act_resnet(config.model_depth, stem_planes=width,
                          stage_planes=tuple(width * 2 ** i for i in range(4)), **resnet_options(config))
