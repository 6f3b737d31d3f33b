"""Atomic writes: all or nothing, usual permissions, clear errors."""

import os
import stat

import pytest

from sdn.errors import SdnError
from sdn.io import atomic_open, atomic_write_json, atomic_write_text


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"b": [1, 2]})
    assert path.read_text() == '{"b": [1, 2]}'
    assert os.listdir(tmp_path) == ["out.json"]


def test_failure_inside_the_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "log.txt"
    atomic_write_text(path, "good")
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as handle:
            handle.write("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "good"
    assert os.listdir(tmp_path) == ["log.txt"]


def test_files_get_the_umask_permissions_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o644


def test_unwritable_destination_is_a_clear_error(tmp_path):
    with pytest.raises(SdnError, match="cannot write"):
        atomic_write_text(tmp_path / "missing_dir" / "f", "x")
