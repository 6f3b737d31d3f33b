"""3D DenseNet-BC (3D-ResNets-PyTorch 2018 ``models/densenet.py``).

State-dict keys equal the original's: ``features.conv0``, ``features.norm0``,
``features.denseblock{i}.denselayer{j}.{norm.1, conv.1, norm.2, conv.2}``,
``features.transition{i}.{norm, conv}``, ``features.norm5``, ``classifier``.

Two departures, both needed on current PyTorch:

* The original named the dense-layer modules ``norm.1``, ``conv.1``, ...; module names with dots
  are no longer allowed, so :class:`DenseLayer` uses ``norm1``, ``conv1``, ... and state-dict
  hooks translate: ``state_dict()`` writes the dotted names and ``load_state_dict()`` accepts
  either spelling.
* ``norm5`` is a BatchNorm3d (the original's BatchNorm2d raised on the 5-D map). Its parameters
  have the same names and shapes, so original checkpoints still load.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sdn.errors import SdnError
from sdn.models.heads import SDNNet
from sdn.models.resnet import init_conv_bn

DENSENET_BLOCKS: dict[int, tuple[int, ...]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}

# Our sub-module name -> the original's (dotted) name, in registration order.
_ORIGINAL_NAMES = {"norm1": "norm.1", "relu1": "relu.1", "conv1": "conv.1",
                   "norm2": "norm.2", "relu2": "relu.2", "conv2": "conv.2"}


class DenseLayer(nn.Module):
    """BN -> ReLU -> 1x1x1 conv -> BN -> ReLU -> 3x3x3 conv, output concatenated to the input."""

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        self.norm1 = nn.BatchNorm3d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv3d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm3d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.register_state_dict_post_hook(_write_original_names)
        self.register_load_state_dict_pre_hook(_read_original_names)

    def forward(self, x: Tensor) -> Tensor:
        new = self.conv1(self.relu1(self.norm1(x)))
        new = self.conv2(self.relu2(self.norm2(new)))
        if self.drop_rate > 0:
            new = F.dropout(new, p=self.drop_rate, training=self.training)
        return torch.cat([x, new], 1)


def _write_original_names(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    # This layer's entries are the last ones in the dict when the hook runs; popping and
    # re-inserting them renamed therefore keeps the original key order.
    own = [key for key in state_dict if key.startswith(prefix)]
    for key in own:
        child, rest = key[len(prefix):].split(".", 1)
        state_dict[prefix + _ORIGINAL_NAMES.get(child, child) + "." + rest] = state_dict.pop(key)


def _read_original_names(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for ours, original in _ORIGINAL_NAMES.items():
        dotted = prefix + original + "."
        for key in [k for k in state_dict if k.startswith(dotted)]:
            state_dict[prefix + ours + "." + key[len(dotted):]] = state_dict.pop(key)


class DenseBlock(nn.Sequential):
    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int, drop_rate: float):
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)


class Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int):
        super().__init__()
        self.add_module("norm", nn.BatchNorm3d(num_input_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv3d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False))
        self.add_module("pool", nn.AvgPool3d(kernel_size=2, stride=2))


class DenseNet(SDNNet):
    """``features`` (stem, dense blocks, transitions, ``norm5``), ReLU, pooling, ``classifier``.

    ``head_options`` are the SDN head arguments of :meth:`SDNNet.add_sdn_heads`. Note that the
    attribute ``features`` is the original's ``nn.Sequential``; the pooled feature vector comes from
    :meth:`pooled_features`.
    """

    classifier_name = "classifier"
    stage_patterns = ("denseblock{}", "transition{}")
    tail_names = ("norm5",)

    def __init__(
        self,
        block_config: tuple[int, ...],
        *,
        n_classes: int,
        growth_rate: int = 32,
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        **head_options: Any,
    ):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv3d(3, num_init_features, kernel_size=7, stride=(1, 2, 2), padding=(3, 3, 3), bias=False)),
            ("norm0", nn.BatchNorm3d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool3d(kernel_size=3, stride=2, padding=1)),
        ]))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(num_features, num_features // 2))
                num_features //= 2
        self.features.add_module("norm5", nn.BatchNorm3d(num_features))
        init_conv_bn(self)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.feature_dim = num_features
        self.classifier = nn.Linear(num_features, n_classes)
        self.add_sdn_heads(n_classes, **head_options)

    def feature_maps(self, x: Tensor) -> Tensor:
        return F.relu(self.features(x), inplace=True)


def densenet_final_size(size: int, stem_stride: int) -> int:
    """Length of one axis after ``features``: stem conv, max-pool, then three halving transitions."""
    size = (size - 1) // stem_stride + 1
    size = (size - 1) // 2 + 1
    for _ in range(3):
        size //= 2
    return size


def check_densenet_input(sample_size: int, sample_duration: int) -> None:
    """Each transition halves the map, so short or small clips vanish before the last one."""
    if densenet_final_size(sample_size, 2) < 1 or densenet_final_size(sample_duration, 1) < 1:
        raise SdnError(
            f"densenet needs --sample_size >= 29 and --sample_duration >= 15 "
            f"(got {sample_size} and {sample_duration}): its transitions halve the map three times"
        )


def densenet(depth: int, **kwargs: Any) -> DenseNet:
    """DenseNet-121/169/201/264 (growth 32, 64 initial features, bn_size 4); ``kwargs`` go to ``DenseNet``."""
    return DenseNet(DENSENET_BLOCKS[depth], **kwargs)


def build(config: Any) -> DenseNet:
    """``--model densenet`` (``config`` is a :class:`~sdn.models.factory.ModelConfig`); checks the clip size."""
    check_densenet_input(config.sample_size, config.sample_duration)
    return densenet(config.model_depth, n_classes=config.n_classes, **config.head_options())
