"""``sdn train`` (and ``python train.py``): the original train.py, every flag, one trainer.

Start-up as the original (reference 2.1): parse, join the root path, derive scales/arch/mean/std,
write ``opts.json``, pick the mode from ``--is_place_adv`` and the inverted ``--is_mask_adv``.
Then seed, build the model (loading ``--pretrain_path`` by name and shape), the data, the
optimizers, resume if asked, run the epochs, and test if asked. Under ``torchrun`` the same code
runs in every process (see :mod:`sdn.distributed`).
"""

from __future__ import annotations

import argparse
import contextlib
import os

import torch
from torch import nn

from sdn.checkpoint import (check_arch, find_resumable, load_for_resume, load_pretrained, read_checkpoint,
                            restore_rng_state)
from sdn.config import build_parser, resolve, save_opts, training_mode
from sdn.data.datasets import class_names_for, get_test_set, get_training_set, get_validation_set
from sdn.data.transforms import (ClipNormalize, LoopPadding, TemporalRandomCrop, test_spatial_transform,
                                 train_spatial_transform, val_spatial_transform)
from sdn.distributed import SINGLE, Context, init_from_environment, shutdown
from sdn.engine.objectives import build_objective
from sdn.engine.optim import OptimizerSchedule
from sdn.engine.testing import run_test
from sdn.engine.trainer import EpochLoader, Preempted, RunLogs, Trainer, open_logs, run_counters
from sdn.errors import SdnError
from sdn.methods import build_batch_transform
from sdn.methods.base import MethodSetup
from sdn.models import build_model
from sdn.seeding import seed_everything

BANNERS = {
    "baseline": "training a baseline model",
    "place_adv": "training a SDN model with scene adv loss only",
    "full": "training a full SDN model",
}

NO_MODE_MESSAGE = (
    "neither --is_place_adv nor --is_mask_adv was given, and the original train.py then silently does "
    "nothing. --is_mask_adv is a store_false flag: passing it DISABLES the human-mask branch. Pass "
    "--is_mask_adv for a baseline model, --is_place_adv --is_mask_adv for the scene-adversarial model, "
    "or --is_place_adv alone (with --is_mask_entropy) for the full SDN model"
)


def build_sdn_model(opt: argparse.Namespace) -> nn.Module:
    return build_model(
        opt.model,
        opt.model_depth,
        n_classes=opt.n_classes,
        sample_size=opt.sample_size,
        sample_duration=opt.sample_duration,
        resnet_shortcut=opt.resnet_shortcut,
        wide_resnet_k=opt.wide_resnet_k,
        resnet_width=opt.resnet_width,
        resnext_cardinality=opt.resnext_cardinality,
        with_place_head=opt.is_place_adv,
        with_hm_head=opt.is_mask_adv,
        num_places_classes=opt.num_places_classes,
        num_place_hidden_layers=opt.num_place_hidden_layers,
        num_hm_hidden_layers=opt.num_human_mask_adv_hidden_layers,
        alpha=opt.alpha,
        alpha_hm=opt.alpha_hm,
        head_bn_init=opt.head_bn_init,
        detach_shortcut_a=not opt.shortcut_a_gradient,
    )


def apply_pretrain(model: nn.Module, opt: argparse.Namespace) -> None:
    """``--pretrain_path``: load by name and shape, then replace the classifier unless told not to."""
    checkpoint = read_checkpoint(opt.pretrain_path, allow_pickle=opt.allow_pickle)
    check_arch(checkpoint, opt.arch, opt.pretrain_path)
    load_pretrained(model, checkpoint, opt.pretrain_path)
    if not opt.not_replace_last_fc:
        model.replace_classifier(opt.n_finetune_classes)


def normalization(opt: argparse.Namespace) -> tuple[list[float], list[float]]:
    """The original ``norm_method``: mean subtraction only by default; --no_mean_norm is ignored with --std_norm."""
    if opt.no_mean_norm and not opt.std_norm:
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if not opt.std_norm:
        return list(opt.mean), [1.0, 1.0, 1.0]
    return list(opt.mean), list(opt.std)


def _loader(dataset, opt: argparse.Namespace, *, batch_size: int, shuffle: bool, drop_last: bool, workers: int,
            device: torch.device, stream: int, context: Context, sharding: str) -> EpochLoader:
    return EpochLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, workers=workers,
                       pin_memory=device.type == "cuda", seed=opt.manual_seed, stream=stream, context=context,
                       sharding=sharding)


def _as_list(datasets) -> list:
    return list(datasets) if isinstance(datasets, (tuple, list)) else [datasets]


def training_loaders(opt: argparse.Namespace, mode: str, device: torch.device,
                     context: Context = SINGLE) -> list[EpochLoader]:
    spatial = train_spatial_transform(opt.train_crop, opt.scales, opt.sample_size)
    datasets = _as_list(get_training_set(opt, spatial, TemporalRandomCrop(opt.sample_duration)))
    _check_mode_data(mode, datasets, opt)
    workers = opt.n_threads // 2 if len(datasets) == 2 else opt.n_threads
    drop_last = mode != "baseline"
    return [_loader(d, opt, batch_size=opt.batch_size, shuffle=True, drop_last=drop_last, workers=workers,
                    device=device, stream=i, context=context, sharding="padded") for i, d in enumerate(datasets)]


def validation_loaders(opt: argparse.Namespace, mode: str, device: torch.device,
                       context: Context = SINGLE) -> list[EpochLoader]:
    spatial = val_spatial_transform(opt.sample_size)
    datasets = _as_list(get_validation_set(opt, spatial, LoopPadding(opt.sample_duration)))
    _check_mode_data(mode, datasets, opt)
    workers = opt.n_threads // 2 if len(datasets) == 2 else opt.n_threads
    drop_last = mode != "baseline"
    return [_loader(d, opt, batch_size=opt.val_batch_size, shuffle=False, drop_last=drop_last, workers=workers,
                    device=device, stream=10 + i, context=context, sharding="strided")
            for i, d in enumerate(datasets)]


def _check_mode_data(mode: str, datasets: list, opt: argparse.Namespace) -> None:
    """The original crashed deep inside the loop when mode and dataset did not fit; say it up front."""
    needed = {"baseline": None, "place_adv": "kinetics_adv", "full": "kinetics_adv_msk"}[mode]
    if mode == "place_adv" and opt.dataset not in ("kinetics_adv", "kinetics_adv_msk"):
        raise SdnError(f"--is_place_adv needs scene pseudo labels: use --dataset {needed} (got {opt.dataset})")
    if mode == "full" and len(datasets) != 2:
        raise SdnError(f"the full SDN mode needs masked and unmasked clips: use --dataset {needed} (got {opt.dataset})")


def _check_classes(model: nn.Module, class_names: list[str], opt: argparse.Namespace) -> None:
    outputs = getattr(model, model.classifier_name).out_features
    if len(class_names) > outputs:
        raise SdnError(f"{opt.annotation_path}: {len(class_names)} classes but the model's classifier has {outputs} "
                       "outputs; set --n_classes (or --n_finetune_classes when fine-tuning)")
    if len(class_names) < outputs:
        print(f"note: the classifier has {outputs} outputs for {len(class_names)} classes in {opt.annotation_path}")


def resume(opt: argparse.Namespace, model: nn.Module, schedule: OptimizerSchedule | None) -> tuple[int, dict]:
    """``--resume_path``: strict weights; with training, optimizers, schedulers and RNG too.

    Returns the begin epoch and the checkpoint (the trainer restores its own state from it).
    """
    checkpoint = read_checkpoint(opt.resume_path, allow_pickle=opt.allow_pickle)
    check_arch(checkpoint, opt.arch, opt.resume_path)
    load_for_resume(model, checkpoint, opt.resume_path)
    begin_epoch = int(checkpoint.get("epoch", opt.begin_epoch))
    if schedule is not None:
        if "optimizers" in checkpoint:
            schedule.load_state_dict(checkpoint)
        elif checkpoint.get("optimizer") is not None:
            schedule.load_original(checkpoint["optimizer"], begin_epoch - 1)
        if "rng_state" in checkpoint:
            restore_rng_state(checkpoint["rng_state"])
    print(f"resumed from {opt.resume_path} (epoch {begin_epoch})")
    return begin_epoch, checkpoint


def run(opt: argparse.Namespace) -> int:
    mode = training_mode(opt)
    if mode is None:
        raise SdnError(NO_MODE_MESSAGE)
    use_cuda = torch.cuda.is_available() and not opt.no_cuda
    context = init_from_environment(use_cuda)
    try:
        if context.is_main:
            return _run(opt, mode, context, use_cuda)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # rank 0 speaks for all
            return _run(opt, mode, context, use_cuda)
    finally:
        shutdown(context)


def _run(opt: argparse.Namespace, mode: str, context: Context, use_cuda: bool) -> int:
    if context.is_main:
        os.makedirs(opt.result_path, exist_ok=True)
        save_opts(opt, os.path.join(opt.result_path, "opts.json"))
    print(opt)
    print(BANNERS[mode] + (f" on {context.world_size} processes" if context.enabled else ""))

    seed_everything(opt.manual_seed)  # the same initial weights on every rank
    device = torch.device("cuda", context.local_rank) if use_cuda else torch.device("cpu")
    torch.backends.cudnn.benchmark = opt.cudnn_benchmark
    model = build_sdn_model(opt)
    if opt.pretrain_path:
        apply_pretrain(model, opt)
    if context.enabled and opt.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    class_names = class_names_for(opt)
    _check_classes(model, class_names, opt)
    print(f"model {opt.arch}: {sum(p.numel() for p in model.parameters()):,} parameters on {device}")
    prepare = input_preparation(opt, device)

    objective = build_objective(mode, opt)
    train_loaders = training_loaders(opt, mode, device, context) if not opt.no_train else []
    val_loaders = validation_loaders(opt, mode, device, context) if not opt.no_val else []
    schedule = OptimizerSchedule(model, opt, pretrained=bool(opt.pretrain_path)) if train_loaders else None
    if opt.auto_resume:
        opt.resume_path = find_resumable(opt.result_path, allow_pickle=opt.allow_pickle) or opt.resume_path
    begin_epoch, resumed = resume(opt, model, schedule) if opt.resume_path else (opt.begin_epoch, {})
    position = resumed.get("position")
    seed_everything(opt.manual_seed + context.rank)  # per-rank streams from here on

    resume_at = (begin_epoch, position["batch"] if position else 0) if opt.resume_path else None
    logs = open_logs(opt.result_path, objective, train=bool(train_loaders), val=bool(val_loaders),
                     resume_at=resume_at, tensorboard=not opt.no_tensorboard and bool(train_loaders),
                     counters=run_counters(opt)) if context.is_main else RunLogs.disabled()
    batch_transform = build_batch_transform(MethodSetup(
        opt=opt, device=device, train_dataset=train_loaders[0].dataset if train_loaders else None,
        normalize=prepare, n_classes=len(class_names), context=context)) if train_loaders else None
    trainer = Trainer(opt=opt, model=model, objective=objective, schedule=schedule, device=device,
                      prepare=prepare, logs=logs, class_names=class_names, context=context,
                      train_model=training_wrapper(model, opt, mode, context, device),
                      batch_transform=batch_transform)
    trainer.load_scaler_state(resumed)
    print("run")
    try:
        with trainer.stop_on_signals():
            run_epochs(trainer, opt, begin_epoch, position, train_loaders, val_loaders)
    except Preempted as stop:
        print(f"{stop}\nto continue, run the same command with --auto_resume (or --resume_path {stop.path})")
        return 128 + stop.signum
    finally:
        logs.close()

    if opt.test:
        spatial = test_spatial_transform(opt.sample_size, opt.scale_in_test, opt.crop_position_in_test)
        test_set = get_test_set(opt, spatial, LoopPadding(opt.sample_duration))
        loader = _loader(test_set, opt, batch_size=opt.val_batch_size, shuffle=False, drop_last=False,
                         workers=opt.n_threads, device=device, stream=20, context=context, sharding="contiguous")
        run_test(model, loader.epoch(0), prepare, test_set.class_names,
                 os.path.join(opt.result_path, f"{opt.test_subset}.json"),
                 softmax=not opt.no_softmax_in_test, progress=not opt.no_progress, context=context)
    return 0


def input_preparation(opt: argparse.Namespace, device: torch.device):
    """uint8 clips -> normalised float on the device, in the chosen memory format (once per batch)."""
    normalize = ClipNormalize(*normalization(opt), opt.norm_value).to(device)
    memory_format = torch.channels_last_3d if opt.channels_last else torch.contiguous_format

    def prepare(clip: torch.Tensor) -> torch.Tensor:
        return normalize(clip).contiguous(memory_format=memory_format)

    return prepare


def training_wrapper(model: nn.Module, opt: argparse.Namespace, mode: str, context: Context,
                     device: torch.device) -> nn.Module:
    """What training steps call: DDP under torchrun (the full mode's two steps each leave part of the
    model unused, hence ``find_unused_parameters``), optionally compiled."""
    wrapped = model
    if context.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=mode == "full")
    return torch.compile(wrapped) if opt.compile else wrapped


def run_epochs(trainer: Trainer, opt: argparse.Namespace, begin_epoch: int, position: dict | None,
               train_loaders: list[EpochLoader], val_loaders: list[EpochLoader]) -> None:
    """The original epoch loop: train, validate, step the epoch's scheduler, save."""
    for epoch in range(begin_epoch, opt.n_epochs + 1):
        if train_loaders:
            trainer.train_epoch(epoch, train_loaders, position if epoch == begin_epoch else None)
        if val_loaders:
            val_metrics = trainer.validate(epoch, val_loaders)
            if train_loaders:
                trainer.schedule.scheduler_for(epoch).step(val_metrics[trainer.objective.total_column])
        if train_loaders:
            trainer.end_epoch(epoch)


def main(argv: list[str] | None = None) -> int:
    opt = resolve(build_parser().parse_args(argv))
    return run(opt)
