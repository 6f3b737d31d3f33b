"""The original README's commands, end to end, scaled down, on a generated dataset.

Chained as the README chains them: a Kinetics-400-style checkpoint (original layout) -> baseline
-> scene-adversarial (pretrained from the baseline) -> full SDN (pretrained from the
scene-adversarial model, last fc kept) -> Diving48 fine-tuning (pretrained from the full model)
-> test (val.json) -> ``python utils/eval_diving48.py``. The flags are the README's, except sizes
and epochs (and class/place counts, which follow the generated data).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdn.checkpoint import add_prefix, read_checkpoint
from sdn.cli.main import main as sdn_main
from sdn.models import build_model

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--sample_size", "16", "--sample_duration", "4", "--n_threads", "0", "--no_progress", "--model_depth", "10"]
CLASSES = 3


def readme_flags(text: str) -> list[str]:
    return text.split()


def run_train(*args: str) -> None:
    assert sdn_main(["train", *args, *SMALL]) == 0


def read_log(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def check_log(path: Path, columns: list[str], epochs: int) -> None:
    header, rows = read_log(path)
    assert header == columns
    assert [int(row[0]) for row in rows] == list(range(1, epochs + 1))
    for row in rows:
        values = [float(v) for v in row[1:]]
        assert all(math.isfinite(v) for v in values)
        for name, value in zip(header[1:], values):
            if name.startswith("acc") or name == "masked share":
                assert 0.0 <= value <= 1.0


def check_checkpoint(path: Path, arch: str, next_epoch: int) -> dict:
    checkpoint = read_checkpoint(str(path))
    assert list(checkpoint)[:4] == ["epoch", "arch", "state_dict", "optimizer"]
    assert checkpoint["epoch"] == next_epoch and checkpoint["arch"] == arch
    assert all(key.startswith("module.") for key in checkpoint["state_dict"])
    assert {"optimizers", "rng_state", "config", "class_names", "sdn_version"} <= set(checkpoint)
    return checkpoint


@pytest.fixture(scope="module")
def data(synth_dataset) -> tuple[Path, int]:
    root, summary = synth_dataset(classes=CLASSES, train_per_class=4, val_per_class=2, ooc_per_class=0, frames=10,
                                  width=48, height=36, seed=3)
    return root, summary["num_places"]


@pytest.fixture(scope="module")
def kinetics400(tmp_path_factory) -> Path:
    """A 400-class checkpoint in the original layout, like the README's Kinetics pretrained model."""
    torch.manual_seed(0)
    model = build_model("resnet", 10, n_classes=400, sample_size=16, sample_duration=4, resnet_shortcut="A")
    path = tmp_path_factory.mktemp("weights") / "resnet-10-kinetics.pth"
    torch.save({"epoch": 201, "arch": "resnet-10", "state_dict": add_prefix(model.state_dict()),
                "optimizer": None}, path)
    return path


@pytest.fixture(scope="module")
def chain(data, kinetics400, tmp_path_factory) -> dict[str, Path]:
    """Run the four training commands once; the tests below check their outputs."""
    root, places = data
    out = tmp_path_factory.mktemp("runs")
    runs = {name: out / name for name in ("baseline", "place_adv", "full", "diving48", "test")}
    common = (f"--video_path jpg --annotation_path {root}/kinetics.json --root_path {root} --n_classes {CLASSES} "
              f"--n_finetune_classes {CLASSES} --model resnet --resnet_shortcut A --batch_size 4 --val_batch_size 4 "
              "--checkpoint 1 --ft_begin_index 0")
    run_train(*readme_flags(f"{common} --result_path {runs['baseline']} --dataset kinetics --is_mask_adv "
                            f"--learning_rate 0.0001 --weight_decay 1e-5 --n_epochs 2 --pretrain_path {kinetics400}"))
    run_train(*readme_flags(
        f"{common} --result_path {runs['place_adv']} --dataset kinetics_adv --num_place_hidden_layers 3 "
        "--new_layer_lr 1e-2 --learning_rate 1e-4 --warm_up_epochs 2 --weight_decay 1e-5 --n_epochs 2 "
        f"--place_pred_path {root}/places --is_place_adv --is_place_soft --alpha 1.0 --is_mask_adv "
        f"--num_places_classes {places} --pretrain_path {runs['baseline']}/save_2.pth"))
    run_train(*readme_flags(
        f"{common} --result_path {runs['full']} --dataset kinetics_adv_msk --num_place_hidden_layers 3 "
        "--num_human_mask_adv_hidden_layers 1 --new_layer_lr 1e-4 --learning_rate 1e-4 --warm_up_epochs 0 "
        f"--weight_decay 1e-5 --n_epochs 1 --place_pred_path {root}/places --is_place_adv --is_place_soft "
        "--is_mask_entropy --alpha 0.5 --mask_ratio 1.0 --slower_place_mlp --not_replace_last_fc "
        f"--num_places_classes {places} --human_dets_path {root}/dets --pretrain_path {runs['place_adv']}/save_2.pth"))
    diving = f"--dataset diving48 --root_path {root}/diving48 --video_path frames --model resnet --resnet_shortcut A"
    run_train(*readme_flags(
        f"{diving} --n_classes {CLASSES} --n_finetune_classes {CLASSES} --ft_begin_index 0 --batch_size 4 "
        "--val_batch_size 4 --checkpoint 1 --learning_rate 0.005 --weight_decay 1e-5 --n_epochs 1 --is_mask_adv "
        f"--annotation_path {root}/diving48/annotations --result_path {runs['diving48']} "
        f"--pretrain_path {runs['full']}/save_1.pth"))
    return runs


@pytest.mark.slow
def test_baseline_outputs(chain):
    run = chain["baseline"]
    opts = json.loads((run / "opts.json").read_text())
    assert list(opts)[:3] == ["root_path", "video_path", "annotation_path"]
    assert opts["arch"] == "resnet-10" and opts["is_mask_adv"] is False
    check_log(run / "train.log", ["epoch", "loss", "acc", "lr"], 2)
    check_log(run / "val.log", ["epoch", "loss", "acc"], 2)
    header, rows = read_log(run / "train_batch.log")
    assert header == ["epoch", "batch", "iter", "loss", "acc", "lr"]
    assert len(rows) == 2 * 3  # 12 training clips, batch 4, no drop_last
    checkpoint = check_checkpoint(run / "save_2.pth", "resnet-10", 3)
    assert checkpoint["state_dict"]["module.fc.weight"].shape[0] == CLASSES  # 400-class fc replaced
    assert list((run / "tensorboard").iterdir())


@pytest.mark.slow
def test_scene_adversarial_outputs(chain):
    run = chain["place_adv"]
    columns = ["epoch", "loss total", "loss act", "loss place", "acc act", "acc place", "lr"]
    check_log(run / "train.log", columns, 2)
    check_log(run / "val.log", [c for c in columns if c != "lr"], 2)
    _, rows = read_log(run / "train.log")
    assert [float(row[-1]) for row in rows] == [1e-2, 1e-4]  # warm-up optimizer, then the second one
    state = check_checkpoint(run / "save_2.pth", "resnet-10", 3)["state_dict"]
    assert sum(key.startswith("module.place_mlp") and key.endswith(".weight") for key in state) > 3


@pytest.mark.slow
def test_full_sdn_outputs(chain):
    run = chain["full"]
    columns = ["epoch", "loss total", "loss act", "loss place", "acc act", "acc place", "lr", "loss mask",
               "acc mask", "masked share"]
    check_log(run / "train.log", columns, 1)
    _, rows = read_log(run / "train.log")
    assert float(rows[0][columns.index("loss mask")]) < 0  # entropy maximised: the loss is -H
    state = check_checkpoint(run / "save_1.pth", "resnet-10", 2)["state_dict"]
    assert any(key.startswith("module.hm_mlp") for key in state)


@pytest.mark.slow
def test_diving48_test_and_evaluation(chain, data):
    root, _ = data
    check_log(chain["diving48"] / "val.log", ["epoch", "loss", "acc"], 1)
    result = chain["test"]
    # The README's test command, through the root-level shim, in a fresh process.
    command = [sys.executable, "train.py", *readme_flags(
        f"--dataset diving48 --root_path {root}/diving48 --video_path frames --n_finetune_classes {CLASSES} "
        f"--n_classes {CLASSES} --model resnet --resnet_shortcut A --batch_size 4 --val_batch_size 4 --test "
        f"--test_subset val --no_train --no_val --is_mask_adv --annotation_path {root}/diving48/annotations "
        f"--result_path {result} --resume_path {chain['diving48']}/save_1.pth"), *SMALL]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    predictions = json.loads((result / "val.json").read_text())["results"]
    expected = [item["vid_name"] for item in json.loads((root / "diving48/annotations/Diving48_test.json").read_text())]
    assert sorted(predictions) == sorted(expected)  # the last video too
    vocab = {"_".join(row) for row in json.loads((root / "diving48/annotations/Diving48_vocab.json").read_text())}
    for entries in predictions.values():
        assert len(entries) == CLASSES  # k = min(10, classes)
        scores = [entry["score"] for entry in entries]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-4)
        assert {entry["label"] for entry in entries} == vocab

    done = subprocess.run([sys.executable, "utils/eval_diving48.py", "--annotation_path",
                           f"{root}/diving48/annotations", "--prediction_path", str(result / "val.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    accuracy = float(done.stdout.strip().splitlines()[-1])
    top1 = sum(predictions[name][0]["label"] == label for name, label in _labels(root).items()) / len(expected)
    assert accuracy == pytest.approx(top1)


def _labels(root: Path) -> dict[str, str]:
    vocab = ["_".join(row) for row in json.loads((root / "diving48/annotations/Diving48_vocab.json").read_text())]
    items = json.loads((root / "diving48/annotations/Diving48_test.json").read_text())
    return {item["vid_name"]: vocab[item["label"]] for item in items}


def test_no_mode_flag_explains_and_exits_nonzero(data, tmp_path, capsys):
    root, _ = data
    code = sdn_main(["train", "--root_path", str(root), "--video_path", "jpg", "--annotation_path", "kinetics.json",
                     "--result_path", str(tmp_path / "r"), *SMALL])
    assert code == 2
    assert "--is_mask_adv" in capsys.readouterr().err


@pytest.mark.slow
def test_test_on_a_model_with_heads_uses_action_logits(chain, data, tmp_path):
    """The original crashed testing a model with heads; sdn tests its action logits."""
    root, places = data
    assert sdn_main(["train", *readme_flags(
        f"--root_path {root} --video_path jpg --annotation_path kinetics.json --dataset kinetics_adv "
        f"--n_classes {CLASSES} --model resnet --resnet_shortcut A --val_batch_size 4 --test --test_subset val "
        f"--no_train --no_val --is_place_adv --is_mask_adv --num_places_classes {places} "
        f"--num_place_hidden_layers 3 --place_pred_path {root}/places --result_path {tmp_path} "
        f"--resume_path {chain['place_adv']}/save_2.pth"), *SMALL]) == 0
    results = json.loads((tmp_path / "val.json").read_text())["results"]
    annotation = json.loads((root / "kinetics.json").read_text())
    expected = {key[:11] for key, value in annotation["database"].items() if value["subset"] == "validation"}
    assert set(results) == expected
    assert os.path.getsize(tmp_path / "val.json") > 0
