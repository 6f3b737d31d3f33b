"""Models: original state-dict layout, shortcut A detachment, GRL, head init, every family, param groups."""

import pytest
import torch
from torch import nn

from head_checks import assert_heads_reverse_their_gradients
from sdn.errors import SdnError
from sdn.models import (FAMILIES, GradientReversal, SDNOutput, adversarial_parameter_split, arch_name,
                        build_model, fine_tuning_parameters)
from sdn.models.resnet import ZeroPadShortcut

HEADS = dict(num_places_classes=365, num_place_hidden_layers=3, num_hm_hidden_layers=1)


def resnet18(**kwargs):
    torch.manual_seed(0)
    options = dict(n_classes=200, resnet_shortcut="A", **HEADS)
    options.update(kwargs)
    return build_model("resnet", 18, **options)


def tiny(model="resnet", depth=10, **kwargs):
    torch.manual_seed(0)
    options = dict(n_classes=5, sample_size=32, sample_duration=16, resnet_shortcut="A")
    options.update(kwargs)
    return build_model(model, depth, **options)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- the original state-dict layout


def _bn(prefix, channels):
    stats = [(f"{prefix}.{name}", (channels,)) for name in ("weight", "bias", "running_mean", "running_var")]
    return stats + [(f"{prefix}.num_batches_tracked", ())]


def _mlp_block(prefix, width=512):
    return [(f"{prefix}.fc.weight", (width, width)), (f"{prefix}.fc.bias", (width,))] + _bn(f"{prefix}.bn", width)


def reference_resnet18_layout(hm_blocks, place_blocks):
    """The key order and shapes of an original ResNet-18 SDN checkpoint (without the ``module.`` prefix)."""
    keys = [("conv1.weight", (64, 3, 7, 7, 7))] + _bn("bn1", 64)
    inplanes = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            cin = inplanes if block == 0 else planes
            keys += [(f"{p}.conv1.weight", (planes, cin, 3, 3, 3))] + _bn(f"{p}.bn1", planes)
            keys += [(f"{p}.conv2.weight", (planes, planes, 3, 3, 3))] + _bn(f"{p}.bn2", planes)
        inplanes = planes
    keys += [("fc.weight", (200, 512)), ("fc.bias", (200,))]
    if hm_blocks:
        for i in range(hm_blocks):
            keys += _mlp_block(f"hm_mlp.{i}")
        keys += [("hm_mlp.hm_last_fc.weight", (200, 512)), ("hm_mlp.hm_last_fc.bias", (200,))]
    if place_blocks:
        for i in range(place_blocks):
            keys += _mlp_block(f"place_mlp.{i}")
        keys += [("place_mlp.p_last_fc.weight", (365, 512)), ("place_mlp.p_last_fc.bias", (365,))]
    return keys


@pytest.mark.parametrize(
    "place, hm, entries, parameters",
    [(True, True, 136, 34_477_245), (True, False, 127, 34_110_965), (False, False, 104, 33_132_680)],
)
def test_resnet18_state_dict_equals_reference_table(place, hm, entries, parameters):
    model = resnet18(with_place_head=place, with_hm_head=hm)
    layout = [(key, tuple(value.shape)) for key, value in model.state_dict().items()]
    assert layout == reference_resnet18_layout(hm_blocks=1 if hm else 0, place_blocks=3 if place else 0)
    assert len(layout) == entries
    # The reference counts trainable parameters (model.parameters()), not BN running statistics.
    assert n_params(model) == parameters


def test_shortcut_b_adds_projection_keys():
    keys = {k: tuple(v.shape) for k, v in resnet18(resnet_shortcut="B").state_dict().items()}
    assert len(keys) == 104 + 3 * 6
    for stage, (cin, planes) in zip((2, 3, 4), ((64, 128), (128, 256), (256, 512))):
        assert keys[f"layer{stage}.0.downsample.0.weight"] == (planes, cin, 1, 1, 1)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            assert keys[f"layer{stage}.0.downsample.1.{stat}"] == (planes,)
    assert not any(k.startswith("layer1.") and "downsample" in k for k in keys)


def test_bottleneck_resnet50_layout_and_wide_heads():
    with torch.device("meta"):
        model = build_model("resnet", 50, n_classes=10, resnet_shortcut="B", with_place_head=True, with_hm_head=True,
                            num_places_classes=365)
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert keys["layer1.0.conv1.weight"] == (64, 64, 1, 1, 1)
    assert keys["layer1.0.conv3.weight"] == (256, 64, 1, 1, 1)
    assert keys["layer4.2.bn3.weight"] == (2048,)
    assert keys["layer1.0.downsample.0.weight"] == (256, 64, 1, 1, 1)
    assert model.feature_dim == 2048
    assert keys["fc.weight"] == (10, 2048)
    assert keys["hm_mlp.0.fc.weight"] == (2048, 2048)
    assert keys["hm_mlp.hm_last_fc.weight"] == (10, 2048)
    assert keys["place_mlp.p_last_fc.weight"] == (365, 2048)


# ----------------------------------------------------------------------------- shortcut A, GRL, init


def test_zero_pad_shortcut_values_and_detachment():
    x = torch.randn(2, 4, 5, 6, 6, requires_grad=True)
    out = ZeroPadShortcut(planes=8, stride=2)(x)
    assert out.shape == (2, 8, 3, 3, 3)
    assert torch.equal(out[:, :4], x.detach()[:, :, ::2, ::2, ::2])
    assert torch.count_nonzero(out[:, 4:]) == 0
    assert not out.requires_grad
    flowing = ZeroPadShortcut(planes=8, stride=2, detach=False)(x)
    flowing.sum().backward()
    expected = torch.zeros_like(x)
    expected[:, :, ::2, ::2, ::2] = 1
    assert torch.equal(x.grad, expected)
    last = x.detach().contiguous(memory_format=torch.channels_last_3d)
    padded = ZeroPadShortcut(planes=8, stride=2)(last)
    assert padded.is_contiguous(memory_format=torch.channels_last_3d)  # a channels-last network stays so
    assert torch.equal(padded, out)


@pytest.mark.parametrize("detach", [True, False])
def test_shortcut_a_gradient_in_the_network(detach):
    model = tiny(detach_shortcut_a=detach)
    block = model.layer2[0]
    assert isinstance(block.downsample, ZeroPadShortcut) and block.downsample.detach is detach
    # Silence the main path (bn2 -> 0), so the input gradient can only come through the shortcut.
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    x = torch.randn(2, 64, 4, 8, 8, requires_grad=True)
    block(x).sum().backward()
    if detach:
        assert torch.count_nonzero(x.grad) == 0
    else:
        expected = torch.zeros_like(x)
        expected[:, :, ::2, ::2, ::2] = (x.detach()[:, :, ::2, ::2, ::2] > 0).float()
        assert torch.equal(x.grad, expected)


def test_gradient_reversal_multiplies_by_exactly_minus_alpha():
    layer = GradientReversal(0.37)
    assert list(layer.parameters()) == [] and layer.state_dict() == {}
    x = torch.randn(3, 4, requires_grad=True)
    weights = torch.randn(3, 4)
    y = layer(x)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, weights * -0.37)


def test_heads_sit_behind_their_own_reversal():
    model = tiny(with_place_head=True, with_hm_head=True, num_places_classes=3, alpha=0.5, alpha_hm=2.0).eval()
    x = torch.randn(2, 3, 4, 16, 16)
    out = model(x)
    assert isinstance(out, SDNOutput)
    f = model.pooled_features(x).detach()
    assert torch.allclose(out.action, model.fc(f))
    assert torch.allclose(out.place, model.place_mlp(f))
    assert torch.allclose(out.hm, model.hm_mlp(f))
    assert_heads_reverse_their_gradients(model, f, alpha=0.5, alpha_hm=2.0)


def test_head_batchnorm_init():
    uniform = tiny(with_place_head=True, with_hm_head=True, num_places_classes=3, num_place_hidden_layers=2)
    ones = tiny(with_place_head=True, with_hm_head=True, num_places_classes=3, head_bn_init="ones")
    head_bns = [m for m in uniform.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(head_bns) == 3
    weights = torch.cat([bn.weight.detach() for bn in head_bns])
    assert weights.min() >= 0 and weights.max() < 1 and not torch.all(weights == 1)
    assert all(torch.count_nonzero(bn.bias) == 0 for bn in head_bns)
    assert all(torch.all(m.weight == 1) for m in ones.modules() if isinstance(m, nn.BatchNorm1d))
    # Backbone BatchNorm3d is always weight 1, bias 0, as the original initialised it.
    bn3d = [m for m in uniform.modules() if isinstance(m, nn.BatchNorm3d)]
    assert all(torch.all(m.weight == 1) and torch.count_nonzero(m.bias) == 0 for m in bn3d)
    with pytest.raises(SdnError, match="head_bn_init"):
        tiny(with_hm_head=True, head_bn_init="zeros")


# ----------------------------------------------------------------------------- every family


@pytest.mark.parametrize("family, depth", [(f, d) for f, family in FAMILIES.items() for d in family.depths])
def test_every_family_and_depth_builds_with_heads(family, depth):
    with torch.device("meta"):
        model = build_model(family, depth, n_classes=7, sample_size=32, sample_duration=16, with_place_head=True,
                            with_hm_head=True, num_places_classes=3)
    classifier = getattr(model, model.classifier_name)
    assert classifier.in_features == model.feature_dim
    assert model.hm_mlp.hm_last_fc.out_features == 7
    assert model.place_mlp.p_last_fc.out_features == 3
    keys = list(model.state_dict())
    head_start = keys.index("hm_mlp.0.fc.weight")
    assert keys[head_start - 2:head_start] == [f"{model.classifier_name}.weight", f"{model.classifier_name}.bias"]
    assert keys[-2:] == ["place_mlp.p_last_fc.weight", "place_mlp.p_last_fc.bias"]


@pytest.mark.parametrize("family, dim", [("wideresnet", 2048), ("resnext", 2048), ("densenet", 1024)])
def test_feature_widths(family, dim):
    with torch.device("meta"):
        model = build_model(family, FAMILIES[family].depths[0], n_classes=7)
    assert model.feature_dim == dim
    with torch.device("meta"):
        wide = build_model("wideresnet", 50, n_classes=7, wide_resnet_k=3)
    assert wide.feature_dim == 512 * 3 * 2


SMALLEST = [("resnet", 10, {}), ("preresnet", 18, {}), ("wideresnet", 50, {"wide_resnet_k": 1}),
            ("resnext", 50, {"resnext_cardinality": 8}), ("densenet", 121, {})]


@pytest.mark.parametrize("family, depth, extra", SMALLEST)
@pytest.mark.parametrize("heads", [True, False])
def test_forward_backward(family, depth, extra, heads):
    model = tiny(family, depth, resnet_shortcut="B", with_place_head=heads, with_hm_head=heads,
                 num_places_classes=3, **extra)
    t, s = (16, 32) if family == "densenet" else (4, 16)
    x = torch.randn(2, 3, t, s, s)
    out = model(x)
    assert out.action.shape == (2, 5)
    assert model.pooled_features(x).shape == (2, model.feature_dim)
    assert model.feature_maps(x).shape[:2] == (2, model.feature_dim)
    if heads:
        assert out.place.shape == (2, 3) and out.hm.shape == (2, 5)
        loss = out.action.sum() + out.place.sum() + out.hm.sum()
    else:
        assert out.place is None and out.hm is None
        loss = out.action.sum()
    loss.backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv3d))
    assert first_conv.weight.grad is not None and torch.count_nonzero(first_conv.weight.grad) > 0


def test_densenet_original_key_names_round_trip():
    model = tiny("densenet", 121, with_hm_head=True)
    state = model.state_dict()
    keys = list(state)
    assert keys[:7] == ["features.conv0.weight", "features.norm0.weight", "features.norm0.bias",
                        "features.norm0.running_mean", "features.norm0.running_var",
                        "features.norm0.num_batches_tracked", "features.denseblock1.denselayer1.norm.1.weight"]
    prefix = "features.denseblock1.denselayer1."
    layer = [k[len(prefix):] for k in keys if k.startswith(prefix)]
    assert layer == ["norm.1.weight", "norm.1.bias", "norm.1.running_mean", "norm.1.running_var",
                     "norm.1.num_batches_tracked", "conv.1.weight", "norm.2.weight", "norm.2.bias",
                     "norm.2.running_mean", "norm.2.running_var", "norm.2.num_batches_tracked", "conv.2.weight"]
    assert tuple(state["features.denseblock1.denselayer2.conv.1.weight"].shape) == (128, 96, 1, 1, 1)
    assert tuple(state["features.denseblock1.denselayer1.conv.2.weight"].shape) == (32, 128, 3, 3, 3)
    assert tuple(state["features.transition1.conv.weight"].shape) == (128, 256, 1, 1, 1)
    assert "features.transition1.norm.weight" in state
    assert tuple(state["features.norm5.weight"].shape) == (1024,)
    assert keys.index("classifier.weight") < keys.index("hm_mlp.0.fc.weight")
    assert not any(".norm1." in k or ".conv1." in k for k in keys)

    other = tiny("densenet", 121, with_hm_head=True)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    assert other.load_state_dict(state).missing_keys == []
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), state.values()))
    # The undotted spelling (our module names, and the current 3D-ResNets release) loads too.
    undotted = {k.replace("norm.1", "norm1").replace("conv.2", "conv2"): v for k, v in state.items()}
    result = tiny("densenet", 121, with_hm_head=True).load_state_dict(undotted)
    assert result.missing_keys == [] and result.unexpected_keys == []


def test_densenet_rejects_clips_too_small():
    with pytest.raises(SdnError, match="sample_duration"):
        build_model("densenet", 121, n_classes=5, sample_size=32, sample_duration=8)


def test_adaptive_pool_equals_original_fixed_kernel():
    model = tiny("resnet", 18).eval()
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        maps = model.feature_maps(x)
        assert maps.shape == (1, 512, 1, 4, 4)
        original = nn.AvgPool3d((1, 4, 4), stride=1)(maps).view(1, -1)
        pooled = model.avgpool(maps).flatten(1)
        assert torch.allclose(pooled, original, rtol=1e-6, atol=1e-7)
        assert torch.allclose(model.fc(pooled), model.fc(original), rtol=1e-5, atol=1e-6)


def test_replace_classifier_keeps_order_and_hm_size():
    model = tiny(with_hm_head=True).double()
    before = list(model.state_dict())
    model.replace_classifier(9)
    assert model.fc.out_features == 9 and model.fc.in_features == model.feature_dim
    assert model.fc.weight.dtype == torch.float64
    assert list(model.state_dict()) == before
    assert model.hm_mlp.hm_last_fc.out_features == 5
    assert model(torch.randn(2, 3, 4, 16, 16, dtype=torch.float64)).action.shape == (2, 9)


def test_factory_errors_and_arch_name():
    assert arch_name("resnet", 18) == "resnet-18"
    with pytest.raises(SdnError, match="resnet, preresnet, wideresnet, resnext, densenet.*vgg"):
        build_model("vgg", 16, n_classes=5)
    with pytest.raises(SdnError, match="10, 18, 34, 50, 101, 152, 200"):
        build_model("resnet", 20, n_classes=5)
    with pytest.raises(SdnError, match="num_places_classes"):
        build_model("resnet", 10, n_classes=5, with_place_head=True, num_places_classes=0)


# ----------------------------------------------------------------------------- parameter groups (fine-tuning lists)


def _names(model, params):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def _prefixes(names):
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize(
    "heads, flags, pretrained, new",
    [
        # place-adv README: ft_begin_index 0, fc replaced, no hm head
        (dict(with_place_head=True), dict(not_replace_last_fc=False, has_hm_head=False, slower_place_mlp=False,
                                          slower_hm_mlp=False),
         {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}, {"fc", "place_mlp"}),
        # full README: --not_replace_last_fc --slower_place_mlp, hm head
        (dict(with_place_head=True, with_hm_head=True), dict(not_replace_last_fc=True, has_hm_head=True,
                                                             slower_place_mlp=True, slower_hm_mlp=False),
         {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc", "place_mlp"}, {"hm_mlp"}),
        # full with defaults
        (dict(with_place_head=True, with_hm_head=True), dict(not_replace_last_fc=False, has_hm_head=True,
                                                             slower_place_mlp=False, slower_hm_mlp=False),
         {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}, {"fc", "hm_mlp", "place_mlp"}),
    ],
)
@pytest.mark.parametrize("ft_begin_index", [0, 3])
def test_adversarial_split_readme_settings(heads, flags, pretrained, new, ft_begin_index):
    model = tiny(num_places_classes=3, num_place_hidden_layers=2, **heads)
    old_params, new_params = adversarial_parameter_split(model, ft_begin_index, **flags)
    assert len(old_params) + len(new_params) == len(list(model.parameters()))
    new_names = _names(model, new_params)
    assert _prefixes(_names(model, old_params)) == pretrained
    assert _prefixes(new_names) == new
    # Whole heads move together (no substring split inside a head) in these settings.
    for head in new - {"fc"}:
        assert {n for n, _ in model.named_parameters() if n.startswith(head + ".")} <= new_names


def test_adversarial_split_prints_decisions_and_freezes_nothing(capsys):
    model = tiny(with_place_head=True, num_places_classes=3)
    adversarial_parameter_split(model, 2, not_replace_last_fc=False, has_hm_head=False, slower_place_mlp=False,
                                slower_hm_mlp=False, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert "frozen:layer1.0.conv1.weight" in lines
    assert "finetune params:layer2.0.conv1.weight" in lines
    assert "finetune params:conv1.weight" in lines
    assert "new params:fc.weight" in lines and "new params:place_mlp.0.bn.weight" in lines
    adversarial_parameter_split(model, 2, not_replace_last_fc=False, has_hm_head=False, slower_place_mlp=False,
                                slower_hm_mlp=False)
    assert capsys.readouterr().out == ""


def _trained(model, groups):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(g["params"])]: "lr" not in g for g in groups}


def test_fine_tuning_parameters_and_substring_pitfalls():
    model = tiny(with_place_head=True, with_hm_head=True, num_places_classes=3)
    everything = fine_tuning_parameters(model, 0)
    assert [id(p) for p in everything] == [id(p) for p in model.parameters()]

    groups = fine_tuning_parameters(model, 3)
    assert len(groups) == len(everything)
    assert all(g.get("lr", 0.0) == 0.0 for g in groups)
    trained = _trained(model, groups)
    assert not trained["conv1.weight"] and not trained["bn1.weight"]
    assert not trained["layer1.0.conv1.weight"] and not trained["layer2.0.bn2.bias"]
    assert trained["layer3.0.conv1.weight"] and trained["layer4.0.bn2.weight"] and trained["fc.bias"]
    # Head Linear layers contain "fc" and train; head BatchNorm layers do not and stay frozen.
    assert trained["hm_mlp.0.fc.weight"] and trained["hm_mlp.hm_last_fc.weight"]
    assert trained["place_mlp.0.fc.bias"] and trained["place_mlp.p_last_fc.weight"]
    assert not trained["hm_mlp.0.bn.weight"] and not trained["place_mlp.0.bn.bias"]

    stem = _trained(model, fine_tuning_parameters(model, 1))
    assert not stem["conv1.weight"] and not stem["bn1.bias"] and stem["layer1.0.conv1.weight"]

    wrapped = _trained(nn.DataParallel(model), fine_tuning_parameters(nn.DataParallel(model), 3))
    assert wrapped == {"module." + name: value for name, value in trained.items()}


def test_fine_tuning_parameters_densenet():
    with torch.device("meta"):
        model = build_model("densenet", 121, n_classes=5)
    trained = _trained(model, fine_tuning_parameters(model, 2))
    assert not trained["features.conv0.weight"] and not trained["features.norm0.weight"]
    assert not trained["features.denseblock1.denselayer1.conv1.weight"]
    assert not trained["features.transition1.conv.weight"]
    assert trained["features.denseblock2.denselayer1.conv1.weight"] and trained["features.transition2.norm.bias"]
    assert trained["features.denseblock4.denselayer16.conv2.weight"]
    assert trained["features.norm5.weight"] and trained["classifier.weight"]
    old, new = adversarial_parameter_split(model, 0, not_replace_last_fc=False, has_hm_head=False,
                                           slower_place_mlp=False, slower_hm_mlp=False)
    assert _names(model, new) == {"classifier.weight", "classifier.bias"}
    assert len(old) == len(list(model.parameters())) - 2
