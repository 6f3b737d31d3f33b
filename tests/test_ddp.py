"""DDP on 2 CPU processes (gloo) where ranks see different things: the shared loop stays in step.

Each test starts 2 processes with ``multiprocessing`` (spawn) that join a gloo group and run
``sdn train`` in-process, so a worker can patch the trainer (a NaN loss on one rank, a stop
request at one batch). A worker writes what it observed to ``rank{N}.json``; a hang ends at the
gloo timeout or the test's deadline, so a broken collective fails the test instead of blocking it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import multiprocessing
import os
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

DATA = dict(classes=3, train_per_class=4, val_per_class=1, ooc_per_class=0, frames=8, width=40, height=32, seed=1,
            diving48=False)
DEADLINE_S = 90  # for one 2-process run; a healthy one takes a few seconds
GLOO_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def data(synth_dataset) -> tuple[Path, int]:
    root, summary = synth_dataset(**DATA)
    return root, summary["num_places"]


def flags(data: tuple[Path, int], result: Path) -> list[str]:
    """Scene-adversarial mode (incomplete batches dropped): 12 training clips give each rank 3 batches
    of 2; the 3 validation clips in batches of 2 give rank 0 one batch and rank 1 none."""
    root, places = data
    return ["train", "--root_path", str(root), "--video_path", "jpg", "--annotation_path", "kinetics.json",
            "--result_path", str(result), "--model_depth", "10", "--resnet_shortcut", "A", "--n_classes", "3",
            "--sample_size", "16", "--sample_duration", "4", "--batch_size", "2", "--val_batch_size", "2",
            "--n_threads", "0", "--n_epochs", "1", "--checkpoint", "1", "--learning_rate", "0.01",
            "--n_val_samples", "1", "--warm_up_epochs", "0", "--no_progress", "--no_tensorboard", "--dataset", "kinetics_adv",
            "--is_mask_adv", "--is_place_adv", "--is_place_soft", "--num_places_classes", str(places),
            "--place_pred_path", str(root / "places")]


# --- what a worker does (module level, so the spawned processes can import it) ---

def _observe(observed: dict[str, Any]) -> None:
    """Record each rank's validation means and buffers, its parameters, skips and scheduler steps after fit."""
    from sdn.checkpoint import content_digest
    from sdn.engine.trainer import Trainer

    real_validate, real_fit = Trainer.validate, Trainer.fit

    def validate(self, epoch, loaders):
        observed["val_means"] = real_validate(self, epoch, loaders)
        observed["val_buffers"] = content_digest(dict(self.model.named_buffers()))  # eval mode: as validation saw them
        return observed["val_means"]

    def fit(self, *args, **kwargs):
        real_fit(self, *args, **kwargs)
        observed["parameters"] = content_digest(dict(self.model.named_parameters()))
        observed["scheduler_steps"] = self.schedule.scheduler_for(1).last_epoch
        observed["skipped"] = self.skipped_steps

    Trainer.validate, Trainer.fit = validate, fit


def _nan_on_rank_1_at_batch_2(rank: int) -> None:
    from sdn.engine import objectives

    real_steps, calls = objectives.SceneAdversarial.steps, []

    def steps(self, model, batches, epoch):
        calls.append(epoch)
        for step in real_steps(self, model, batches, epoch):
            if rank == 1 and len(calls) == 2:
                step = objectives.Step(step.loss * float("nan"), step.metrics)
            yield step

    objectives.SceneAdversarial.steps = steps


def _stop_on_rank_1_at_batch_2(rank: int) -> None:
    """As if rank 1 alone received SIGTERM during batch 2 of epoch 1."""
    from sdn.engine.trainer import Trainer

    real = Trainer._optimizer_steps

    def optimizer_steps(self, batches, optimizer, epoch, number):
        if rank == 1 and (epoch, number) == (1, 2):
            self.stop_signal = signal.SIGTERM
        return real(self, batches, optimizer, epoch, number)

    Trainer._optimizer_steps = optimizer_steps


def _unreadable_on_rank_1_at_batch_2(rank: int) -> None:
    """Rank 1's training batch 2 of epoch 1 has no readable clip (as with ``--on_bad_sample skip``)."""
    from sdn.engine import trainer

    real, calls = trainer.collate_clips, []

    def collate(items):
        calls.append(len(items))
        if rank == 1 and len(calls) == 2:
            return {"bad_samples": [f"unreadable clip {i}" for i in range(len(items))]}
        return real(items)

    trainer.collate_clips = collate  # the loaders, built later, take this one


PATCHES = {"nan": _nan_on_rank_1_at_batch_2, "stop": _stop_on_rank_1_at_batch_2,
           "unreadable": _unreadable_on_rank_1_at_batch_2}


def _worker(rank: int, world: int, port: int, argv: list[str], patch: str | None, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from sdn.cli.main import main as sdn_main

    torch.distributed.init_process_group("gloo", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=GLOO_TIMEOUT_S))
    observed: dict[str, Any] = {}
    _observe(observed)
    if patch:
        PATCHES[patch](rank)
    with open(f"{out}/rank{rank}.out", "w") as stdout, open(f"{out}/rank{rank}.err", "w") as stderr, \
            contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        observed["rc"] = sdn_main(argv)
    Path(out, f"rank{rank}.json").write_text(json.dumps(observed))


def run_ranks(argv: list[str], out: Path, patch: str | None = None, world: int = 2) -> list[dict[str, Any]]:
    """Run ``sdn argv`` on ``world`` gloo processes; what each rank observed (with its stderr)."""
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_worker, args=(rank, world, port, argv, patch, str(out))) for rank in range(world)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(DEADLINE_S)
    hung = [process for process in processes if process.is_alive()]
    for process in hung:
        process.kill()
        process.join()
    errors = {rank: Path(out, f"rank{rank}.err").read_text() if Path(out, f"rank{rank}.err").exists() else ""
              for rank in range(world)}
    assert not hung, f"{len(hung)} process(es) hung: {errors}"
    assert all(process.exitcode == 0 for process in processes), f"a process crashed: {errors}"
    return [{**json.loads(Path(out, f"rank{rank}.json").read_text()), "stderr": errors[rank]} for rank in range(world)]


def epoch_rows(result: Path) -> list[dict[str, str]]:
    header, *rows = [line.split("\t") for line in (result / "train.log").read_text().splitlines()]
    return [dict(zip(header, row)) for row in rows]


# --- the tests ---

@pytest.mark.slow
def test_a_rank_without_validation_batches_logs_the_shared_means(data, tmp_path):
    ranks = run_ranks(flags(data, tmp_path / "run"), tmp_path / "ranks")
    assert [rank["rc"] for rank in ranks] == [0, 0], [rank["stderr"] for rank in ranks]
    assert all("Traceback" not in rank["stderr"] for rank in ranks)
    assert ranks[0]["val_means"] == ranks[1]["val_means"] and "loss total" in ranks[0]["val_means"]
    assert [rank["scheduler_steps"] for rank in ranks] == [1, 1]
    assert ranks[0]["val_buffers"] == ranks[1]["val_buffers"]  # validation BatchNorm statistics are rank 0's
    assert (tmp_path / "run" / "val.log").read_text().count("\n") == 2


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_is_skipped_by_all(data, tmp_path):
    result = tmp_path / "run"
    ranks = run_ranks([*flags(data, result), "--on_nonfinite", "skip"], tmp_path / "ranks", patch="nan")
    assert [rank["rc"] for rank in ranks] == [0, 0], [rank["stderr"] for rank in ranks]
    assert ranks[0]["parameters"] == ranks[1]["parameters"]
    assert [rank["skipped"] for rank in ranks] == [1, 1]
    (row,) = epoch_rows(result)
    assert row["skipped steps"] == "1" and all(value != "nan" for value in row.values())
    batches = (result / "train_batch.log").read_text().splitlines()[1:]
    assert [line.split("\t")[1] for line in batches] == ["1", "3"]  # batch 2 skipped on both ranks


@pytest.mark.slow
def test_an_unreadable_batch_on_one_rank_is_skipped_by_all(data, tmp_path):
    result = tmp_path / "run"
    ranks = run_ranks([*flags(data, result), "--on_bad_sample", "skip"], tmp_path / "ranks", patch="unreadable")
    assert [rank["rc"] for rank in ranks] == [0, 0], [rank["stderr"] for rank in ranks]
    assert ranks[0]["parameters"] == ranks[1]["parameters"]
    (row,) = epoch_rows(result)
    assert row["bad samples"] == "2"  # rank 1's two clips, counted on every rank
    batches = (result / "train_batch.log").read_text().splitlines()[1:]
    assert [line.split("\t")[1] for line in batches] == ["1", "3"]


@pytest.mark.slow
def test_a_mid_epoch_stop_and_resume_logs_an_uninterrupted_runs_means(data, tmp_path):
    reference, result = tmp_path / "reference", tmp_path / "run"
    uninterrupted = run_ranks(flags(data, reference), tmp_path / "r0")
    assert [rank["rc"] for rank in uninterrupted] == [0, 0]
    stopped = run_ranks(flags(data, result), tmp_path / "r1", patch="stop")
    assert [rank["rc"] for rank in stopped] == [128 + signal.SIGTERM] * 2
    resumed = run_ranks([*flags(data, result), "--auto_resume"], tmp_path / "r2")
    assert [rank["rc"] for rank in resumed] == [0, 0], [rank["stderr"] for rank in resumed]

    (expected,), (got,) = epoch_rows(reference), epoch_rows(result)
    assert expected.keys() == got.keys()
    for column, value in expected.items():
        # the same sums, added in another order: equal up to the last bits
        assert math.isclose(float(got[column]), float(value), rel_tol=1e-12), (column, got[column], value)
    assert resumed[0]["parameters"] == uninterrupted[0]["parameters"]


@pytest.mark.slow
def test_sync_bn_on_cpu_is_a_one_line_error(data, tmp_path):
    result = tmp_path / "run"
    ranks = run_ranks([*flags(data, result), "--sync_bn", "--no_cuda"], tmp_path / "ranks")
    message = "sdn: error: --sync_bn needs CUDA devices (SyncBatchNorm has no CPU implementation)\n"
    assert [rank["rc"] for rank in ranks] == [2, 2]
    assert [rank["stderr"] for rank in ranks] == [message, message]
    assert not (result / "opts.json").exists()  # before anything was read or written
