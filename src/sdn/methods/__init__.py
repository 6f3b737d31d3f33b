"""Debiasing methods beside SDN, each an option of ``sdn train`` (``--debias NAME``).

One registry: adding a method is one new module defining a :class:`~sdn.methods.base.Method`
named ``METHOD``, and one line below. See docs/methods.md for what each method does.
"""

from __future__ import annotations

import argparse

from sdn.methods import actorcutmix, albar, be, fame, stillmix
from sdn.methods.base import BatchTransform, Method, MethodSetup

METHODS: dict[str, Method] = {method.name: method for method in (
    be.METHOD,
    actorcutmix.METHOD,
    fame.METHOD,
    stillmix.METHOD,
    albar.METHOD,
)}

NONE = "none"
CHOICES = (NONE, *METHODS)


def method_of(opt: argparse.Namespace) -> Method | None:
    """The run's method, None without ``--debias``."""
    name = getattr(opt, "debias", NONE)
    return None if name == NONE else METHODS[name]


def needs_actor_mask(opt: argparse.Namespace) -> bool:
    """Whether training clips must carry an aligned ``actor_mask``."""
    method = method_of(opt)
    return method is not None and method.needs_actor_mask


def build_batch_transform(setup: MethodSetup) -> BatchTransform | None:
    """The run's training-batch transform, None when its method (if any) has none."""
    method = method_of(setup.opt)
    return method.build(setup) if method is not None and method.build is not None else None


__all__ = ["METHODS", "CHOICES", "Method", "MethodSetup", "BatchTransform", "method_of", "needs_actor_mask",
           "build_batch_transform"]
