"""``build_model``: a backbone family of the registry with the SDN heads.

The original ``generate_model`` chose among the 2018 3D-ResNets families by ``--model`` and
``--model_depth``; sdn looks the family up in :mod:`sdn.models.registry` (where torchvision's
video models sit beside them), gives every family the SDN heads, and reports a bad family,
depth or size as an :class:`~sdn.errors.SdnError` instead of an assertion. The original's
experimental 2-D ``vgg`` is not provided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdn.errors import SdnError
from sdn.models.heads import HEAD_BN_INITS, SDNNet
from sdn.models.registry import check_model_choice, family_of


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides a model's architecture (and so its state-dict keys and shapes).

    ``sample_size``/``sample_duration`` do not fix the pooling (it is adaptive); families that
    cannot take any clip size check them (DenseNet's transitions, MViT's positional encoding).
    ``resnet_shortcut`` ``"A"`` is the zero-padded shortcut (detached from autograd unless
    ``detach_shortcut_a=False``); any other value is the projection shortcut, as the original.
    """

    model: str = "resnet"
    model_depth: int = 18
    n_classes: int = 400
    sample_size: int = 112
    sample_duration: int = 16
    resnet_shortcut: str = "B"
    wide_resnet_k: int = 2
    resnet_width: int = 64
    resnext_cardinality: int = 32
    with_place_head: bool = False
    with_hm_head: bool = False
    num_places_classes: int = 0
    num_place_hidden_layers: int = 1
    num_hm_hidden_layers: int = 1
    alpha: float = 1.0
    alpha_hm: float = 1.0
    head_bn_init: str = "uniform"
    detach_shortcut_a: bool = True

    @classmethod
    def from_options(cls, opt: Any) -> "ModelConfig":
        """The model the training options describe (``sdn train``'s flags, or a checkpoint's saved ones)."""
        return cls(
            model=opt.model,
            model_depth=opt.model_depth,
            n_classes=opt.n_classes,
            sample_size=opt.sample_size,
            sample_duration=opt.sample_duration,
            resnet_shortcut=opt.resnet_shortcut,
            wide_resnet_k=opt.wide_resnet_k,
            resnet_width=opt.resnet_width,
            resnext_cardinality=opt.resnext_cardinality,
            with_place_head=opt.is_place_adv,
            with_hm_head=opt.is_mask_adv,
            num_places_classes=opt.num_places_classes,
            num_place_hidden_layers=opt.num_place_hidden_layers,
            num_hm_hidden_layers=opt.num_human_mask_adv_hidden_layers,
            alpha=opt.alpha,
            alpha_hm=opt.alpha_hm,
            head_bn_init=opt.head_bn_init,
            detach_shortcut_a=not opt.shortcut_a_gradient,
        )

    def head_options(self) -> dict[str, Any]:
        """The arguments of :meth:`SDNNet.add_sdn_heads` (every family passes them on unchanged)."""
        return dict(
            with_place_head=self.with_place_head,
            with_hm_head=self.with_hm_head,
            num_places_classes=self.num_places_classes,
            num_place_hidden_layers=self.num_place_hidden_layers,
            num_hm_hidden_layers=self.num_hm_hidden_layers,
            alpha=self.alpha,
            alpha_hm=self.alpha_hm,
            head_bn_init=self.head_bn_init,
        )

    def check(self) -> None:
        """What no family accepts; each family checks its own limits when it builds."""
        check_model_choice(self.model, self.model_depth)
        if self.n_classes < 1:
            raise SdnError(f"--n_classes {self.n_classes}: must be at least 1")
        if self.head_bn_init not in HEAD_BN_INITS:
            raise SdnError(f"head_bn_init {self.head_bn_init!r}: must be one of {', '.join(HEAD_BN_INITS)}")
        if self.resnet_width < 1 or (self.resnet_width != 64 and self.model not in ("resnet", "preresnet")):
            raise SdnError(f"--resnet_width {self.resnet_width}: must be positive, and only resnet and preresnet "
                           "have it")


def build_sdn_model(config: ModelConfig) -> SDNNet:
    """The model ``config`` describes, with the SDN heads it asks for (freshly initialised)."""
    config.check()
    return family_of(config.model).builder()(config)


def build_model(model: str, model_depth: int = 18, **options: Any) -> SDNNet:
    """``build_sdn_model(ModelConfig(model, model_depth, **options))``: the plain constructor."""
    return build_sdn_model(ModelConfig(model, model_depth, **options))
