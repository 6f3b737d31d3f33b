"""Shared test data: the small synthetic datasets of ``sdn.data.synth`` that many modules train on.

``synth_dataset(**options)`` generates a dataset once per test session for each set of options
and hands out the same folder to every test asking for those options: tests must only read it.
A test (or a module-scoped fixture) that writes into its dataset (runs below ``--root_path``,
corrupted frames) takes a private copy: ``synth_copy(**options)`` in ``tmp_path``, or
``synth_dataset.copy(folder, **options)`` anywhere.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sdn.data.synth import generate


class SynthDatasets:
    """Datasets of ``generate(root, **options)``, each built once and then shared read-only."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        self._factory = tmp_path_factory
        self._built: dict[str, tuple[Path, dict[str, Any]]] = {}

    def __call__(self, **options: Any) -> tuple[Path, dict[str, Any]]:
        """(root, summary) of the dataset; the summary is the caller's own copy."""
        key = json.dumps(options, sort_keys=True)
        if key not in self._built:
            root = self._factory.mktemp("synth") / "data"
            self._built[key] = root, generate(root, **options)
        root, summary = self._built[key]
        return root, copy.deepcopy(summary)

    def copy(self, destination: Path, **options: Any) -> tuple[Path, dict[str, Any]]:
        """A writable copy of the dataset at ``destination`` (which must not exist): (destination, summary)."""
        source, summary = self(**options)
        shutil.copytree(source, destination, symlinks=True)
        return destination, summary


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory) -> SynthDatasets:
    """``synth_dataset(**options) -> (root, summary)``, generated once per session; read it only."""
    return SynthDatasets(tmp_path_factory)


@pytest.fixture
def synth_copy(synth_dataset, tmp_path):
    """``synth_copy(**options) -> (root, summary)``: a private copy at ``tmp_path / "data"`` to write into."""
    def make(**options: Any) -> tuple[Path, dict[str, Any]]:
        return synth_dataset.copy(tmp_path / "data", **options)
    return make
