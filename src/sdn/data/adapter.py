"""A user's own dataset as the items sdn's loaders collate: the library API's way in.

sdn's objectives read batches as dicts (``clip`` uint8 ``[B, 3, T, H, W]``, ``label``, and for the
scene-adversarial objective ``place``: soft scene probabilities or a scene index). A dataset that
returns tuples, such as ``(clip, label, scene)``, becomes such a dataset by naming its fields.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from sdn.errors import SdnError

FIELDS = ("clip", "label", "place", "is_masking")


class DictClips(Dataset):
    """``dataset[i]`` (a tuple, or already a dict) as ``{field: value}`` with the clip checked.

    Indices may also be the ``(epoch, index)`` keys of :class:`sdn.engine.trainer.EpochLoader`, so the
    wrapped dataset serves :meth:`Trainer.fit` as well as a plain ``DataLoader``. Clips must be
    uint8 ``[3, T, H, W]`` on the 0..255 scale (normalisation happens once per batch on the device).
    """

    def __init__(self, dataset: Any, fields: Sequence[str] = ("clip", "label")):
        unknown = [name for name in fields if name not in FIELDS]
        if unknown or "clip" not in fields or "label" not in fields:
            raise SdnError(f"fields {list(fields)}: need 'clip' and 'label', each one of {', '.join(FIELDS)}")
        self.dataset, self.fields = dataset, tuple(fields)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index = key[1] if isinstance(key, tuple) else key
        item = self.dataset[index]
        if not isinstance(item, dict):
            if len(item) != len(self.fields):
                raise SdnError(f"item {index} has {len(item)} values for the fields {list(self.fields)}")
            item = dict(zip(self.fields, item))
        clip = item["clip"]
        if not isinstance(clip, torch.Tensor) or clip.dtype != torch.uint8 or clip.dim() != 4 or clip.shape[0] != 3:
            shown = f"{clip.dtype} {list(clip.shape)}" if isinstance(clip, torch.Tensor) else type(clip).__name__
            raise SdnError(f"item {index}: the clip must be a uint8 tensor [3, T, H, W] on the 0..255 scale, got {shown}")
        return item
