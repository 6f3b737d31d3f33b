"""Scene-bias measurements (sdn.analysis) on hand cases, and ``sdn analyze`` end to end on a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sdn.analysis import (clip_accuracy, fit_linear_probe, mean_entropy, probe_accuracy, representation_bias,
                          static_clips, video_accuracy)
from sdn.cli.main import main as sdn_main


def test_probe_separates_separable_features():
    torch.manual_seed(0)
    centres = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    targets = torch.arange(3).repeat(20)
    features = centres[targets] + 0.3 * torch.randn(60, 3)
    probe = fit_linear_probe(features, targets, 3)
    held_out = torch.arange(3).repeat(5)
    assert probe_accuracy(probe, centres[held_out] + 0.3 * torch.randn(15, 3), held_out) == 1.0


def test_probe_is_at_chance_on_uninformative_features():
    features = torch.ones(40, 4)  # constant: nothing to learn, standardisation must not divide by zero
    targets = torch.arange(2).repeat(20)
    probe = fit_linear_probe(features, targets, 2)
    assert probe_accuracy(probe, features, targets) == 0.5


def test_entropy_of_uniform_and_certain_predictions():
    assert mean_entropy(torch.zeros(3, 4)) == pytest.approx(math.log(4))
    assert mean_entropy(torch.tensor([[100.0, 0.0, 0.0]])) == pytest.approx(0.0, abs=1e-6)
    assert mean_entropy(torch.tensor([[0.0, 0.0], [100.0, 0.0]])) == pytest.approx(math.log(2) / 2, abs=1e-6)


def test_static_clips_repeat_the_middle_frame():
    clips = torch.arange(2 * 3 * 5 * 2 * 2, dtype=torch.uint8).reshape(2, 3, 5, 2, 2)
    static = static_clips(clips)
    assert static.shape == clips.shape and static.dtype == torch.uint8
    for t in range(5):
        assert torch.equal(static[:, :, t], clips[:, :, 2])


def test_b_scene_is_log2_of_accuracy_over_chance():
    assert representation_bias(0.5, 0.25) == pytest.approx(1.0)
    assert representation_bias(0.25, 0.25) == pytest.approx(0.0)
    assert representation_bias(1.0, 1 / 365) == pytest.approx(math.log2(365))
    assert representation_bias(0.0, 0.25) is None


def test_clip_and_video_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 5.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert clip_accuracy(logits, labels) == 0.5
    # video a: windows 0 and 1, mean softmax favours class 0 (right); video b: windows 2 and 3, favours 1 (right)
    assert video_accuracy(logits, labels, ["a", "a", "b", "b"]) == 1.0
    assert math.isnan(clip_accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64)))


# ----------------------------------------------------------------------------------------------
# end to end

TINY = ["--n_classes", "3", "--model", "resnet", "--model_depth", "10", "--resnet_shortcut", "A",
        "--sample_size", "16", "--sample_duration", "4", "--batch_size", "4", "--val_batch_size", "4",
        "--n_threads", "0", "--n_epochs", "1", "--checkpoint", "1", "--learning_rate", "0.01",
        "--no_progress", "--no_tensorboard", "--n_val_samples", "1"]


@pytest.fixture(scope="module")
def tiny_run(synth_dataset, tmp_path_factory) -> tuple[Path, Path]:
    root, _ = synth_dataset.copy(tmp_path_factory.mktemp("analyze") / "data", classes=3, train_per_class=3,
                                 val_per_class=2, ooc_per_class=2, frames=6, width=40, height=32, seed=5,
                                 diving48=False)  # the run is written below the dataset
    result = root / "runs" / "place_adv"
    assert sdn_main(["train", "--root_path", str(root), "--video_path", "jpg", "--annotation_path", "kinetics.json",
                     "--result_path", "runs/place_adv", "--dataset", "kinetics_adv", "--is_place_adv",
                     "--is_place_soft", "--is_mask_adv", "--num_places_classes", "3", "--warm_up_epochs", "0",
                     "--place_pred_path", str(root / "places"), *TINY]) == 0
    return root, result / "save_1.pth"


@pytest.mark.slow
def test_analyze_end_to_end(tiny_run, tmp_path, capsys):
    root, checkpoint = tiny_run
    out = tmp_path / "analysis.json"
    assert sdn_main(["analyze", str(checkpoint), "--ooc_annotation_path", str(root / "kinetics_ooc.json"),
                     "--human_dets_path", str(root / "dets"), "--attention_method", "gradcam",
                     "--attention_layer", "layer1", "--out", str(out), "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "out of context" in printed and "B_scene" in printed
    result = json.loads(out.read_text())
    assert {"in_context", "out_of_context", "scene_probe", "human_masked", "static", "actor_attention"} <= set(result)
    assert result["in_context"]["clips"] == 6 and result["out_of_context"]["clips"] == 6
    probe = result["scene_probe"]  # the checkpoint's own --place_pred_path is the default
    assert probe["places"] == 3 and probe["chance"] == pytest.approx(1 / 3) and probe["log_base"] == 2
    for split in ("in_context", "out_of_context"):
        accuracy = probe[split]["accuracy"]
        assert 0.0 <= accuracy <= 1.0
        assert probe[split]["b_scene"] == (None if accuracy == 0 else pytest.approx(math.log2(accuracy * 3)))
    assert 0.0 <= result["human_masked"]["mean_entropy"] <= math.log(3) + 1e-9
    attention = result["actor_attention"]["mean"]
    assert attention is None or 0.0 <= attention <= 1.0


@pytest.mark.slow
def test_analyze_reports_bad_paths_in_one_line(tiny_run, tmp_path, capsys):
    root, checkpoint = tiny_run
    missing = tmp_path / "nope.json"
    assert sdn_main(["analyze", str(checkpoint), "--ooc_annotation_path", str(missing),
                     "--out", str(tmp_path / "a.json")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(missing) in error
    assert sdn_main(["analyze", str(tmp_path / "none.pth"), "--out", str(tmp_path / "a.json")]) == 2
    assert not (tmp_path / "a.json").exists()


def test_contrast_accuracy_pairs_scuba_with_scufo_by_key():
    from sdn.analysis import Outputs, contrast_accuracy

    def outputs(folder, predictions, labels):
        logits = torch.nn.functional.one_hot(torch.tensor(predictions), 2).float() * 5
        return Outputs(torch.zeros(len(labels), 0), logits, torch.tensor(labels),
                       [f"/{folder}/rise/v{i}" for i in range(len(labels))])

    # v0: right on SCUBA, other answer on SCUFO (counts); v1: right on both (a still frame suffices: no);
    # v2: wrong on SCUBA (no); v3: right, its SCUFO twin is missing (left out)
    scuba = outputs("scuba", [0, 0, 1, 0], [0, 0, 0, 0])
    scufo = outputs("scufo", [1, 0, 1], [0, 0, 0])
    result = contrast_accuracy(scuba, scufo)
    assert result == {"videos_paired": 3, "videos_unpaired": 1, "contrast_accuracy": pytest.approx(1 / 3)}


@pytest.mark.slow
def test_analyze_test_splits_and_static_reference(synth_copy, tmp_path, capsys):
    root, _ = synth_copy(classes=2, scenes=4, train_per_class=4, val_per_class=2, ooc_per_class=0, test_per_class=2,
                         frames=6, width=40, height=32, seed=2, diving48=False)  # runs/base is written below it
    assert sdn_main(["train", "--root_path", str(root), "--video_path", "jpg", "--annotation_path", "kinetics.json",
                     "--result_path", "runs/base", "--dataset", "kinetics", "--is_mask_adv",
                     *[("2" if item == "3" else item) for item in TINY]]) == 0
    splits = [str(root / "splits" / name) for name in ("iid", "scuba", "scufo")]
    out = tmp_path / "analysis.json"
    arguments = ["analyze", str(root / "runs" / "base" / "save_1.pth"), "--out", str(out), "--no_progress"]
    assert sdn_main([*arguments, *[x for split in splits for x in ("--split", split)], "--static_reference"]) == 0
    printed = capsys.readouterr().out
    assert "split scuba" in printed and "Contra. Acc." in printed and "static reference" in printed
    result = json.loads(out.read_text())
    assert set(result["splits"]) == {"iid", "scuba", "scufo", "contrast"}
    for name in ("iid", "scuba", "scufo"):
        assert result["splits"][name]["clips"] == 4 and 0.0 <= result["splits"][name]["clip_accuracy"] <= 1.0
    contrast = result["splits"]["contrast"]
    assert contrast["videos_paired"] == 4 and 0.0 <= contrast["contrast_accuracy"] <= result["splits"]["scuba"][
        "video_accuracy"]
    reference = result["static_reference"]["splits"]
    assert set(reference) == {"iid", "scuba", "scufo", "contrast"} and reference["scuba"]["clips"] == 4
    # a split twice, or a folder that is not a split, is a one-line error
    assert sdn_main([*arguments, "--split", splits[0], "--split", splits[0]]) == 2
    assert sdn_main([*arguments, "--split", str(tmp_path)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "already given" in errors[0] and "split.json" in errors[1]
