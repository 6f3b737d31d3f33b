"""Class activation maps of 3D action models, at the size of the clip they explain.

Two methods:

* ``cam`` (Zhou et al. 2016): the action head is a linear layer on the average-pooled last
  feature map, so the logit of class ``k`` is the spatio-temporal mean of
  ``sum_c W[k, c] * F[c, t, h, w]``. That sum *is* the map: no gradients, exact for every
  backbone that pools then classifies. A model with ``cam_exact = False`` (MViT, which reads a
  class token) is refused; Grad-CAM then explains its ``gradcam_layer`` by default.
* ``gradcam`` (Selvaraju et al. 2017): any layer whose output is a 5-D map ``[B, C, t, h, w]``;
  channel weights are the mean gradient of the class logit over the map. It explains earlier
  layers (finer maps) and works for any head.

Maps are upsampled (trilinear) to ``[T, H, W]`` and min-max normalised per clip over all frames
at once, so a frame the model ignores stays dark instead of being stretched to full contrast.
Models only need ``feature_maps(x)`` and ``get_classifier()`` (CAM, default Grad-CAM layer) or a
``forward`` returning the action logits or an ``SDNOutput`` (Grad-CAM of a named layer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sdn.errors import SdnError

METHODS = ("cam", "gradcam")


@dataclass(frozen=True)
class ActivationMaps:
    """Maps of a batch of clips and what they explain."""

    maps: Tensor  # float32 [B, T, H, W], each clip normalised to [0, 1]
    classes: Tensor  # int64 [B], the class each map explains
    probabilities: Tensor  # float32 [B, K], softmax of the action logits

    @property
    def predicted(self) -> Tensor:
        """int64 [B]: the model's top class for each clip."""
        return self.probabilities.argmax(dim=1)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Explain the model as it predicts: BatchNorm with running statistics, whatever mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def choose_classes(logits: Tensor, classes: int | Tensor | None) -> Tensor:
    """The class to explain per clip: the prediction (``None``), one class for all, or one per clip."""
    n_classes = logits.shape[1]
    if classes is None:
        return logits.argmax(dim=1)
    chosen = torch.as_tensor(classes, dtype=torch.int64, device=logits.device).expand(logits.shape[0])
    bad = chosen[(chosen < 0) | (chosen >= n_classes)]
    if bad.numel():
        raise SdnError(f"class index {int(bad[0])} is out of range: the classifier has {n_classes} outputs")
    return chosen.clone()


def normalize_maps(raw: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Upsample ``[B, t, h, w]`` maps to ``size`` = (T, H, W) and min-max scale each clip to [0, 1].

    A constant map carries no spatial information and becomes all zeros (not NaN).
    """
    up = F.interpolate(raw[:, None].float(), size=size, mode="trilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2, 3), keepdim=True)
    span = up.amax(dim=(1, 2, 3), keepdim=True) - low
    return torch.where(span > 0, (up - low) / span.clamp_min(torch.finfo(up.dtype).tiny), torch.zeros_like(up))


def _check_clips(clips: Tensor) -> None:
    if clips.dim() != 5:
        raise ValueError(f"expected normalised clips [B, 3, T, H, W], got shape {tuple(clips.shape)}")


def class_activation_maps(model: nn.Module, clips: Tensor, classes: int | Tensor | None = None) -> ActivationMaps:
    """CAM: classifier row of the class times the last feature map, at the clips' [T, H, W]."""
    _check_clips(clips)
    if not getattr(model, "cam_exact", True):
        raise SdnError(f"--method cam: the {type(model).__name__} classifier does not read the mean of the last "
                       "feature map (MViT reads a class token), so CAM cannot explain it; use --method gradcam")
    with _eval_mode(model), torch.no_grad():
        features = model.feature_maps(clips)
        classifier = model.get_classifier()
        logits = classifier(features.mean(dim=(2, 3, 4)))
        chosen = choose_classes(logits, classes)
        raw = torch.einsum("bc,bcthw->bthw", classifier.weight[chosen], features)
        maps = normalize_maps(raw, tuple(clips.shape[2:]))
    return ActivationMaps(maps, chosen, logits.softmax(dim=1))


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name`` (as in ``named_modules``, e.g. ``layer3`` or ``layer4.0.conv2``)."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        top = ", ".join(child for child, _ in model.named_children())
        raise SdnError(f"--layer {name!r}: the model has no such layer (top-level layers: {top}; "
                       "use dotted names for inner ones, e.g. layer4.0.conv2)")
    return modules[name]


def _action_logits(output: object) -> Tensor:
    return output.action if hasattr(output, "action") else output  # SDNOutput or plain logits


def _forward_recording(model: nn.Module, clips: Tensor, layer: str | None) -> tuple[Tensor, Tensor]:
    """Action logits and the activation Grad-CAM explains (the last feature map when ``layer`` is None)."""
    if layer is None:
        activation = model.feature_maps(clips)
        return model.get_classifier()(activation.mean(dim=(2, 3, 4))), activation
    recorded: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor:
        recorded.append(output)
        # Hand the rest of the network a copy: an in-place op after this layer (ReLU(inplace=True))
        # would otherwise overwrite the activation we differentiate against.
        return output.clone()

    handle = find_layer(model, layer).register_forward_hook(keep)
    try:
        logits = _action_logits(model(clips))
    finally:
        handle.remove()
    if not recorded or not isinstance(recorded[0], Tensor) or recorded[0].dim() != 5:
        shape = tuple(recorded[0].shape) if recorded and isinstance(recorded[0], Tensor) else None
        raise SdnError(f"--layer {layer!r}: Grad-CAM needs a layer whose output is a 5-D map [B, C, t, h, w], "
                       f"got {shape if shape else 'no tensor output'}")
    return logits, recorded[0]


def grad_cam(model: nn.Module, clips: Tensor, layer: str | None = None,
             classes: int | Tensor | None = None) -> ActivationMaps:
    """Grad-CAM of ``layer`` (default: the model's ``gradcam_layer``, else the last feature map) at [T, H, W]."""
    _check_clips(clips)
    layer = layer if layer is not None else getattr(model, "gradcam_layer", None)
    with _eval_mode(model), torch.enable_grad():
        # A leaf that needs gradients keeps the graph alive even when every parameter is frozen.
        inputs = clips.detach().requires_grad_(True)
        logits, activation = _forward_recording(model, inputs, layer)
        chosen = choose_classes(logits.detach(), classes)
        score = logits.gather(1, chosen[:, None]).sum()
        (gradient,) = torch.autograd.grad(score, activation)
        weights = gradient.mean(dim=(2, 3, 4), keepdim=True)
        raw = F.relu((weights * activation).sum(dim=1)).detach()
    maps = normalize_maps(raw, tuple(clips.shape[2:]))
    return ActivationMaps(maps, chosen, logits.detach().softmax(dim=1))


def activation_maps(model: nn.Module, clips: Tensor, method: str = "cam", layer: str | None = None,
                    classes: int | Tensor | None = None) -> ActivationMaps:
    """Dispatch on ``method`` (``cam`` or ``gradcam``); ``layer`` only applies to Grad-CAM."""
    if method == "cam":
        if layer is not None:
            raise SdnError("--layer applies to --method gradcam; CAM always explains the last feature map")
        return class_activation_maps(model, clips, classes)
    if method == "gradcam":
        return grad_cam(model, clips, layer, classes)
    raise SdnError(f"--method {method!r}: must be one of {', '.join(METHODS)}")
