"""Every torchvision backbone takes one training step in each SDN mode through the library's Trainer.

The CLI path (``sdn train --pretrain_path`` with a torchvision weights file) is covered on one
model by test_torchvision_train; loading each model's weights by test_torchvision_models.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sdn.config import parse_opts
from sdn.data.transforms import default_normalize, input_preparation
from sdn.engine import OptimizerConfig, OptimizerSchedule, Trainer, TrainerConfig, build_objective
from sdn.models import FAMILIES, ModelConfig, build_sdn_model

pytestmark = pytest.mark.slow

TORCHVISION = [name for name, family in FAMILIES.items() if not family.depths]
SIZE, DURATION, CLASSES, PLACES = 32, 6, 3, 4
# S3D's stem BatchNorm sees almost nothing of a 32x32x6 clip at batch 2: its gradients reach 1e11 and a
# step can overflow; at 64x64x8 they stay near 1e3.
CLIPS = {"s3d": (64, 8)}
MODE_FLAGS = {
    "baseline": ["--is_mask_adv"],
    "place_adv": ["--is_place_adv", "--is_place_soft", "--is_mask_adv"],
    "full": ["--is_place_adv", "--is_place_soft", "--is_mask_entropy"],
}


def batches(keys: tuple[tuple[str, ...], ...], size: int, duration: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for wanted in keys:
        batch = {"clip": torch.randint(0, 256, (2, 3, duration, size, size), dtype=torch.uint8, generator=g),
                 "label": torch.tensor([0, 2])}
        if "place" in wanted:
            batch["place"] = torch.softmax(torch.randn(2, PLACES, generator=g), dim=1)
        if "is_masking" in wanted:
            batch["is_masking"] = torch.tensor([True, True])
        out.append(batch)
    return out


def test_the_registry_lists_the_nine_torchvision_models():
    assert TORCHVISION == ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s",
                           "swin3d_b"]


@pytest.mark.parametrize("arch", TORCHVISION)
def test_input_normalisation_is_the_one_torchvision_weights_were_trained_with(arch):
    import inspect

    import torchvision
    from torchvision.transforms._presets import VideoClassification

    transforms = torchvision.models.get_model_weights(arch).DEFAULT.transforms
    defaults = inspect.signature(VideoClassification).parameters
    mean = transforms.keywords.get("mean", defaults["mean"].default)
    std = transforms.keywords.get("std", defaults["std"].default)
    opt = parse_opts(["--root_path", "", "--model", arch])
    assert opt.input_norm == "torchvision"
    assert opt.mean == pytest.approx([value * 255 for value in mean])
    assert opt.std == pytest.approx([value * 255 for value in std])
    normalize = default_normalize(arch)
    assert normalize.mean.flatten().tolist() == pytest.approx(opt.mean)


@pytest.mark.parametrize("mode", list(MODE_FLAGS))
@pytest.mark.parametrize("arch", TORCHVISION)
def test_one_training_step_in_each_mode(arch, mode, tmp_path):
    size, duration = CLIPS.get(arch, (SIZE, DURATION))
    opt = parse_opts(["--root_path", "", "--model", arch, "--n_classes", str(CLASSES), "--sample_size", str(size),
                      "--sample_duration", str(duration), "--num_places_classes", str(PLACES), "--warm_up_epochs", "0",
                      "--learning_rate", "0.001", "--result_path", str(tmp_path), *MODE_FLAGS[mode]])
    torch.manual_seed(0)
    model = build_sdn_model(ModelConfig.from_options(opt))
    assert (model.place_mlp is not None) == (mode != "baseline") and (model.hm_mlp is not None) == (mode == "full")
    objective = build_objective(mode, opt)
    trainer = Trainer(model=model, objective=objective, schedule=OptimizerSchedule(model, OptimizerConfig.from_options(opt)),
                      config=TrainerConfig.from_options(opt), device=torch.device("cpu"),
                      prepare=input_preparation(default_normalize(arch), "cpu"))
    before = {name: value.detach().clone() for name, value in model.state_dict().items()}
    metrics = trainer.step(batches(objective.batch_keys, size, duration))
    assert metrics is not None and all(torch.isfinite(torch.tensor(value)) for value in metrics.values())
    assert set(metrics) >= set(objective.columns) - {"lr"}
    after = model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    classifier = f"{model.classifier_name}.weight"
    assert classifier in changed  # the action classifier stepped
    assert any(not name.startswith((model.classifier_name, "place_mlp", "hm_mlp")) for name in changed)  # and the backbone
    if mode != "baseline":
        assert "place_mlp.p_last_fc.weight" in changed
    if mode == "full":
        assert "hm_mlp.hm_last_fc.weight" in changed
