"""Multi-process training with DDP, launched by ``torchrun`` (one or many machines).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them everything here is a
no-op for a single process, so one code path serves both. Rank 0 writes logs, checkpoints and
test results; metrics and test scores are gathered from all ranks first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from sdn.errors import SdnError


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = Context()


def init_from_environment(use_cuda: bool) -> Context:
    """Join the process group ``torchrun`` describes (NCCL on GPUs, gloo on CPU); else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    context = Context(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if use_cuda:
        if context.local_rank >= torch.cuda.device_count():
            raise SdnError(f"LOCAL_RANK {context.local_rank} but only {torch.cuda.device_count()} GPUs are visible")
        torch.cuda.set_device(context.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return context


def shutdown(context: Context) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def sum_across(values: list[float], context: Context, device: torch.device) -> list[float]:
    """Element-wise sums over ranks (float64, so counts stay exact).

    Every rank must call it with a list of the same length, also an empty one: a rank that left
    the collective out would leave the others waiting in it.
    """
    if not context.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_buffers(module: torch.nn.Module, context: Context) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    Each rank's forward passes update its own buffers from its own batches (DDP broadcasts rank
    0's only at the start of a training forward), so they differ between ranks until this runs.
    """
    if not context.enabled:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def gather(obj: Any, context: Context) -> list[Any]:
    """``obj`` from every rank, in rank order (a one-element list in a single process)."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered
