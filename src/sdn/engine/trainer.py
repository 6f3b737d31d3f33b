"""One trainer for every objective: it owns the loop, the objective says what a step computes.

:meth:`Trainer.fit` runs the epochs as the original ``main_*`` loops: train, validate, step the LR
scheduler of the epoch's optimizer with the validation total loss (only when both ran), save
``save_{epoch}.pth`` every ``--checkpoint`` epochs. :meth:`Trainer.step` is one training iteration
on batches as a loader gives them (the library API's unit, and what ``sdn bench`` times). The
checkpoint is written at the end of the epoch, after the scheduler step (the original saved before
validation and never saved the scheduler), so a resumed run continues with exactly the optimizer,
scheduler and data order an uninterrupted run would have.

Data randomness is a function of (seed, epoch, sample): each loader reseeds its shuffle generator
and tells its dataset the epoch before every epoch, so the number of workers does not matter and a
resume repeats the same batches.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from tqdm import tqdm

from sdn.checkpoint import capture_rng_state, content_digest, link_checkpoint, make_checkpoint, save_checkpoint
from sdn.config import opts_dict
from sdn.engine.logger import TabLogger, drop_rows_after
from sdn.engine.objectives import Objective, read_metrics
from sdn.engine.optim import OptimizerSchedule
from sdn.engine.precision import check_amp
from sdn.distributed import SINGLE, Context, broadcast_buffers, gather, sum_across
from sdn.errors import SdnError
from sdn.methods.base import BatchTransform
from sdn.seeding import mix_seed

LOADER_TIMEOUT_S = 600  # a worker stuck this long on one batch (e.g. a hostile video) is an error, not a hang


class EpochSampler(Sampler):
    """Sample keys ``(epoch, index)`` of one epoch, in an order fixed by (seed, epoch, stream).

    Carrying the epoch in the key lets persistent workers produce the right epoch's random clips
    without being told; ``start`` skips samples already consumed before an interruption. Under
    DDP each rank takes its share of the same permutation: ``"padded"`` (training: every rank
    gets as many samples, some repeated, like DistributedSampler), ``"strided"`` (validation:
    every sample exactly once) or ``"contiguous"`` (test: consecutive clips of a video stay together).
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int, stream: int, context: Context = SINGLE,
                 sharding: str = "padded"):
        self.size, self.shuffle, self.seed, self.stream = size, shuffle, seed, stream
        self.context, self.sharding = context, sharding
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """This rank's indices for the current epoch."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, self.stream))
            indices = torch.randperm(self.size, generator=generator).tolist()
        else:
            indices = list(range(self.size))
        rank, world = self.context.rank, self.context.world_size
        if world == 1:
            return indices
        if self.sharding == "contiguous":
            share = math.ceil(self.size / world)
            return indices[rank * share:(rank + 1) * share]
        if self.sharding == "padded":
            indices += indices[:math.ceil(self.size / world) * world - self.size]
        return indices[rank::world]

    def shard_size(self) -> int:
        return len(self.order())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, index) for index in self.order()[self.start:]])

    def __len__(self) -> int:
        return max(0, self.shard_size() - self.start)


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Default collation of the good items; unreadable ones (``--on_bad_sample skip``) are listed apart."""
    good = [item for item in items if "bad_sample" not in item]
    batch = default_collate(good) if good else {}
    batch["bad_samples"] = [item["bad_sample"] for item in items if "bad_sample" in item]
    return batch


class EpochLoader:
    """A DataLoader whose shuffle order and sample randomness are fixed by (seed, epoch)."""

    def __init__(self, dataset: Dataset, *, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 workers: int = 0, pin_memory: bool = False, seed: int = 0, stream: int = 0, context: Context = SINGLE,
                 sharding: str = "padded"):
        self.dataset = dataset
        self.sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, stream=stream, context=context,
                                    sharding=sharding)
        self.batch_size = batch_size
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 pin_memory=pin_memory, drop_last=drop_last, collate_fn=collate_clips,
                                 persistent_workers=workers > 0, timeout=LOADER_TIMEOUT_S if workers else 0)
        shard = self.sampler.shard_size()
        self.n_batches = shard // batch_size if drop_last else math.ceil(shard / batch_size)
        # Rank 0's shard is the largest (every shard under "padded"): without a batch there, no rank has one.
        largest_shard = math.ceil(len(dataset) / context.world_size)
        if (largest_shard // batch_size if drop_last else largest_shard) == 0:
            raise SdnError(f"{len(dataset)} clips give no batch of {batch_size} on any process (drop_last={drop_last}); "
                           "lower the batch size or add videos")

    def epoch(self, epoch: int, start_batch: int = 0) -> DataLoader:
        """The loader for ``epoch``, starting at batch ``start_batch`` (0-based)."""
        self.sampler.set_epoch(epoch, start_batch * self.batch_size)
        return self.loader

    def __len__(self) -> int:
        return self.n_batches


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

    def state_dict(self) -> dict[str, dict]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        self.sums.update(state["sums"])
        self.counts.update(state["counts"])

    def reduced(self, names: list[str], context: Context, device: torch.device) -> "MeanMeter":
        """The meter summed over all ranks (itself in a single process).

        Every rank reduces the same vector, the sums then the counts of ``names`` in that order,
        with zeros for names it has no value of, so a rank without a batch still takes part in
        the collective and gets the shared means. Names no rank has a value of stay absent, as in
        a single process.
        """
        if not context.enabled:
            return self
        unknown = set(self.sums) - set(names)
        if unknown:
            raise ValueError(f"metrics {sorted(unknown)} are not among the objective's columns {names}")
        totals = sum_across([self.sums.get(n, 0.0) for n in names] + [self.counts.get(n, 0) for n in names],
                            context, device)
        merged = MeanMeter()
        for i, name in enumerate(names):
            if totals[len(names) + i]:
                merged.sums[name], merged.counts[name] = totals[i], int(totals[len(names) + i])
        return merged


class NullLogger:
    """Stands in for the logs on ranks other than 0."""

    def log(self, values: dict[str, Any]) -> None:
        del values

    def close(self) -> None:
        pass


@dataclass
class RunLogs:
    train: TabLogger | None
    train_batch: TabLogger | None
    val: TabLogger | None
    tensorboard: Any | None

    @classmethod
    def disabled(cls) -> "RunLogs":
        return cls(NullLogger(), NullLogger(), NullLogger(), None)

    def close(self) -> None:
        for logger in (self.train, self.train_batch, self.val):
            if logger is not None:
                logger.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


@dataclass(frozen=True)
class TrainerConfig:
    """What the loop needs to know: where it writes, how long it runs, precision, failure policies.

    ``options`` are the run's full training options (saved in every checkpoint as ``config``, so
    ``sdn analyze``/``sdn visualize`` can rebuild the model); a library user may leave them out.
    """

    result_path: str
    n_epochs: int = 1
    checkpoint_every: int = 10
    seed: int = 1
    arch: str = ""
    amp: str = "off"
    zero_grad_to_none: bool = False
    on_nonfinite: str = "error"
    on_bad_sample: str = "error"
    progress: bool = True
    options: Any = None

    @classmethod
    def from_options(cls, opt: Any) -> "TrainerConfig":
        return cls(result_path=opt.result_path, n_epochs=opt.n_epochs, checkpoint_every=opt.checkpoint,
                   seed=opt.manual_seed, arch=opt.arch, amp=opt.amp, zero_grad_to_none=opt.zero_grad_to_none,
                   on_nonfinite=opt.on_nonfinite, on_bad_sample=opt.on_bad_sample, progress=not opt.no_progress,
                   options=opt)

    def counters(self) -> list[str]:
        """Training-log columns for the counts that only exist when skipping is allowed."""
        return (["bad samples"] if self.on_bad_sample == "skip" else []) + \
            (["skipped steps"] if self.on_nonfinite == "skip" else [])


def open_logs(result_path: str, objective: Objective, *, train: bool, val: bool, resume_at: tuple[int, int] | None,
              tensorboard: bool, counters: list[str] = ()) -> RunLogs:
    """The run's logs; when resuming at (epoch, batch), rows from that point on are dropped, then appended to."""
    columns, extra = objective.columns, [*objective.extra_columns, *counters]
    append = resume_at is not None
    if append:
        epoch, batch = resume_at
        for name in ("train.log", "val.log"):
            drop_rows_after(os.path.join(result_path, name), lambda row: int(row["epoch"]) < epoch)
        drop_rows_after(os.path.join(result_path, "train_batch.log"),
                        lambda row: (int(row["epoch"]), int(row["batch"])) <= (epoch, batch))
    writer = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(os.path.join(result_path, "tensorboard"))
    return RunLogs(
        train=TabLogger(os.path.join(result_path, "train.log"), ["epoch", *columns, "lr", *extra], append=append)
        if train else None,
        train_batch=TabLogger(os.path.join(result_path, "train_batch.log"),
                              ["epoch", "batch", "iter", *columns, "lr", *extra], append=append) if train else None,
        val=TabLogger(os.path.join(result_path, "val.log"), ["epoch", *columns, *objective.extra_columns],
                      append=append) if val else None,
        tensorboard=writer,
    )


def move_batch(batch: dict[str, Any], device: torch.device, prepare: Callable[[Tensor], Tensor],
               transform: BatchTransform | None = None, generator: torch.Generator | None = None) -> dict[str, Any]:
    """The batch on ``device``, its clips normalised; a debiasing ``transform`` runs just before that,
    on the 0..255 clips (see :mod:`sdn.methods.base`)."""
    moved = {key: value.to(device, non_blocking=True) if isinstance(value, Tensor) else value
             for key, value in batch.items()}
    if transform is not None:
        moved = transform(moved, generator)
    moved.pop("actor_mask", None)  # only a method's input
    moved["clip"] = prepare(moved["clip"])
    return moved


METHOD_STREAM = 0x6D6978  # keeps the methods' draws apart from every other seeded stream


class Preempted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving ``last.pth`` at a step boundary."""

    def __init__(self, signum: int, epoch: int, batch: int, path: str):
        self.signum, self.epoch, self.batch, self.path = signum, epoch, batch, path
        super().__init__(f"stopped by {signal.Signals(signum).name} at epoch {epoch}, batch {batch}; saved {path}")


class Trainer:
    """Runs training and validation epochs of one objective on one model.

    Every epoch ends with ``last.pth``; a SIGTERM/SIGINT makes the current step finish, saves
    ``last.pth`` with the position inside the epoch and raises :class:`Preempted`.
    """

    def __init__(self, *, model: nn.Module, objective: Objective, schedule: OptimizerSchedule | None,
                 config: TrainerConfig, device: torch.device, prepare: Callable[[Tensor], Tensor],
                 logs: RunLogs | None = None, class_names: list[str] = (), context: Context = SINGLE,
                 train_model: nn.Module | None = None, batch_transform: BatchTransform | None = None):
        """``train_model`` is what training steps call (a DDP or compiled wrapper); ``model`` is the
        plain module that is validated and saved. ``prepare`` turns a batch's uint8 clips into the
        model's input on ``device`` (:func:`sdn.data.transforms.input_preparation`).
        ``batch_transform`` (a debiasing method) changes the first loader's training batches, never
        validation ones. ``logs`` default to none (:meth:`RunLogs.disabled`)."""
        self.config, self.model, self.objective, self.schedule = config, model, objective, schedule
        self.device, self.prepare, self.class_names = device, prepare, list(class_names)
        self.logs = RunLogs.disabled() if logs is None else logs
        self.context = context
        self.train_model = model if train_model is None else train_model
        self.batch_transform = batch_transform
        self.progress = config.progress and context.is_main
        check_amp(config.amp, device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None
        self.stop_signal: int | None = None
        self.last_path = os.path.join(config.result_path, "last.pth")
        self.bad_samples, self.skipped_steps = 0, 0
        self._stop_agreed = False
        self._epoch_meter: MeanMeter | None = None
        self._n_train_batches = 0

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """Turn SIGTERM/SIGINT into a stop at the next step boundary (a second SIGINT stops at once)."""
        def request_stop(signum: int, frame: Any) -> None:
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_signal = signum
            print(f"\n{signal.Signals(signum).name} received: stopping after the current step", flush=True)

        previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _batches(self, loaders: list[EpochLoader], epoch: int, description: str, start: int = 0,
                 train: bool = False) -> Iterator[tuple[int, list[dict], float]]:
        """Yield (batch number from 1, batches moved to the device, seconds spent waiting for data).

        Batches whose clips were all unreadable (``--on_bad_sample skip``) are recorded and skipped
        (in DDP training on every rank alike, see :meth:`_readable`). In training, the debiasing
        transform changes the first loader's batch (in the full SDN mode the unmasked one; the
        human-masked batch serves the mask loss as it is), with draws seeded by (seed, epoch,
        batch, rank), so a resumed run repeats them.
        """
        total = min(len(loader) for loader in loaders)
        iterators = [iter(loader.epoch(epoch, start)) for loader in loaders]
        numbers = tqdm(range(start + 1, total + 1), desc=description, disable=not self.progress, unit="it",
                       dynamic_ncols=True, initial=start, total=total)
        self._bar = numbers
        for number in numbers:
            begin = time.perf_counter()
            raw = [next(iterator) for iterator in iterators]
            if self._readable(raw, epoch, number, train):
                moved = [move_batch(batch, self.device, self.prepare, *self._method_for(train, i, epoch, number))
                         for i, batch in enumerate(raw)]
                yield number, moved, time.perf_counter() - begin

    def _method_for(self, train: bool, stream: int, epoch: int,
                    number: int) -> tuple[BatchTransform | None, torch.Generator | None]:
        """The debiasing transform and its generator for one batch of one loader (none outside training)."""
        if not train or stream != 0 or self.batch_transform is None:
            return None, None
        seed = mix_seed(self.config.seed, METHOD_STREAM, epoch, number, self.context.rank)
        return self.batch_transform, torch.Generator().manual_seed(seed)

    def _readable(self, batches: list[dict], epoch: int, number: int, train: bool) -> bool:
        """Record the iteration's unreadable clips; whether it runs (every batch has clips left).

        In DDP training the ranks agree (one all-reduce, only with ``--on_bad_sample skip``, the
        one policy that leaves clips out): a rank whose batch is wholly unreadable makes every rank
        skip the iteration, whose DDP gradient all-reduce would otherwise wait for it, and each
        rank counts the bad clips of all ranks, so the logged count is the run's.
        """
        bad = self._record_bad_samples(batches, epoch, number)
        readable = all("clip" in batch for batch in batches)
        if not (train and self.context.enabled and self.config.on_bad_sample == "skip"):
            self.bad_samples += bad
            return readable
        unreadable, bad_in_run = self._agree(not readable, bad)
        self.bad_samples += int(bad_in_run)
        return not unreadable

    def _record_bad_samples(self, batches: list[dict], epoch: int, number: int) -> int:
        """Append this rank's unreadable clips to ``bad_samples.txt``; how many there were."""
        bad = [entry for batch in batches for entry in batch.pop("bad_samples")]
        if bad:
            with open(os.path.join(self.config.result_path, "bad_samples.txt"), "a", encoding="utf-8") as handle:
                handle.writelines(f"{epoch}\t{number}\t{entry}\n" for entry in bad)
        return len(bad)

    def _agree(self, *flags: float) -> list[float]:
        """``flags`` summed over the DDP ranks, in one all-reduce that also carries the stop request.

        Whether any rank was signalled is remembered, so the step boundary after it needs no
        collective of its own (see :meth:`_stop_if_requested`).
        """
        totals = sum_across([*map(float, flags), float(self.stop_signal is not None)], self.context, self.device)
        self._stop_agreed = self._stop_agreed or totals[-1] > 0
        return totals[:-1]

    def _metric_names(self) -> list[str]:
        """Every value a meter of this objective can hold, in the order ranks reduce them."""
        return [*self.objective.columns, *self.objective.extra_columns]

    def train_epoch(self, epoch: int, loaders: list[EpochLoader], position: dict | None = None) -> dict[str, float]:
        """Train one epoch, from ``position`` (batch and running means) when resuming inside it."""
        self.model.train()
        optimizer = self.schedule.optimizer_for(epoch)
        lr = optimizer.param_groups[0]["lr"]
        meter, start = MeanMeter(), 0
        self.bad_samples, self.skipped_steps = 0, 0
        if position:
            start, self.bad_samples, self.skipped_steps = position["batch"], position["bad"], position["skipped"]
            if self.context.is_main:  # the position holds every rank's sums: counted once
                meter.load_state_dict(position["meter"])
        clips, waited, started = 0, 0.0, time.perf_counter()
        n_batches = min(len(loader) for loader in loaders)
        for number, batches, wait in self._batches(loaders, epoch, f"train {epoch}", start, train=True):
            waited += wait
            current = self._optimizer_steps(batches, optimizer, epoch, number)
            if current is None:
                self._stop_if_requested(epoch, number, meter)
                continue
            meter.update(current)
            clips += batches[0]["clip"].shape[0]
            row = {name: value for name, (value, _) in current.items()}
            self.logs.train_batch.log({"epoch": epoch, "batch": number, "iter": (epoch - 1) * n_batches + number,
                                       **row, "lr": lr, **self._run_counts()})
            elapsed = max(time.perf_counter() - started, 1e-9)
            self._bar.set_postfix(loss=f"{row[self.objective.total_column]:.3f}",
                                  acc=f"{row[self.objective.accuracy_column]:.3f}",
                                  clips_s=f"{clips / elapsed:.1f}", data=f"{waited / elapsed:.0%}")
            self._stop_if_requested(epoch, number, meter)
        self._stop_if_requested(epoch, n_batches, meter, agree=True)
        means = meter.reduced(self._metric_names(), self.context, self.device).means()
        self.logs.train.log({"epoch": epoch, **means, "lr": lr, **self._run_counts()})
        self._tensorboard("train", means, epoch, lr=lr)
        self._epoch_meter, self._n_train_batches = meter, n_batches
        return means

    def step(self, batches: list[dict[str, Any]], epoch: int = 1, number: int = 1) -> dict[str, float] | None:
        """One training iteration on the batches of one loader each (as collated, clips uint8 on any
        device): moved and normalised, changed by the debiasing method, then every optimizer step of
        the objective with the epoch's optimizer. Returns the logged values, None when skipped
        (``on_nonfinite="skip"``)."""
        self.model.train()
        moved = [move_batch(batch, self.device, self.prepare, *self._method_for(True, i, epoch, number))
                 for i, batch in enumerate(batches)]
        current = self._optimizer_steps(moved, self.schedule.optimizer_for(epoch), epoch, number)
        return None if current is None else {name: value for name, (value, _) in current.items()}

    def fit(self, train_loaders: list[EpochLoader], val_loaders: list[EpochLoader], *, begin_epoch: int = 1,
            position: dict | None = None) -> None:
        """The epochs ``begin_epoch..n_epochs``: train, validate, step the epoch's LR scheduler with the
        validation total, save. ``position`` (from a mid-epoch ``last.pth``) resumes inside the first."""
        for epoch in range(begin_epoch, self.config.n_epochs + 1):
            if train_loaders:
                self.train_epoch(epoch, train_loaders, position if epoch == begin_epoch else None)
            if val_loaders:
                val_metrics = self.validate(epoch, val_loaders)
                if train_loaders:
                    self.schedule.scheduler_for(epoch).step(val_metrics[self.objective.total_column])
            if train_loaders:
                self.end_epoch(epoch)

    def _optimizer_steps(self, batches: list[dict], optimizer: torch.optim.Optimizer, epoch: int,
                         number: int) -> dict[str, tuple[float, int]] | None:
        """The objective's optimizer steps for one iteration; the metrics to log, None if skipped."""
        current: dict[str, tuple[float, int]] = {}
        for step in _autocast_each(self.objective.steps(self.train_model, batches, epoch), self._autocast):
            if self._skips(step.loss, epoch, number):
                return None
            optimizer.zero_grad(set_to_none=self.config.zero_grad_to_none)
            self._backward_and_step(step.loss, optimizer)
            current.update(step.metrics)
        return read_metrics(current)

    def _skips(self, loss: Tensor, epoch: int, number: int) -> bool:
        """Whether a non-finite loss ends this iteration (or the run, with ``on_nonfinite="error"``).

        Under DDP the ranks decide together before ``backward``, in one all-reduce of a flag:
        every rank must enter the gradient all-reduce of a backward pass, or none.
        """
        finite = bool(torch.isfinite(loss.detach()).all())
        if self.context.enabled:
            (non_finite_ranks,) = self._agree(not finite)
            if not non_finite_ranks:
                return False
        elif finite:
            return False
        self._non_finite(loss if not finite else None, epoch, number)
        return True

    def _non_finite(self, loss: Tensor | None, epoch: int, number: int) -> None:
        """Stop or count the skip; ``loss`` is None on a rank whose own loss was finite."""
        value = "on another process" if loss is None else f"({loss.item()})"
        where = f"non-finite loss {value} at epoch {epoch}, batch {number}"
        if self.config.on_nonfinite == "error":
            raise SdnError(f"{where}; stopping. The last saved checkpoint is intact; try a lower --learning_rate "
                           "(or --on_nonfinite skip)")
        self.skipped_steps += 1
        print(f"warning: {where}; skipped this iteration's remaining steps")

    def _run_counts(self) -> dict[str, int]:
        return {"bad samples": self.bad_samples, "skipped steps": self.skipped_steps}

    def _stop_if_requested(self, epoch: int, batch: int, meter: MeanMeter, *, agree: bool = False) -> None:
        """Stop at this step boundary when any rank was signalled (all ranks stop at the same step).

        Under DDP a rank learns of another's signal from the flag riding on each step's skip
        all-reduce (:meth:`_agree`), so a boundary after a step costs no collective; ``agree``
        adds one where the ranks may not have just agreed (the end of the epoch). The position
        saved holds the epoch's meter of all ranks (only rank 0 loads it on resume) and the run's
        counters, which every rank holds alike.
        """
        if self.context.enabled and agree:
            self._agree()
        if not (self._stop_agreed if self.context.enabled else self.stop_signal is not None):
            return
        reduced = meter.reduced(self._metric_names(), self.context, self.device)
        position = {"batch": batch, "meter": reduced.state_dict(), "bad": self.bad_samples,
                    "skipped": self.skipped_steps}
        self.save(epoch, self.last_path, position=position)
        raise Preempted(self.stop_signal or signal.SIGTERM, epoch, batch, self.last_path)

    @torch.no_grad()
    def validate(self, epoch: int, loaders: list[EpochLoader]) -> dict[str, float]:
        """The epoch's validation means over all ranks; every rank validates with rank 0's BatchNorm
        statistics (each rank's own training forwards left it its own)."""
        self.model.eval()
        broadcast_buffers(self.model, self.context)
        meter = MeanMeter()
        for _, batches, _ in self._batches(loaders, epoch, f"val {epoch}"):
            with self._autocast():
                for step in self.objective.validation_steps(self.model, batches, epoch):
                    meter.update(read_metrics(step.metrics))
            if self._epoch_meter is not None and not self.context.enabled:
                # resume redoes this validation; the epoch's training is kept. (Under DDP ranks
                # validate different numbers of batches, so they stop only between phases.)
                self._stop_if_requested(epoch, self._n_train_batches, self._epoch_meter)
        means = meter.reduced(self._metric_names(), self.context, self.device).means()
        self.logs.val.log({"epoch": epoch, **means})
        self._tensorboard("val", means, epoch)
        print(f"validation at epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
        return means

    def save(self, epoch: int, path: str, position: dict | None = None) -> None:
        """A checkpoint resuming after ``epoch``, or inside it at ``position``.

        Every rank calls it: under DDP each rank's random streams are gathered (``rank_rng_states``,
        so each rank resumes its own); rank 0 writes the file.
        """
        rng_states = gather(capture_rng_state(self.device), self.context)
        if not self.context.is_main:
            return
        optimizer = self.schedule.optimizer_for(epoch)
        checkpoint = make_checkpoint(
            next_epoch=epoch if position else epoch + 1,
            arch=self.config.arch,
            model=self.model,
            optimizer_state=optimizer.state_dict(),
            **self.schedule.state_dict(),
            rng_state=rng_states[0],
            config=_plain_config(self.config.options),
            class_names=list(self.class_names),
        )
        if position:
            checkpoint["position"] = position
        if self.context.enabled:
            checkpoint["rank_rng_states"] = rng_states
        if self.scaler is not None:
            checkpoint["grad_scaler"] = self.scaler.state_dict()
        save_checkpoint(path, checkpoint)

    def end_epoch(self, epoch: int) -> None:
        """``save_{epoch}.pth`` every ``--checkpoint`` epochs, and ``last.pth`` always."""
        self._check_replicas()
        periodic = epoch % self.config.checkpoint_every == 0
        path = os.path.join(self.config.result_path, f"save_{epoch}.pth") if periodic else self.last_path
        self.save(epoch, path)
        if periodic and self.context.is_main:
            link_checkpoint(path, self.last_path)

    def _check_replicas(self) -> None:
        """Under DDP, make sure every rank holds the same weights before one of them is saved.

        BatchNorm running statistics are local to each rank between forwards, so they are taken
        from rank 0 first, as the next forward would; parameters must agree bitwise on their own.
        """
        if not self.context.enabled:
            return
        broadcast_buffers(self.model, self.context)
        digests = gather(content_digest(self.model.state_dict()), self.context)
        if len(set(digests)) != 1:
            raise SdnError(f"the {self.context.world_size} processes hold different weights; the run is not "
                           "consistent (were they started with the same options?)")
        print(f"weights identical on {self.context.world_size} processes")

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


def _plain_config(opt: Any) -> dict[str, Any] | None:
    """Options as plain values (what ``weights_only`` loading accepts); None without options."""
    if opt is None:
        return None
    return {key: value for key, value in opts_dict(opt).items()
            if isinstance(value, (str, int, float, bool, list, type(None)))}
