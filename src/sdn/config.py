"""The run configuration: every option of the original ``train.py``, plus sdn's own.

The original options keep their names, types, defaults and actions (including the inverted
``--is_mask_adv``, a store_false flag) so that every command of the original README runs
unchanged. ``resolve`` then derives what the original derived at start-up (root-path joining,
the multi-scale list, ``arch``, mean/std), validates the combination once and returns the options
as a frozen :class:`Options` (typed fields, one per option; nothing downstream can change them,
a variant is ``options.replace(...)``), and ``save_opts`` writes ``opts.json`` in the original
format.

sdn's own options come after the original ones in ``opts.json``; each one that changes numbers
defaults to the original behaviour.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any, Sequence

from sdn.data.mean_std import get_mean, get_std, get_torchvision_mean_std
from sdn.errors import SdnError
from sdn.io import atomic_write_json
from sdn.methods import CHOICES as DEBIAS_CHOICES
from sdn.methods import METHODS
from sdn.models.registry import FAMILIES, INPUT_NORMS, TORCHVISION_WEIGHTS, arch_name, family_of

DATASETS = (
    "kinetics",
    "kinetics_adv",
    "kinetics_bkgmsk",
    "kinetics_adv_msk",
    "activitynet",
    "ucf101",
    "hmdb51",
    "diving48",
)
MASK_LOSSES = ("original", "paper", "cross_entropy")

def _add_original_options(parser: argparse.ArgumentParser) -> None:
    """The options of the original libs/opts.py, in its definition order."""
    add = parser.add_argument
    add("--root_path", default="/root/data/ActivityNet", type=str, help="Root directory path of data")
    add("--video_path", default="video_kinetics_jpg", type=str, help="Directory path of videos (frame folders or video files)")
    add("--annotation_path", default="kinetics.json", type=str, help="Annotation file path (Diving48: annotation directory)")
    add("--prediction_path", default="kinetics.json", type=str, help="Prediction file path (evaluation only)")
    add("--result_path", default="results", type=str, help="Result directory path")
    add("--place_pred_path", default="place", type=str, help="Scene pseudo-label directory, full path (not root-joined)")
    add("--human_dets_path", default="dets", type=str, help="Human detection directory, full path (not root-joined)")
    add("--mask_ratio", default=0.5, type=float, help="Per-clip probability of applying the human (or background) mask")
    add("--dataset", default="kinetics", type=str, help="Used dataset (" + " | ".join(DATASETS) + ")")
    add("--n_classes", default=400, type=int, help="Number of classes (model output at construction)")
    add("--n_finetune_classes", default=400, type=int, help="Number of classes of the replaced fc when fine-tuning")
    add("--sample_size", default=112, type=int, help="Height and width of inputs")
    add("--sample_duration", default=16, type=int, help="Temporal duration of inputs")
    add("--initial_scale", default=1.0, type=float, help="Initial scale for multiscale cropping")
    add("--n_scales", default=5, type=int, help="Number of scales for multiscale cropping")
    add("--scale_step", default=0.84089641525, type=float, help="Scale step for multiscale cropping")
    add("--train_crop", default="corner", type=str, help="Spatial cropping method in training (random | corner | center)")
    add("--learning_rate", default=0.1, type=float, help="Initial learning rate")
    add("--new_layer_lr", default=0.1, type=float, help="Learning rate of new layers (warm-up optimizer only)")
    add("--warm_up_epochs", default=10, type=int, help="Epoch i uses the warm-up optimizer iff i < warm_up_epochs")
    add("--momentum", default=0.9, type=float, help="Momentum")
    add("--dampening", default=0.9, type=float, help="Dampening of SGD")
    add("--weight_decay", default=1e-3, type=float, help="Weight decay")
    add("--mean_dataset", default="activitynet", type=str, help="Dataset for mean values (activitynet | kinetics)")
    add("--no_mean_norm", action="store_true", help="If true, inputs are not normalized by mean.")
    parser.set_defaults(no_mean_norm=False)
    add("--std_norm", action="store_true", help="If true, inputs are normalized by standard deviation.")
    parser.set_defaults(std_norm=False)
    add("--nesterov", action="store_true", help="Nesterov momentum")
    parser.set_defaults(nesterov=False)
    add("--optimizer", default="sgd", type=str, help="Currently only support SGD (unused, as in the original)")
    add("--lr_patience", default=10, type=int, help="Patience of LR scheduler (ReduceLROnPlateau)")
    add("--batch_size", default=128, type=int, help="Batch size")
    add("--val_batch_size", default=16, type=int, help="Validation and test batch size")
    add("--n_epochs", default=200, type=int, help="Number of total epochs to run (last epoch, inclusive)")
    add("--begin_epoch", default=1, type=int, help="Training begins at this epoch")
    add("--n_val_samples", default=3, type=int, help="Number of validation samples for each video")
    add("--resume_path", default="", type=str, help="Saved model (.pth) of previous training")
    add("--pretrain_path", default="", type=str, help="Pretrained model (.pth): an sdn or original checkpoint, a "
        "torchvision weights file, or torchvision:NAME (e.g. torchvision:DEFAULT) for torchvision's weights of "
        "the --model in torch's hub cache (never downloaded)")
    add("--vis", action="store_true", help="Visualisation (accepted for compatibility, no effect in sdn)")
    parser.set_defaults(vis=False)
    add("--is_place_adv", action="store_true", help="Scene (place) adversarial training")
    parser.set_defaults(is_place_adv=False)
    add("--is_place_soft", action="store_true", help="Use soft scene pseudo labels")
    parser.set_defaults(is_place_soft=False)
    add("--is_place_entropy", action="store_true", help="Add an entropy loss on the place logits")
    parser.set_defaults(is_place_entropy=False)
    add("--is_entropy_max", action="store_true", help="Place entropy loss maximises entropy")
    parser.set_defaults(is_entropy_max=False)
    add("--is_mask_adv", action="store_false", help="Passing this flag DISABLES the human-mask branch (store_false, as the original)")
    parser.set_defaults(is_mask_adv=True)
    add("--is_mask_cross_entropy", action="store_true", help="Human-mask loss: cross entropy")
    parser.set_defaults(is_mask_cross_entropy=False)
    add("--is_mask_entropy", action="store_true", help="Human-mask loss: entropy")
    parser.set_defaults(is_mask_entropy=False)
    add("--is_mask_conf_dual_loader", action="store_true", help="Accepted for compatibility (the full mode always uses two loaders)")
    parser.set_defaults(is_mask_conf_dual_loader=False)
    add("--slower_place_mlp", action="store_true", help="Count the place MLP as pretrained (not new) parameters")
    parser.set_defaults(slower_place_mlp=False)
    add("--slower_hm_mlp", action="store_true", help="Count the human-mask MLP as pretrained (not new) parameters")
    parser.set_defaults(slower_hm_mlp=False)
    add("--weight_entropy_loss", default=1.0, type=float, help="Weight of the place entropy loss (training)")
    add("--num_place_hidden_layers", default=1, type=int, help="Number of hidden layers in the place MLP")
    add("--num_human_mask_adv_hidden_layers", default=1, type=int, help="Number of hidden layers in the human-mask MLP")
    add("--alpha", default=1.0, type=float, help="Gradient reversal multiplier of the place branch")
    add("--alpha_hm", default=1.0, type=float, help="Gradient reversal multiplier of the human-mask branch")
    add("--num_places_classes", default=0, type=int, help="Number of place classes")
    add("--ft_begin_index", default=0, type=int, help="Begin block index of fine-tuning")
    add("--not_replace_last_fc", action="store_true", help="Keep the loaded last fc layer")
    parser.set_defaults(not_replace_last_fc=False)
    add("--no_train", action="store_true", help="If true, training is not performed.")
    parser.set_defaults(no_train=False)
    add("--no_val", action="store_true", help="If true, validation is not performed.")
    parser.set_defaults(no_val=False)
    add("--test", action="store_true", help="If true, test is performed.")
    parser.set_defaults(test=False)
    add("--test_subset", default="val", type=str, help="Used subset in test (val | test)")
    add("--scale_in_test", default=1.0, type=float, help="Spatial scale in test")
    add("--crop_position_in_test", default="c", type=str, help="Cropping method (c | tl | tr | bl | br) in test")
    add("--no_softmax_in_test", action="store_true", help="If true, output for each clip is not normalized using softmax.")
    parser.set_defaults(no_softmax_in_test=False)
    add("--no_cuda", action="store_true", help="If true, cuda is not used.")
    parser.set_defaults(no_cuda=False)
    add("--n_threads", default=4, type=int, help="Number of threads for multi-thread loading")
    add("--checkpoint", default=10, type=int, help="Trained model is saved at every this epochs.")
    add("--no_hflip", action="store_true", help="Accepted for compatibility (unused in the original: training always flips)")
    parser.set_defaults(no_hflip=False)
    add("--norm_value", default=1, type=int, help="If 1, range of inputs is [0-255]. If 255, range of inputs is [0-1].")
    add("--model", default="resnet", type=str, help="Backbone: " + "; ".join(
        f"{name} ({family.summary}{', depth ' + '/'.join(map(str, family.depths)) if family.depths else ''})"
        for name, family in FAMILIES.items()))
    add("--model_depth", default=18, type=int, help="Depth of the model")
    add("--resnet_shortcut", default="B", type=str, help="Shortcut type of resnet (A | B)")
    add("--wide_resnet_k", default=2, type=int, help="Wide resnet k")
    add("--resnext_cardinality", default=32, type=int, help="ResNeXt cardinality")
    add("--manual_seed", default=1, type=int, help="Manually set random seed")


def _add_sdn_options(parser: argparse.ArgumentParser) -> None:
    """sdn's own options. Those that change numbers default to the original behaviour."""
    group = parser.add_argument_group("sdn options (not in the original)")
    add = group.add_argument
    add(
        "--mask_loss",
        default="original",
        choices=MASK_LOSSES,
        help="Human-mask loss of the full mode. 'original': the original code (entropy maximisation on the "
        "separate hm head behind its gradient reversal; --is_mask_entropy, or cross entropy with "
        "--is_mask_cross_entropy); 'paper': the paper's confusion loss (entropy of the ordinary action "
        "classifier on human-masked clips, maximised, no reversal); 'cross_entropy': cross entropy of the hm "
        "head through its reversal layer (same as --is_mask_cross_entropy)",
    )
    add("--zero_grad_to_none", action="store_true", help="Set gradients to None between steps (PyTorch >= 2 default). "
        "The original (PyTorch 0.4.1) zeroed them in place, so untouched parameters still get momentum and weight "
        "decay updates; that stays the default.")
    add("--head_bn_init", default="uniform", choices=("uniform", "ones"), help="Initial weight of the BatchNorm1d layers "
        "in the SDN heads: 'uniform' U(0,1) as PyTorch 0.4.1 did (default), 'ones' as current PyTorch")
    add("--shortcut_a_gradient", action="store_true", help="Let gradient flow through the zero-padded shortcut A "
        "(the original detaches it)")
    add("--resnet_width", default=64, type=int, help="Channels of the first stage of resnet/preresnet (64 as the "
        "original; the later stages double it): a narrower network trains many seeds in the time of one")
    add("--input_norm", default="auto", choices=("auto", *INPUT_NORMS), help="Input normalisation: 'original' "
        "(--mean_dataset, --no_mean_norm, --std_norm, --norm_value, as the original), 'torchvision' ((x/255 - mean) "
        "/ std with the values torchvision's weights of the --model were trained with), or 'auto' (default): "
        "the backbone's own (torchvision for torchvision's models, original otherwise)")
    add("--amp", default="off", choices=("off", "bf16", "fp16"), help="Automatic mixed precision (off by default): bf16 (CUDA or CPU) or fp16 with a gradient scaler (CUDA)")
    add("--sync_bn", action="store_true", help="Under torchrun: synchronise BatchNorm statistics across processes")
    add("--compile", action="store_true", help="torch.compile the training forward pass (off by default)")
    add("--cudnn_benchmark", action="store_true", help="Let cuDNN pick the fastest convolution algorithms "
        "(faster on GPUs, not bitwise reproducible)")
    add("--channels_last", action="store_true", help="Use the channels-last 3D memory format (off by default)")
    add("--no_tensorboard", action="store_true", help="Do not write TensorBoard scalars")
    add("--no_progress", action="store_true", help="Do not show progress bars")
    add("--auto_resume", action="store_true", help="Resume from the checkpoint in --result_path that got furthest "
        "(last.pth or save_*.pth; corrupt files are skipped); start fresh when there is none")
    add("--on_bad_sample", default="error", choices=("error", "skip"), help="A corrupt frame or unreadable video: "
        "stop with the file named (default), or skip the clip and record it in bad_samples.txt")
    add("--on_nonfinite", default="error", choices=("error", "skip"), help="A NaN/Inf loss: stop with the epoch "
        "and batch named (default; the last checkpoint stays intact), or skip that iteration and count it")
    add("--allow_pickle", action="store_true", help="Trust checkpoint files fully (full unpickling). Only for files you "
        "made yourself: a pickle can run code. By default checkpoints load with weights_only=True.")


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    """``--debias`` and each method's own flags (named after it), with its paper's defaults."""
    group = parser.add_argument_group("debiasing methods (not in the original; see docs/methods.md)")
    group.add_argument("--debias", default="none", choices=DEBIAS_CHOICES, help="Debiasing method trained with the "
                       "chosen mode (default none): " + "; ".join(f"'{name}': {method.citation}"
                                                                 for name, method in METHODS.items()))
    group.add_argument("--human_masks_path", default="", type=str, help="Directory of per-frame actor masks "
                       "(masks_train.npz, masks_val.npz); --debias actorcutmix takes the actor from them instead of "
                       "from the --human_dets_path boxes")
    for method in METHODS.values():
        method.add_options(group)


def build_parser(prog: str = "sdn train") -> argparse.ArgumentParser:
    """The full option parser: the original options in their order, then sdn's."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train, fine-tune and test SDN models. Accepts every option of the original train.py.",
    )
    _add_original_options(parser)
    _add_sdn_options(parser)
    _add_method_options(parser)
    return parser


def compute_scales(initial_scale: float, n_scales: int, scale_step: float) -> list[float]:
    """The running product the original computed (not exact powers: the last default is just below 0.5)."""
    scales = [initial_scale]
    for _ in range(1, n_scales):
        scales.append(scales[-1] * scale_step)
    return scales


def training_mode(opt: Any) -> str | None:
    """The mode the original chose from (is_place_adv, is_mask_adv); None when it did nothing."""
    if opt.is_place_adv:
        return "full" if opt.is_mask_adv else "place_adv"
    return None if opt.is_mask_adv else "baseline"


def _join_root(opt: argparse.Namespace) -> None:
    """Root-path joining exactly as the original (absolute paths pass through ``os.path.join``)."""
    if opt.root_path == "":
        return
    opt.video_path = os.path.join(opt.root_path, opt.video_path)
    opt.annotation_path = os.path.join(opt.root_path, opt.annotation_path)
    opt.result_path = os.path.join(opt.root_path, opt.result_path)
    if opt.resume_path:
        opt.resume_path = os.path.join(opt.root_path, opt.resume_path)
    if opt.pretrain_path and not opt.pretrain_path.startswith(TORCHVISION_WEIGHTS):
        opt.pretrain_path = os.path.join(opt.root_path, opt.pretrain_path)


def _validate(opt: argparse.Namespace) -> None:
    """Reject combinations the original accepted but then crashed on (or silently ignored)."""
    if opt.dataset not in DATASETS:
        raise SdnError(f"--dataset {opt.dataset!r}: must be one of {', '.join(DATASETS)}")
    family_of(opt.model)
    if opt.train_crop not in ("random", "corner", "center"):
        raise SdnError(f"--train_crop {opt.train_crop!r}: must be random, corner or center")
    if opt.test_subset not in ("val", "test"):
        raise SdnError(f"--test_subset {opt.test_subset!r}: must be val or test")
    if opt.crop_position_in_test not in ("c", "tl", "tr", "bl", "br"):
        raise SdnError(f"--crop_position_in_test {opt.crop_position_in_test!r}: must be c, tl, tr, bl or br")
    for name in ("sample_size", "sample_duration", "batch_size", "val_batch_size", "n_classes", "n_scales", "checkpoint"):
        if getattr(opt, name) < 1:
            raise SdnError(f"--{name} must be at least 1, got {getattr(opt, name)}")
    if opt.n_threads < 0:
        raise SdnError(f"--n_threads must be >= 0, got {opt.n_threads}")
    if not 0.0 <= opt.mask_ratio <= 1.0:
        raise SdnError(f"--mask_ratio must be in [0, 1], got {opt.mask_ratio}")
    if opt.norm_value <= 0:
        raise SdnError(f"--norm_value must be positive, got {opt.norm_value}")
    if opt.is_place_adv and opt.num_places_classes < 1:
        raise SdnError("--is_place_adv needs --num_places_classes (the number of scene classes, e.g. 365)")
    needs_mask_flag = opt.mask_loss == "original" and not (opt.is_mask_entropy or opt.is_mask_cross_entropy)
    if training_mode(opt) == "full" and not opt.no_train and needs_mask_flag:
        raise SdnError(
            "the full SDN mode (--is_place_adv without --is_mask_adv) needs a human-mask loss: "
            "--is_mask_entropy (the README's), --is_mask_cross_entropy or --mask_loss paper"
        )
    if opt.debias != "none" and not opt.no_train:
        METHODS[opt.debias].check(opt)


def resolve(namespace: argparse.Namespace) -> "Options":
    """Derive what the original derived at start-up, validate once, and freeze.

    ``namespace`` (parsed flags) is not changed; the result is the frozen :class:`Options`.
    """
    opt = argparse.Namespace(**vars(namespace))
    _join_root(opt)
    opt.scales = compute_scales(opt.initial_scale, opt.n_scales, opt.scale_step)
    opt.arch = arch_name(opt.model, opt.model_depth)
    _validate(opt)
    if opt.input_norm == "auto":
        opt.input_norm = family_of(opt.model).input_norm
    if opt.input_norm == "torchvision":
        opt.mean, opt.std = get_torchvision_mean_std(opt.model, opt.norm_value)
    else:
        opt.mean, opt.std = get_mean(opt.norm_value, dataset=opt.mean_dataset), get_std(opt.norm_value)
    if opt.is_mask_cross_entropy and opt.mask_loss == "original":
        opt.mask_loss = "cross_entropy"
    return Options.from_namespace(opt)


def parse_opts(argv: Sequence[str] | None = None) -> "Options":
    """Parse and resolve the training options."""
    return resolve(build_parser().parse_args(argv))


def _field_type(action: argparse.Action) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return bool
    return action.type or type(action.default)


def _frozen(value: Any) -> Any:
    """Lists (the scales, mean and std) as tuples, so no option can change after ``resolve``."""
    return tuple(value) if isinstance(value, list) else value


def _options_class() -> type:
    """A frozen dataclass with one typed field per training option (defaults: the parser's), plus the
    values ``resolve`` derives. Made from the parser, so a new flag is a new field without a second list."""
    fields: list[tuple[str, Any, Any]] = []
    for action in build_parser()._actions:
        if action.dest == "help":
            continue
        default = action.default
        fields.append((action.dest, _field_type(action), dataclasses.field(default=default)))
    for name, kind in (("scales", tuple), ("arch", str), ("mean", tuple), ("std", tuple)):
        fields.append((name, kind, dataclasses.field(default=None)))
    return dataclasses.make_dataclass("Options", fields, frozen=True, namespace={
        "__doc__": "The resolved training options (frozen; ``replace`` gives a changed copy).",
        "__module__": __name__,
        "replace": lambda self, **changes: dataclasses.replace(self, **changes),
        "from_namespace": classmethod(lambda cls, namespace: cls(**{
            field.name: _frozen(getattr(namespace, field.name)) for field in dataclasses.fields(cls)
            if hasattr(namespace, field.name)})),
        "names": classmethod(lambda cls: [field.name for field in dataclasses.fields(cls)]),
    })


Options = _options_class()


def _original_option_names() -> list[str]:
    parser = argparse.ArgumentParser(add_help=False)
    _add_original_options(parser)
    return [action.dest for action in parser._actions]


def opts_dict(opt: Any) -> dict:
    """The options in the original ``opts.json`` order (original options, scales, arch, mean, std), then sdn's."""
    values = {name: list(value) if isinstance(value, tuple) else value for name, value in vars(opt).items()}
    head = _original_option_names() + ["scales", "arch", "mean", "std"]
    ordered = {name: values[name] for name in head if name in values}
    ordered.update((name, value) for name, value in values.items() if name not in ordered)
    return ordered


def save_opts(opt: Any, path: str) -> None:
    """Write ``opts.json`` (default ``json.dump`` formatting, as the original)."""
    atomic_write_json(path, opts_dict(opt))
