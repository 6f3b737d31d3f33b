"""Gradient reversal layer, in front of the SDN scene and human-mask heads.

The SDN heads sit behind this layer: the head itself learns to solve its task, while the
backbone receives the *negated* (and scaled) gradient and so learns features that defeat the
head. ``alpha`` is a constant of the run (the original has no annealing schedule) and is never
trained.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _ReverseGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-alpha``."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output * -ctx.alpha, None


def reverse_gradient(x: Tensor, alpha: float) -> Tensor:
    """Functional form of :class:`GradientReversal`."""
    return _ReverseGrad.apply(x, float(alpha))


class GradientReversal(nn.Module):
    """Gradient reversal as a module. Holds no parameters or buffers, so it adds no state-dict keys."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        return reverse_gradient(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
