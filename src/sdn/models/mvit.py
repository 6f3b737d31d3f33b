"""torchvision's Multiscale Vision Transformers (``mvit_v1_b``, ``mvit_v2_s``) with the SDN heads.

Fan et al. 2021, "Multiscale Vision Transformers"; Li et al. 2022, "MViTv2". The network is
torchvision's ``MViT`` class; :class:`MViTSDN` adopts its ``conv_proj``, ``pos_encoding``,
``blocks`` and ``norm`` under those names, so every backbone key equals torchvision's.

Clip size. torchvision's ``mvit_v1_b``/``mvit_v2_s`` always build for 224x224 pixels and 16
frames, and the positional encodings (v1: absolute, one entry per patch; v2: relative, sized by
the token grid) are parameters of that size. :func:`torchvision_mvit` builds torchvision's
``MViT`` for ``--sample_size``/``--sample_duration`` with the block settings of torchvision's
constructor, which it records by calling the constructor with ``MViT`` briefly replaced by a
recorder (so no table of settings is copied here; not thread-safe while it runs). Sizes must be
multiples of the patch stride (2 frames, 4 pixels), or the patch grid and the positional encoding
disagree, and leave a patch after the three query poolings (at least 32 pixels). Pretrained
weights fit only the size they were trained at (torchvision's: 224x16); the loader says so when
shapes differ.

The classifier. torchvision's ``head`` is ``Sequential(Dropout(0.5), Linear)`` on the normalised
class token. Here the normalised class token is the pooled feature the SDN heads read, ``head``
is the Linear (torchvision's ``head.1.*`` keys become ``head.*``, see
:func:`from_torchvision_state`) and the dropout, not in place so the heads see the undropped
feature, is ``classifier_dropout``.

Maps. The class token, not a mean of the patch tokens, is classified, so CAM is not exact
(``cam_exact = False``: sdn refuses ``--method cam``). After the last block the patch tokens no
longer reach the class token (the final norm is per token), so Grad-CAM explains the patch tokens
entering the last block, whose attention the class token reads: :meth:`MViTSDN.feature_maps`
returns them as ``[B, C, t, h, w]``, produced in the forward pass by the parameterless
``token_map`` module (``gradcam_layer``) so Grad-CAM differentiates the real logits.

Stages for ``--ft_begin_index``: a stage starts at each block that pools its queries (MViT's
scales): ``blocks.0``; ``blocks.1-2``; ``blocks.3-13``; ``blocks.14-15``. The patch embedding and
the positional encoding are the stem; the final ``norm`` is a tail, trained whenever fine-tuning is.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any
from unittest import mock

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.video import mvit as torchvision_mvit_module

from sdn.errors import SdnError
from sdn.models.heads import SDNNet, stage_table

ARCHS = ("mvit_v1_b", "mvit_v2_s")
_HEAD_LINEAR = "head.1."


@functools.cache
def _constructor_arguments(arch: str) -> dict[str, Any]:
    """The keyword arguments torchvision's ``arch`` constructor passes to ``MViT`` (block settings, flags)."""
    recorded: dict[str, Any] = {}

    def record(*args: Any, **kwargs: Any) -> None:
        if args:
            raise RuntimeError(f"torchvision's {arch} passes MViT positional arguments; sdn cannot record them")
        recorded.update(kwargs)

    with mock.patch.object(torchvision_mvit_module, "MViT", record):
        torchvision.models.get_model(arch, weights=None)
    return recorded


def torchvision_mvit(arch: str, sample_size: int, sample_duration: int, num_classes: int = 400) -> nn.Module:
    """torchvision's ``MViT`` with ``arch``'s settings, for ``sample_duration`` frames of ``sample_size`` pixels."""
    arguments = dict(_constructor_arguments(arch), spatial_size=(sample_size, sample_size),
                     temporal_size=sample_duration, num_classes=num_classes)
    check_mvit_input(arch, arguments)
    return torchvision_mvit_module.MViT(**arguments)


def _argument(arguments: dict[str, Any], name: str) -> Any:
    """An ``MViT`` argument as the constructor passes it, else ``MViT``'s default."""
    if name in arguments:
        return arguments[name]
    return inspect.signature(torchvision_mvit_module.MViT).parameters[name].default


def _patch_grid(arguments: dict[str, Any], size: int, axis: int) -> int:
    """Patches along one axis (``0``: time), or 0 when the patch embedding does not give ``size // stride``.

    ``MViT`` sizes its positional encoding for ``size // stride`` patches; the convolution must agree.
    """
    kernel, stride, padding = (_argument(arguments, f"patch_embed_{name}")[axis] for name in ("kernel", "stride",
                                                                                               "padding"))
    patches = (size + 2 * padding - kernel) // stride + 1
    return patches if size >= stride and patches == size // stride else 0


def _coarsest_grid(arguments: dict[str, Any], patches: int, axis: int) -> int:
    """Patches along one axis after every query pooling, as ``MViT`` counts them (rounding down)."""
    for setting in arguments["block_setting"]:
        if setting.stride_q:
            patches //= setting.stride_q[axis]
    return patches


def _fits(arguments: dict[str, Any], size: int, axis: int) -> bool:
    patches = _patch_grid(arguments, size, axis)
    return patches >= 1 and _coarsest_grid(arguments, patches, axis) >= 1


def check_mvit_input(arch: str, arguments: dict[str, Any]) -> None:
    """Whole patches (the positional encoding is sized by the grid), and at least one left after each pooling."""
    sizes = ((0, arguments["temporal_size"], "--sample_duration"), (1, arguments["spatial_size"][0], "--sample_size"))
    for axis, size, flag in sizes:
        if _fits(arguments, size, axis):
            continue
        stride = _argument(arguments, "patch_embed_stride")[axis]
        smallest = next(n for n in range(stride, 4096, stride) if _fits(arguments, n, axis))
        raise SdnError(f"{arch} needs {flag} to be a multiple of {stride} and at least {smallest} (got {size}): its "
                       f"patch embedding has stride {tuple(_argument(arguments, 'patch_embed_stride'))}, its "
                       "positional encoding is sized by the patch grid, and its poolings need one patch left")


def weights_hint(arch: str) -> str:
    """What to say when a weights file's shapes do not fit: the clip size torchvision's weights need."""
    meta = torchvision.models.get_model_weights(arch).DEFAULT.meta
    return (f"torchvision's {arch} weights fit only --sample_size {meta['min_size'][0]} --sample_duration "
            f"{meta['min_temporal_size']} (the positional encodings are sized by the clip)")


def mvit_stages(blocks: nn.ModuleList) -> dict[int, tuple[str, ...]]:
    """Stage ``i`` (from 1): the blocks from one query-pooling block (``pool_skip``) to the next."""
    table: dict[int, tuple[str, ...]] = {}
    stage = 0
    for index, block in enumerate(blocks):
        if index == 0 or block.pool_skip is not None:
            stage += 1
            table[stage] = ()
        table[stage] += (f"blocks.{index}.",)
    return table


class TokenMap(nn.Module):
    """Tokens ``[B, 1 + t*h*w, C]`` (class token first) -> the patch tokens as a map ``[B, C, t, h, w]``."""

    def forward(self, tokens: Tensor, thw: tuple[int, int, int]) -> Tensor:
        return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *thw)


class MViTSDN(SDNNet):
    """A torchvision ``MViT`` (``torchvision_model``) as an :class:`SDNNet` (see the module docstring)."""

    classifier_name = "head"
    tail_names = ("norm.",)
    cam_exact = False
    gradcam_layer = "token_map"

    def __init__(self, torchvision_model: nn.Module, n_classes: int, **head_options: Any):
        super().__init__()
        self.conv_proj = torchvision_model.conv_proj
        self.pos_encoding = torchvision_model.pos_encoding
        self.blocks = torchvision_model.blocks
        self.norm = torchvision_model.norm
        self.token_map = TokenMap()
        dropout, linear = torchvision_model.head
        self.feature_dim = linear.in_features
        self.classifier_dropout = nn.Dropout(dropout.p)
        self.head = linear
        self.stage_patterns = stage_table(mvit_stages(self.blocks))
        self.add_sdn_heads(n_classes, **head_options)

    def _entering_last_block(self, x: Tensor) -> tuple[Tensor, Tensor, tuple[int, int, int]]:
        """The class token ``[B, 1, C]``, the patch-token map and its grid, as the last block receives them."""
        tokens = self.pos_encoding(self.conv_proj(x).flatten(2).transpose(1, 2))
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        for block in self.blocks[:-1]:
            tokens, thw = block(tokens, thw)
        return tokens[:, :1], self.token_map(tokens, thw), thw

    def feature_maps(self, x: Tensor) -> Tensor:
        """The patch tokens entering the last block as ``[B, C, t, h, w]`` (what Grad-CAM explains)."""
        return self._entering_last_block(x)[1]

    def pooled_features(self, x: Tensor) -> Tensor:
        """The normalised class token after the last block ``[B, feature_dim]``."""
        class_token, patch_map, thw = self._entering_last_block(x)
        tokens = torch.cat((class_token, patch_map.flatten(2).transpose(1, 2)), dim=1)
        tokens, _ = self.blocks[-1](tokens, thw)
        return self.norm(tokens[:, 0])


def from_torchvision_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision's ``head.1.*`` (the Linear after the dropout) -> ``head.*``; other keys are kept."""
    return {("head." + key[len(_HEAD_LINEAR):] if key.startswith(_HEAD_LINEAR) else key): value
            for key, value in state.items()}


def build(config: Any) -> MViTSDN:
    """``--model mvit_v1_b|mvit_v2_s`` for the configured clip size (``--model_depth`` is ignored)."""
    model = torchvision_mvit(config.model, config.sample_size, config.sample_duration, config.n_classes)
    return MViTSDN(model, config.n_classes, **config.head_options())
