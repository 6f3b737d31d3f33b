"""Parameter groups for fine-tuning, exactly as the original decides them.

The plain split is the original's ``get_fine_tuning_parameters``, the adversarial split its
``get_adv_fine_tuning_parameters``.

Both functions classify parameters by **substring** matching of their names against lists of
module names, first match wins, as the original did. The quirks that follow are kept on purpose
because they change training: with ``ft_begin_index >= 1`` the stem (``conv1``/``bn1``) is frozen,
and a head's Linear layers (names contain ``fc``) train while its BatchNorm layers are frozen; the
adversarial split's "frozen" list freezes nothing.

Stage names come from the model (``stage_patterns``, ``tail_names``, ``classifier_name``), so
every family is handled (DenseNet: ``denseblock{i}``, ``transition{i}``, ``norm5``, ``classifier``).
A ``DataParallel`` wrapper is looked through; its ``module.`` prefix does not change any match.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def _base(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _stage_names(model: nn.Module, stages: range) -> list[str]:
    patterns = _base(model).stage_patterns
    return [pattern.format(i) for i in stages for pattern in patterns]


def _matches(name: str, names: list[str]) -> bool:
    return any(part in name for part in names)


def fine_tuning_parameters(model: nn.Module, ft_begin_index: int) -> list[Any]:
    """The original ``get_fine_tuning_parameters``, for the plain (baseline) optimizer.

    ``ft_begin_index == 0``: every parameter at the base LR. Otherwise one group per parameter:
    ``{'params': p}`` when its name contains a stage ``ft_begin_index..4`` name, a tail name or the
    classifier name, else ``{'params': p, 'lr': 0.0}`` (kept in the optimizer, never updated).
    """
    if ft_begin_index == 0:
        return list(model.parameters())
    base = _base(model)
    trained = _stage_names(model, range(ft_begin_index, 5)) + list(base.tail_names) + [base.classifier_name]
    groups: list[dict[str, Any]] = []
    for name, param in model.named_parameters():
        groups.append({"params": param} if _matches(name, trained) else {"params": param, "lr": 0.0})
    return groups


def adversarial_parameter_split(
    model: nn.Module,
    ft_begin_index: int,
    not_replace_last_fc: bool,
    has_hm_head: bool,
    slower_place_mlp: bool,
    slower_hm_mlp: bool,
    verbose: bool = False,
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The original ``get_adv_fine_tuning_parameters``: returns ``(pretrained, new)``.

    ``new`` holds what the original warms up first: the place head (unless ``slower_place_mlp``),
    the hm head (if present and not ``slower_hm_mlp``) and the classifier (unless
    ``not_replace_last_fc``). Everything else, including the "frozen" stages, is pretrained.
    """
    classifier = _base(model).classifier_name
    frozen = _stage_names(model, range(0, ft_begin_index))
    ft = _stage_names(model, range(ft_begin_index, 5))
    new: list[str] = []
    (ft if slower_place_mlp else new).append("place_mlp")
    if has_hm_head:
        (ft if slower_hm_mlp else new).append("hm_mlp")
    if not not_replace_last_fc:
        new.append(classifier)

    pretrained_params: list[nn.Parameter] = []
    new_params: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if _matches(name, ft):
            decision = "finetune params"
            pretrained_params.append(param)
        elif _matches(name, new):
            decision = "new params"
            new_params.append(param)
        elif _matches(name, frozen):
            decision = "frozen"
            pretrained_params.append(param)
        else:
            decision = "finetune params"
            pretrained_params.append(param)
        if verbose:
            print(f"{decision}:{name}")
    return pretrained_params, new_params
