"""Wide 3D ResNet (3D-ResNets-PyTorch 2018 ``models/wide_resnet.py``).

ResNet-50 layout with :class:`WideBottleneck` (expansion 2) and stage widths ``64k, 128k, 256k,
512k``, so the feature is ``512 * k * 2`` wide. Module names equal the original's.
"""

from __future__ import annotations

from typing import Any

from sdn.models.resnet import Bottleneck, ResNet, resnet_options

WIDE_RESNET_LAYERS: dict[int, list[int]] = {50: [3, 4, 6, 3]}


class WideBottleneck(Bottleneck):
    """The ResNet bottleneck with expansion 2 (same modules and forward)."""

    expansion = 2


def wide_resnet(depth: int, k: int = 2, **kwargs: Any) -> ResNet:
    """Wide ResNet-50 with width multiplier ``k`` (``--wide_resnet_k``); ``kwargs`` go to ``ResNet``."""
    planes = (64 * k, 128 * k, 256 * k, 512 * k)
    return ResNet(WideBottleneck, WIDE_RESNET_LAYERS[depth], stage_planes=planes, **kwargs)


def build(config: Any) -> ResNet:
    """``--model wideresnet`` (``config`` is a :class:`~sdn.models.factory.ModelConfig`)."""
    return wide_resnet(config.model_depth, k=config.wide_resnet_k, **resnet_options(config))
