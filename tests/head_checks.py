"""A check every backbone's SDN heads must pass, shared by the model tests of each family."""

from __future__ import annotations

import torch
from torch import nn


def assert_heads_reverse_their_gradients(model: nn.Module, features: torch.Tensor, alpha: float,
                                         alpha_hm: float) -> None:
    """Through its reversal layer, each head sends the feature ``-alpha`` times the gradient it sends without."""
    for head, reversal, scale in ((model.place_mlp, model.place_reversal, alpha),
                                  (model.hm_mlp, model.hm_reversal, alpha_hm)):
        plain = features.detach().clone().requires_grad_()
        head(plain).sum().backward()
        reversed_ = features.detach().clone().requires_grad_()
        head(reversal(reversed_)).sum().backward()
        assert torch.allclose(reversed_.grad, -scale * plain.grad)
