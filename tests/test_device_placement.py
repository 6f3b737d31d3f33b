"""Every path that feeds a model keeps its tensors on the model's device: checked on fake CUDA tensors.

``torch._subclasses.FakeTensorMode`` runs PyTorch's device checks without a GPU: a CPU tensor meeting
a CUDA one raises "Expected all tensors to be on the same device", exactly as on a real GPU. Fake
tensors have no values, so the tests read none (``.item()`` and truth tests give placeholders), and
autograd's backward needs a real CUDA context, so these tests run forward passes and losses: the
training steps of every mode with and without autocast, validation, the test path, analysis and CAM
(the steps' backward and optimizer run on parameters that are already on the device).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from sdn.config import parse_opts
from sdn.data.transforms import clip_normalize, input_preparation
from sdn.engine import build_objective
from sdn.engine.testing import clip_scores
from sdn.engine.trainer import move_batch
from sdn.methods import build_batch_transform
from sdn.methods.base import MethodSetup
from sdn.models import ModelConfig, build_sdn_model
from sdn.viz.cam import class_activation_maps
from sdn.viz.checkpoints import LoadedModel

CUDA = torch.device("cuda", 0)
FLAGS = ["--root_path", "", "--model", "resnet", "--model_depth", "10", "--resnet_width", "8", "--n_classes", "3",
         "--num_places_classes", "4", "--sample_size", "16", "--sample_duration", "4", "--warm_up_epochs", "0"]
MODES = {"baseline": ["--is_mask_adv"], "place_adv": ["--is_place_adv", "--is_place_soft", "--is_mask_adv"],
         "full": ["--is_place_adv", "--is_place_soft", "--is_mask_entropy"]}
AMP = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.fixture
def fake_cuda(monkeypatch) -> Iterator[None]:
    monkeypatch.setattr(FakeTensor, "item", lambda self: 0.5, raising=False)
    monkeypatch.setattr(FakeTensor, "__bool__", lambda self: True, raising=False)
    with FakeTensorMode(allow_non_fake_inputs=False):
        yield


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, monkeypatch) -> Iterator[None]:
    """CUDA autocast as on a GPU (torch disables it where it finds none)."""
    if dtype is None:
        yield
        return
    with monkeypatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: True)
        patch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        with torch.autocast("cuda", dtype=dtype):
            yield


def on_cuda(opt):
    """The model and the input preparation, built on the (fake) GPU; batches stay on the CPU as loaders give them."""
    with CUDA:
        model = build_sdn_model(ModelConfig.from_options(opt))
        prepare = input_preparation(clip_normalize(opt), CUDA)
    assert next(model.parameters()).device == CUDA
    return model, prepare


def cpu_batches(keys) -> list[dict]:
    out = []
    for wanted in keys:
        batch = {"clip": torch.zeros(2, 3, 4, 16, 16, dtype=torch.uint8), "label": torch.tensor([0, 2]),
                 "actor_mask": torch.ones(2, 4, 16, 16, dtype=torch.bool)}
        if "place" in wanted:
            batch["place"] = torch.full((2, 4), 0.25)
        if "is_masking" in wanted:
            batch["is_masking"] = torch.tensor([True, False])
        out.append(batch)
    return out


@pytest.mark.parametrize("amp", list(AMP))
@pytest.mark.parametrize("mode", list(MODES))
def test_training_and_validation_steps_stay_on_the_device(fake_cuda, monkeypatch, mode, amp):
    opt = parse_opts([*FLAGS, *MODES[mode]])
    model, prepare = on_cuda(opt)
    objective = build_objective(mode, opt)
    moved = [move_batch(batch, CUDA, prepare) for batch in cpu_batches(objective.batch_keys)]
    assert all(value.device == CUDA for batch in moved for value in batch.values() if isinstance(value, torch.Tensor))
    with autocast(AMP[amp], monkeypatch):
        if AMP[amp] is not None:
            assert model(moved[0]["clip"]).action.dtype == AMP[amp]  # autocast is really on
        steps = list(objective.steps(model, moved, epoch=1))
        model.eval()
        steps += list(objective.validation_steps(model, moved, epoch=1))
    assert len(steps) == 2 * objective.n_loaders
    assert all(step.loss.device == CUDA and step.loss.dtype == torch.float32 for step in steps)


@pytest.mark.parametrize("method", ["be", "fame", "actorcutmix", "albar"])
def test_debiasing_transforms_run_on_the_device(fake_cuda, method, tmp_path):
    extra = ["--human_dets_path", str(tmp_path)] if method == "actorcutmix" else []
    opt = parse_opts([*FLAGS, *MODES["baseline"], "--debias", method, *extra])
    model, prepare = on_cuda(opt)
    transform = build_batch_transform(MethodSetup(opt=opt, device=CUDA, train_dataset=None, normalize=prepare,
                                                  n_classes=3))
    objective = build_objective("baseline", opt)
    batch = move_batch(cpu_batches(objective.batch_keys)[0], CUDA, prepare, transform, torch.Generator().manual_seed(0))
    assert batch["clip"].device == CUDA and batch["clip"].dtype == torch.float32
    if method != "albar":  # ALBAR's step takes a gradient (its penalty), which fake CUDA cannot
        assert all(step.loss.device == CUDA for step in objective.steps(model, [batch], epoch=1))


def test_the_test_path_moves_the_loaders_cpu_clips(fake_cuda):
    opt = parse_opts([*FLAGS, *MODES["baseline"]])
    model, prepare = on_cuda(opt)
    model.eval()
    loader = [{"clip": torch.zeros(2, 3, 4, 16, 16, dtype=torch.uint8), "label": torch.tensor([0, 1]),
               "video_id": ["a", "a"]}]
    scored, skipped = clip_scores(model, loader, prepare, softmax=True, progress=False)
    assert skipped == 0 and len(scored) == 2
    normalize_only = clip_normalize(opt).to(CUDA)  # what the test path did before: normalise the CPU clip
    with pytest.raises(RuntimeError, match="same device"):
        clip_scores(model, loader, normalize_only, softmax=True, progress=False)


def test_analysis_and_cam_prepare_cpu_clips_for_the_model(fake_cuda):
    opt = parse_opts([*FLAGS, *MODES["baseline"]])
    model, _ = on_cuda(opt)
    with CUDA:
        normalize = clip_normalize(opt)
    loaded = LoadedModel(model.eval(), opt, ["a", "b", "c"], "fake.pth", normalize)
    clips = torch.zeros(2, 3, 4, 16, 16, dtype=torch.uint8)
    features = loaded.model.pooled_features(loaded.prepare(clips))  # what sdn analyze computes per batch
    assert features.device == CUDA and loaded.model.get_classifier()(features).device == CUDA
    maps = class_activation_maps(loaded.model, loaded.prepare(clips))  # sdn visualize, actor attention
    assert maps.maps.device == CUDA and tuple(maps.maps.shape) == (2, 4, 16, 16)
