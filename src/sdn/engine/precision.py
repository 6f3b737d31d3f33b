"""Which mixed precision a device can run, checked before any training.

fp16 autocast needs CUDA (and a gradient scaler, which the trainer adds). bf16 runs on CUDA and on
CPUs whose oneDNN has bf16 kernels (AVX512 or AMX); on a CPU without them (e.g. AVX2 only) PyTorch
emulates bf16, and a 3D ResNet-18 training step did not finish in 300 s where fp32 took 6 s:
refused up front rather than discovered as a hang.
"""

from __future__ import annotations

import torch

from sdn.errors import SdnError


def cpu_has_bf16_kernels() -> bool:
    """oneDNN's bf16 kernels exist on this CPU (what makes CPU bf16 autocast fast rather than emulated)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def amp_problem(amp: str, device: torch.device) -> str | None:
    """Why ``--amp amp`` cannot run on ``device``, or None when it can."""
    if amp == "fp16" and device.type != "cuda":
        return "--amp fp16 needs a CUDA device; on the CPU use --amp bf16"
    if amp == "bf16" and device.type == "cpu" and not cpu_has_bf16_kernels():
        return ("--amp bf16: this CPU has no bf16 kernels (oneDNN needs AVX512 or AMX), so PyTorch would emulate "
                "bf16, many times slower than fp32; train with --amp off")
    return None


def check_amp(amp: str, device: torch.device) -> None:
    """Raise :class:`SdnError` when ``--amp`` cannot run on ``device``."""
    problem = amp_problem(amp, device)
    if problem:
        raise SdnError(problem)
