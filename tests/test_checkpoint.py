"""Checkpoints: the original layout loads (pretrain and resume), safely, with clear errors."""

import io
import os
import pickle

import pytest
import torch

from sdn.checkpoint import (add_prefix, capture_rng_state, check_arch, find_resumable, link_checkpoint,
                            load_for_resume, load_pretrained, make_checkpoint, read_checkpoint, restore_rng_state,
                            save_checkpoint)
from sdn.errors import SdnError
from sdn.models import build_model


def tiny(n_classes=5, **kwargs):
    torch.manual_seed(0)
    return build_model("resnet", 10, n_classes=n_classes, sample_size=32, sample_duration=4,
                       resnet_shortcut="A", **kwargs).eval()


def original_layout(model, path, *, legacy=False, drop_batches_tracked=False):
    """A checkpoint as the original train.py wrote it: module. keys, arch, epoch + 1, optimizer."""
    state = add_prefix(model.state_dict())
    if drop_batches_tracked:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0.9)
    payload = {"epoch": 3, "arch": "resnet-10", "state_dict": state, "optimizer": optimizer.state_dict()}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)


@pytest.mark.slow
@pytest.mark.parametrize("legacy", [False, True])
def test_original_checkpoint_gives_the_same_outputs(tmp_path, legacy):
    source = tiny(with_place_head=True, num_places_classes=7)
    path = str(tmp_path / "save_2.pth")
    original_layout(source, path, legacy=legacy, drop_batches_tracked=legacy)
    clip = torch.randn(2, 3, 4, 32, 32)
    checkpoint = read_checkpoint(path)
    assert checkpoint["epoch"] == 3 and checkpoint["arch"] == "resnet-10"

    resumed = tiny(with_place_head=True, num_places_classes=7)
    load_for_resume(resumed, checkpoint, path)
    assert torch.equal(resumed(clip).action, source(clip).action)
    assert torch.equal(resumed(clip).place, source(clip).place)

    pretrained = tiny()  # no heads: the place head is dropped, everything else is loaded
    report = load_pretrained(pretrained, checkpoint, path, verbose=False)
    assert any(k.startswith("place_mlp") for k in report.unused)
    assert torch.equal(pretrained(clip).action, source(clip).action)


def test_shape_mismatched_fc_is_not_loaded(tmp_path):
    path = str(tmp_path / "k400.pth")
    original_layout(tiny(n_classes=9), path)
    model = tiny(n_classes=5)
    before = model.fc.weight.clone()
    report = load_pretrained(model, read_checkpoint(path), path, verbose=False)
    assert [m.split()[0] for m in report.shape_mismatch] == ["fc.weight", "fc.bias"]
    assert torch.equal(model.fc.weight, before)
    assert report.not_in_checkpoint == []  # the fc entries are in the file, reported as shape mismatches


def test_wrong_arch_is_a_clear_error(tmp_path):
    path = str(tmp_path / "c.pth")
    original_layout(tiny(), path)
    with pytest.raises(SdnError, match=r"'resnet-10' model but the options build 'resnet-18'"):
        check_arch(read_checkpoint(path), "resnet-18", path)


def test_resume_into_a_different_model_is_a_clear_error(tmp_path):
    path = str(tmp_path / "c.pth")
    original_layout(tiny(), path)
    with pytest.raises(SdnError, match="does not fit the model"):
        load_for_resume(tiny(with_hm_head=True), read_checkpoint(path), path)


def test_low_match_warns(tmp_path):
    path = str(tmp_path / "other.pth")
    torch.save({"arch": "resnet-10", "state_dict": {"something.weight": torch.zeros(3)}}, path)
    with pytest.warns(UserWarning, match="only 0 of"):
        load_pretrained(tiny(), read_checkpoint(path), path, verbose=False)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoints_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"arch": "resnet-10", "state_dict": {}, "payload": Evil()}, path)
    with pytest.raises(SdnError, match="refusing to load"):
        read_checkpoint(str(path))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", pickle.dumps([1, 2, 3])])
def test_garbage_files_are_clear_errors(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(SdnError, match="bad.pth"):
        read_checkpoint(str(path))
    with pytest.raises(SdnError, match="not found"):
        read_checkpoint(str(tmp_path / "missing.pth"))


def test_saved_checkpoint_is_a_superset_of_the_original_and_loads_weights_only(tmp_path):
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = str(tmp_path / "save_1.pth")
    save_checkpoint(path, make_checkpoint(next_epoch=2, arch="resnet-10", model=model,
                                          optimizer_state=optimizer.state_dict(), rng_state=capture_rng_state(),
                                          class_names=["a", "b"], config={"lr": 0.1}))
    loaded = torch.load(path, weights_only=True)
    assert {"epoch", "arch", "state_dict", "optimizer"} <= set(loaded)
    assert loaded["epoch"] == 2 and all(k.startswith("module.") for k in loaded["state_dict"])
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = capture_rng_state()
    draws = (torch.rand(3), np.random.rand(3), random.random())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restore_rng_state(torch.load(buffer, weights_only=True))
    assert torch.equal(torch.rand(3), draws[0])
    assert np.array_equal(np.random.rand(3), draws[1])
    assert random.random() == draws[2]


def test_find_resumable_prefers_last_and_skips_a_checkpoint_with_a_bad_epoch(tmp_path, capsys):
    for name, epoch in (("save_1.pth", 2), ("save_2.pth", 3), ("last.pth", "three")):
        save_checkpoint(str(tmp_path / name), {"epoch": epoch, "state_dict": {}})
    assert find_resumable(str(tmp_path)) == str(tmp_path / "save_2.pth")
    assert "last.pth: the checkpoint's 'epoch' or 'position' is not a number" in capsys.readouterr().out
    save_checkpoint(str(tmp_path / "last.pth"), {"epoch": 3, "position": {"batch": 4}, "state_dict": {}})
    assert find_resumable(str(tmp_path)) == str(tmp_path / "last.pth")


def test_link_checkpoint_survives_a_stale_temporary_file(tmp_path):
    source, target = tmp_path / "save_1.pth", tmp_path / "last.pth"
    save_checkpoint(str(source), {"epoch": 2, "state_dict": {}})
    (tmp_path / f"last.pth.{os.getpid()}.link").write_bytes(b"left by a crash")
    link_checkpoint(str(source), str(target))
    assert os.path.samefile(source, target)
    assert sorted(os.listdir(tmp_path)) == ["last.pth", "save_1.pth"]


def test_a_cuda_random_state_that_cannot_be_restored_is_said_and_the_cpu_streams_still_are():
    import warnings

    state = capture_rng_state(torch.device("cpu"))
    assert "cuda" not in state  # a CPU process saves no GPU generator
    draw = torch.rand(2)
    state["cuda"] = torch.zeros(16, dtype=torch.uint8)  # as a GPU run saved it
    state["cuda_devices"] = 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restore_rng_state(state, torch.device("cpu"))
    assert any("CUDA random state cannot be restored without a GPU" in str(w.message) for w in caught)
    assert torch.equal(torch.rand(2), draw)  # the CPU generator was restored all the same
