"""torchvision's S3D (separable 3D inception network) with the SDN heads.

Xie et al. 2018, "Rethinking Spatiotemporal Feature Learning". torchvision's constructor builds the
network; :class:`S3DSDN` adopts its ``features`` under that name, so every backbone key equals
torchvision's.

The classifier. torchvision ends with ``AvgPool3d((2, 7, 7), stride 1)``, ``classifier =
Sequential(Dropout(0.2), Conv3d(1024, n, 1x1x1))`` and a mean over the remaining positions. A 1x1x1
convolution is a Linear applied at every position, and a mean commutes with it, so sdn pools
first (``AdaptiveAvgPool3d(1)``, the pooled feature the SDN heads read) and classifies with a
Linear ``classifier`` holding the convolution's weights (``[n, 1024, 1, 1, 1]`` -> ``[n, 1024]``;
:func:`from_torchvision_state` converts torchvision's ``classifier.1.*`` keys), after the same
dropout, registered as ``classifier_dropout``.

Other clip sizes. At torchvision's pretrained size (224x224, 14-16 frames) the last map is 2x7x7,
the window covers it, and the logits equal torchvision's. A smaller map is smaller than
torchvision's window (its model fails there); a larger one gets a sliding-window average in which
border positions weigh less. sdn averages every position equally at every size, so the model
works from small clips up and CAM (classifier weights times the map, averaged) stays exact.

Stages for ``--ft_begin_index``: the max-pools split ``features`` into the stem (``features.0``)
and four stages at output strides 4, 8, 16 and 32, as the 3D ResNets' ``layer1..layer4``:
``features.2-3``, ``features.5-6`` (mixed 3b-3c), ``features.8-12`` (4b-4f), ``features.14-15``
(5b-5c).
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from sdn.errors import SdnError
from sdn.models.heads import SDNNet, stage_table

ARCHS = ("s3d",)
_CLASSIFIER_CONV = "classifier.1."


def pool_separated_stages(features: nn.Sequential) -> dict[int, tuple[str, ...]]:
    """Stages 1..: the modules between one max-pool and the next (before the first: the stem, no stage)."""
    table: dict[int, tuple[str, ...]] = {}
    stage = 0
    for index, module in enumerate(features):
        if isinstance(module, nn.MaxPool3d):
            stage += 1
            table[stage] = ()
        elif stage:
            table[stage] += (f"features.{index}.",)
    return table


def _per_axis(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,) * 3


def _axis_after(features: nn.Module, size: int, axis: int) -> int:
    """Length of one axis after ``features`` (0 or less: the clip is too small).

    Inception branches are parallel but keep the size (stride 1, padding k // 2), so walking every
    convolution and pool in order gives the size the sequence leaves.
    """
    for module in features.modules():
        if isinstance(module, (nn.Conv3d, nn.MaxPool3d)):
            kernel, stride, padding = (_per_axis(getattr(module, name))[axis]
                                       for name in ("kernel_size", "stride", "padding"))
            size = (size + 2 * padding - kernel) // stride + 1
            if size < 1:
                return 0
    return size


def check_s3d_input(features: nn.Module, sample_size: int, sample_duration: int) -> None:
    """An ``SdnError`` with the smallest sizes that work when a clip vanishes before the last block."""
    if _axis_after(features, sample_size, 1) >= 1 and _axis_after(features, sample_duration, 0) >= 1:
        return
    smallest_size = next(n for n in range(1, 1024) if _axis_after(features, n, 1) >= 1)
    smallest_duration = next(n for n in range(1, 1024) if _axis_after(features, n, 0) >= 1)
    raise SdnError(f"s3d needs --sample_size >= {smallest_size} and --sample_duration >= {smallest_duration} "
                   f"(got {sample_size} and {sample_duration}): its strides and pools shrink the clip to nothing")


class S3DSDN(SDNNet):
    """A torchvision ``S3D`` (``torchvision_model``) as an :class:`SDNNet` (see the module docstring)."""

    classifier_name = "classifier"

    def __init__(self, torchvision_model: nn.Module, n_classes: int, **head_options: Any):
        super().__init__()
        self.features = torchvision_model.features
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        dropout, conv = torchvision_model.classifier
        self.feature_dim = conv.in_channels
        self.classifier_dropout = nn.Dropout(dropout.p)
        self.classifier = nn.Linear(self.feature_dim, n_classes)
        with torch.no_grad():  # keep torchvision's initialisation of the convolution
            self.classifier.weight.copy_(conv.weight.flatten(1))
            self.classifier.bias.copy_(conv.bias)
        self.stage_patterns = stage_table(pool_separated_stages(self.features))
        self.add_sdn_heads(n_classes, **head_options)

    def feature_maps(self, x: Tensor) -> Tensor:
        return self.features(x)


def from_torchvision_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision's ``classifier.1.*`` (1x1x1 conv, weight ``[n, C, 1, 1, 1]``) -> ``classifier.*`` (``[n, C]``)."""
    converted = {}
    for key, value in state.items():
        if key.startswith(_CLASSIFIER_CONV):
            key = "classifier." + key[len(_CLASSIFIER_CONV):]
            value = value.flatten(1) if value.dim() == 5 else value
        converted[key] = value
    return converted


def build(config: Any) -> S3DSDN:
    """``--model s3d``; checks the clip is large enough (``--model_depth`` is ignored)."""
    model = torchvision.models.get_model("s3d", weights=None, num_classes=config.n_classes)
    check_s3d_input(model.features, config.sample_size, config.sample_duration)
    return S3DSDN(model, config.n_classes, **config.head_options())
