"""One training run as ``sdn train`` (and the original ``train.py``) performs it, from frozen options.

Start-up as the original: the options (already resolved, see :func:`sdn.config.resolve`) are
written to ``opts.json`` and pick the mode from ``--is_place_adv`` and the inverted
``--is_mask_adv``. Then seed, build the model (loading ``--pretrain_path`` by name and shape), the
data the objective asks for, the optimizers, resume if asked, let :meth:`Trainer.fit` run the
epochs, and test if asked. Under ``torchrun`` the same code runs in every process (see
:mod:`sdn.distributed`). The command line (:mod:`sdn.cli.train`) only parses flags and calls
:func:`run_training`; ``sdn demo`` calls it too.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import nn

from sdn.checkpoint import check_arch, find_resumable, load_for_resume, read_checkpoint, restore_rng_state
from sdn.config import save_opts, training_mode
from sdn.data.datasets import class_names_for, get_test_set, get_training_set, get_validation_set
from sdn.data.transforms import (LoopPadding, TemporalRandomCrop, clip_normalize, input_preparation,
                                 test_spatial_transform, train_spatial_transform, val_spatial_transform)
from sdn.distributed import SINGLE, Context, init_from_environment, shutdown
from sdn.engine.objectives import Objective, build_objective
from sdn.engine.optim import OptimizerConfig, OptimizerSchedule
from sdn.engine.precision import check_amp
from sdn.engine.testing import run_test
from sdn.engine.trainer import EpochLoader, Preempted, RunLogs, Trainer, TrainerConfig, open_logs
from sdn.engine.wrapping import training_wrapper
from sdn.errors import SdnError
from sdn.methods import build_batch_transform
from sdn.methods.base import MethodSetup
from sdn.models import ModelConfig, build_sdn_model
from sdn.models.pretrained import apply_pretrained_weights
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


def build_run_model(opt: Any) -> nn.Module:
    """The model of the options; ``--pretrain_path`` loaded by name and shape, then the classifier
    replaced for fine-tuning unless ``--not_replace_last_fc``."""
    model = build_sdn_model(ModelConfig.from_options(opt))
    if opt.pretrain_path:
        apply_pretrained_weights(model, opt.pretrain_path, arch=opt.arch, allow_pickle=opt.allow_pickle)
        if not opt.not_replace_last_fc:
            model.replace_classifier(opt.n_finetune_classes)
    return model


def _as_list(datasets: Any) -> list:
    return list(datasets) if isinstance(datasets, (tuple, list)) else [datasets]


def _loaders(opt: Any, datasets: list, objective: Objective, device: torch.device, context: Context, *,
             train: bool) -> list[EpochLoader]:
    """One loader per dataset the objective reads (the full mode's two each shuffle on their own
    stream), the worker processes shared between them."""
    objective.check_data(datasets, opt.dataset)
    datasets = datasets[:objective.n_loaders]
    workers = opt.n_threads // len(datasets)
    return [EpochLoader(dataset, batch_size=opt.batch_size if train else opt.val_batch_size, shuffle=train,
                        drop_last=objective.drop_incomplete_batches, workers=workers,
                        pin_memory=device.type == "cuda", seed=opt.manual_seed, stream=i if train else 10 + i,
                        context=context, sharding="padded" if train else "strided")
            for i, dataset in enumerate(datasets)]


def training_loaders(opt: Any, objective: Objective, device: torch.device,
                     context: Context = SINGLE) -> list[EpochLoader]:
    spatial = train_spatial_transform(opt.train_crop, opt.scales, opt.sample_size)
    datasets = _as_list(get_training_set(opt, spatial, TemporalRandomCrop(opt.sample_duration)))
    return _loaders(opt, datasets, objective, device, context, train=True)


def validation_loaders(opt: Any, objective: Objective, device: torch.device,
                       context: Context = SINGLE) -> list[EpochLoader]:
    spatial = val_spatial_transform(opt.sample_size)
    datasets = _as_list(get_validation_set(opt, spatial, LoopPadding(opt.sample_duration)))
    return _loaders(opt, datasets, objective, device, context, train=False)


def _check_classes(model: nn.Module, class_names: list[str], opt: Any) -> None:
    outputs = model.get_classifier().out_features
    if len(class_names) > outputs:
        raise SdnError(f"{opt.annotation_path}: {len(class_names)} classes but the model's classifier has {outputs} "
                       "outputs; set --n_classes (or --n_finetune_classes when fine-tuning)")
    if len(class_names) < outputs:
        print(f"note: the classifier has {outputs} outputs for {len(class_names)} classes in {opt.annotation_path}")


def resume(path: str, opt: Any, model: nn.Module, schedule: OptimizerSchedule | None) -> tuple[int, dict]:
    """Resume from ``path``: strict weights; with training, optimizers and schedulers too.

    Returns the begin epoch and the checkpoint (the trainer restores its own state from it, the
    caller each rank's random streams: :func:`restore_rank_rng`).
    """
    checkpoint = read_checkpoint(path, allow_pickle=opt.allow_pickle)
    check_arch(checkpoint, opt.arch, path)
    load_for_resume(model, checkpoint, path)
    begin_epoch = int(checkpoint.get("epoch", opt.begin_epoch))
    if schedule is not None:
        if "optimizers" in checkpoint:
            schedule.load_state_dict(checkpoint)
        elif checkpoint.get("optimizer") is not None:
            schedule.load_original(checkpoint["optimizer"], begin_epoch - 1)
    print(f"resumed from {path} (epoch {begin_epoch})")
    return begin_epoch, checkpoint


def restore_rank_rng(checkpoint: dict[str, Any], context: Context, device: torch.device) -> None:
    """Continue this rank's saved random streams: its own when the run had as many processes;
    else rank 0's on rank 0 only, the others keeping their per-rank seeds (copies would draw alike).
    Called after the per-rank seeding, which would otherwise undo it."""
    states = checkpoint.get("rank_rng_states")
    if states is not None and len(states) == context.world_size:
        restore_rng_state(states[context.rank], device)
    elif "rng_state" in checkpoint and context.is_main:
        restore_rng_state(checkpoint["rng_state"], device)


def run_training(opt: Any) -> int:
    """Train, validate and test as the options say; the exit status (128 + signal when preempted)."""
    mode = training_mode(opt)
    if mode is None:
        raise SdnError(NO_MODE_MESSAGE)
    use_cuda = torch.cuda.is_available() and not opt.no_cuda
    context = init_from_environment(use_cuda)
    try:
        if context.enabled and opt.sync_bn and not use_cuda:
            raise SdnError("--sync_bn needs CUDA devices (SyncBatchNorm has no CPU implementation)")
        if context.is_main:
            return _run(opt, mode, context, use_cuda)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # rank 0 speaks for all
            return _run(opt, mode, context, use_cuda)
    finally:
        shutdown(context)


def _run(opt: Any, mode: str, context: Context, use_cuda: bool) -> int:
    if context.is_main:
        os.makedirs(opt.result_path, exist_ok=True)
        save_opts(opt, os.path.join(opt.result_path, "opts.json"))
    print(opt)
    objective = build_objective(mode, opt)
    print(BANNERS[objective.name] + (f" on {context.world_size} processes" if context.enabled else ""))

    seed_everything(opt.manual_seed)  # the same initial weights on every rank
    device = torch.device("cuda", context.local_rank) if use_cuda else torch.device("cpu")
    check_amp(opt.amp, device)  # before any data is read: a CPU that would emulate bf16 is refused
    torch.backends.cudnn.benchmark = opt.cudnn_benchmark
    model = build_run_model(opt)
    if context.enabled and opt.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    class_names = class_names_for(opt)
    _check_classes(model, class_names, opt)
    print(f"model {opt.arch}: {sum(p.numel() for p in model.parameters()):,} parameters on {device}")
    prepare = input_preparation(clip_normalize(opt), device, opt.channels_last)

    train_loaders = training_loaders(opt, objective, device, context) if not opt.no_train else []
    val_loaders = validation_loaders(opt, objective, device, context) if not opt.no_val else []
    schedule = OptimizerSchedule(model, OptimizerConfig.from_options(opt)) if train_loaders else None
    resume_path = opt.resume_path
    if opt.auto_resume:
        resume_path = find_resumable(opt.result_path, allow_pickle=opt.allow_pickle) or resume_path
    begin_epoch, resumed = resume(resume_path, opt, model, schedule) if resume_path else (opt.begin_epoch, {})
    position = resumed.get("position")
    seed_everything(opt.manual_seed + context.rank)  # per-rank streams from here on
    if schedule is not None:
        restore_rank_rng(resumed, context, device)  # a resumed run continues the saved ones

    config = TrainerConfig.from_options(opt)
    resume_at = (begin_epoch, position["batch"] if position else 0) if resume_path else None
    logs = open_logs(opt.result_path, objective, train=bool(train_loaders), val=bool(val_loaders),
                     resume_at=resume_at, tensorboard=not opt.no_tensorboard and bool(train_loaders),
                     counters=config.counters()) if context.is_main else RunLogs.disabled()
    batch_transform = build_batch_transform(MethodSetup(
        opt=opt, device=device, train_dataset=train_loaders[0].dataset if train_loaders else None,
        normalize=prepare, n_classes=len(class_names), context=context)) if train_loaders else None
    train_model = training_wrapper(model, device=device, context=context, compile=opt.compile,
                                   find_unused_parameters=objective.find_unused_parameters)
    trainer = Trainer(model=model, objective=objective, schedule=schedule, config=config, device=device,
                      prepare=prepare, logs=logs, class_names=class_names, context=context, train_model=train_model,
                      batch_transform=batch_transform)
    trainer.load_scaler_state(resumed)
    print("run")
    try:
        with trainer.stop_on_signals():
            trainer.fit(train_loaders, val_loaders, begin_epoch=begin_epoch, position=position)
    except Preempted as stop:
        print(f"{stop}\nto continue, run the same command with --auto_resume (or --resume_path {stop.path})")
        return 128 + stop.signum
    finally:
        logs.close()

    if opt.test:
        spatial = test_spatial_transform(opt.sample_size, opt.scale_in_test, opt.crop_position_in_test)
        test_set = get_test_set(opt, spatial, LoopPadding(opt.sample_duration))
        loader = EpochLoader(test_set, batch_size=opt.val_batch_size, shuffle=False, drop_last=False,
                             workers=opt.n_threads, pin_memory=device.type == "cuda", seed=opt.manual_seed, stream=20,
                             context=context, sharding="contiguous")
        run_test(model, loader.epoch(0), prepare, test_set.class_names,
                 os.path.join(opt.result_path, f"{opt.test_subset}.json"),
                 softmax=not opt.no_softmax_in_test, progress=not opt.no_progress, context=context)
    return 0
