"""Checkpoints: the original format, read safely, written atomically.

The original saved ``{'epoch': epoch + 1, 'arch': 'resnet-18', 'state_dict': ..., 'optimizer': ...}``
with keys prefixed ``module.`` (DataParallel). sdn writes a superset of that dict, so original
tools can read sdn checkpoints, and adds what an exact resume needs (both optimizers, schedulers,
RNG states, configuration, class names, sdn version).

Reading never runs code from the file: ``torch.load(weights_only=True)`` admits only tensors and
plain containers. ``allow_pickle=True`` lifts that for files the user made and trusts.

Key names are normalised on load: with or without ``module.``, with or without the
``num_batches_tracked`` entries that PyTorch < 0.4.1 did not write.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import pickletools
import re
import random
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sdn import __version__
from sdn.errors import SdnError, first_line, shown, shown_key
from sdn.io import atomic_write_bytes

PREFIX = "module."
DIGEST_KEY = "sha256"


def read_checkpoint(path: str, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU; any problem is an ``SdnError`` naming the file."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except FileNotFoundError:
        raise SdnError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise SdnError(f"{path}: is a directory, expected a checkpoint file (.pth)") from None
    except Exception as error:  # truncated or damaged files raise nearly anything from torch.load
        refused = isinstance(error, pickle.UnpicklingError) and ("weights_only" in str(error)
                                                                 or "Unsupported global" in str(error))
        if refused and _legacy_pickle_is_cut(path):
            raise SdnError(f"{path}: not a readable checkpoint (the file ends inside its pickled data: "
                           "truncated or damaged)") from None
        if refused:
            raise SdnError(f"{path}: refusing to load objects other than tensors and plain containers "
                           f"({first_line(error)}); if you made this file yourself and trust it, pass --allow_pickle"
                           ) from None
        raise SdnError(f"{path}: not a readable checkpoint ({first_line(error)})") from None
    if not isinstance(checkpoint, dict):
        raise SdnError(f"{path}: expected a checkpoint dict, found {type(checkpoint).__name__}")
    _verify_digest(checkpoint, path)
    return checkpoint


LEGACY_PICKLES = 4  # the legacy (non-zip) format: magic number, protocol, system info, then the object


def _legacy_pickle_is_cut(path: str) -> bool:
    """Whether a legacy-format file ends inside its first pickles: then a name the weights-only loader
    refuses may be a cut-off one (``collections.OrderedDi``), and --allow_pickle would not help.

    Only the opcodes are read (``pickletools.genops``); nothing is unpickled or imported.
    """
    if zipfile.is_zipfile(path):
        return False
    with open(path, "rb") as handle:
        try:
            for _ in range(LEGACY_PICKLES):
                for _ in pickletools.genops(handle):
                    pass
        except Exception:  # genops raises ValueError (and others) on data that ends or breaks off
            return True
    return False


def content_digest(obj: Any) -> str:
    """SHA-256 of every tensor and plain value in ``obj``, in a fixed order.

    ``torch.load`` does not check the zip's CRCs, so a flipped byte in a weight would load
    silently; sdn stores this digest in each checkpoint and checks it on load.
    """
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(digest, item)
    else:
        digest.update(repr(obj).encode())


def _verify_digest(checkpoint: dict[str, Any], path: str) -> None:
    expected = checkpoint.get(DIGEST_KEY)
    if expected is None:
        return  # the original's files, and checkpoints from other tools, carry none
    body = {key: value for key, value in checkpoint.items() if key != DIGEST_KEY}
    try:
        matches = content_digest(body) == expected
    except Exception:  # only a hand-made file nests too deep or holds tensors without plain storage
        matches = False
    if not matches:
        raise SdnError(f"{path}: checkpoint is corrupt (its content does not match the checksum it was saved with)")


def model_state(checkpoint: dict[str, Any], path: str) -> dict[str, torch.Tensor]:
    """The checkpoint's model weights without ``module.``; a bare state dict is accepted too."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise SdnError(f"{path}: no 'state_dict' of tensors in the checkpoint")
    for key, value in state.items():
        if not isinstance(key, str):
            raise SdnError(f"{path}: 'state_dict' key {shown_key(key)} is not a parameter name")
        if value.layout != torch.strided or value.is_meta:
            raise SdnError(f"{path}: 'state_dict' entry {shown(key)} is not a dense tensor with data "
                           f"({value.layout}{', meta' if value.is_meta else ''})")
    return strip_prefix(state)


def strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {(key[len(PREFIX):] if key.startswith(PREFIX) else key): value for key, value in state.items()}


def add_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as the original wrote them (``module.``-prefixed), for format parity."""
    return {PREFIX + key: value for key, value in state.items()}


def check_arch(checkpoint: dict[str, Any], arch: str, path: str) -> None:
    """The original asserted ``checkpoint['arch'] == opt.arch``; sdn says what differs."""
    found = checkpoint.get("arch")
    if found is None:
        warnings.warn(f"{path}: checkpoint has no 'arch' entry; assuming it is a {arch}", stacklevel=2)
    elif found != arch:
        raise SdnError(f"{path}: checkpoint is a {found!r} model but the options build {arch!r} "
                       f"(--model/--model_depth must match the checkpoint)")


@dataclass
class LoadReport:
    """What a filtered (pretrain) load took from the file and what it left."""

    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    not_in_checkpoint: list[str] = field(default_factory=list)

    def summary(self, path: str, total: int) -> str:
        lines = [f"pretrained weights from {path}: loaded {len(self.loaded)} of {total} model entries"]
        if self.shape_mismatch:
            lines.append(f"  skipped (shape differs): {', '.join(self.shape_mismatch)}")
        if self.unused:
            lines.append(f"  skipped (not in this model): {_abbreviate(self.unused)}")
        if self.not_in_checkpoint:
            lines.append(f"  kept as initialised (not in the file): {_abbreviate(self.not_in_checkpoint)}")
        return "\n".join(lines)


def _abbreviate(names: list[str], limit: int = 8) -> str:
    heads = sorted({shown(name.rsplit(".", 2)[0] if name.count(".") >= 2 else name) for name in names})
    text = ", ".join(heads[:limit])
    return text + (f", ... ({len(heads) - limit} more)" if len(heads) > limit else "")


def load_pretrained(model: nn.Module, checkpoint: dict[str, Any], path: str, *, verbose: bool = True) -> LoadReport:
    """The original ``--pretrain_path`` rule: copy every tensor whose name and shape match; drop the rest.

    Unlike the original, a ``module.`` prefix on either side does not matter (the original silently
    loaded nothing on CPU runs), the result is reported, and a warning is printed when less than
    half of the model was matched.
    """
    source = model_state(checkpoint, path)
    target = model.state_dict()
    report = LoadReport()
    kept = {}
    for key, value in source.items():
        if key not in target:
            report.unused.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.shape_mismatch.append(f"{key} {tuple(value.shape)} vs {tuple(target[key].shape)}")
        else:
            kept[key] = value
            report.loaded.append(key)
    report.not_in_checkpoint = [key for key in target if key not in source]
    target.update(kept)
    model.load_state_dict(target)
    if verbose:
        print(report.summary(path, len(target)))
    if len(kept) < len(target) / 2:
        warnings.warn(f"{path}: only {len(kept)} of {len(target)} model entries matched the checkpoint; "
                      "is it the right architecture and shortcut type?", stacklevel=2)
    return report


def load_for_resume(model: nn.Module, checkpoint: dict[str, Any], path: str) -> None:
    """Strict load (the original ``--resume_path``), tolerant only of absent ``num_batches_tracked``."""
    source = model_state(checkpoint, path)
    target = model.state_dict()
    for key in target:
        if key.endswith("num_batches_tracked") and key not in source:
            source[key] = target[key]
    missing = [key for key in target if key not in source]
    unexpected = [key for key in source if key not in target]
    wrong_shape = [key for key in target if key in source and source[key].shape != target[key].shape]
    problems = []
    if missing:
        problems.append(f"missing {_abbreviate(missing)}")
    if unexpected:
        problems.append(f"unexpected {_abbreviate(unexpected)}")
    if wrong_shape:
        problems.append(f"shape differs for {_abbreviate(wrong_shape)}")
    if problems:
        raise SdnError(f"{path}: checkpoint does not fit the model built from the options ({'; '.join(problems)}); "
                       "check --n_classes, the head flags and --resnet_shortcut, or use --pretrain_path for a "
                       "partial load")
    model.load_state_dict(source)


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every random generator this process draws from, in a form ``weights_only`` loading accepts.

    On a GPU only the generator of the process's own ``device`` is saved (``cuda``, with the
    number of devices it was saved among): a process draws from no other, and a resume on a
    machine with fewer GPUs must not need them.
    """
    algorithm, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [algorithm, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
        state["cuda_devices"] = torch.cuda.device_count()
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`capture_rng_state` saved; the CUDA generator onto ``device`` when there is one.

    A CUDA state saved without a GPU here (or a GPU state missing from the file) cannot be
    restored: the run continues with the CPU generators restored and says so, as its GPU draws
    (dropout, CUDA-side sampling) then differ from an uninterrupted run's.
    """
    torch.set_rng_state(state["torch"])
    algorithm, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((algorithm, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    on_gpu = device is not None and device.type == "cuda"
    saved = state.get("cuda")
    if on_gpu and isinstance(saved, torch.Tensor):
        torch.cuda.set_rng_state(saved, device)
    elif on_gpu or saved is not None:
        warnings.warn("the checkpoint's CUDA random state " + ("is missing" if on_gpu else "cannot be restored "
                      "without a GPU") + "; the resumed run's GPU draws differ from an uninterrupted run's",
                      stacklevel=2)


def make_checkpoint(*, next_epoch: int, arch: str, model: nn.Module, optimizer_state: dict | None,
                    **extra: Any) -> dict[str, Any]:
    """The original four keys (``epoch`` is the epoch to start from on resume), then sdn's extras."""
    checkpoint = {
        "epoch": next_epoch,
        "arch": arch,
        "state_dict": add_prefix(model.state_dict()),
        "optimizer": optimizer_state,
    }
    checkpoint.update(extra)
    checkpoint["sdn_version"] = __version__
    return checkpoint


def save_checkpoint(path: str, checkpoint: dict[str, Any]) -> None:
    """Serialise in memory with a checksum, then write atomically: an interrupted save never
    replaces a good file, and a damaged file is refused on load."""
    body = {key: value for key, value in checkpoint.items() if key != DIGEST_KEY}
    buffer = io.BytesIO()
    torch.save({**body, DIGEST_KEY: content_digest(body)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def link_checkpoint(source: str, target: str) -> None:
    """Make ``target`` (e.g. ``last.pth``) the same file as ``source`` atomically, without a second write."""
    temporary = f"{target}.{os.getpid()}.link"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)  # left by a crashed process of the same pid
    try:
        os.link(source, temporary)
    except OSError:  # file systems without hard links: copy the bytes
        with open(source, "rb") as handle:
            atomic_write_bytes(target, handle.read())
        return
    try:
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise SdnError(f"{target}: cannot update ({error.strerror or error}); {source} is intact") from None


def progress_of(checkpoint: dict[str, Any], path: str) -> tuple[int, int]:
    """(epoch, batch) a checkpoint resumes at: mid-epoch checkpoints carry a ``position``."""
    epoch, position = checkpoint.get("epoch", 0), checkpoint.get("position") or {}
    batch = position.get("batch", 0) if isinstance(position, dict) else None
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (epoch, batch)):
        raise SdnError(f"{path}: the checkpoint's 'epoch' or 'position' is not a number")
    return epoch, batch


def find_resumable(result_path: str, *, allow_pickle: bool = False) -> str | None:
    """The checkpoint in ``result_path`` that resumes furthest, skipping unreadable or corrupt ones.

    ``last.pth`` and the newest valid ``save_N.pth`` are compared (older saves cannot be further),
    so a long run's folder is not read in full.
    """
    if not os.path.isdir(result_path):
        return None
    saves = sorted((int(match.group(1)), name) for name in os.listdir(result_path)
                   if (match := re.fullmatch(r"save_(\d+)\.pth", name)))
    names = (["last.pth"] if os.path.exists(os.path.join(result_path, "last.pth")) else []) + \
        [name for _, name in reversed(saves)]
    best, best_progress = None, (-1, -1)
    for name in names:
        path = os.path.join(result_path, name)
        try:
            progress = progress_of(read_checkpoint(path, allow_pickle=allow_pickle), path)
        except SdnError as error:
            print(f"warning: skipping {error}")
            continue
        if progress > best_progress:
            best, best_progress = path, progress
        if name != "last.pth":
            break
    return best
