"""The losses of SDN, with the original's signs.

* action loss: ordinary cross entropy on the action logits;
* scene loss: cross entropy against a probability vector (soft pseudo labels) or a class index;
* entropy loss (the original ``HLoss``): +H by default, -H with ``maximize=True``.

Signs matter: minimising ``EntropyLoss(maximize=True)`` *raises* the entropy of the logits it
sees. Through a gradient reversal layer the backbone then receives the opposite push.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _at_least_float32(logits: Tensor) -> Tensor:
    """fp16/bf16 logits (mixed precision) as float32: the losses are computed in float32 at least, as
    autocast does for CUDA's own cross entropy; float32 logits pass unchanged (no copy)."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


class SoftCrossEntropy(nn.Module):
    """Mean over the batch of ``sum_c -target_c * log_softmax(logits)_c``.

    Targets are used as given (not renormalised), as the original. They are cast to the dtype of
    the (at least float32) logits: under PyTorch 0.4.1 they had to be float32, while today a float64
    target would silently turn the whole loss into float64, and rounding soft targets to the
    fp16/bf16 logits of mixed precision would lose their small probabilities.
    """

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = _at_least_float32(logits)
        target = target.to(dtype=logits.dtype)
        return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class EntropyLoss(nn.Module):
    """Mean entropy of ``softmax(logits)``: returns +H, or -H when ``maximize`` (original ``HLoss``)."""

    def __init__(self, maximize: bool = False):
        super().__init__()
        self.maximize = maximize

    def forward(self, logits: Tensor) -> Tensor:
        log_p = F.log_softmax(_at_least_float32(logits), dim=1)
        entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
        return -entropy if self.maximize else entropy


def scene_loss(soft: bool) -> nn.Module:
    """The place loss: soft cross entropy for probability targets, plain cross entropy for indices."""
    return SoftCrossEntropy() if soft else nn.CrossEntropyLoss()


def top1_hits(logits: Tensor, target: Tensor) -> Tensor:
    """Number of samples whose arg-max equals the target (soft targets through their arg-max), on the device."""
    if target.dim() == 2:
        target = target.argmax(dim=1)
    return (logits.argmax(dim=1) == target).sum()


def top1_correct(logits: Tensor, target: Tensor) -> int:
    """:func:`top1_hits` as a Python int."""
    return int(top1_hits(logits, target).item())

