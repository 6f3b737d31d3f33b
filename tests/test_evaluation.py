"""Video-level evaluation of val.json (the original utils/eval_*.py), its CLI and the script shims."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sdn import evaluation
from sdn.cli import eval as eval_cli
from sdn.cli.main import run_guarded
from sdn.errors import SdnError

REPO = Path(__file__).resolve().parents[1]
VOCAB = [["A", "x"], ["B", "x"], ["C", "x"], ["D", "x"], ["E", "x"], ["F", "x"], ["G", "x"]]
NAMES = ["_".join(row) for row in VOCAB]


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def ranked(*labels: str) -> list[dict]:
    """Predictions with descending scores in the order given."""
    return [{"label": label, "score": 1.0 - 0.1 * rank} for rank, label in enumerate(labels)]


@pytest.fixture
def diving48(tmp_path):
    """Five test videos; by hand: hit@1 = 1/5, hit@5 = 3/5, per-class = (1/2 + 0 + 0 + 0) / 4."""
    anno = tmp_path / "anno"
    anno.mkdir()
    write_json(anno / "Diving48_vocab.json", VOCAB)
    write_json(anno / "Diving48_test.json", [
        {"vid_name": "v1", "label": 0, "start_frame": 0, "end_frame": 9},
        {"vid_name": "v1", "label": 0, "start_frame": 0, "end_frame": 9},  # duplicate row: dropped
        {"vid_name": "v2", "label": 1},
        {"vid_name": "v3", "label": 2},
        {"vid_name": "v4", "label": 3},
        {"vid_name": "v5", "label": 0},
    ])
    results = {
        "v1": ranked("A_x", "B_x"),                                   # hit at 1
        "v2": ranked("C_x", "B_x", "A_x"),                           # wrong top-1, right top-5
        # v3: no prediction -> miss, stays in the denominator
        "v4": ranked("Unknown_class", "D_x"),                        # unknown label ranks first: miss at 1
        "v5": ranked("B_x", "C_x", "D_x", "E_x", "F_x", "A_x"),     # right label only at rank 6
        "not_in_gt": ranked("A_x"),                                  # ignored, but counted as rows
    }
    predictions = write_json(tmp_path / "val.json", {"results": results})
    return anno, predictions


@pytest.fixture
def ucf_annotation(tmp_path):
    """Validation classes first appear as 'walk' (0), 'run' (1); 'swim' exists only in training."""
    return write_json(tmp_path / "ucf101_01.json", {
        "labels": ["run", "swim", "walk"],
        "database": {
            "v_Swim_g01_c01": {"subset": "training", "annotations": {"label": "swim"}},
            "v_Walk_g01_c01": {"subset": "validation", "annotations": {"label": "walk"}},
            "v_Run_g01_c01": {"subset": "validation", "annotations": {"label": "run"}},
            "v_Run_g02_c01": {"subset": "validation", "annotations": {"label": "run"}},
        },
    })


def test_diving48_metrics_by_hand(diving48):
    anno, predictions = diving48
    gt = evaluation.load_ground_truth("diving48", str(anno))
    metrics = evaluation.evaluate(gt, evaluation.load_predictions(str(predictions)), top_k=5)
    assert gt.subset == "val" and gt.class_index["C_x"] == 2
    assert metrics.n_ground_truth == 5 and metrics.n_videos == 5
    assert metrics.n_predictions == 2 + 3 + 2 + 6 + 1
    assert metrics.n_missing_videos == 1 and metrics.n_unknown_labels == 1
    assert metrics.top1_accuracy == pytest.approx(1 / 5)
    assert metrics.top_k_accuracy == pytest.approx(3 / 5)
    assert metrics.mean_class_accuracy == pytest.approx((1 / 2) / 4)


def test_ucf_class_index_is_first_appearance_in_validation(ucf_annotation, tmp_path):
    gt = evaluation.load_ground_truth("ucf101", str(ucf_annotation))
    assert gt.class_index == {"walk": 0, "run": 1}  # not the 'labels' order, no training-only class
    assert gt.labels == {"v_Walk_g01_c01": (0,), "v_Run_g01_c01": (1,), "v_Run_g02_c01": (1,)}
    predictions = {
        "v_Walk_g01_c01": [evaluation.Prediction("walk", 0.9)],
        "v_Run_g01_c01": [evaluation.Prediction("swim", 0.8), evaluation.Prediction("run", 0.1)],
        "v_Run_g02_c01": [evaluation.Prediction("run", 0.7)],
    }
    metrics = evaluation.evaluate(gt, predictions, top_k=2)
    assert metrics.n_unknown_labels == 1  # 'swim' is a class of the labels list, but not of validation
    assert metrics.top1_accuracy == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy == pytest.approx(1.0)
    assert metrics.mean_class_accuracy == pytest.approx((1.0 + 0.5) / 2)


def test_kinetics_ids_drop_the_time_suffix_and_any_label_hits(tmp_path):
    path = write_json(tmp_path / "kinetics.json", {"labels": ["a", "b", "c"], "database": {
        "abcdefghijk_000010_000020": {"subset": "validation", "annotations": {"label": "a"}},
        "abcdefghijk_000030_000040": {"subset": "validation", "annotations": {"label": "b"}},
        "zyxwvutsrqp_000000_000010": {"subset": "validation", "annotations": {"label": "c"}},
        "trainingvid_000000_000010": {"subset": "training", "annotations": {"label": "c"}},
    }})
    gt = evaluation.load_ground_truth("kinetics", str(path))
    assert gt.labels == {"abcdefghijk": (0, 1), "zyxwvutsrqp": (2,)}
    predictions = {"abcdefghijk": [evaluation.Prediction("b", 0.6), evaluation.Prediction("a", 0.4)],
                   "zyxwvutsrqp": [evaluation.Prediction("a", 0.9)]}
    metrics = evaluation.evaluate(gt, predictions, top_k=5)
    assert metrics.n_ground_truth == 3 and metrics.n_videos == 2
    assert metrics.top1_accuracy == pytest.approx(0.5)  # the two-label video counts 1, not 1/2
    assert metrics.mean_class_accuracy == pytest.approx((1 + 1 + 0) / 3)


def test_kinetics_key_without_time_suffix_is_rejected(tmp_path):
    path = write_json(tmp_path / "k.json", {"database": {"short": {"subset": "validation",
                                                                    "annotations": {"label": "a"}}}})
    with pytest.raises(SdnError, match="k.json.*'short'"):
        evaluation.load_ground_truth("kinetics", str(path))


def test_equal_scores_rank_the_later_row_first_as_numpy_argsort_reversed():
    gt = evaluation.GroundTruth("validation", {"a": 0, "b": 1}, {"v": (1,)}, any_label_hits=False)
    tie = {"v": [evaluation.Prediction("a", 0.5), evaluation.Prediction("b", 0.5)]}
    assert evaluation.hit_at_k(gt, tie, 1) == 1.0
    tie["v"].reverse()
    assert evaluation.hit_at_k(gt, tie, 1) == 0.0


def test_cli_prints_the_original_lines_and_the_bare_accuracy_last(diving48, capsys, tmp_path):
    anno, predictions = diving48
    out_json = tmp_path / "metrics.json"
    status = eval_cli.main(["--dataset", "diving48", "--annotation_path", str(anno), "--prediction_path",
                            str(predictions), "--output_json", str(out_json)])
    captured = capsys.readouterr()
    assert status == 0
    assert captured.out.splitlines() == [
        "[INIT] Loaded annotations from val subset.",
        "\tNumber of ground truth instances: 5",
        "\tNumber of predictions: 14",
        "[RESULTS] Performance on Diving48 video classification task.",
        f"\tError@1: {1.0 - 1 / 5}",
        "\tTop-5 accuracy: 0.6",
        "\tMean per-class accuracy: 0.125",
        "0.2",
    ]
    assert "1 predictions have a label that is not a class" in captured.err
    assert "1 of 5 ground-truth videos have no prediction" in captured.err
    record = json.loads(out_json.read_text())
    assert record["dataset"] == "diving48" and record["top1_accuracy"] == 0.2 and record["top_k"] == 5
    assert record["mean_class_accuracy"] == 0.125 and record["n_missing_videos"] == 1


def test_cli_joins_root_path_and_accepts_every_train_option(ucf_annotation, tmp_path, capsys):
    predictions = write_json(tmp_path / "val.json", {"results": {"v_Walk_g01_c01": ranked("walk")}})
    argv = ["--dataset", "hmdb51", "--root_path", str(tmp_path), "--annotation_path", ucf_annotation.name,
            "--prediction_path", str(predictions), "--top_k", "1", "--model", "resnet", "--n_classes", "51",
            "--no_cuda", "--is_mask_adv", "--video_path", "jpg"]
    assert eval_cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[INIT] Loaded annotations from validation subset."
    assert lines[3] == "[RESULTS] Performance on HMDB-51 video classification task."
    assert "\tTop-1 accuracy: 0.3333333333333333" in lines
    assert lines[-1] == "0.3333333333333333"


def test_cli_absolute_annotation_path_passes_through_the_default_root(ucf_annotation, tmp_path, capsys):
    predictions = write_json(tmp_path / "val.json", {"results": {}})
    opt = eval_cli.parse_args(["--dataset", "ucf101", "--annotation_path", str(ucf_annotation),
                               "--prediction_path", str(predictions)])
    assert opt.root_path == "/root/data/ActivityNet" and opt.annotation_path == str(ucf_annotation)
    assert opt.prediction_path == str(predictions)
    assert run_guarded(eval_cli.main, ["--dataset", "ucf101", "--annotation_path", str(ucf_annotation),
                                       "--prediction_path", str(predictions)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0.0"


def test_cli_relative_annotation_path_missing_under_the_default_root_is_taken_as_given(ucf_annotation, monkeypatch):
    monkeypatch.chdir(ucf_annotation.parent)
    opt = eval_cli.parse_args(["--dataset", "ucf101", "--annotation_path", ucf_annotation.name,
                               "--prediction_path", "val.json"])
    assert opt.annotation_path == ucf_annotation.name


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "activitynet"], "evaluation supports diving48"),
    (["--dataset", "ucf101", "--no_such_option"], "unrecognized arguments: --no_such_option"),
    (["--dataset", "ucf101", "--top_k", "0"], "--top_k must be at least 1"),
])
def test_cli_rejects_bad_options_in_one_line(argv, message, capsys):
    assert run_guarded(eval_cli.main, argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("content, message", [
    ({"labels": []}, "with a 'results' object"),
    ({"results": {"v1": [{"label": "A_x", "score": "high"}]}}, "'v1' has no numeric 'score'"),
    ({"results": {"v1": [{"label": 3, "score": 0.5}]}}, "'v1' has no string 'label'"),
    ({"results": {"v1": {"label": "A_x"}}}, "'v1' is not a list"),
])
def test_malformed_prediction_file_exits_2_naming_the_file(diving48, tmp_path, capsys, content, message):
    anno, _ = diving48
    bad = write_json(tmp_path / "bad.json", content)
    status = run_guarded(eval_cli.main, ["--dataset", "diving48", "--root_path", "", "--annotation_path", str(anno),
                                         "--prediction_path", str(bad)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"sdn: error: {bad}: ") and message in err


def test_unreadable_inputs_are_one_line_errors(diving48, tmp_path):
    anno, predictions = diving48
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SdnError, match=r"broken.json: not valid JSON"):
        evaluation.load_predictions(str(tmp_path / "broken.json"))
    with pytest.raises(SdnError, match=r"missing.json: no such file"):
        evaluation.load_predictions(str(tmp_path / "missing.json"))
    write_json(anno / "Diving48_test.json", [{"vid_name": "v1", "label": "0"}])
    with pytest.raises(SdnError, match=r"Diving48_test.json: entry 0 \(v1\) has no integer 'label'"):
        evaluation.load_ground_truth("diving48", str(anno))
    write_json(anno / "Diving48_test.json", [{"vid_name": "v1", "label": 48}])
    with pytest.raises(SdnError, match=r"label 48, but Diving48_vocab.json has 7 classes"):
        evaluation.load_ground_truth("diving48", str(anno))


def run_script(name: str, *args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *python_flags, f"utils/{name}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_eval_diving48_script_runs_as_in_the_readme(diving48):
    anno, predictions = diving48
    done = run_script("eval_diving48.py", "--annotation_path", str(anno), "--prediction_path", str(predictions))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0.2"
    assert "Performance on Diving48 video classification task." in done.stdout


def test_script_without_the_installed_package_uses_src_and_exits_2_on_bad_input(ucf_annotation, tmp_path):
    bad = write_json(tmp_path / "bad.json", {"no_results": {}})
    # -S skips site-packages (and the editable install), so the shim must fall back to <repo>/src.
    done = run_script("eval_ucf101.py", "--annotation_path", str(ucf_annotation), "--prediction_path", str(bad),
                      python_flags=("-S",))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"sdn: error: {bad}: ") and done.stderr.count("\n") == 1
