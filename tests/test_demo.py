"""``sdn demo`` end to end, at test size (the same code path as ``--quick``, with fewer videos and one epoch)."""

from __future__ import annotations

import json

from PIL import Image

from sdn.cli.main import main as sdn_main
from sdn.demo import METHOD_KEYS, METRICS, QUICK, aggregate, summarize, verdict

TEST_SIZE = ["--seeds", "1", "--phase_epochs", "1", "--train_per_class", "8", "--val_per_class", "8", "--ooc_per_class", "3"]


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert sdn_main(["demo", "--quick", "--out", str(out), "--no_progress", *TEST_SIZE]) == 0
    printed = capsys.readouterr().out
    assert "| baseline |" in printed and "upper bound" in printed
    results = json.loads((out / "results.json").read_text())
    assert {"config", "methods", "summary", "against_target", "per_seed", "data", "timings_s"} <= set(results)
    assert set(results["summary"]) == set(METHOD_KEYS)
    assert set(results["summary"]["baseline"]) == set(METRICS)
    assert results["config"]["seeds"] == 1 and results["config"]["sample_size"] == QUICK.sample_size
    for key in METHOD_KEYS:
        analysis = results["per_seed"][0][key]
        assert {"in_context", "out_of_context", "scene_probe", "human_masked", "static"} <= set(analysis)
        assert (out / "runs" / "seed0" / key / "analysis.json").is_file()
        assert Image.open(out / "curves" / f"{key}.png").format == "PNG"
    # the chain: baseline 3 phases, scene-adversarial 2 from the baseline's first, full SDN 1 from the latter's first;
    # only each model's final checkpoint is kept
    finals = {"baseline": 3, "scene_adv": 2, "full_original": 1, "full_paper": 1, "upper_bound": 3}
    for key, epochs in finals.items():
        assert sorted(p.name for p in (out / "runs" / "seed0" / key).glob("*.pth")) == [f"save_{epochs}.pth"]
    scene_adv_opts = json.loads((out / "runs" / "seed0" / "scene_adv" / "opts.json").read_text())
    assert scene_adv_opts["pretrain_path"].endswith("baseline/save_1.pth")
    report = (out / "report.md").read_text()
    assert "| full SDN, paper mask loss |" in report and "comparison.png" in report and "cam.png" in report
    for figure in ("comparison.png", "cam.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_demo_refuses_a_used_output_directory(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("keep me")
    assert sdn_main(["demo", "--out", str(tmp_path), "--no_progress"]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    assert (tmp_path / "old.txt").read_text() == "keep me"


def test_summary_and_target_from_hand_results():
    def result(in_context, ooc, probe):
        return {"in_context": {"clip_accuracy": in_context}, "out_of_context": {"clip_accuracy": ooc},
                "scene_probe": {"out_of_context": {"accuracy": probe}}}

    per_seed = [{key: result(0.9, 0.3, 0.9) for key in METHOD_KEYS} for _ in range(2)]
    per_seed[0]["full_paper"] = result(0.88, 0.45, 0.5)
    per_seed[1]["full_paper"] = result(0.86, 0.55, 0.4)
    summary = aggregate(per_seed)
    assert summary["full_paper"]["out_of_context"]["mean"] == 0.5
    assert summary["full_paper"]["masked"]["mean"] is None  # not measured: no number invented
    answers = verdict(summary)
    assert answers["full_paper"]["meets_target"] and not answers["full_original"]["meets_target"]
    assert round(answers["full_paper"]["ooc_gain_points"], 6) == 20.0
    assert summarize([1.0, None, 3.0]) == {"mean": 2.0, "std": 2 ** 0.5, "values": [1.0, None, 3.0]}
