"""Training that survives kills, pre-emption and hostile inputs without losing work."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sdn.checkpoint import find_resumable, read_checkpoint
from sdn.cli.main import main as sdn_main
from sdn.errors import SdnError

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3
DATA = dict(classes=2, train_per_class=5, val_per_class=1, ooc_per_class=0, frames=8, width=40, height=32, seed=5,
            diving48=False)


@pytest.fixture(scope="module")
def data(synth_dataset) -> tuple[Path, int]:
    root, summary = synth_dataset(**DATA)
    return root, summary["num_places"]


def flags(data: tuple[Path, int], mode: str, result: Path, workers: int = 0) -> list[str]:
    root, places = data
    common = ["--root_path", str(root), "--video_path", "jpg", "--annotation_path", "kinetics.json",
              "--result_path", str(result), "--model_depth", "10", "--resnet_shortcut", "A", "--n_classes", "2",
              "--sample_size", "16", "--sample_duration", "4", "--batch_size", "2", "--val_batch_size", "2",
              "--n_threads", str(workers), "--n_epochs", str(EPOCHS), "--checkpoint", "1", "--learning_rate", "0.01",
              "--new_layer_lr", "0.01", "--warm_up_epochs", "1", "--no_progress", "--no_tensorboard"]
    scene = ["--is_place_adv", "--is_place_soft", "--num_places_classes", str(places),
             "--place_pred_path", str(root / "places")]
    return common + {
        "baseline": ["--dataset", "kinetics", "--is_mask_adv"],
        "place_adv": ["--dataset", "kinetics_adv", "--is_mask_adv", *scene],
        "full": ["--dataset", "kinetics_adv_msk", "--is_mask_entropy", "--mask_ratio", "1.0",
                 "--human_dets_path", str(root / "dets"), *scene],
    }[mode]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=300)
    return process.returncode, output


def batch_rows(result: Path) -> int:
    path = result / "train_batch.log"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def wait_for_rows(process: subprocess.Popen, result: Path, rows: int) -> None:
    deadline = time.monotonic() + 120
    while batch_rows(result) < rows:
        assert process.poll() is None, f"the run ended before {rows} training steps"
        assert time.monotonic() < deadline
        time.sleep(0.02)


def final_state(result: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(str(result / f"save_{EPOCHS}.pth"))["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = final_state(a), final_state(b)
    assert first.keys() == second.keys()
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert not different, f"weights differ: {different[:5]}"


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict[tuple[str, int], Path]:
    """Uninterrupted runs, made on demand and shared by the tests."""
    runs: dict[tuple[str, int], Path] = {}

    def get(mode: str, workers: int = 0) -> Path:
        if (mode, workers) not in runs:
            result = tmp_path_factory.mktemp(f"ref_{mode}_{workers}")
            code, output = finish(start(flags(data, mode, result, workers)))
            assert code == 0, output[-3000:]
            runs[mode, workers] = result
        return runs[mode, workers]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("mode, workers", [("baseline", 0), ("place_adv", 0), ("full", 0), ("full", 2)])
def test_sigkill_then_auto_resume_ends_bitwise_identical(data, reference, tmp_path, mode, workers):
    total = batch_rows(reference(mode, workers))
    rng = random.Random(f"{mode}{workers}")
    result = tmp_path / "run"
    kills = sorted(rng.sample(range(1, total), 2 if workers else 1))
    for rows in kills:
        process = start(flags(data, mode, result, workers) + ["--auto_resume"])
        wait_for_rows(process, result, rows)
        time.sleep(rng.uniform(0.0, 0.3))
        process.kill()
        process.wait()
    code, output = finish(start(flags(data, mode, result, workers) + ["--auto_resume"]))
    assert code == 0, output[-3000:]
    assert_same_weights(reference(mode, workers), result)
    assert batch_rows(result) == total  # rows of the killed epochs were dropped, not duplicated


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["baseline", "full"])
def test_sigterm_saves_mid_epoch_and_resume_is_exact(data, reference, tmp_path, mode):
    result = tmp_path / "run"
    process = start(flags(data, mode, result))
    wait_for_rows(process, result, 3)  # inside epoch 1 (5 batches per epoch)
    process.send_signal(signal.SIGTERM)
    code, output = finish(process)
    assert code == 128 + signal.SIGTERM
    assert "SIGTERM" in output and "--auto_resume" in output and "Traceback" not in output
    checkpoint = read_checkpoint(str(result / "last.pth"))
    assert checkpoint["position"]["batch"] >= 3 and checkpoint["epoch"] == 1

    code, output = finish(start(flags(data, mode, result) + ["--auto_resume"]))
    assert code == 0, output[-3000:]
    assert_same_weights(reference(mode), result)
    assert (result / "train.log").read_text() == (reference(mode) / "train.log").read_text()


@pytest.mark.slow
def test_corrupt_checkpoint_is_refused_and_auto_resume_falls_back(data, tmp_path):
    result = tmp_path / "run"
    assert sdn_main(["train", *flags(data, "baseline", result), "--n_epochs", "2"]) == 0
    last = result / "last.pth"
    last.unlink()  # it is a hard link of save_2.pth; write a damaged copy instead
    damaged = bytearray((result / "save_2.pth").read_bytes())
    weights = read_checkpoint(str(result / "save_2.pth"))["state_dict"]["module.fc.weight"]
    offset = damaged.find(weights.numpy().tobytes()[:64])
    damaged[offset + 3] ^= 0xFF
    last.write_bytes(bytes(damaged))
    with pytest.raises(SdnError, match="corrupt"):
        read_checkpoint(str(last))
    assert find_resumable(str(result)) == str(result / "save_2.pth")


@pytest.mark.slow
def test_full_disk_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch, capsys):
    result = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        # Epoch 1 writes opts.json, save_1.pth (last.pth is a link); fail the next large write.
        calls.append(fd)
        if (result / "save_1.pth").exists() and os.fstat(fd).st_size > 100_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr("sdn.io.os.fsync", failing_fsync)
    assert sdn_main(["train", *flags(data, "baseline", result)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not (result / "save_2.pth").exists()
    assert read_checkpoint(str(result / "last.pth"))["epoch"] == 2  # epoch 1's checkpoint, intact
    assert not [name for name in os.listdir(result) if name.endswith(".tmp")]


def _nan_at(batch_number: int, monkeypatch) -> None:
    """Make the baseline's loss NaN at one training iteration of epoch 1."""
    from sdn.engine import objectives

    real_steps, seen = objectives.Baseline.steps, []

    def steps(self, model, batches, epoch):
        seen.append(epoch)
        for step in real_steps(self, model, batches, epoch):
            if epoch == 1 and len(seen) == batch_number:
                step = objectives.Step(step.loss * float("nan"), step.metrics)
            yield step

    monkeypatch.setattr(objectives.Baseline, "steps", steps)


def test_non_finite_loss_stops_naming_epoch_and_batch(data, tmp_path, monkeypatch, capsys):
    _nan_at(2, monkeypatch)
    assert sdn_main(["train", *flags(data, "baseline", tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "epoch 1, batch 2" in err
    assert not (tmp_path / "run" / "save_1.pth").exists()


def test_non_finite_loss_can_be_skipped_and_counted(data, tmp_path, monkeypatch):
    _nan_at(2, monkeypatch)
    result = tmp_path / "run"
    assert sdn_main(["train", *flags(data, "baseline", result), "--n_epochs", "1", "--on_nonfinite", "skip"]) == 0
    header, row = [line.split("\t") for line in (result / "train.log").read_text().splitlines()]
    assert header[-1] == "skipped steps" and row[-1] == "1"
    assert all(value != "nan" for value in row)


@pytest.fixture
def corrupt_data(data, synth_copy) -> tuple[Path, int, Path]:
    """A copy of the dataset whose first training video has a corrupt frame."""
    _, places = data
    copy, _ = synth_copy(**DATA)
    video = sorted((copy / "jpg" / "train").glob("*/*"))[0]
    for frame in video.glob("image_*.jpg"):
        frame.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return copy, places, video


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_sample_fails_naming_the_file_by_default(corrupt_data, tmp_path, capsys, workers):
    copy, places, video = corrupt_data
    code = sdn_main(["train", *flags((copy, places), "baseline", tmp_path / "run", workers), "--n_epochs", "1"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert str(video) in err and "not a readable JPEG" in err and len(err.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_bad_samples_can_be_skipped_and_recorded(corrupt_data, tmp_path, workers):
    copy, places, video = corrupt_data
    result = tmp_path / "run"
    # batch 5 (10 clips): a batch that loses its corrupt clip keeps 4 (BatchNorm needs more than one)
    assert sdn_main(["train", *flags((copy, places), "baseline", result, workers), "--n_epochs", "1",
                     "--batch_size", "5", "--on_bad_sample", "skip"]) == 0
    recorded = (result / "bad_samples.txt").read_text().splitlines()
    assert recorded and all(str(video) in line for line in recorded)
    header, row = [line.split("\t") for line in (result / "train.log").read_text().splitlines()]
    assert header[-1] == "bad samples" and int(row[-1]) >= 1
