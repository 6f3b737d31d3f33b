"""``build_model``: the original ``generate_model`` choice of family and depth (reference section 5.1, 5.7).

Unlike the original, every family gets the SDN heads, and a bad family or depth is reported as
an :class:`~sdn.errors.SdnError` instead of an assertion. The original's experimental 2-D ``vgg``
is not provided.
"""

from __future__ import annotations

from sdn.errors import SdnError
from sdn.models.densenet import DENSENET_BLOCKS, check_densenet_input, densenet
from sdn.models.heads import SDNNet
from sdn.models.pre_act_resnet import PRE_ACT_RESNET_LAYERS, pre_act_resnet
from sdn.models.resnet import RESNET_LAYERS, resnet
from sdn.models.resnext import RESNEXT_LAYERS, resnext
from sdn.models.wide_resnet import WIDE_RESNET_LAYERS, wide_resnet

MODEL_DEPTHS: dict[str, tuple[int, ...]] = {
    "resnet": tuple(RESNET_LAYERS),
    "preresnet": tuple(PRE_ACT_RESNET_LAYERS),
    "wideresnet": tuple(WIDE_RESNET_LAYERS),
    "resnext": tuple(RESNEXT_LAYERS),
    "densenet": tuple(DENSENET_BLOCKS),
}


def arch_name(model: str, model_depth: int) -> str:
    """The ``arch`` string checkpoints carry, e.g. ``resnet-18``."""
    return f"{model}-{model_depth}"


def check_model_choice(model: str, model_depth: int) -> None:
    """Raise :class:`SdnError` naming the allowed values when the family or depth does not exist."""
    if model not in MODEL_DEPTHS:
        hint = " (the experimental 2-D vgg of the original is not supported)" if model == "vgg" else ""
        raise SdnError(f"--model {model!r}: must be one of {', '.join(MODEL_DEPTHS)}{hint}")
    if model_depth not in MODEL_DEPTHS[model]:
        depths = ", ".join(str(d) for d in MODEL_DEPTHS[model])
        raise SdnError(f"--model_depth {model_depth}: {model} exists with depth {depths}")


def build_model(
    model: str,
    model_depth: int,
    *,
    n_classes: int,
    sample_size: int = 112,
    sample_duration: int = 16,
    resnet_shortcut: str = "B",
    wide_resnet_k: int = 2,
    resnet_width: int = 64,
    resnext_cardinality: int = 32,
    with_place_head: bool = False,
    with_hm_head: bool = False,
    num_places_classes: int = 0,
    num_place_hidden_layers: int = 1,
    num_hm_hidden_layers: int = 1,
    alpha: float = 1.0,
    alpha_hm: float = 1.0,
    head_bn_init: str = "uniform",
    detach_shortcut_a: bool = True,
) -> SDNNet:
    """Build a backbone of ``model``/``model_depth`` with the requested SDN heads.

    ``resnet_shortcut`` ``"A"`` is the zero-padded shortcut (detached from autograd unless
    ``detach_shortcut_a=False``); any other value is the projection shortcut, as the original.
    ``sample_size``/``sample_duration`` no longer fix the pooling (it is adaptive); they are only
    checked where a family cannot handle small clips (DenseNet).
    """
    check_model_choice(model, model_depth)
    if n_classes < 1:
        raise SdnError(f"--n_classes {n_classes}: must be at least 1")
    heads = dict(
        n_classes=n_classes,
        with_place_head=with_place_head,
        with_hm_head=with_hm_head,
        num_places_classes=num_places_classes,
        num_place_hidden_layers=num_place_hidden_layers,
        num_hm_hidden_layers=num_hm_hidden_layers,
        alpha=alpha,
        alpha_hm=alpha_hm,
        head_bn_init=head_bn_init,
    )
    shortcut = dict(shortcut_type=resnet_shortcut, detach_shortcut_a=detach_shortcut_a)
    if resnet_width < 1 or (resnet_width != 64 and model not in ("resnet", "preresnet")):
        raise SdnError(f"--resnet_width {resnet_width}: must be positive, and only resnet and preresnet have it")
    widths = dict(stem_planes=resnet_width, stage_planes=tuple(resnet_width * 2 ** i for i in range(4)))
    if model == "resnet":
        return resnet(model_depth, **widths, **shortcut, **heads)
    if model == "preresnet":
        return pre_act_resnet(model_depth, **widths, **shortcut, **heads)
    if model == "wideresnet":
        return wide_resnet(model_depth, k=wide_resnet_k, **shortcut, **heads)
    if model == "resnext":
        return resnext(model_depth, cardinality=resnext_cardinality, **shortcut, **heads)
    check_densenet_input(sample_size, sample_duration)
    return densenet(model_depth, **heads)
