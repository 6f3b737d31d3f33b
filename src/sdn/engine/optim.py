"""Optimizers and LR schedulers, as the original's train.py sets them up.

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

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from sdn.errors import SdnError
from sdn.models.param_groups import adversarial_parameter_split, fine_tuning_parameters


@dataclass(frozen=True)
class OptimizerConfig:
    """The SGD settings and the parameter layout of a run (the original's flags of the same names).

    ``adversarial_split`` chooses the two-optimizer layout; the original took it whenever any
    scene or mask loss flag was given (:meth:`from_options`), whatever the mode. ``pretrained``
    (a ``--pretrain_path`` was loaded) makes the plain layout use the fine-tuning groups of
    ``ft_begin_index``.
    """

    learning_rate: float = 0.1
    new_layer_lr: float = 0.1
    momentum: float = 0.9
    dampening: float = 0.9
    weight_decay: float = 1e-3
    nesterov: bool = False
    lr_patience: int = 10
    warm_up_epochs: int = 10
    ft_begin_index: int = 0
    adversarial_split: bool = False
    pretrained: bool = False
    not_replace_last_fc: bool = False
    has_hm_head: bool = False
    slower_place_mlp: bool = False
    slower_hm_mlp: bool = False

    @classmethod
    def from_options(cls, opt: Any) -> "OptimizerConfig":
        return cls(learning_rate=opt.learning_rate, new_layer_lr=opt.new_layer_lr, momentum=opt.momentum,
                   dampening=opt.dampening, weight_decay=opt.weight_decay, nesterov=opt.nesterov,
                   lr_patience=opt.lr_patience, warm_up_epochs=opt.warm_up_epochs, ft_begin_index=opt.ft_begin_index,
                   adversarial_split=bool(opt.is_place_adv or opt.is_mask_cross_entropy or opt.is_mask_entropy),
                   pretrained=bool(opt.pretrain_path), not_replace_last_fc=opt.not_replace_last_fc,
                   has_hm_head=opt.is_mask_adv, slower_place_mlp=opt.slower_place_mlp,
                   slower_hm_mlp=opt.slower_hm_mlp)

    def sgd(self, params: Any, lr: float) -> torch.optim.SGD:
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum,
                               dampening=0 if self.nesterov else self.dampening,
                               weight_decay=self.weight_decay, nesterov=self.nesterov)


class OptimizerSchedule:
    """The optimizer(s) of a run, which one each epoch uses, and their schedulers."""

    def __init__(self, model: nn.Module, config: OptimizerConfig):
        self.warm_up_epochs = config.warm_up_epochs
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        if config.adversarial_split:
            old, new = adversarial_parameter_split(
                model,
                config.ft_begin_index,
                not_replace_last_fc=config.not_replace_last_fc,
                has_hm_head=config.has_hm_head,
                slower_place_mlp=config.slower_place_mlp,
                slower_hm_mlp=config.slower_hm_mlp,
            )
            if new:
                self.optimizers["first"] = config.sgd(new, config.new_layer_lr)
            self.optimizers["second"] = config.sgd([{"params": old}, {"params": new}], config.learning_rate)
        else:
            params = (fine_tuning_parameters(model, config.ft_begin_index) if config.pretrained
                      else list(model.parameters()))
            self.optimizers["main"] = config.sgd(params, config.learning_rate)
        self.schedulers = {
            name: ReduceLROnPlateau(optimizer, mode="min", patience=config.lr_patience)
            for name, optimizer in self.optimizers.items()
        }

    @classmethod
    def single(cls, optimizer: torch.optim.Optimizer, lr_patience: int = 10) -> "OptimizerSchedule":
        """Any optimizer of the caller's (the library API), with a ``ReduceLROnPlateau`` on the validation total."""
        schedule = cls.__new__(cls)
        schedule.warm_up_epochs = 0
        schedule.optimizers = {"main": optimizer}
        schedule.schedulers = {"main": ReduceLROnPlateau(optimizer, mode="min", patience=lr_patience)}
        return schedule

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

    def optimizer_for(self, epoch: int) -> torch.optim.Optimizer:
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

    def _optimizer(self, name: str) -> torch.optim.Optimizer:
        if name not in self.optimizers:
            raise SdnError(f"checkpoint has an optimizer {name!r} that this run does not build "
                           f"(this run has {', '.join(self.optimizers)}); were the options changed?")
        return self.optimizers[name]


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [param for group in optimizer.param_groups for param in group["params"]]
