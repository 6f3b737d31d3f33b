"""``sdn demo``: the experiment end to end at test size, and its statistics on hand-made results."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from PIL import Image

from sdn.cli.main import main as sdn_main
from sdn.demo import (METHODS, METRICS, QUICK, aggregate, plan_jobs, run_demo, run_dir, summarize, sweep_summary,
                      t_quantile, targets, train_argv)

TINY = replace(QUICK, seeds=2, biases=(0.9, 0.99), train_per_class=8, val_per_class=8, ooc_per_class=2,
               test_per_class=2, frames=4, width=40, height=32, sample_size=16, sample_duration=4, batch_size=8,
               phase_epochs=1, methods=("baseline", "scene_adv", "be", "upper_bound"))


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    results = run_demo(out, TINY, progress=False)
    assert set(results) >= {"config", "keys", "summary", "sweep", "targets", "per_seed", "data", "timings_s"}
    assert results["keys"] == ["baseline", "scene_adv", "be", "static_reference", "upper_bound"]
    summary = results["summary"]
    assert set(summary["vs_baseline"]) == set(results["keys"]) - {"baseline"}
    assert set(summary["absolute"]["baseline"]) == set(METRICS)
    for key in ("baseline", "be", "upper_bound"):
        assert summary["absolute"][key]["scuba"]["n"] == 2  # both seeds measured, at the highest bias
    # paired: each difference is the method's value minus the baseline's on the same seed
    per_seed = results["per_seed"]["0.99"]
    for seed in range(2):
        be = per_seed[seed]["be"]["splits"]["scuba"]["clip_accuracy"]
        base = per_seed[seed]["baseline"]["splits"]["scuba"]["clip_accuracy"]
        assert summary["vs_baseline"]["be"]["scuba"]["values"][seed] == pytest.approx(be - base)
    assert set(results["sweep"]) == {"0.9", "0.99"} and results["sweep"]["0.9"]["scuba"]["n"] == 2
    assert set(results["per_seed"]["0.9"][0]) == {"baseline", "static_reference"}  # the sweep trains the baseline
    # the chain: the scene-adversarial model continues the baseline's first phase; only final checkpoints of seed 0
    runs = out / "runs" / "seed0" / "bias0.99"
    assert json.loads((runs / "scene_adv" / "opts.json").read_text())["pretrain_path"].endswith("baseline/save_1.pth")
    assert sorted(p.name for p in (runs / "baseline").glob("*.pth")) == ["save_3.pth"]
    assert not list((out / "runs" / "seed1").rglob("save_*.pth"))  # (the small static reference files stay)
    report = (out / "report.md").read_text()
    assert "| BE (background erasing) |" in report and "SCUBA" in report and "Against the targets" in report
    for figure in ("differences.png", "sweep.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_demo_refuses_a_used_output_directory_and_unknown_methods(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("keep me")
    assert sdn_main(["demo", "--out", str(tmp_path), "--no_progress"]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    assert (tmp_path / "old.txt").read_text() == "keep me"
    with pytest.raises(SystemExit):
        sdn_main(["demo", "--out", str(tmp_path / "new"), "--methods", "baseline,magic"])
    assert "magic" in capsys.readouterr().err


def _result(values: dict[str, float]) -> dict:
    return {"splits": {"iid": {"clip_accuracy": values["iid"]}, "scuba": {"clip_accuracy": values["scuba"]},
                       "scufo": {"clip_accuracy": values.get("scufo", 0.5)}}}


def test_paired_differences_and_confidence_intervals():
    per_seed = [{"baseline": _result({"iid": 0.95, "scuba": 0.6}), "be": _result({"iid": 0.93, "scuba": 0.7}),
                 "upper_bound": _result({"iid": 0.96, "scuba": 0.95})},
                {"baseline": _result({"iid": 0.97, "scuba": 0.5}), "be": _result({"iid": 0.95, "scuba": 0.8}),
                 "upper_bound": _result({"iid": 0.94, "scuba": 0.93})}]
    summary = aggregate(per_seed, ["baseline", "be", "upper_bound"])
    difference = summary["vs_baseline"]["be"]["scuba"]
    assert difference["mean"] == pytest.approx(0.2) and difference["values"] == pytest.approx([0.1, 0.3])
    # sd of (0.1, 0.3) is 0.1414; t(0.975, 1 df) = 12.706; half-width = t * sd / sqrt(2)
    assert difference["ci95"] == pytest.approx(12.706 * math.sqrt(0.02) / math.sqrt(2))
    assert summary["absolute"]["be"]["contrast"]["mean"] is None  # not measured: no number invented
    answers = targets(summary, ["baseline", "be", "upper_bound"])
    assert answers["upper_bound_scuba"]["met"] and answers["upper_bound_scuba"]["value"] == pytest.approx(94.0)
    assert answers["shortcut_points"]["value"] == pytest.approx(39.0) and answers["shortcut_points"]["met"]
    best = answers["best_method"]
    assert best["method"] == "be" and best["scuba_gain"] == pytest.approx(20.0)
    assert best["iid_change"] == pytest.approx(-2)
    assert not best["met"] and not answers["ci_half_width"]["met"]  # two seeds: the CI still includes zero
    sweep = sweep_summary({0.9: per_seed})
    assert sweep["0.9"]["iid_minus_scuba"]["mean"] == pytest.approx(0.41)


def test_statistics_helpers():
    assert t_quantile(9) == 2.262 and t_quantile(1) == 12.706 and 1.96 < t_quantile(200) < 1.98
    assert summarize([0.5, None]) == {"mean": 0.5, "std": None, "ci95": None, "n": 1, "values": [0.5, None]}


def test_plan_trains_chains_together_and_the_sweep_baseline_at_every_bias(tmp_path):
    config = replace(TINY, seeds=1, methods=("baseline", "scene_adv", "full_original", "full_paper", "fame",
                                             "stillmix", "upper_bound"))
    jobs = plan_jobs(tmp_path, config, places=8)
    keys = sorted(job.keys for job in jobs)
    assert ("baseline", "scene_adv", "full_original", "full_paper") in keys
    assert keys.count(("baseline",)) == 1 and ("fame",) in keys and ("upper_bound",) in keys
    # StillMix uses the seed's static reference as its reference network: trained first, in the same job
    assert ("static_reference", "stillmix") in keys
    assert sorted(job.bias for job in jobs if job.keys == ("static_reference",)) == [0.9]
    run_dirs = {key: run_dir(tmp_path, 0, 0.99, key) for key in METHODS}
    argv = train_argv(METHODS["stillmix"], config, tmp_path / "data", 8, run_dirs, 0)
    reference = run_dir(tmp_path, 0, 0.99, "static_reference") / "reference.pth"
    assert argv[argv.index("--stillmix_reference") + 1] == str(reference)
    assert METHODS["full_paper"].phases == 1 and METHODS["scene_adv"].phases == 2 and METHODS["fame"].phases == 3
