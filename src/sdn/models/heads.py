"""The SDN heads and the base class every backbone family derives from.

SDN adds two adversarial heads to the pooled backbone feature ``f``:

* ``place_mlp``: MLP blocks then ``p_last_fc`` -> scene classes, behind a GRL with ``alpha``;
* ``hm_mlp``: MLP blocks then ``hm_last_fc`` -> action classes, behind a GRL with ``alpha_hm``.

The original had them on ResNet only; here :class:`SDNNet` gives every family the same heads,
registered right after the classifier in the order ``hm_mlp``, ``place_mlp`` so that state-dict
keys (``hm_mlp.0.fc.weight``, ``place_mlp.p_last_fc.bias``, ...) and their order equal the
original's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from sdn.errors import SdnError
from sdn.models.grad_reversal import GradientReversal

HEAD_BN_INITS = ("uniform", "ones")
NO_PARAMETER = "\0"  # a substring no parameter name contains


class SDNOutput(NamedTuple):
    """What every model returns: the action logits and, where the heads exist, their logits."""

    action: Tensor
    place: Tensor | None = None
    hm: Tensor | None = None


def init_head_bn(bn: nn.BatchNorm1d, how: str) -> None:
    """``"uniform"``: weight ~ U(0, 1), PyTorch 0.4.1's default that the original heads trained with.
    ``"ones"``: today's default. Bias 0 either way."""
    if how == "uniform":
        nn.init.uniform_(bn.weight, 0.0, 1.0)
    elif how == "ones":
        nn.init.ones_(bn.weight)
    else:
        raise SdnError(f"head_bn_init {how!r}: must be one of {', '.join(HEAD_BN_INITS)}")
    nn.init.zeros_(bn.bias)


class MLPBlock(nn.Module):
    """Linear -> BatchNorm1d -> ReLU, the original ``MLP_Block`` (sub-modules ``fc``, ``bn``)."""

    def __init__(self, in_features: int, out_features: int, bn_init: str = "uniform"):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)
        self.relu = nn.ReLU(inplace=True)
        init_head_bn(self.bn, bn_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.fc(x)))


def _mlp(width: int, num_hidden_layers: int, last_name: str, out_features: int, bn_init: str) -> nn.Sequential:
    # The original builds one block even when asked for fewer than one.
    layers: list[tuple[str, nn.Module]] = [
        (str(i), MLPBlock(width, width, bn_init)) for i in range(max(1, num_hidden_layers))
    ]
    layers.append((last_name, nn.Linear(width, out_features)))
    return nn.Sequential(OrderedDict(layers))


def place_mlp(
    width: int, num_places_classes: int, num_hidden_layers: int = 1, bn_init: str = "uniform"
) -> nn.Sequential:
    """The scene head: ``0..n-1`` MLP blocks, then ``p_last_fc`` -> ``num_places_classes``."""
    return _mlp(width, num_hidden_layers, "p_last_fc", num_places_classes, bn_init)


def hm_mlp(width: int, n_classes: int, num_hidden_layers: int = 1, bn_init: str = "uniform") -> nn.Sequential:
    """The human-mask head: ``0..n-1`` MLP blocks, then ``hm_last_fc`` -> ``n_classes`` (action classes)."""
    return _mlp(width, num_hidden_layers, "hm_last_fc", n_classes, bn_init)


class SDNNet(nn.Module, ABC):
    """Base of every backbone: pooling, the classifier, the SDN heads and ``forward``.

    A subclass builds its layers, a ``nn.AdaptiveAvgPool3d`` named ``avgpool`` and its classifier
    (attribute named by ``classifier_name``), sets ``feature_dim``, implements :meth:`feature_maps`,
    and finally calls :meth:`add_sdn_heads` so the heads come last.

    ``stage_patterns`` and ``tail_names`` give the parameter-name substrings of the original
    fine-tuning lists (``get_fine_tuning_parameters``, ``get_adv_fine_tuning_parameters``; see
    :mod:`sdn.models.param_groups`): stage ``i`` is ``pattern.format(i)`` for each pattern (ResNet:
    ``layer{i}``; DenseNet: ``denseblock{i}`` and ``transition{i}``), and ``tail_names`` are
    trained whenever any fine-tuning list is (DenseNet: ``norm5``). Families whose stages are not
    one module name per index (torchvision's S3D, MViT, Swin3D) build them with :func:`stage_table`.

    ``cam_exact`` says whether the classifier reads the spatio-temporal mean of
    :meth:`feature_maps` (so CAM is exact); MViT's reads its class token, so it sets ``False`` and
    names in ``gradcam_layer`` the module whose 5-D output Grad-CAM explains by default (``None``:
    :meth:`feature_maps`). A family with dropout before its classifier registers it as
    ``classifier_dropout``; the SDN heads never see it.
    """

    classifier_name: str = "fc"
    stage_patterns: tuple[Any, ...] = ("layer{}",)
    tail_names: tuple[str, ...] = ()
    cam_exact: bool = True
    gradcam_layer: str | None = None
    feature_dim: int

    def add_sdn_heads(
        self,
        n_classes: int,
        *,
        with_place_head: bool = False,
        with_hm_head: bool = False,
        num_places_classes: int = 0,
        num_place_hidden_layers: int = 1,
        num_hm_hidden_layers: int = 1,
        alpha: float = 1.0,
        alpha_hm: float = 1.0,
        head_bn_init: str = "uniform",
    ) -> None:
        """Register ``hm_mlp`` then ``place_mlp`` (or ``None``), each with its own gradient reversal."""
        if with_place_head and num_places_classes < 1:
            raise SdnError(f"num_places_classes {num_places_classes}: the place head needs at least one scene class")
        self.hm_reversal = GradientReversal(alpha_hm) if with_hm_head else None
        self.hm_mlp = hm_mlp(self.feature_dim, n_classes, num_hm_hidden_layers, head_bn_init) if with_hm_head else None
        self.place_reversal = GradientReversal(alpha) if with_place_head else None
        self.place_mlp = (
            place_mlp(self.feature_dim, num_places_classes, num_place_hidden_layers, head_bn_init)
            if with_place_head
            else None
        )

    @abstractmethod
    def feature_maps(self, x: Tensor) -> Tensor:
        """The last convolutional map ``[B, C, t, h, w]`` before pooling (used for class activation maps)."""

    def pooled_features(self, x: Tensor) -> Tensor:
        """The pooled, flattened feature ``[B, feature_dim]`` that the classifier and the heads share.

        Adaptive pooling to 1x1x1 equals the original's fixed-kernel average pool whenever that
        kernel covered the whole map (the only case where the original worked), and also works
        for any other clip size.
        """
        return torch.flatten(self.avgpool(self.feature_maps(x)), 1)

    def forward(self, x: Tensor) -> SDNOutput:
        f = self.pooled_features(x)
        action = self.get_classifier()(self.classifier_input(f))
        hm = self.hm_mlp(self.hm_reversal(f)) if self.hm_mlp is not None else None
        place = self.place_mlp(self.place_reversal(f)) if self.place_mlp is not None else None
        return SDNOutput(action=action, place=place, hm=hm)

    def classifier_input(self, f: Tensor) -> Tensor:
        """What the classifier reads: ``f``, through the family's ``classifier_dropout`` if it has one.

        Not an attribute default on the class: ``nn.Module`` registers sub-modules in ``_modules``,
        where a class attribute of the same name would shadow them.
        """
        dropout = self._modules.get("classifier_dropout")
        return f if dropout is None else dropout(f)

    def get_classifier(self) -> nn.Linear:
        return getattr(self, self.classifier_name)

    def replace_classifier(self, num_classes: int) -> None:
        """A fresh, default-initialised classifier of ``--n_finetune_classes`` (the original's fine-tuning step).

        The hm head keeps its construction-time class count, as in the original.
        """
        old = self.get_classifier()
        new = nn.Linear(self.feature_dim, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        setattr(self, self.classifier_name, new)


class _StageSlot:
    """One ``stage_patterns`` entry of a :func:`stage_table`: ``format(i)`` is the ``slot``-th name of stage ``i``."""

    def __init__(self, table: dict[int, tuple[str, ...]], slot: int):
        self.table = table
        self.slot = slot

    def format(self, stage: int) -> str:
        names = self.table.get(stage, ())
        return names[self.slot] if self.slot < len(names) else NO_PARAMETER

    def __repr__(self) -> str:
        return f"stage_table slot {self.slot} of {self.table}"


def stage_table(table: dict[int, Sequence[str]]) -> tuple[_StageSlot, ...]:
    """``stage_patterns`` for stages that are several modules each, e.g. ``{1: ("features.2.", "features.3."), ...}``.

    The fine-tuning lists (``sdn.models.param_groups``) ask each pattern for ``pattern.format(i)``
    and match the result as a substring of parameter names; torchvision's models number their
    modules (``features.5``, ``blocks.12``) and their state-dict keys must stay torchvision's, so a
    stage cannot be one formatted name. This gives one pattern per slot whose ``format(i)`` is the
    slot-th name of stage ``i``, or a string no parameter name contains. End names with ``.`` so
    ``blocks.1.`` does not also match ``blocks.12``.
    """
    frozen = {stage: tuple(names) for stage, names in table.items()}
    width = max((len(names) for names in frozen.values()), default=0)
    return tuple(_StageSlot(frozen, slot) for slot in range(width))
