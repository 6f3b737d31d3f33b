"""The registry of backbone families: names, depths, input normalisation (no torch here).

``sdn.config`` builds the training parser (``--model`` lists what exists) where torch may not
be imported (``sdn eval`` reuses that parser), so the names live here and each family's
implementation module is imported only when a model is built. Adding a backbone: one module
under ``sdn/models/`` whose ``build(config: ModelConfig) -> SDNNet`` builds it, and one
``Family(...)`` line in ``FAMILIES`` below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from sdn.errors import SdnError

INPUT_NORMS = ("original", "torchvision")
TORCHVISION_WEIGHTS = "torchvision:"  # --pretrain_path torchvision:NAME: torchvision's weights from torch's hub cache

# The (mean, std) on the 0..1 scale that torchvision's video weights were trained with (their
# ``transforms``): the video ResNets' and S3D's Kinetics-400 values, MViT's, and Swin3D's ImageNet ones.
KINETICS_NORM = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
MVIT_NORM = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class Family:
    """One backbone family.

    ``depths`` are the ``--model_depth`` values it exists with; a family without depths (the
    torchvision models, whose name fixes the architecture) ignores ``--model_depth``.
    ``input_norm`` is the input normalisation its weights expect by default: ``original`` (the
    original's flags: mean subtraction on the 0..255 scale) or ``torchvision`` (``(x / 255 -
    mean) / std`` with the family's ``torchvision_norm``, as torchvision's weights were trained;
    ``--input_norm torchvision`` on an original family uses the Kinetics-400 values).
    """

    name: str
    module: str
    summary: str
    depths: tuple[int, ...] = ()
    input_norm: str = "original"
    torchvision_norm: tuple[tuple[float, ...], tuple[float, ...]] = KINETICS_NORM

    @property
    def is_torchvision(self) -> bool:
        """One of torchvision's video models (its name, not a depth, fixes the architecture)."""
        return not self.depths

    def builder(self) -> Callable:
        """The implementation's ``build`` (imports it, and torch, now)."""
        return importlib.import_module(self.module).build

    def arch(self, depth: int) -> str:
        """The ``arch`` string checkpoints carry: ``resnet-18`` for the original families, the name otherwise."""
        return f"{self.name}-{depth}" if self.depths else self.name


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("resnet", "sdn.models.resnet", "3D ResNet (the original's and SDN's backbone)",
           (10, 18, 34, 50, 101, 152, 200)),
    Family("preresnet", "sdn.models.pre_act_resnet", "pre-activation 3D ResNet", (18, 34, 50, 101, 152, 200)),
    Family("wideresnet", "sdn.models.wide_resnet", "wide 3D ResNet", (50,)),
    Family("resnext", "sdn.models.resnext", "3D ResNeXt", (50, 101, 152)),
    Family("densenet", "sdn.models.densenet", "3D DenseNet-BC", (121, 169, 201, 264)),
    Family("r3d_18", "sdn.models.video_resnet", "torchvision R3D-18 (3D ResNet-18)", input_norm="torchvision"),
    Family("mc3_18", "sdn.models.video_resnet", "torchvision MC3-18 (3D then 2D convolutions)",
           input_norm="torchvision"),
    Family("r2plus1d_18", "sdn.models.video_resnet", "torchvision R(2+1)D-18 (spatial then temporal convolutions)",
           input_norm="torchvision"),
    Family("s3d", "sdn.models.s3d", "torchvision S3D (separable 3D inception)", input_norm="torchvision"),
    Family("mvit_v1_b", "sdn.models.mvit", "torchvision MViT-v1-B (multiscale vision transformer)", torchvision_norm=MVIT_NORM,
           input_norm="torchvision"),
    Family("mvit_v2_s", "sdn.models.mvit", "torchvision MViT-v2-S (multiscale vision transformer)", torchvision_norm=MVIT_NORM,
           input_norm="torchvision"),
    Family("swin3d_t", "sdn.models.swin3d", "torchvision Video Swin-T", input_norm="torchvision",
           torchvision_norm=IMAGENET_NORM),
    Family("swin3d_s", "sdn.models.swin3d", "torchvision Video Swin-S", input_norm="torchvision",
           torchvision_norm=IMAGENET_NORM),
    Family("swin3d_b", "sdn.models.swin3d", "torchvision Video Swin-B", input_norm="torchvision",
           torchvision_norm=IMAGENET_NORM),
)}


def family_of(model: str) -> Family:
    """The family called ``model``, or an :class:`SdnError` listing what exists."""
    if model not in FAMILIES:
        hint = " (the experimental 2-D vgg of the original is not supported)" if model == "vgg" else ""
        raise SdnError(f"--model {model!r}: must be one of {', '.join(FAMILIES)}{hint}")
    return FAMILIES[model]


def arch_name(model: str, model_depth: int) -> str:
    """The ``arch`` string checkpoints carry, e.g. ``resnet-18`` or ``r3d_18``."""
    return family_of(model).arch(model_depth)


def check_model_choice(model: str, model_depth: int) -> None:
    """Raise :class:`SdnError` naming the allowed values when the family or depth does not exist."""
    family = family_of(model)
    if family.depths and model_depth not in family.depths:
        depths = ", ".join(str(d) for d in family.depths)
        raise SdnError(f"--model_depth {model_depth}: {model} exists with depth {depths}")
