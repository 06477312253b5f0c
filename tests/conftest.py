"""Shared fixtures: real data files and small stores built from them."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
LUJIAZUI = TESTS / "data" / "footprints" / "shanghai-lujiazui" / "shanghai_lujiazui_buildings.DERIVED.geojson"
BUBENEC = TESTS / "data" / "footprints" / "prague-bubenec" / "bubenec.gpkg"


def file_digest(path: Path) -> str:
    """sha256 of a file, to prove a failed command left it untouched."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def lujiazui_store(tmp_path_factory) -> Path:
    """A store holding the Lujiazui footprints (do not modify; copy it first)."""
    from ingest.footprints import ingest_footprints, read_footprints
    from twin.store import open_for_command

    path = tmp_path_factory.mktemp("lujiazui") / "lujiazui.duckdb"
    with open_for_command(path) as store:
        ingest_footprints(store, read_footprints(LUJIAZUI), source="lujiazui", where=str(LUJIAZUI),
                          default_height=10.0)
    return path


@pytest.fixture
def lujiazui_copy(lujiazui_store, tmp_path) -> Path:
    path = tmp_path / "store.duckdb"
    shutil.copy(lujiazui_store, path)
    return path


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """The small demo district (about 500 buildings), built once per test run (do not modify)."""
    from data.build import build_demo_store

    path = tmp_path_factory.mktemp("demo") / "small.duckdb"
    build_demo_store(path, scale="small", seed=0)
    return path
