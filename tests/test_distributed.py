"""DDP through torchrun (gloo on CPU): identical replicas, a normal checkpoint, the same val.json."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdn.checkpoint import read_checkpoint
from sdn.distributed import Context
from sdn.engine.trainer import EpochSampler

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sharding", ["padded", "strided", "contiguous"])
def test_ranks_share_one_permutation(sharding):
    shards = [EpochSampler(11, shuffle=True, seed=3, stream=0, context=Context(rank, 3), sharding=sharding)
              for rank in range(3)]
    for sampler in shards:
        sampler.set_epoch(4)
    orders = [sampler.order() for sampler in shards]
    single = EpochSampler(11, shuffle=True, seed=3, stream=0)
    single.set_epoch(4)
    everything = single.order()
    merged = sorted(index for order in orders for index in order)
    if sharding == "padded":
        assert {len(order) for order in orders} == {4} and set(merged) == set(range(11))
    else:
        assert merged == list(range(11))  # every clip exactly once
    if sharding == "contiguous":
        assert [index for order in orders for index in order] == everything


@pytest.mark.slow
def test_torchrun_two_processes_match_a_single_process_test(synth_dataset, tmp_path):
    data, summary = synth_dataset(classes=2, train_per_class=4, val_per_class=2, ooc_per_class=0, frames=8, width=40,
                                  height=32, seed=1, diving48=False)
    places = summary["num_places"]
    flags = ["--root_path", str(data), "--video_path", "jpg", "--annotation_path", "kinetics.json",
             "--model_depth", "10", "--resnet_shortcut", "A", "--n_classes", "2", "--sample_size", "16",
             "--sample_duration", "4", "--batch_size", "2", "--val_batch_size", "1", "--n_threads", "0",
             "--n_epochs", "1", "--checkpoint", "1", "--learning_rate", "0.01", "--warm_up_epochs", "0",
             "--no_progress", "--no_tensorboard", "--dataset", "kinetics_adv_msk", "--is_place_adv",
             "--is_place_soft", "--is_mask_entropy", "--mask_ratio", "1.0", "--num_places_classes", str(places),
             "--place_pred_path", str(data / "places"), "--human_dets_path", str(data / "dets")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*torchrun, "train.py", *flags, "--result_path", str(tmp_path / "ddp"), "--test"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "on 2 processes" in done.stdout and "weights identical on 2 processes" in done.stdout
    assert done.stdout.count("validation at epoch 1") == 1  # rank 0 speaks for all

    checkpoint = read_checkpoint(str(tmp_path / "ddp" / "save_1.pth"))
    assert checkpoint["epoch"] == 2 and all(key.startswith("module.") and not key.startswith("module.module.")
                                            for key in checkpoint["state_dict"])
    single = subprocess.run([sys.executable, "train.py", *flags, "--result_path", str(tmp_path / "single"),
                             "--no_train", "--no_val", "--test", "--resume_path", str(tmp_path / "ddp" / "save_1.pth")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    assert (tmp_path / "ddp" / "val.json").read_text() == (tmp_path / "single" / "val.json").read_text()
