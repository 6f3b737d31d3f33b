"""Debiasing methods beside SDN, each an option of ``sdn train`` (``--debias NAME``).

The registry (:mod:`sdn.methods.registry`: names, papers, flags, checks) imports no torch, so
``sdn.config`` can build the training parser anywhere; a method's implementation module is
imported only when a run uses it. See docs/methods.md for what each method does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdn.methods.registry import CHOICES, METHODS, NONE, Method, method_of, needs_actor_mask

if TYPE_CHECKING:
    from sdn.methods.base import BatchTransform, MethodSetup


def build_batch_transform(setup: "MethodSetup") -> "BatchTransform | None":
    """The run's training-batch transform (None without ``--debias``)."""
    method = method_of(setup.opt)
    return method.builder()(setup) if method is not None else None


__all__ = ["METHODS", "CHOICES", "NONE", "Method", "method_of", "needs_actor_mask", "build_batch_transform"]
