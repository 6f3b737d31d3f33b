"""SDN models: backbone families (the 2018 3D-ResNets and torchvision's video models), each with the SDN heads.

The registry (:mod:`sdn.models.registry`: names, depths, input normalisation) imports no torch;
the rest is imported on first use, so ``sdn.config`` can list the models without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from sdn.models.registry import FAMILIES, Family, arch_name, check_model_choice, family_of

_LAZY = {
    "ModelConfig": "sdn.models.factory",
    "build_model": "sdn.models.factory",
    "build_sdn_model": "sdn.models.factory",
    "GradientReversal": "sdn.models.grad_reversal",
    "reverse_gradient": "sdn.models.grad_reversal",
    "MLPBlock": "sdn.models.heads",
    "SDNNet": "sdn.models.heads",
    "SDNOutput": "sdn.models.heads",
    "adversarial_parameter_split": "sdn.models.param_groups",
    "fine_tuning_parameters": "sdn.models.param_groups",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sdn.models' has no attribute {name!r}")


__all__ = ["FAMILIES", "Family", "arch_name", "check_model_choice", "family_of", *_LAZY]
