"""The original train.py options: names, defaults, derived values, opts.json order, mode selection."""

import json

import pytest

from sdn import config
from sdn.errors import SdnError


def parse(*argv):
    return config.parse_opts(["--root_path", "", *argv])


def test_defaults_match_the_original():
    opt = parse()
    assert opt.video_path == "video_kinetics_jpg" and opt.annotation_path == "kinetics.json"
    assert opt.mask_ratio == 0.5 and opt.n_classes == 400 and opt.n_finetune_classes == 400
    assert opt.learning_rate == 0.1 and opt.new_layer_lr == 0.1 and opt.warm_up_epochs == 10
    assert opt.dampening == 0.9 and opt.weight_decay == 1e-3 and opt.lr_patience == 10
    assert opt.batch_size == 128 and opt.val_batch_size == 16 and opt.n_epochs == 200
    assert opt.num_places_classes == 0 and opt.resnet_shortcut == "B" and opt.manual_seed == 1
    assert opt.is_mask_adv is True  # store_false: the default builds the human-mask head
    assert config.build_parser().get_default("root_path") == "/root/data/ActivityNet"


def test_scales_are_the_running_product():
    assert parse().scales == (1.0, 0.84089641525, 0.7071067811803005, 0.5946035574934808, 0.4999999999911653)
    assert int(240 * parse().scales[-1]) == 119


def test_root_path_joining_as_the_original(tmp_path):
    opt = config.parse_opts(["--root_path", str(tmp_path), "--video_path", "jpg", "--result_path", "/abs/out",
                             "--pretrain_path", "p.pth", "--place_pred_path", "places"])
    assert opt.video_path == str(tmp_path / "jpg")
    assert opt.result_path == "/abs/out"  # absolute paths pass through os.path.join
    assert opt.pretrain_path == str(tmp_path / "p.pth")
    assert opt.resume_path == ""  # empty paths are not joined
    assert opt.place_pred_path == "places"  # never joined


def test_options_are_frozen_typed_and_resolve_leaves_the_parsed_flags_alone():
    import dataclasses

    namespace = config.build_parser().parse_args(["--root_path", "/data", "--video_path", "jpg"])
    opt = config.resolve(namespace)
    assert namespace.video_path == "jpg" and not hasattr(namespace, "arch")  # the parsed flags are not changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        opt.video_path = "other"
    changed = opt.replace(dataset="ucf101")
    assert changed.dataset == "ucf101" and opt.dataset == "kinetics"
    types = {field.name: field.type for field in dataclasses.fields(config.Options)}
    assert types["n_classes"] is int and types["learning_rate"] is float and types["is_mask_adv"] is bool
    assert types["video_path"] is str and types["scales"] is tuple
    keys = list(config.opts_dict(opt))
    assert keys[keys.index("scales"):keys.index("scales") + 5] == ["scales", "arch", "mean", "std", "mask_loss"]
    assert isinstance(config.opts_dict(opt)["mean"], list)  # opts.json keeps the original's lists


def test_input_norm_follows_the_backbone_and_torchvision_weights_are_not_root_joined():
    original = parse()
    assert original.input_norm == "original" and original.mean == pytest.approx([114.7748, 107.7354, 99.4750])
    tv = config.parse_opts(["--root_path", "/data", "--model", "r3d_18", "--pretrain_path", "torchvision:DEFAULT"])
    assert tv.input_norm == "torchvision" and tv.arch == "r3d_18"
    assert tv.mean == pytest.approx([0.43216 * 255, 0.394666 * 255, 0.37645 * 255])
    assert tv.std == pytest.approx([0.22803 * 255, 0.22145 * 255, 0.216989 * 255])
    assert tv.pretrain_path == "torchvision:DEFAULT"
    forced = parse("--model", "r3d_18", "--input_norm", "original")
    assert forced.input_norm == "original" and forced.mean == original.mean


def test_arch_mean_std():
    opt = parse("--model", "resnext", "--model_depth", "50", "--norm_value", "255", "--mean_dataset", "kinetics")
    assert opt.arch == "resnext-50"
    assert opt.mean == pytest.approx([0.433869, 0.404552, 0.377609], abs=1e-6)
    assert opt.std == pytest.approx([0.151988, 0.148559, 0.156976], abs=1e-6)


@pytest.mark.parametrize("flags, mode", [
    ([], None),
    (["--is_mask_adv"], "baseline"),
    (["--is_place_adv", "--is_mask_adv", "--num_places_classes", "5"], "place_adv"),
    (["--is_place_adv", "--num_places_classes", "5", "--is_mask_entropy"], "full"),
])
def test_mode_selection(flags, mode):
    assert config.training_mode(parse(*flags)) == mode


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "imagenet"], "--dataset 'imagenet'"),
    (["--model", "vgg"], "vgg"),
    (["--train_crop", "zoom"], "--train_crop"),
    (["--test_subset", "train"], "--test_subset"),
    (["--mask_ratio", "1.5"], "--mask_ratio"),
    (["--is_place_adv", "--is_mask_adv"], "--num_places_classes"),
    (["--is_place_adv", "--num_places_classes", "3"], "needs a human-mask loss"),
])
def test_bad_combinations_are_clear_errors(flags, message):
    with pytest.raises(SdnError, match=message):
        parse(*flags)


def test_mask_cross_entropy_selects_the_variant():
    opt = parse("--is_place_adv", "--num_places_classes", "3", "--is_mask_cross_entropy")
    assert opt.mask_loss == "cross_entropy"


def test_opts_json_keeps_the_original_order(tmp_path):
    opt = parse("--is_mask_adv")
    path = tmp_path / "opts.json"
    config.save_opts(opt, str(path))
    keys = list(json.loads(path.read_text()))
    original = [a.dest for a in config.build_parser()._actions if a.dest not in ("help",)]
    n_original = original.index("manual_seed") + 1
    assert keys[:n_original] == original[:n_original]
    assert keys[n_original:n_original + 4] == ["scales", "arch", "mean", "std"]
    assert "mask_loss" in keys[n_original + 4:]
    assert path.read_text().startswith('{"root_path": "", "video_path"')  # default json.dump formatting
