"""A torchvision backbone trains in all three SDN modes through ``sdn train``, from a weights file in
torchvision's own key layout, and ``sdn analyze``, ``sdn visualize`` and ``sdn bench`` work on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from sdn.checkpoint import model_state, read_checkpoint
from sdn.cli.main import main as sdn_main

pytestmark = pytest.mark.slow

MODEL = "mc3_18"  # the smallest of torchvision's video ResNets; the others share its code path
SMALL = ["--sample_size", "16", "--sample_duration", "4", "--n_threads", "0", "--no_progress", "--no_tensorboard",
         "--batch_size", "4", "--val_batch_size", "4", "--n_epochs", "1", "--checkpoint", "1", "--ft_begin_index", "0"]
MODES = {
    "baseline": ["--dataset", "kinetics", "--is_mask_adv", "--learning_rate", "0.001"],
    "place_adv": ["--dataset", "kinetics_adv", "--is_place_adv", "--is_place_soft", "--is_mask_adv",
                  "--learning_rate", "0.001", "--new_layer_lr", "0.01", "--warm_up_epochs", "0"],
    "full": ["--dataset", "kinetics_adv_msk", "--is_place_adv", "--is_place_soft", "--is_mask_entropy",
             "--mask_ratio", "1.0", "--learning_rate", "0.001", "--new_layer_lr", "0.001", "--warm_up_epochs", "0"],
}
COLUMNS = {"baseline": "loss", "place_adv": "loss total", "full": "loss mask"}


@pytest.fixture(scope="module")
def data(synth_dataset) -> tuple[Path, int]:
    root, summary = synth_dataset(classes=2, train_per_class=4, val_per_class=2, ooc_per_class=0, frames=8,
                                  width=40, height=32, seed=5)
    return root, summary["num_places"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """Random Kinetics-400-shaped weights saved as torchvision saves its own (a bare state dict)."""
    torch.manual_seed(0)
    state = torchvision.models.video.mc3_18(num_classes=400).state_dict()
    path = tmp_path_factory.mktemp("weights") / "mc3_18-random.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def runs(data, weights, tmp_path_factory) -> dict[str, Path]:
    root, places = data
    out = tmp_path_factory.mktemp("runs")
    result = {}
    for mode, flags in MODES.items():
        result[mode] = out / mode
        argv = ["train", "--root_path", "", "--video_path", str(root / "jpg"),
                "--annotation_path", str(root / "kinetics.json"), "--result_path", str(result[mode]),
                "--model", MODEL, "--n_classes", "2", "--n_finetune_classes", "2", "--num_places_classes", str(places),
                "--place_pred_path", str(root / "places"), "--human_dets_path", str(root / "dets"),
                "--pretrain_path", str(weights[0]), *flags, *SMALL]
        assert sdn_main(argv) == 0, mode
    return result


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_trains_from_the_torchvision_weights(runs, weights, mode):
    run = runs[mode]
    opts = json.loads((run / "opts.json").read_text())
    assert opts["arch"] == MODEL and opts["input_norm"] == "torchvision"
    assert opts["mean"] == pytest.approx([0.43216 * 255, 0.394666 * 255, 0.37645 * 255])
    header = (run / "train.log").read_text().splitlines()[0].split("\t")
    assert COLUMNS[mode] in header
    checkpoint = read_checkpoint(str(run / "save_1.pth"))
    assert checkpoint["arch"] == MODEL
    state = model_state(checkpoint, "save_1.pth")
    file_state = weights[1]
    backbone = [key for key in file_state if not key.startswith("fc.")]
    assert all(key in state and state[key].shape == file_state[key].shape for key in backbone)
    assert state["fc.weight"].shape == (2, 512)  # the 400-class classifier was replaced
    assert (state.get("place_mlp.p_last_fc.weight") is not None) == (mode != "baseline")
    assert (state.get("hm_mlp.hm_last_fc.weight") is not None) == (mode == "full")
    # one epoch at a small learning rate moves the loaded weights only a little: they were loaded
    stem = "stem.0.weight"
    assert not torch.equal(state[stem], file_state[stem])
    assert (state[stem] - file_state[stem]).abs().max() < 0.5 * file_state[stem].abs().max()


def test_a_mismatched_weights_file_is_one_clear_line(data, tmp_path, capsys):
    root, _ = data
    wrong = tmp_path / "r3d_18.pth"
    torch.save(torchvision.models.video.r3d_18(num_classes=400).state_dict(), wrong)
    argv = ["train", "--root_path", "", "--video_path", str(root / "jpg"), "--annotation_path",
            str(root / "kinetics.json"), "--result_path", str(tmp_path / "run"), "--model", MODEL, "--n_classes", "2",
            "--pretrain_path", str(wrong), *MODES["baseline"], *SMALL]
    assert sdn_main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(wrong) in error[0]
    argv[argv.index("--pretrain_path") + 1] = str(tmp_path / "missing.pth")
    assert sdn_main(argv) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_analyze_visualize_and_bench_work_on_it(runs, data, tmp_path, capsys):
    root, _ = data
    checkpoint = str(runs["full"] / "save_1.pth")
    assert sdn_main(["analyze", checkpoint, "--out", str(tmp_path / "analysis.json"), "--n_threads", "0",
                     "--no_progress"]) == 0
    analysis = json.loads((tmp_path / "analysis.json").read_text())
    assert 0.0 <= analysis["in_context"]["clip_accuracy"] <= 1.0
    for method in ("cam", "gradcam"):
        out = tmp_path / method
        assert sdn_main(["visualize", checkpoint, "--val_clips", "1", "--method", method, "--frames", "2",
                         "--out", str(out)]) == 0
        assert any(path.suffix == ".png" for path in out.iterdir())
    out = tmp_path / "bench"
    assert sdn_main(["bench", "train", "sdn-cost", "--device", "cpu", "--model", MODEL, "--sample_size", "16",
                     "--sample_duration", "8", "--batch_size", "2", "--n_classes", "2", "--num_places_classes", "3",
                     "--matmul_size", "64", "--rounds", "1", "--variants", "channels_last", "--out", str(out)]) == 0
    bench = json.loads((out / "bench.json").read_text())
    assert set(bench["sdn-cost"]["modes"]) == set(MODES)
