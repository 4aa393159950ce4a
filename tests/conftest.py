"""Shared fixtures: a RunEngine that is torn down, and fast throw-away catalogs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def RE():
    """A RunEngine without a SIGINT handler, halted if a test leaves it running."""
    from bluesky import RunEngine

    engine = RunEngine({}, context_managers=[])
    yield engine
    if engine.state != "idle":
        engine.halt()


@pytest.fixture(scope="session")
def _catalog_template(tmp_path_factory) -> Path:
    # `tiled catalog init` costs a subprocess (~4 s); do it once and copy the empty database.
    from controller.catalog import open_catalog

    root = tmp_path_factory.mktemp("catalog-template")
    open_catalog(root)
    return root / "catalog.db"


@pytest.fixture
def data_dir(tmp_path, _catalog_template) -> Path:
    """An empty data directory with an initialised catalog."""
    root = tmp_path / "tomocycle-data"
    root.mkdir()
    shutil.copy(_catalog_template, root / "catalog.db")
    return root
