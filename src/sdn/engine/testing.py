"""Test: clip scores averaged per video, written as ``{test_subset}.json``.

Same format and merge rule as the original ``libs/test.py`` (consecutive clips of one video id are
averaged; a later run of the same id replaces the earlier one; top-k entries highest first), without
its bugs: the last video is included, fewer than 10 classes work (k = min(10, classes)), and a
model with SDN heads is tested on its action logits.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from sdn.distributed import SINGLE, Context, gather
from sdn.io import atomic_write_json

TOP_K = 10


def video_result(scores: list[Tensor], class_names: list[str]) -> list[dict]:
    mean = torch.stack(scores).mean(dim=0)
    values, indices = mean.topk(min(TOP_K, mean.numel()))
    return [{"label": class_names[i], "score": float(v)} for v, i in zip(values.tolist(), indices.tolist())]


@torch.no_grad()
def clip_scores(model: nn.Module, loader: DataLoader, prepare: Callable[[Tensor], Tensor], *, softmax: bool,
                progress: bool) -> tuple[list[tuple[str, Tensor]], int]:
    """(video id, class scores) of every readable clip in loader order, and how many clips were unreadable."""
    model.eval()
    scored, skipped = [], 0
    for batch in tqdm(loader, desc="test", disable=not progress, unit="batch"):
        skipped += len(batch.get("bad_samples", []))
        if "clip" not in batch:
            continue
        scores = model(prepare(batch["clip"])).action.float()
        if softmax:
            scores = F.softmax(scores, dim=1)
        scored.extend(zip(batch["video_id"], scores.cpu()))
    return scored, skipped


def merge_videos(scored: list[tuple[str, Tensor]], class_names: list[str]) -> dict[str, list[dict]]:
    """Average consecutive clips of one video id; a later run of the same id replaces the earlier one."""
    results: dict[str, list[dict]] = {}
    current_id, buffer = None, []
    for video_id, scores in scored:
        if video_id != current_id and buffer:
            results[current_id] = video_result(buffer, class_names)
            buffer = []
        current_id = video_id
        buffer.append(scores)
    if buffer:
        results[current_id] = video_result(buffer, class_names)
    return results


def run_test(model: nn.Module, loader: DataLoader, prepare: Callable[[Tensor], Tensor], class_names: list[str],
             output_path: str, *, softmax: bool = True, progress: bool = True,
             context: Context = SINGLE) -> dict[str, list[dict]]:
    """Score every clip and write the per-video results to ``output_path``.

    Under DDP each rank scores a contiguous share of the clips; rank 0 joins them in order, so the
    file equals a single-process run's.
    """
    scored, skipped = clip_scores(model, loader, prepare, softmax=softmax, progress=progress and context.is_main)
    shares = gather((scored, skipped), context)
    if not context.is_main:
        return {}
    results = merge_videos([item for share, _ in shares for item in share], class_names)
    atomic_write_json(output_path, {"results": results})
    skipped = sum(count for _, count in shares)
    print(f"wrote {len(results)} videos to {os.path.abspath(output_path)}"
          + (f" ({skipped} unreadable clips skipped)" if skipped else ""))
    return results
