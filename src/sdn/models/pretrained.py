"""``--pretrain_path``: load pretrained weights into a freshly built model.

Three kinds of source, told apart by what the file holds:

* an sdn or original checkpoint (a dict with ``state_dict`` or ``arch``): the original rule,
  unchanged (``check_arch``, then copy every entry whose name and shape match);
* a bare torchvision state dict for one of torchvision's video models (``torchvision.models.video
  .r3d_18().state_dict()`` saved, or torchvision's Kinetics-400 file): the family converts its
  key layout, every backbone entry must then be there with the right shape (anything else means
  the wrong model or, for MViT, another clip size, and a silent partial load would train from
  noise), and classifier entries of another class count are skipped as the original rule does;
* ``torchvision:NAME`` (e.g. ``torchvision:DEFAULT``): the file of torchvision's weights ``NAME``
  for the model, read from torch's hub cache. sdn never downloads; the error says what to fetch.

A bare state dict for the 2018 families keeps the original rule. Files are read weights-only
unless ``allow_pickle``. Replacing the classifier afterwards (``--n_finetune_classes``) is the
caller's step.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from sdn.checkpoint import LoadReport, check_arch, load_pretrained, model_state, read_checkpoint, strip_prefix
from sdn.errors import SdnError
from sdn.models.registry import FAMILIES, TORCHVISION_WEIGHTS

HEAD_MODULES = ("hm_mlp", "place_mlp")
_SHOWN = 3  # problem keys named in an error


def apply_pretrained_weights(model: nn.Module, path: str, *, arch: str, allow_pickle: bool = False) -> LoadReport:
    """Load ``path`` (a file or ``torchvision:NAME``) into ``model`` built as ``arch``; report what was loaded."""
    family = torchvision_family(arch)
    if path.startswith(TORCHVISION_WEIGHTS):
        if family is None:
            raise SdnError(f"--pretrain_path {path}: torchvision weights exist only for torchvision's video models "
                           f"({', '.join(torchvision_archs())}), not {arch}")
        path = cached_torchvision_weights(arch, path[len(TORCHVISION_WEIGHTS):])
    checkpoint = read_checkpoint(path, allow_pickle=allow_pickle)
    if family is None or "state_dict" in checkpoint or "arch" in checkpoint:
        check_arch(checkpoint, arch, path)
        return load_pretrained(model, checkpoint, path)
    return load_torchvision_state(model, checkpoint, path, arch, family)


def torchvision_family(arch: str) -> ModuleType | None:
    """The implementation module of a torchvision family called ``arch``, or ``None`` for the 2018 families."""
    family = FAMILIES.get(arch)
    if family is None or not family.is_torchvision:
        return None
    return importlib.import_module(family.module)


def torchvision_archs() -> list[str]:
    return [name for name, family in FAMILIES.items() if family.is_torchvision]


def cached_torchvision_weights(arch: str, name: str) -> str:
    """The hub-cache file of torchvision's weights ``name`` for ``arch``; if absent, an error saying what to fetch."""
    import torchvision

    weights = torchvision.models.get_model_weights(arch)
    if name not in weights.__members__:
        raise SdnError(f"--pretrain_path torchvision:{name}: {arch} has weights {', '.join(weights.__members__)}")
    url = weights[name].url
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))
    if not os.path.isfile(cached):
        raise SdnError(f"--pretrain_path torchvision:{name}: {cached} not found and sdn does not download; fetch {url} "
                       f"on a machine with network access and put it there, or pass --pretrain_path FILE")
    return cached


def load_torchvision_state(model: nn.Module, checkpoint: dict[str, Any], path: str, arch: str,
                           family: ModuleType) -> LoadReport:
    """A bare torchvision state dict: convert its layout, require the whole backbone, then load by name and shape."""
    convert = getattr(family, "from_torchvision_state", dict)  # a family whose keys differ from torchvision's has one
    state = convert(model_state(checkpoint, path))
    base = getattr(model, "module", model)
    target = strip_prefix(base.state_dict())
    missing, mismatched = _backbone_problems(state, target, heads=(base.classifier_name, *HEAD_MODULES))
    if missing or mismatched:
        problems = ([f"missing {_first(missing)}"] if missing else []) + \
                   ([f"shape differs for {_first(mismatched)}"] if mismatched else [])
        hint = getattr(family, "weights_hint", None)
        raise SdnError(f"{path}: not {arch} weights for this model ({'; '.join(problems)})"
                       + (f"; {hint(arch)}" if hint and mismatched else ""))
    return load_pretrained(base, {"state_dict": state}, path)


def _backbone_problems(state: dict[str, Tensor], target: dict[str, Tensor],
                       heads: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Backbone entries absent from ``state``, and those whose shape differs (``name file-shape vs model-shape``).

    ``num_batches_tracked`` may be absent (files of older PyTorch); BatchNorm restarts its count.
    """
    missing, mismatched = [], []
    for key, value in target.items():
        if key.split(".", 1)[0] in heads or key.endswith("num_batches_tracked"):
            continue
        if key not in state:
            missing.append(key)
        elif tuple(state[key].shape) != tuple(value.shape):
            mismatched.append(f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}")
    return missing, mismatched


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
