"""Optimizers and LR schedulers, as the original sets them up (reference section 8.3).

* Plain split (baseline): one SGD over the fine-tuning parameter groups at ``learning_rate``.
* Adversarial split (a ``(pretrained, new)`` pair): a *first* (warm-up) SGD over the new
  parameters at ``new_layer_lr`` and a *second* SGD with two groups, both at ``learning_rate``.
  Epoch ``i`` uses the first iff ``i < warm_up_epochs`` (so W gives W-1 warm-up epochs when the
  run starts at epoch 1, as the original).

Each optimizer has its own ``ReduceLROnPlateau``; only the one paired with the epoch's optimizer is
stepped, with the validation (total) loss.

The state saved for a resume also records which parameters hold a gradient tensor. With the
original's in-place ``zero_grad`` a parameter whose ``.grad`` exists (zeroed) still gets a momentum
and weight-decay update in a step whose loss does not reach it, while one whose ``.grad`` is
``None`` is skipped; a freshly built model has no gradients at all. Without this record, the first
step after a resume in the full mode would skip the hm head (step A) that an uninterrupted run
updates.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from sdn.errors import SdnError
from sdn.models.param_groups import adversarial_parameter_split, fine_tuning_parameters


def _sgd(params: Any, lr: float, opt: argparse.Namespace) -> torch.optim.SGD:
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=opt.momentum,
        dampening=0 if opt.nesterov else opt.dampening,
        weight_decay=opt.weight_decay,
        nesterov=opt.nesterov,
    )


def uses_adversarial_split(opt: argparse.Namespace) -> bool:
    """The original's rule (CUDA path) for grouping parameters into (pretrained, new)."""
    return bool(opt.is_place_adv or opt.is_mask_cross_entropy or opt.is_mask_entropy)


class OptimizerSchedule:
    """The optimizer(s) of a run, which one each epoch uses, and their schedulers."""

    def __init__(self, model: nn.Module, opt: argparse.Namespace, *, pretrained: bool):
        self.warm_up_epochs = opt.warm_up_epochs
        self.optimizers: dict[str, torch.optim.SGD] = {}
        if uses_adversarial_split(opt):
            old, new = adversarial_parameter_split(
                model,
                opt.ft_begin_index,
                not_replace_last_fc=opt.not_replace_last_fc,
                has_hm_head=opt.is_mask_adv,
                slower_place_mlp=opt.slower_place_mlp,
                slower_hm_mlp=opt.slower_hm_mlp,
            )
            if new:
                self.optimizers["first"] = _sgd(new, opt.new_layer_lr, opt)
            self.optimizers["second"] = _sgd([{"params": old}, {"params": new}], opt.learning_rate, opt)
        else:
            params = fine_tuning_parameters(model, opt.ft_begin_index) if pretrained else list(model.parameters())
            self.optimizers["main"] = _sgd(params, opt.learning_rate, opt)
        self.schedulers = {
            name: ReduceLROnPlateau(optimizer, mode="min", patience=opt.lr_patience)
            for name, optimizer in self.optimizers.items()
        }

    def name_for(self, epoch: int) -> str:
        if "main" in self.optimizers:
            return "main"
        if epoch < self.warm_up_epochs:
            if "first" not in self.optimizers:
                raise SdnError(
                    f"--warm_up_epochs {self.warm_up_epochs}: there are no new layers to warm up "
                    "(with --not_replace_last_fc and --slower_* flags every parameter counts as pretrained); "
                    "use --warm_up_epochs 0"
                )
            return "first"
        return "second"

    def optimizer_for(self, epoch: int) -> torch.optim.SGD:
        return self.optimizers[self.name_for(epoch)]

    def scheduler_for(self, epoch: int) -> ReduceLROnPlateau:
        return self.schedulers[self.name_for(epoch)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "grad_present": {name: [p.grad is not None for p in _params(o)] for name, o in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, optimizer_state in state["optimizers"].items():
            self._optimizer(name).load_state_dict(optimizer_state)
        for name, scheduler_state in state.get("schedulers", {}).items():
            self.schedulers[name].load_state_dict(scheduler_state)
        for name, present in state.get("grad_present", {}).items():
            params = _params(self._optimizer(name))
            if len(present) != len(params):
                raise SdnError(f"checkpoint records gradients of {len(present)} parameters for optimizer {name!r}, "
                               f"this run has {len(params)}; were the options changed?")
            for param, has_grad in zip(params, present):
                if has_grad and param.grad is None:
                    param.grad = torch.zeros_like(param)

    def load_original(self, optimizer_state: dict[str, Any], saved_epoch: int) -> None:
        """An original checkpoint holds only the optimizer of the epoch it was saved after."""
        self.optimizer_for(saved_epoch).load_state_dict(optimizer_state)

    def _optimizer(self, name: str) -> torch.optim.SGD:
        if name not in self.optimizers:
            raise SdnError(f"checkpoint has an optimizer {name!r} that this run does not build "
                           f"(this run has {', '.join(self.optimizers)}); were the options changed?")
        return self.optimizers[name]


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [param for group in optimizer.param_groups for param in group["params"]]
