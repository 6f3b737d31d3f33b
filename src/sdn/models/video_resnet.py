"""torchvision's video ResNets (``r3d_18``, ``mc3_18``, ``r2plus1d_18``) with the SDN heads.

Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action Recognition". The
network is torchvision's own: its constructor builds it and :class:`VideoResNetSDN` adopts its
modules under their names (``stem``, ``layer1..layer4``, ``avgpool``, ``fc``), so torchvision's
state dicts (and its Kinetics-400 files) load by name with no conversion. Its classifier is
already a Linear on the adaptively pooled last map, so the action logits equal torchvision's at
every clip size and CAM is exact. Stages for ``--ft_begin_index`` are ``layer1..layer4``, the
stem trains only with ``--ft_begin_index 0`` (as the 3D ResNets' ``conv1``).
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import Tensor, nn

from sdn.models.heads import SDNNet

ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")


class VideoResNetSDN(SDNNet):
    """A torchvision ``VideoResNet`` (``torchvision_model``) as an :class:`SDNNet`."""

    classifier_name = "fc"
    stage_patterns = ("layer{}",)

    def __init__(self, torchvision_model: nn.Module, n_classes: int, **head_options: Any):
        super().__init__()
        for name, module in torchvision_model.named_children():
            setattr(self, name, module)
        self.feature_dim = self.fc.in_features
        self.add_sdn_heads(n_classes, **head_options)

    def feature_maps(self, x: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def build(config: Any) -> VideoResNetSDN:
    """``--model r3d_18|mc3_18|r2plus1d_18`` (any clip size works; ``--model_depth`` is ignored)."""
    model = torchvision.models.get_model(config.model, weights=None, num_classes=config.n_classes)
    return VideoResNetSDN(model, config.n_classes, **config.head_options())
