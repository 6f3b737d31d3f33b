"""`sdn bench` at toy size through the CLI: tables, JSON and chart are complete and consistent.

No timing is asserted (the machine may be busy); only that every rate and ratio is a positive
finite number and that the outputs have the structure docs/performance.md relies on.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sdn.bench.common import interleaved, table
from sdn.bench.loader import DECODE_PATH, PIL_PATH, SDN_NORMALISED, SDN_PATH
from sdn.bench.train import default_variants, option_flags
from sdn.cli.main import main as sdn_main
from sdn.engine.precision import cpu_has_bf16_kernels
from sdn.errors import SdnError

ROOT = Path(__file__).resolve().parents[1]
# 8 frames, not fewer: on some CPUs (seen on an AMD EPYC with AVX512-BF16, torch 2.14) oneDNN's bf16 backward of
# the 7x7x7 stem crashes the process (double free) when the clip is shorter than the kernel.
TINY_MODEL = ["--model_depth", "10", "--sample_size", "16", "--sample_duration", "8", "--batch_size", "2",
              "--n_classes", "4", "--num_places_classes", "5", "--matmul_size", "64", "--rounds", "1"]
TINY_LOADER = ["--clips", "3", "--videos", "2", "--frames", "12", "--width", "64", "--height", "48"]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def run_bench(tmp_path: Path, capsys, *args: str) -> tuple[str, dict]:
    out = tmp_path / "results"
    assert sdn_main(["bench", *args, *TINY_MODEL, *TINY_LOADER, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "bench.json").read_text())
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "bench.txt").read_text()
    assert text.startswith("machine: ") and "targets:" in text
    for line in text.splitlines()[1:]:  # what was printed is what was written (bar the 'wrote' line)
        assert line in printed
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu"]
    for entry in results["targets"]:
        assert positive(entry["value"]) and isinstance(entry["met"], bool)
        assert ("NOT met" if not entry["met"] else "-> met") in text
    return printed, results


def test_loader_part(tmp_path, capsys):
    printed, results = run_bench(tmp_path, capsys, "loader", "--draft")
    assert results["parts"] == ["loader"]
    loader = results["loader"]
    assert loader["threads"] == 1 and loader["settings"]["clips"] == 3
    paths = loader["paths"]
    assert {PIL_PATH, SDN_PATH, SDN_NORMALISED, DECODE_PATH} < set(paths)
    for name, row in paths.items():
        for key in ("clips_per_s", "ms_per_clip", "cpu_ms_per_clip", "vs_pil", "of_decode_only"):
            assert positive(row[key]), (name, key)
        assert len(row["rounds"]["wall_s"]) == 1
        assert name in printed
    assert paths[PIL_PATH]["vs_pil"] == pytest.approx(1.0)
    assert paths[DECODE_PATH]["of_decode_only"] == pytest.approx(1.0)
    fidelity = loader["fidelity"]
    assert fidelity["train_mean_abs_diff"] < 0.5  # sdn and the original give the same clips
    assert fidelity["val_sdn"]["mean_abs_diff"] < 0.5
    assert {"val_draft", "train_draft_mean_abs_diff"} <= set(fidelity)
    assert [t["name"] for t in loader["targets"]][0].startswith("loader: sdn worker (uint8) vs PIL")
    assert "vs PIL" in printed and "of decode only" in printed


@pytest.mark.slow
def test_train_part(tmp_path, capsys):
    printed, results = run_bench(tmp_path, capsys, "train", "--device", "cpu", "--variants", "bf16,channels_last")
    train = results["train"]
    bf16 = ["bf16"] if cpu_has_bf16_kernels() else []  # skipped, with a note, where the CPU would emulate it
    assert list(train["variants"]) == ["fp32", *bf16, "channels_last"]  # fp32 eager is always the reference
    assert train["variants"]["fp32"]["vs_fp32"] == pytest.approx(1.0)
    assert positive(train["gflop_per_step"])
    assert positive(train["peak_gflop_per_s"]["fp32"]) and positive(train["peak_gflop_per_s"]["bf16"])
    for row in train["variants"].values():
        for key in ("s_per_step", "clips_per_s", "gflop_per_s", "of_fp32_peak", "vs_fp32"):
            assert positive(row[key])
    assert train["fastest"] in train["variants"]
    assert all(row["host_syncs"] is None for row in train["variants"].values())  # counted on CUDA only
    assert "GFLOP/s" in printed and "of fp32 peak" in printed and "host syncs/step" in printed
    assert "bf16+" not in printed


@pytest.mark.slow
def test_sdn_cost_part(tmp_path, capsys):
    printed, results = run_bench(tmp_path, capsys, "sdn-cost", "--device", "cpu", "--statistic", "median")
    modes = results["sdn-cost"]["modes"]
    assert list(modes) == ["baseline", "place_adv", "full"]
    assert modes["full"]["optimizer_steps"] == 2 and modes["full"]["clips_per_iteration"] == 4
    assert modes["baseline"]["vs_baseline"] == pytest.approx(1.0)
    # the full iteration does the forward and backward work of two scene-adversarial steps
    assert modes["full"]["gflop_per_iteration"] == pytest.approx(2 * modes["place_adv"]["gflop_per_iteration"],
                                                                 rel=0.05)
    for row in modes.values():
        assert positive(row["s_per_iteration"]) and positive(row["vs_baseline"]) and positive(row["gflop_per_iteration"])
    assert "median of 1 interleaved rounds" in printed and "full SDN" in printed


@pytest.mark.slow
def test_the_script_is_the_loader_part(tmp_path):
    out = tmp_path / "script"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_loader.py"), *TINY_LOADER,
                           "--sample_size", "16", "--sample_duration", "4", "--rounds", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "bench.json").read_text())["parts"] == ["loader"]


def test_bad_requests_are_clear_errors(capsys):
    assert sdn_main(["bench", "speed"]) == 2
    assert "unknown part 'speed'" in capsys.readouterr().err
    assert sdn_main(["bench", "loader", "--frames", "4", "--sample_duration", "4"]) == 2
    assert "--frames" in capsys.readouterr().err
    # checked before the loader part runs, not after it
    assert sdn_main(["bench", "--device", "cpu", "--cost_variant", "fp16"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
    assert sdn_main(["bench", "--model_depth", "19"]) == 2
    assert "--model_depth 19" in capsys.readouterr().err
    with pytest.raises(SdnError, match="needs a CUDA device"):
        option_flags("fp16", "cpu")
    with pytest.raises(SdnError, match="speed option 'fast'"):
        option_flags("bf16+fast", "cpu")
    assert option_flags("bf16+channels_last", "cpu") == ["--amp", "bf16", "--channels_last"]
    assert not any("compile" in v for v in default_variants("cpu", with_compile=False))
    assert any("compile" in v for v in default_variants("cpu", with_compile=True))
    assert any("fp16" in v for v in default_variants("cuda", with_compile=False))


def test_interleaved_rotates_and_table_aligns():
    calls = []
    samples = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 2, warmup=0)
    assert calls == ["a", "b", "b", "a"]
    assert all(len(s.wall) == 2 and len(s.cpu) == 2 for s in samples.values())
    lines = table(["name", "value"], [["x", "1.0"], ["longer", "10.25"]]).splitlines()
    assert len({len(line) for line in lines}) == 1
