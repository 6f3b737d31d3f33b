"""torchvision's video models as sdn backbones, and loading pretrained weights into them.

Every model is checked against torchvision's own: weights saved in torchvision's key layout (by
torchvision's constructor, 400 classes, the same clip size) must load by name, and with the same
weights both must give the same logits. Clips are small (32x32 pixels, 6 frames) so the file runs
on a laptop CPU; the checks at torchvision's pretrained size (224x224, 16 frames) are marked slow.
Each model is built once (per arch, its tests run together) and copied for each test.
"""

from __future__ import annotations

import copy
import os
import re

import pytest
import torch
import torchvision
from torch import nn

from head_checks import assert_heads_reverse_their_gradients
from sdn.errors import SdnError
from sdn.models import FAMILIES, SDNOutput, adversarial_parameter_split, build_model, fine_tuning_parameters
from sdn.models.densenet import DENSENET_BLOCKS
from sdn.models.mvit import torchvision_mvit
from sdn.models.pre_act_resnet import PRE_ACT_RESNET_LAYERS
from sdn.models.pretrained import apply_pretrained_weights
from sdn.models.resnet import RESNET_LAYERS
from sdn.models.resnext import RESNEXT_LAYERS
from sdn.models.wide_resnet import WIDE_RESNET_LAYERS
from sdn.viz.cam import class_activation_maps, grad_cam

SIZE, DURATION, CLASSES, PLACES = 32, 6, 5, 3
FAST = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t"]
BIG = ["swin3d_s", "swin3d_b"]  # 50M and 88M parameters: seconds just to build
ARCHS = FAST + [pytest.param(arch, marks=pytest.mark.slow) for arch in BIG]
HEADS = dict(with_place_head=True, with_hm_head=True, num_places_classes=PLACES, alpha=0.5, alpha_hm=2.0)


def torchvision_model(arch: str, size: int = SIZE, duration: int = DURATION) -> nn.Module:
    """torchvision's own model (400 classes) for clips of that size."""
    if arch.startswith("mvit"):
        return torchvision_mvit(arch, size, duration)
    return torchvision.models.get_model(arch, weights=None)


class Built:
    """One arch's sdn model (with both heads, CLASSES classes) and a torchvision-layout weights file."""

    def __init__(self, arch: str, folder):
        torch.manual_seed(0)
        self.arch = arch
        self.model = build_model(arch, n_classes=CLASSES, sample_size=SIZE, sample_duration=DURATION, **HEADS)
        self.reference = torchvision_model(arch).eval()
        self.file = str(folder / f"{arch}.pth")
        self.state = self.reference.state_dict()
        torch.save(self.state, self.file)

    def fresh(self) -> nn.Module:
        return copy.deepcopy(self.model)


@pytest.fixture(scope="module", params=ARCHS)
def case(request, tmp_path_factory) -> Built:
    """Built once per arch; pytest runs an arch's tests together and drops it before the next."""
    return Built(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def r3d(tmp_path_factory) -> Built:
    return Built("r3d_18", tmp_path_factory.mktemp("r3d"))


@pytest.fixture(scope="module")
def other_file(tmp_path_factory) -> dict[str, str]:
    """Small torchvision files of other models, for loading the wrong weights."""
    folder = tmp_path_factory.mktemp("other")
    files = {}
    for arch in ("s3d", "mc3_18"):
        files[arch] = str(folder / f"{arch}.pth")
        torch.save(torchvision.models.get_model(arch, weights=None).state_dict(), files[arch])
    return files


@pytest.fixture()
def clips():
    return torch.randn(2, 3, DURATION, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def backbone_keys(model: nn.Module) -> list[str]:
    heads = (model.classifier_name, "hm_mlp", "place_mlp")
    return [key for key in model.state_dict() if key.split(".", 1)[0] not in heads]


def load(model: nn.Module, path: str, arch: str):
    return apply_pretrained_weights(model, path, arch=arch)


# ------------------------------------------------------------------------------------- the contract


def test_forward_backward_and_reversal(case, clips):
    model = case.fresh().train()
    out = model(clips)
    assert isinstance(out, SDNOutput)
    assert out.action.shape == (2, CLASSES) and out.hm.shape == (2, CLASSES) and out.place.shape == (2, PLACES)
    assert isinstance(model.get_classifier(), nn.Linear)
    assert model.get_classifier().in_features == model.feature_dim
    keys = list(model.state_dict())
    assert keys[-2:] == ["place_mlp.p_last_fc.weight", "place_mlp.p_last_fc.bias"]
    assert keys[keys.index("hm_mlp.0.fc.weight") - 1] == f"{model.classifier_name}.bias"
    (out.action.sum() + out.place.sum() + out.hm.sum()).backward()
    first = next(iter(model.parameters()))
    assert first.grad is not None and torch.count_nonzero(first.grad) > 0
    for head in (model.get_classifier(), model.hm_mlp, model.place_mlp):
        assert all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in head.parameters())
    with torch.no_grad():
        f = model.eval().pooled_features(clips)
    assert f.shape == (2, model.feature_dim)
    assert_heads_reverse_their_gradients(model, f, alpha=0.5, alpha_hm=2.0)


def test_torchvision_layout_loads_and_logits_equal_torchvision(case, clips, capsys):
    model = case.fresh()
    report = load(model, case.file, case.arch)
    state = model.state_dict()
    for key in backbone_keys(model):
        assert torch.equal(state[key], case.state[key]), key
    classifier = model.classifier_name
    skipped = sorted(entry.split()[0] for entry in report.shape_mismatch)
    assert skipped == [f"{classifier}.bias", f"{classifier}.weight"]  # 400 Kinetics classes vs CLASSES
    assert "skipped (shape differs)" in capsys.readouterr().out

    model.replace_classifier(400)
    load(model, case.file, case.arch)
    with torch.no_grad():
        ours = model.eval()(clips).action
        if case.arch == "s3d":  # torchvision's 2x7x7 window exceeds this map: check the classifier mapping
            features = case.reference.features(clips).mean(dim=(2, 3, 4), keepdim=True)
            theirs = case.reference.classifier(features).flatten(1)
        else:  # nothing else depends on the clip size (MViT's reference is built for it)
            theirs = case.reference(clips)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["s3d", "mvit_v1_b", "mvit_v2_s"])
def test_logits_equal_torchvision_at_pretrained_size(tmp_path, arch):
    """At 224x224x16 S3D's last map is 2x7x7 and MViT's reference is torchvision's own constructor's."""
    torch.manual_seed(0)
    reference = torchvision.models.get_model(arch, weights=None).eval()
    path = str(tmp_path / "weights.pth")
    torch.save(reference.state_dict(), path)
    model = build_model(arch, n_classes=400, sample_size=224, sample_duration=16)
    load(model, path, arch)
    x = torch.randn(1, 3, 16, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x).action, reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_mvit_at_224x16_has_torchvision_shapes(arch):
    with torch.device("meta"):
        ours = build_model(arch, n_classes=400, sample_size=224, sample_duration=16).state_dict()
        theirs = torchvision.models.get_model(arch, weights=None).state_dict()
    theirs = {key.replace("head.1.", "head."): value for key, value in theirs.items()}
    heads = ("hm_mlp", "place_mlp")
    assert {k: v.shape for k, v in ours.items() if not k.startswith(heads)} == {k: v.shape for k, v in theirs.items()}


# ------------------------------------------------------------------------------- pretrained weights


def test_wrong_weights_are_refused(case, other_file, tmp_path):
    other = other_file["mc3_18" if case.arch == "s3d" else "s3d"]
    with pytest.raises(SdnError, match=rf"{re.escape(other)}: not {case.arch} weights for this model \(missing"):
        load(case.fresh(), other, case.arch)
    truncated = dict(case.state)
    dropped = [key for key in backbone_keys(case.model) if not key.endswith("num_batches_tracked")][-1]
    del truncated[dropped]
    path = str(tmp_path / "truncated.pth")
    torch.save(truncated, path)
    with pytest.raises(SdnError, match=rf"missing {re.escape(dropped)}"):
        load(case.fresh(), path, case.arch)


def test_torchvision_spec_reads_the_hub_cache_only(case, tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # restored after the test
    torch.hub.set_dir(str(hub))
    url = torchvision.models.get_model_weights(case.arch).DEFAULT.url
    expected = os.path.join(str(hub), "checkpoints", url.rsplit("/", 1)[1])
    with pytest.raises(SdnError, match=rf"{re.escape(expected)} not found and sdn does not download; "
                                       rf"fetch {re.escape(url)}"):
        load(case.fresh(), "torchvision:DEFAULT", case.arch)
    os.makedirs(os.path.dirname(expected))
    os.link(case.file, expected)
    model = case.fresh()
    load(model, "torchvision:KINETICS400_V1", case.arch)
    key = backbone_keys(model)[0]
    assert torch.equal(model.state_dict()[key], case.state[key])


def test_mvit_weights_of_another_clip_size_say_which_size(tmp_path):
    path = str(tmp_path / "mvit_64.pth")
    torch.save(torchvision_mvit("mvit_v1_b", 64, DURATION).state_dict(), path)
    model = build_model("mvit_v1_b", sample_size=SIZE, sample_duration=DURATION)
    with pytest.raises(SdnError, match=r"shape differs for pos_encoding\.spatial_pos .*"
                                       r"fit only --sample_size 224 --sample_duration 16"):
        load(model, path, "mvit_v1_b")


def test_torchvision_spec_and_file_errors(r3d, tmp_path):
    with torch.device("meta"):
        resnet = build_model("resnet", 10)
    with pytest.raises(SdnError, match="torchvision weights exist only for torchvision's video models"):
        apply_pretrained_weights(resnet, "torchvision:DEFAULT", arch="resnet-10")
    with pytest.raises(SdnError, match="r3d_18 has weights KINETICS400_V1, DEFAULT"):
        load(r3d.fresh(), "torchvision:IMAGENET1K_V1", "r3d_18")
    with pytest.raises(SdnError, match="checkpoint file not found"):
        load(r3d.fresh(), str(tmp_path / "absent.pth"), "r3d_18")
    damaged = tmp_path / "damaged.pth"
    with open(r3d.file, "rb") as handle:
        damaged.write_bytes(handle.read(5000))
    with pytest.raises(SdnError, match="not a readable checkpoint"):
        load(r3d.fresh(), str(damaged), "r3d_18")


def test_sdn_checkpoints_keep_the_original_rule(r3d, tmp_path):
    source = r3d.fresh()
    with torch.no_grad():
        for param in source.parameters():
            param.add_(1.0)
    path = str(tmp_path / "sdn.pth")
    torch.save({"arch": "r3d_18", "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = r3d.fresh()
    report = load(model, path, "r3d_18")
    assert not report.shape_mismatch and not report.not_in_checkpoint
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())
    with pytest.raises(SdnError, match="checkpoint is a 'r3d_18' model but the options build 'mc3_18'"):
        apply_pretrained_weights(r3d.fresh(), path, arch="mc3_18")


# ------------------------------------------------------------------------------------- maps, groups


def test_cam_and_grad_cam(case, clips):
    model = case.fresh()
    if model.cam_exact:
        assert case.arch not in ("mvit_v1_b", "mvit_v2_s")
        assert class_activation_maps(model, clips).maps.shape == (2, DURATION, SIZE, SIZE)
    else:
        with pytest.raises(SdnError, match="use --method gradcam"):
            class_activation_maps(model, clips)
    grad = grad_cam(model, clips, classes=1)
    assert grad.maps.shape == (2, DURATION, SIZE, SIZE) and torch.isfinite(grad.maps).all()
    if not model.cam_exact:  # Grad-CAM differentiates the real logits through the map it explains
        recorded = []
        layer = dict(model.named_modules())[model.gradcam_layer]
        handle = layer.register_forward_hook(lambda _m, _i, output: recorded.append(output))
        try:
            logits = model.eval()(clips).action
        finally:
            handle.remove()
        torch.testing.assert_close(grad.probabilities, logits.detach().softmax(dim=1))
        (gradient,) = torch.autograd.grad(logits[:, 1].sum(), recorded[0])
        assert recorded[0].dim() == 5 and torch.count_nonzero(gradient) > 0


def _stage_of(name: str, model: nn.Module) -> int | None:
    for stage in range(1, 5):
        if any(pattern.format(stage) in name for pattern in model.stage_patterns):
            return stage
    return None


def test_parameter_groups(case):
    model = case.model
    names = [name for name, _ in model.named_parameters()]
    stages = {name: _stage_of(name, model) for name in names}
    assert set(stages.values()) >= {1, 2, 3, 4}, "every stage has parameters"
    assert stages[names[0]] is None, "the first parameter belongs to the stem"
    groups = fine_tuning_parameters(model, 3)
    trained = {name for name, group in zip(names, groups) if "lr" not in group}
    classifier = model.classifier_name
    assert {n for n in names if n.startswith(classifier + ".")} <= trained
    assert {n for n in names if stages[n] in (3, 4)} <= trained
    assert names[0] not in trained
    # Substring matching: a tail name (Swin's final "norm.") also catches same-named modules in early
    # stages (Swin's patch-merging LayerNorms); nothing else of stages 1-2 trains.
    leaked = {n for n in names if stages[n] in (1, 2)} & trained
    assert leaked == {n for n in leaked if any(tail in n for tail in model.tail_names)}
    pretrained, new = adversarial_parameter_split(model, 3, not_replace_last_fc=False, has_hm_head=True,
                                                  slower_place_mlp=False, slower_hm_mlp=False)
    head_names = {n for n in names if n.split(".", 1)[0] in (classifier, "hm_mlp", "place_mlp")}
    by_id = {id(p): n for n, p in model.named_parameters()}
    assert {by_id[id(p)] for p in new} == head_names
    assert len(pretrained) + len(new) == len(names)


def test_clip_size_errors():
    for size in (30, 28):  # 28 is 7 patches: the third pooling would leave none
        with pytest.raises(SdnError, match=rf"mvit_v2_s needs --sample_size to be a multiple of 4 and at least 32 "
                                           rf"\(got {size}\)"):
            build_model("mvit_v2_s", sample_size=size, sample_duration=4)
    with pytest.raises(SdnError, match="--sample_duration to be a multiple of 2"):
        build_model("mvit_v1_b", sample_size=32, sample_duration=5)
    with pytest.raises(SdnError, match="s3d needs --sample_size >= 17 and --sample_duration >= 5"):
        build_model("s3d", sample_size=16, sample_duration=8)


def test_registry_depths_equal_the_implementation_tables():
    tables = {"resnet": RESNET_LAYERS, "preresnet": PRE_ACT_RESNET_LAYERS, "wideresnet": WIDE_RESNET_LAYERS,
              "resnext": RESNEXT_LAYERS, "densenet": DENSENET_BLOCKS}
    for name, table in tables.items():
        assert FAMILIES[name].depths == tuple(sorted(table)), name
    torchvision_names = set(torchvision.models.list_models(module=torchvision.models.video))
    for name, family in FAMILIES.items():
        if name not in tables:
            assert family.depths == () and family.input_norm == "torchvision" and name in torchvision_names
            assert family.arch(18) == name
