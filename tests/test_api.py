"""The README's Python API example runs as written, and the library never loads the command line."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_api_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section shows one example"
    return blocks[0]


def test_readme_api_example_trains_with_the_scene_adversarial_objective(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_api_example(), "README.md (Python API)", "exec"), namespace)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 2  # 8 clips in batches of 4
    for row in rows:
        metrics = eval(row, {"nan": math.nan, "inf": math.inf})
        assert set(metrics) == {"loss total", "loss act", "loss place", "acc act", "acc place"}
        assert all(math.isfinite(value) for value in metrics.values())
    trainer, model = namespace["trainer"], namespace["model"]
    assert model.place_mlp is not None and model.hm_mlp is None
    assert all(p.grad is not None for p in model.place_mlp.parameters())  # the scene head trained
    assert trainer.schedule.optimizer_for(1).state  # the optimizer stepped (momentum buffers exist)


def test_the_library_does_not_import_the_command_line():
    code = ("import sys, sdn.analysis, sdn.demo, sdn.training, sdn.bench.train, sdn.viz.checkpoints; "
            "loaded = [name for name in sys.modules if name.startswith('sdn.cli')]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
