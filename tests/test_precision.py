"""Mixed precision a device cannot run is refused up front, and sdn bench skips it saying why."""

from __future__ import annotations

import pytest
import torch

import sdn.engine.precision as precision
from sdn.bench.train import runnable_variants
from sdn.errors import SdnError
from sdn.prepare.common import resolve_device

CPU = torch.device("cpu")


def test_bf16_on_a_cpu_without_bf16_kernels_is_refused(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16_kernels", lambda: False)
    with pytest.raises(SdnError, match=r"--amp bf16: this CPU has no bf16 kernels .* train with --amp off"):
        precision.check_amp("bf16", CPU)
    precision.check_amp("off", CPU)
    kept, notes = runnable_variants(["fp32", "channels_last", "bf16", "bf16+channels_last"], CPU)
    assert kept == ["fp32", "channels_last"]
    assert len(notes) == 2 and notes[0].startswith("skipped bf16: --amp bf16: this CPU has no bf16 kernels")


def test_bf16_where_the_kernels_exist_and_fp16_only_on_cuda(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16_kernels", lambda: True)
    precision.check_amp("bf16", CPU)
    assert runnable_variants(["fp32", "bf16"], CPU) == (["fp32", "bf16"], [])
    with pytest.raises(SdnError, match="--amp fp16 needs a CUDA device"):
        precision.check_amp("fp16", CPU)
    assert precision.amp_problem("fp16", torch.device("cuda")) is None


def test_a_device_index_past_the_gpus_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(SdnError, match=r"--device cuda:3: this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:3")
