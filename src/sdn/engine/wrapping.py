"""What training steps call: the model under DDP (``torchrun``) and/or ``torch.compile``.

The plain model stays what is validated, tested and saved; only training goes through the wrapper.
"""

from __future__ import annotations

import torch
from torch import nn

from sdn.distributed import SINGLE, Context


def training_wrapper(model: nn.Module, *, device: torch.device, context: Context = SINGLE,
                     find_unused_parameters: bool = False, compile: bool = False) -> nn.Module:
    """DDP across the job's processes (``find_unused_parameters`` when the objective's steps leave part
    of the model unused, as the full SDN mode's two steps do), optionally compiled."""
    wrapped = model
    if context.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters)
    return torch.compile(wrapped) if compile else wrapped
