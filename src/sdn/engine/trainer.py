"""One trainer for the three modes: it runs epochs, the objective says what a step computes.

Per epoch (as the original ``main_*`` loops): train, validate, step the LR scheduler of the
epoch's optimizer with the validation total loss (only when both ran), save ``save_{epoch}.pth``
every ``--checkpoint`` epochs. The checkpoint is written at the end of the epoch, after the
scheduler step (the original saved before validation and never saved the scheduler), so a resumed
run continues with exactly the optimizer, scheduler and data order an uninterrupted run would have.

Data randomness is a function of (seed, epoch, sample): each loader reseeds its shuffle generator
and tells its dataset the epoch before every epoch, so the number of workers does not matter and a
resume repeats the same batches.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler
from tqdm import tqdm

from sdn.checkpoint import capture_rng_state, make_checkpoint, save_checkpoint
from sdn.config import opts_dict
from sdn.engine.logger import TabLogger
from sdn.engine.objectives import Objective
from sdn.engine.optim import OptimizerSchedule
from sdn.errors import SdnError
from sdn.seeding import mix_seed



class EpochLoader:
    """A DataLoader whose shuffle order and sample randomness are fixed by (seed, epoch)."""

    def __init__(self, dataset: Dataset, *, batch_size: int, shuffle: bool, drop_last: bool, workers: int,
                 pin_memory: bool, seed: int, stream: int = 0):
        self.dataset = dataset
        self.seed, self.stream = seed, stream
        self.generator = torch.Generator()
        sampler = RandomSampler(dataset, generator=self.generator) if shuffle else SequentialSampler(dataset)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                 pin_memory=pin_memory, drop_last=drop_last)
        if len(self.loader) == 0:
            raise SdnError(f"{len(dataset)} clips give no batch of {batch_size} (drop_last={drop_last}); "
                           "lower the batch size or add videos")

    def epoch(self, epoch: int) -> DataLoader:
        self.generator.manual_seed(mix_seed(self.seed, epoch, self.stream))
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.loader

    def __len__(self) -> int:
        return len(self.loader)


class MeanMeter:
    """Batch-size-weighted means of named values (the original ``AverageMeter``, one per column)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def update(self, metrics: dict[str, tuple[float, int]]) -> None:
        for name, (value, count) in metrics.items():
            self.sums[name] += value * count
            self.counts[name] += count

    def means(self) -> dict[str, float]:
        return {name: self.sums[name] / self.counts[name] if self.counts[name] else 0.0 for name in self.sums}


@dataclass
class RunLogs:
    train: TabLogger | None
    train_batch: TabLogger | None
    val: TabLogger | None
    tensorboard: Any | None

    def close(self) -> None:
        for logger in (self.train, self.train_batch, self.val):
            if logger is not None:
                logger.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def open_logs(result_path: str, objective: Objective, *, train: bool, val: bool, append: bool,
              tensorboard: bool) -> RunLogs:
    columns, extra = objective.columns, objective.extra_columns
    writer = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(os.path.join(result_path, "tensorboard"))
    return RunLogs(
        train=TabLogger(os.path.join(result_path, "train.log"), ["epoch", *columns, "lr", *extra], append=append)
        if train else None,
        train_batch=TabLogger(os.path.join(result_path, "train_batch.log"),
                              ["epoch", "batch", "iter", *columns, "lr", *extra], append=append) if train else None,
        val=TabLogger(os.path.join(result_path, "val.log"), ["epoch", *columns, *extra], append=append) if val else None,
        tensorboard=writer,
    )


def move_batch(batch: dict[str, Any], device: torch.device, prepare: Callable[[Tensor], Tensor]) -> dict[str, Any]:
    moved = {key: value.to(device, non_blocking=True) if isinstance(value, Tensor) else value
             for key, value in batch.items()}
    moved["clip"] = prepare(moved["clip"])
    return moved


class Trainer:
    """Runs training and validation epochs of one objective on one model."""

    def __init__(self, *, opt: argparse.Namespace, model: nn.Module, objective: Objective,
                 schedule: OptimizerSchedule | None, device: torch.device, prepare: Callable[[Tensor], Tensor],
                 logs: RunLogs, class_names: list[str]):
        self.opt, self.model, self.objective, self.schedule = opt, model, objective, schedule
        self.device, self.prepare, self.logs, self.class_names = device, prepare, logs, class_names
        self.progress = not opt.no_progress
        use_amp = device.type == "cuda" and opt.amp != "off"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(opt.amp) if use_amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _batches(self, loaders: list[EpochLoader], epoch: int, description: str) -> Iterator[tuple[int, list[dict], float]]:
        """Yield (batch number from 1, batches moved to the device, seconds spent waiting for data)."""
        total = min(len(loader) for loader in loaders)
        iterators = [iter(loader.epoch(epoch)) for loader in loaders]
        numbers = tqdm(range(1, total + 1), desc=description, disable=not self.progress, unit="it", dynamic_ncols=True)
        self._bar = numbers
        for number in numbers:
            start = time.perf_counter()
            batches = [move_batch(next(iterator), self.device, self.prepare) for iterator in iterators]
            yield number, batches, time.perf_counter() - start

    def train_epoch(self, epoch: int, loaders: list[EpochLoader]) -> dict[str, float]:
        self.model.train()
        optimizer = self.schedule.optimizer_for(epoch)
        lr = optimizer.param_groups[0]["lr"]
        meter, clips, waited, started = MeanMeter(), 0, 0.0, time.perf_counter()
        n_batches = min(len(loader) for loader in loaders)
        for number, batches, wait in self._batches(loaders, epoch, f"train {epoch}"):
            waited += wait
            current: dict[str, tuple[float, int]] = {}
            for step in _autocast_each(self.objective.steps(self.model, batches, epoch), self._autocast):
                self._check_finite(step.loss, epoch, number)
                optimizer.zero_grad(set_to_none=self.opt.zero_grad_to_none)
                self._backward_and_step(step.loss, optimizer)
                current.update(step.metrics)
            meter.update(current)
            clips += batches[0]["clip"].shape[0]
            row = {name: value for name, (value, _) in current.items()}
            self.logs.train_batch.log({"epoch": epoch, "batch": number, "iter": (epoch - 1) * n_batches + number,
                                       **row, "lr": lr})
            elapsed = max(time.perf_counter() - started, 1e-9)
            self._bar.set_postfix(loss=f"{row[self.objective.total_column]:.3f}",
                                  acc=f"{row[self.objective.accuracy_column]:.3f}",
                                  clips_s=f"{clips / elapsed:.1f}", data=f"{waited / elapsed:.0%}")
        means = meter.means()
        self.logs.train.log({"epoch": epoch, **means, "lr": lr})
        self._tensorboard("train", means, epoch, lr=lr)
        return means

    @torch.no_grad()
    def validate(self, epoch: int, loaders: list[EpochLoader]) -> dict[str, float]:
        self.model.eval()
        meter = MeanMeter()
        for _, batches, _ in self._batches(loaders, epoch, f"val {epoch}"):
            with self._autocast():
                for step in self.objective.validation_steps(self.model, batches, epoch):
                    meter.update(step.metrics)
        means = meter.means()
        self.logs.val.log({"epoch": epoch, **means})
        self._tensorboard("val", means, epoch)
        print(f"validation at epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
        return means

    def save(self, epoch: int, path: str) -> None:
        optimizer = self.schedule.optimizer_for(epoch)
        checkpoint = make_checkpoint(
            next_epoch=epoch + 1,
            arch=self.opt.arch,
            model=self.model,
            optimizer_state=optimizer.state_dict(),
            **self.schedule.state_dict(),
            rng_state=capture_rng_state(),
            config=_plain_config(self.opt),
            class_names=list(self.class_names),
        )
        if self.scaler is not None:
            checkpoint["grad_scaler"] = self.scaler.state_dict()
        save_checkpoint(path, checkpoint)

    def load_scaler_state(self, checkpoint: dict[str, Any]) -> None:
        """Restore the fp16 loss scale of a resumed run, so it continues as it would have."""
        if self.scaler is not None and "grad_scaler" in checkpoint:
            self.scaler.load_state_dict(checkpoint["grad_scaler"])

    def _backward_and_step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    @staticmethod
    def _check_finite(loss: Tensor, epoch: int, number: int) -> None:
        if not torch.isfinite(loss.detach()).all():
            raise SdnError(f"non-finite loss ({loss.item()}) at epoch {epoch}, batch {number}; stopping. "
                           "The last saved checkpoint is intact; try a lower --learning_rate")

    def _tensorboard(self, phase: str, values: dict[str, float], epoch: int, lr: float | None = None) -> None:
        if self.logs.tensorboard is None:
            return
        for name, value in values.items():
            self.logs.tensorboard.add_scalar(f"{phase}/{name.replace(' ', '_')}", value, epoch)
        if lr is not None:
            self.logs.tensorboard.add_scalar("train/lr", lr, epoch)
        self.logs.tensorboard.flush()


def _autocast_each(steps: Iterator, autocast: Callable[[], contextlib.AbstractContextManager]) -> Iterator:
    """Advance the lazy step generator inside autocast, so each forward pass runs in mixed precision."""
    while True:
        with autocast():
            try:
                step = next(steps)
            except StopIteration:
                return
        yield step


def _plain_config(opt: argparse.Namespace) -> dict[str, Any]:
    """Options as plain values (what ``weights_only`` loading accepts)."""
    return {key: value for key, value in opts_dict(opt).items()
            if isinstance(value, (str, int, float, bool, list, type(None)))}
