"""3D ResNet (3D-ResNets-PyTorch 2018 ``models/resnet.py``, SDN's backbone).

Module names and registration order equal the original so original checkpoints load:
``conv1, bn1, layer1..layer4, fc`` (+ ``hm_mlp, place_mlp``), blocks ``conv1, bn1, conv2, bn2
[, conv3, bn3][, downsample.0/.1]``. The :class:`ResNet` class is also the network of the
pre-activation, wide and ResNeXt families, which differ from it only in their blocks and widths.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from sdn.models.heads import SDNNet

RESNET_LAYERS: dict[int, tuple[str, list[int]]] = {
    10: ("basic", [1, 1, 1, 1]),
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
    200: ("bottleneck", [3, 24, 36, 3]),
}


def conv3x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def init_conv_bn(model: nn.Module) -> None:
    """The original initialisation: Kaiming-normal (fan_out, ReLU gain) convs, BatchNorm3d weight 1, bias 0.

    ``kaiming_normal_(mode='fan_out', nonlinearity='relu')`` draws from the same distribution as
    the original's deprecated ``kaiming_normal(mode='fan_out')``. BatchNorm1d of the heads is
    left alone (see ``heads.init_head_bn``).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ZeroPadShortcut(nn.Module):
    """Shortcut type A: subsample by ``stride`` and append zero channels up to ``planes``.

    The original rebuilt this tensor from ``.data``, cutting it from the autograd graph, so no
    gradient flows through the shortcut of the first block of a stage. ``detach=True`` (default)
    reproduces that; ``detach=False`` lets the gradient flow to the block input as a textbook
    identity shortcut would. No parameters, so it adds no state-dict keys (as the original, where
    it was a plain function). The zeros follow the input's device and dtype (the original made them
    on the CPU unless the input was CUDA float32).
    """

    def __init__(self, planes: int, stride: int, detach: bool = True):
        super().__init__()
        self.planes = planes
        self.stride = stride
        self.detach = detach

    def forward(self, x: Tensor) -> Tensor:
        kept = x[:, :, :: self.stride, :: self.stride, :: self.stride]
        b, c, t, h, w = kept.shape
        # Written into one tensor of the input's layout: a channels-last network keeps channels-last.
        layout = torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d) \
            and not x.is_contiguous() else torch.contiguous_format
        out = torch.empty((b, self.planes, t, h, w), dtype=x.dtype, device=x.device, memory_format=layout)
        out[:, c:].zero_()
        out[:, :c] = kept.detach() if self.detach else kept
        return out

    def extra_repr(self) -> str:
        return f"planes={self.planes}, stride={self.stride}, detach={self.detach}"


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

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


class ResNet(SDNNet):
    """Stem (7x7x7 conv stride (1,2,2), BN, ReLU, 3x3x3 max-pool stride 2), four stages, pooling, ``fc``.

    ``block`` is called as ``block(inplanes, planes, stride, downsample, **block_kwargs)`` and has an
    ``expansion`` attribute. ``shortcut_type`` ``"A"`` gives the zero-padded shortcut, any other value
    the projection (``downsample.0`` conv, ``downsample.1`` BN), as the original. ``head_options``
    are the SDN head arguments of :meth:`SDNNet.add_sdn_heads`.
    """

    def __init__(
        self,
        block: Any,
        layers: Sequence[int],
        *,
        n_classes: int,
        stage_planes: Sequence[int] = (64, 128, 256, 512),
        stem_planes: int = 64,
        block_kwargs: dict[str, Any] | None = None,
        shortcut_type: str = "B",
        detach_shortcut_a: bool = True,
        **head_options: Any,
    ):
        super().__init__()
        self.inplanes = stem_planes
        self.conv1 = nn.Conv3d(3, self.inplanes, kernel_size=7, stride=(1, 2, 2), padding=(3, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        make = dict(block=block, block_kwargs=block_kwargs or {}, shortcut_type=shortcut_type, detach=detach_shortcut_a)
        self.layer1 = self._make_layer(stage_planes[0], layers[0], stride=1, **make)
        self.layer2 = self._make_layer(stage_planes[1], layers[1], stride=2, **make)
        self.layer3 = self._make_layer(stage_planes[2], layers[2], stride=2, **make)
        self.layer4 = self._make_layer(stage_planes[3], layers[3], stride=2, **make)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.feature_dim = stage_planes[3] * block.expansion
        self.fc = nn.Linear(self.feature_dim, n_classes)
        init_conv_bn(self)
        self.add_sdn_heads(n_classes, **head_options)

    def _make_layer(
        self, planes: int, blocks: int, *, stride: int, block: Any, block_kwargs: dict[str, Any],
        shortcut_type: str, detach: bool,
    ) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != out_planes:
            if shortcut_type == "A":
                downsample = ZeroPadShortcut(out_planes, stride, detach)
            else:
                downsample = nn.Sequential(
                    nn.Conv3d(self.inplanes, out_planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm3d(out_planes),
                )
        layers = [block(self.inplanes, planes, stride, downsample, **block_kwargs)]
        self.inplanes = out_planes
        layers += [block(self.inplanes, planes, **block_kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def feature_maps(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet(depth: int, **kwargs: Any) -> ResNet:
    """ResNet-10/18/34 (BasicBlock) or -50/101/152/200 (Bottleneck); ``kwargs`` go to :class:`ResNet`."""
    kind, layers = RESNET_LAYERS[depth]
    return ResNet(BasicBlock if kind == "basic" else Bottleneck, layers, **kwargs)


def resnet_options(config: Any) -> dict[str, Any]:
    """What every family built on :class:`ResNet` takes from a ``ModelConfig``: shortcut and heads."""
    return dict(n_classes=config.n_classes, shortcut_type=config.resnet_shortcut,
                detach_shortcut_a=config.detach_shortcut_a, **config.head_options())


def build(config: Any) -> ResNet:
    """``--model resnet`` (``config`` is a :class:`~sdn.models.factory.ModelConfig`); ``--resnet_width`` narrows it."""
    width = config.resnet_width
    return resnet(config.model_depth, stem_planes=width, stage_planes=tuple(width * 2 ** i for i in range(4)),
                  **resnet_options(config))
