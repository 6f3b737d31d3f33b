"""NumPy file I/O for sdn's data files: the original pickles read safely, ``.npz`` written reproducibly.

The released scene pseudo labels and human detections are ``np.save`` dumps of Python dicts
(0-d object arrays). ``np.load(..., allow_pickle=True)`` would execute whatever a tampered file
asks for, so we parse the ``.npy`` header ourselves and unpickle the payload with an unpickler
that can only rebuild NumPy arrays, NumPy scalars and plain containers.

``np.savez`` stamps every member with the current time, so the same data gives different bytes;
``save_npz`` writes the same format with a fixed timestamp.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import Any, Mapping

import numpy as np
import numpy.lib.format as npy_format

from sdn.errors import SdnError, first_line, shown
from sdn.io import atomic_open

try:  # NumPy >= 2 moved the implementation to numpy._core
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray

# The globals a pickled dict of NumPy arrays can name. NumPy 1.x wrote ``numpy.core``, NumPy 2
# writes ``numpy._core``; Python 2 wrote ``__builtin__``. Every entry only constructs data.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {}
for _core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_core, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED_GLOBALS[(_core, "scalar")] = _multiarray.scalar
_ALLOWED_GLOBALS[("numpy", "ndarray")] = np.ndarray
_ALLOWED_GLOBALS[("numpy", "dtype")] = np.dtype
for _builtins in ("builtins", "__builtin__"):
    for _type in (set, frozenset, complex, bytearray):
        _ALLOWED_GLOBALS[(_builtins, _type.__name__)] = _type
_ALLOWED_GLOBALS[("collections", "OrderedDict")] = OrderedDict

# Errors a truncated or garbage payload can raise while being parsed or unpickled.
_PARSE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                 IndexError, KeyError, struct.error, OverflowError, MemoryError, UnicodeDecodeError,
                 RecursionError,  # np.dtype of a deeply nested descriptor
                 SystemError)  # np.dtype.__setstate__ of some malformed states "returned NULL without setting an exception"


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` only resolves the data-building globals above."""

    def __init__(self, file, path: str, encoding: str):
        super().__init__(file, encoding=encoding)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise SdnError(f"{self._path}: refusing to load global '{shown(f'{module}.{name}')}' "
                           "(only NumPy arrays and plain containers are allowed)") from None


def _read_header(handle, path: str) -> np.dtype:
    """Parse the ``.npy`` magic and header; return the stored dtype."""
    version = npy_format.read_magic(handle)
    if version not in ((1, 0), (2, 0)):
        raise SdnError(f"{path}: unsupported .npy format version {version[0]}.{version[1]}")
    try:
        read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        _, _, dtype = read(handle)
    except OSError:
        raise
    except Exception as error:  # NumPy's header parser: ValueError, but also tokenize.TokenError and others
        raise SdnError(f"{path}: not a readable .npy file (bad header: {first_line(error)})") from error
    return dtype


def _unpickle(handle, path: str, start: int) -> Any:
    """Unpickle the payload; Python 2 pickles need ``latin1`` for the array bytes, so retry with it."""
    try:
        return _RestrictedUnpickler(handle, path, encoding="ASCII").load()
    except UnicodeDecodeError:
        handle.seek(start)
        return _RestrictedUnpickler(handle, path, encoding="latin1").load()


def load_pickled_npy(path: str | os.PathLike) -> Any:
    """Return the object stored by ``np.save(path, obj)`` (what ``np.load(path).item()`` gave).

    Raises SdnError naming the file when it is missing, truncated, not a pickled object array,
    or names anything but NumPy arrays and plain containers.
    """
    path = str(path)
    try:
        with open(path, "rb") as handle:
            dtype = _read_header(handle, path)
            if not dtype.hasobject:
                raise SdnError(f"{path}: expected a pickled object (np.save of a dict), "
                               f"found a plain array of dtype {dtype}")
            array = _unpickle(handle, path, handle.tell())
    except SdnError:
        raise
    except OSError as error:
        raise SdnError(f"{path}: cannot read ({error.strerror or error})") from error
    except _PARSE_ERRORS as error:
        raise SdnError(f"{path}: not a readable .npy pickle (truncated or corrupt: {first_line(error)})") \
            from error
    if not isinstance(array, np.ndarray) or array.dtype != object or array.size != 1:
        raise SdnError(f"{path}: expected a single pickled object (np.save of a dict), "
                       f"found {type(array).__name__}")
    return array.reshape(-1)[0]


def save_pickled_npy(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as the original code did: ``np.save`` of a 0-d object array (atomically)."""
    holder = np.empty((), dtype=object)
    holder[()] = obj
    with atomic_open(path, "wb") as handle:
        np.save(handle, holder, allow_pickle=True)


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` like ``np.savez`` (uncompressed, no pickles), atomically and byte-reproducibly."""
    with atomic_open(path, "wb") as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, value in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w", force_zip64=True) as member:
                    npy_format.write_array(member, np.asanyarray(value), allow_pickle=False)


def load_npz(path: str | os.PathLike, keys: tuple[str, ...], file_format: str, version: int,
             text_keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read an sdn ``.npz`` (no pickles allowed): ``keys`` must be arrays, ``text_keys`` unicode scalars.

    Every sdn ``.npz`` carries ``format`` (a unicode scalar naming the layout) and ``version``;
    both are checked. Unreadable, foreign or incomplete files raise SdnError naming the file.
    """
    path = str(path)
    wanted = ("format", "version", *text_keys, *keys)
    try:
        # Our own handle: np.load leaves the file open when the zip directory is unreadable.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
            missing = [key for key in wanted if key not in npz.files]
            if missing:
                raise SdnError(f"{path}: not a {file_format!r} file (missing {', '.join(missing)})")
            arrays = {key: npz[key] for key in wanted}
    except SdnError:
        raise
    except OSError as error:
        raise SdnError(f"{path}: cannot read ({error})") from error
    except Exception as error:  # zipfile, header and pickle-refusal errors alike: name the file
        raise SdnError(f"{path}: not a readable .npz file ({first_line(error)})") from error
    found_format, found_version = arrays.pop("format"), arrays.pop("version")
    if found_format.shape != () or found_format.dtype.kind != "U" or str(found_format) != file_format \
            or found_version.shape != () or found_version.dtype.kind not in "iu" or int(found_version) != version:
        raise SdnError(f"{path}: expected format {file_format!r} version {version}, "
                       f"found {shown(str(found_format))} version {shown(str(found_version))}")
    for key in text_keys:
        if arrays[key].shape != () or arrays[key].dtype.kind != "U":
            raise SdnError(f"{path}: '{key}' must be a text scalar")
    for key in keys:
        if arrays[key].ndim == 0:
            raise SdnError(f"{path}: '{key}' must be an array, not a scalar")
    return arrays
