"""The GPU speed options stay safe on a CPU-only machine (they are measured on GPUs by `sdn bench`)."""

from __future__ import annotations

import math

import pytest

from sdn.cli.main import main as sdn_main


@pytest.fixture(scope="module")
def data(synth_dataset):
    root, _ = synth_dataset(classes=2, train_per_class=3, val_per_class=1, ooc_per_class=0, frames=8, width=40,
                            height=32, seed=2, diving48=False)
    return root


def train(data, result, *extra: str) -> int:
    # 8-frame clips, not fewer: on some CPUs (an AMD EPYC with AVX512-BF16, torch 2.14) oneDNN's bf16 backward of
    # the 7x7x7 stem crashes the process (double free) when the clip is shorter than the kernel (see test_bench).
    return sdn_main(["train", "--root_path", str(data), "--video_path", "jpg", "--annotation_path", "kinetics.json",
                     "--result_path", str(result), "--dataset", "kinetics", "--is_mask_adv", "--n_classes", "2",
                     "--model_depth", "10", "--resnet_shortcut", "A", "--sample_size", "16", "--sample_duration", "8",
                     "--batch_size", "2", "--val_batch_size", "2", "--n_threads", "0", "--n_epochs", "1",
                     "--learning_rate", "0.001", "--no_progress", "--no_tensorboard", *extra])


@pytest.mark.slow
def test_bf16_autocast_and_channels_last_train_on_cpu(data, tmp_path):
    assert train(data, tmp_path, "--amp", "bf16", "--channels_last", "--cudnn_benchmark") == 0
    header, row = [line.split("\t") for line in (tmp_path / "train.log").read_text().splitlines()]
    assert header[:3] == ["epoch", "loss", "acc"] and math.isfinite(float(row[1]))
    # --checkpoint defaults to 10 epochs, so the one epoch leaves last.pth (the resume point) and no save_1.pth
    assert (tmp_path / "last.pth").is_file() and not (tmp_path / "save_1.pth").exists()


def test_fp16_without_a_gpu_is_a_clear_error(data, tmp_path, capsys):
    assert train(data, tmp_path, "--amp", "fp16") == 2
    assert "--amp fp16 needs a CUDA device" in capsys.readouterr().err
