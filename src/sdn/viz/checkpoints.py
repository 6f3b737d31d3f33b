"""A ready-to-explain model from any checkpoint ``sdn train`` wrote.

The checkpoint carries its training options (``config``), so the model is rebuilt exactly as
trained — same family, depth, shortcut and SDN heads — from the same :class:`ModelConfig` that
``sdn train`` builds, then loaded strictly. The classifier may have been replaced for fine-tuning (``n_finetune_classes``)
or kept (``--not_replace_last_fc``); rather than guess from the options, its size is read from the
stored weights.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from sdn.checkpoint import check_arch, load_for_resume, model_state, read_checkpoint
from sdn.config import Options, build_parser
from sdn.data.transforms import ClipNormalize, clip_normalize, input_preparation
from sdn.errors import SdnError
from sdn.models import ModelConfig, SDNNet, arch_name, build_sdn_model, family_of


@dataclass
class LoadedModel:
    """A model in eval mode with what is needed to feed and describe it."""

    model: SDNNet
    opt: Options  # the training options (defaults filled in for options older files lack)
    class_names: list[str]
    path: str
    normalize: ClipNormalize  # uint8 clips -> the normalised input the model was trained on

    @functools.cached_property
    def prepare(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """uint8 clips on any device -> the normalised input on the model's device (as training prepares them)."""
        return input_preparation(self.normalize, self.normalize.mean.device)

    @property
    def n_outputs(self) -> int:
        return self.model.get_classifier().out_features

    def class_name(self, index: int) -> str:
        """The dataset's name of an output, or ``class <index>`` where the checkpoint has none."""
        return self.class_names[index] if index < len(self.class_names) else f"class {index}"

    def resolve_class(self, spec: str) -> int:
        """``--class``: an output index or a class name of this checkpoint."""
        if spec.lstrip("-").isdigit():
            index = int(spec)
            if not 0 <= index < self.n_outputs:
                raise SdnError(f"{self.path}: --class {index} is out of range (the model has {self.n_outputs} outputs)")
            return index
        if spec in self.class_names:
            return self.class_names.index(spec)
        known = ", ".join(self.class_names[:10]) + (", ..." if len(self.class_names) > 10 else "")
        raise SdnError(f"{self.path}: --class {spec!r} is not a class of this model (classes: {known or 'unnamed'})")


def training_options(config: Any, path: str) -> Options:
    """The saved options over ``sdn train``'s defaults (files from older versions may lack newer options;
    options this version does not know are ignored)."""
    if not isinstance(config, dict):
        raise SdnError(f"{path}: the checkpoint holds no training options ('config'); only checkpoints "
                       "written by 'sdn train' can be rebuilt without flags")
    if "mean" not in config or "std" not in config:
        raise SdnError(f"{path}: the saved training options lack 'mean'/'std'; cannot normalise clips as trained")
    opt = build_parser().parse_args([])
    known = set(Options.names())
    for key, value in config.items():
        if key in known:
            setattr(opt, key, value)
    family_of(opt.model)  # a checkpoint of a model this version lacks: one line naming what exists
    opt.arch = arch_name(opt.model, opt.model_depth)
    if opt.input_norm == "auto":  # saved before --input_norm existed: the original normalisation
        opt.input_norm = "original"
    return Options.from_namespace(opt)


def _fit_classifier(model: SDNNet, checkpoint: dict[str, Any], path: str) -> None:
    """Resize the classifier to the stored one (fine-tuned checkpoints differ from ``n_classes``)."""
    weight = model_state(checkpoint, path).get(f"{model.classifier_name}.weight")
    if weight is not None and weight.dim() == 2 and weight.shape[0] != model.get_classifier().out_features:
        model.replace_classifier(int(weight.shape[0]))


def load_model(path: str | os.PathLike, *, allow_pickle: bool = False,
               device: torch.device | str = "cpu") -> LoadedModel:
    """Read, rebuild and strictly load a checkpoint; every problem is an ``SdnError`` naming the file."""
    path = os.fspath(path)
    checkpoint = read_checkpoint(path, allow_pickle=allow_pickle)
    opt = training_options(checkpoint.get("config"), path)
    check_arch(checkpoint, opt.arch, path)
    model = build_sdn_model(ModelConfig.from_options(opt))
    _fit_classifier(model, checkpoint, path)
    load_for_resume(model, checkpoint, path)
    names = checkpoint.get("class_names")
    class_names = [str(name) for name in names] if isinstance(names, list) else []
    normalize = clip_normalize(opt)
    return LoadedModel(model.to(device).eval(), opt, class_names, path, normalize.to(device))
