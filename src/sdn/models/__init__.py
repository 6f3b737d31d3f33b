"""SDN models: 3D backbones of the 2018 3D-ResNets families, each with the optional SDN heads."""

from sdn.models.factory import MODEL_DEPTHS, arch_name, build_model, check_model_choice
from sdn.models.grad_reversal import GradientReversal, reverse_gradient
from sdn.models.heads import MLPBlock, SDNNet, SDNOutput
from sdn.models.param_groups import adversarial_parameter_split, fine_tuning_parameters

__all__ = [
    "MODEL_DEPTHS",
    "GradientReversal",
    "MLPBlock",
    "SDNNet",
    "SDNOutput",
    "adversarial_parameter_split",
    "arch_name",
    "build_model",
    "check_model_choice",
    "fine_tuning_parameters",
    "reverse_gradient",
]
