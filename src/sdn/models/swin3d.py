"""torchvision's Video Swin Transformers (``swin3d_t``, ``swin3d_s``, ``swin3d_b``) with the SDN heads.

Liu et al. 2022, "Video Swin Transformer". torchvision's constructor builds the network and
:class:`Swin3dSDN` adopts its modules under their names (``patch_embed``, ``pos_drop``,
``features``, ``norm``, ``avgpool``, ``head``), so torchvision's state dicts load by name with no
conversion. torchvision's classifier ``head`` is a Linear on the average of the normalised last
map, which is this model's pooled feature: the action logits equal torchvision's and CAM is exact.
Windows are clipped to the token grid and inputs padded to the patch size, and nothing in the
weights depends on the clip size, so any clip size works and the pretrained weights fit all.

Stages for ``--ft_begin_index``: stage ``i`` is the ``i``-th group of Swin blocks with the patch
merging before it (``features.0``; ``features.1-2``; ``features.3-4``; ``features.5-6``); the patch
embedding is the stem. The final ``norm`` is a tail (trained whenever fine-tuning is, like
DenseNet's ``norm5``); the fine-tuning lists match substrings, so ``norm.`` also catches the
patch embedding's and the patch mergings' LayerNorms, which then train with it.
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import Tensor, nn

from sdn.models.heads import SDNNet, stage_table

ARCHS = ("swin3d_t", "swin3d_s", "swin3d_b")


def swin_stages(features: nn.Sequential) -> dict[int, tuple[str, ...]]:
    """Stage ``i`` (from 1): each block group ``features.k`` with the patch merging before it."""
    table: dict[int, tuple[str, ...]] = {}
    stage, pending = 0, []
    for index, module in enumerate(features):
        pending.append(f"features.{index}.")
        if isinstance(module, nn.Sequential):  # a group of blocks ends a stage; a merging starts one
            stage += 1
            table[stage], pending = tuple(pending), []
    return table


class Swin3dSDN(SDNNet):
    """A torchvision ``SwinTransformer3d`` (``torchvision_model``) as an :class:`SDNNet`."""

    classifier_name = "head"
    tail_names = ("norm.",)

    def __init__(self, torchvision_model: nn.Module, n_classes: int, **head_options: Any):
        super().__init__()
        for name, module in torchvision_model.named_children():
            setattr(self, name, module)
        self.feature_dim = self.head.in_features
        self.stage_patterns = stage_table(swin_stages(self.features))
        self.add_sdn_heads(n_classes, **head_options)

    def feature_maps(self, x: Tensor) -> Tensor:
        tokens = self.norm(self.features(self.pos_drop(self.patch_embed(x))))  # [B, t, h, w, C]
        return tokens.permute(0, 4, 1, 2, 3)


def build(config: Any) -> Swin3dSDN:
    """``--model swin3d_t|swin3d_s|swin3d_b`` (any clip size works; ``--model_depth`` is ignored)."""
    model = torchvision.models.get_model(config.model, weights=None, num_classes=config.n_classes)
    return Swin3dSDN(model, config.n_classes, **config.head_options())
