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
IFC = TESTS / "data" / "ifc"


def file_digest(path: Path) -> str:
    """sha256 of a file, to prove a failed command left it untouched."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def store_fingerprint(db: str | Path) -> dict[str, tuple]:
    """Per table of a store in either backend: its row count and, per column, the XOR of its values' hashes.

    To prove a failed command left a store unchanged where there is no one file to hash (PostgreSQL); the
    same store in either backend has the same fingerprint.
    """
    from twin.store.schema import TABLES
    from twin.store.store import Store

    with Store(db, read_only=True) as store:
        return {t: store.con.execute(f"SELECT count(*), coalesce(bit_xor(hash(COLUMNS(*))), 0) FROM {t}").fetchall()[0]
                for t in TABLES}


@pytest.fixture(scope="session", autouse=True)
def extensions_loaded_without_their_signature_check():
    """In the test process, the stores' DuckDB databases load the extensions without checking their signatures.

    DuckDB hashes the whole file on every LOAD to check it: ~0.3 s for the 80 MB spatial extension, on each Store
    opened (hundreds per run, most of the time of many store tests), where loading it unchecked takes 3 ms. The
    files are the pinned wheels' own (``twin.store.store.spatial_extension_path``), still checked by the servers
    and commands the tests start as processes of their own, which keep DuckDB's default. Only the databases opened
    the way ``twin.store.store.connect`` opens them (no autoloading) are affected.
    """
    import duckdb

    original = duckdb.connect

    def connect(*args, **kwargs):
        config = kwargs.get("config")
        if config is not None and config.get("autoload_known_extensions") is False:
            kwargs["config"] = {**config, "allow_unsigned_extensions": True}
        return original(*args, **kwargs)

    duckdb.connect = connect
    yield
    duckdb.connect = original


@pytest.fixture(scope="session")
def lujiazui_store(tmp_path_factory) -> Path:
    """A store holding the Lujiazui footprints (do not modify; copy it first)."""
    from ingest.footprints import ingest_footprints, read_footprints
    from twin.store.store import open_for_command

    path = tmp_path_factory.mktemp("lujiazui") / "lujiazui.duckdb"
    with open_for_command(path) as store:
        ingest_footprints(store, read_footprints(LUJIAZUI), source="lujiazui", where=str(LUJIAZUI),
                          default_height=10.0)
    return path


def copy_of(store: Path, tmp_path: Path) -> Path:
    """A copy of a session store in the test's own folder, that the test may change."""
    return Path(shutil.copy(store, tmp_path / "store.duckdb"))


@pytest.fixture
def lujiazui_copy(lujiazui_store, tmp_path) -> Path:
    return copy_of(lujiazui_store, tmp_path)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """The small demo district (about 500 buildings), built once per test run (do not modify)."""
    from data.build import build_demo_store
    from twin.store.store import connect

    path = tmp_path_factory.mktemp("demo") / "small.duckdb"
    build_demo_store(path, scale="small", seed=0)
    # Held open read-only for the session: DuckDB then gives every read-only Store of this file in this process the
    # same database, whose spatial extension is loaded already (a fresh one spends ~0.3 s loading it). Other
    # processes may read the file too; a write to it (forbidden anyway) fails.
    kept = connect(path, read_only=True)
    yield path
    kept.close()


@pytest.fixture
def demo_copy(small_demo, tmp_path) -> Path:
    """A copy of the small demo that a test may change."""
    return copy_of(small_demo, tmp_path)


@pytest.fixture(scope="session")
def bim_demo(small_demo, tmp_path_factory) -> tuple[Path, str]:
    """The small demo with IfcOpenHouse standing on its largest footprint: (store, that building's id)."""
    import pyproj

    from ingest.ifc import ingest_ifc
    from twin.store.store import Store, open_for_command

    path = tmp_path_factory.mktemp("bim") / "demo.duckdb"
    shutil.copy(small_demo, path)
    with Store(path, read_only=True) as store:
        building_id, x, y = store.con.execute("SELECT building_id, label_x, label_y FROM buildings "
                                              "ORDER BY ST_Area(footprint) DESC LIMIT 1").fetchone()
    lon, lat = pyproj.Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True).transform(x, y)
    with open_for_command(path) as store:
        ingest_ifc(store, IFC / "ifcopenhouse-ifc4" / "IfcOpenHouse_IFC4.ifc", anchor=f"{lon},{lat},0,0")
    return path, building_id


# -- the two backends -----------------------------------------------------------------------------------
# Store-level tests take a store through these fixtures, parametrised over BACKENDS: a DuckDB file, or a
# database in a throwaway PostgreSQL/PostGIS cluster that the session starts on first use and stops at its end.
BACKENDS = ("duckdb", "postgres")
SMALL_DEMO_TEMPLATE = "small_demo_template"  # never opened by a test: PostgreSQL copies only an idle template


@pytest.fixture(scope="session")
def pg_cluster():
    from tests.pgcluster import start_cluster

    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def new_store_db(backend, tmp_path, request) -> str:
    """Where a test may make a new store: a file that does not exist yet, or an empty PostGIS database."""
    if backend == "duckdb":
        return str(tmp_path / "store.duckdb")
    return request.getfixturevalue("pg_cluster").create_database()


@pytest.fixture(scope="session")
def small_demo_pg(small_demo, pg_cluster) -> str:
    """The small demo copied into PostgreSQL (do not modify): a database, and a template for copies."""
    from twin.store.copy import copy_store

    copy_store(small_demo, pg_cluster.create_database(SMALL_DEMO_TEMPLATE))
    return pg_cluster.create_database("small_demo", template=SMALL_DEMO_TEMPLATE)


def small_demo_in(backend: str, request) -> str:
    """The small demo in one backend (do not modify)."""
    return str(request.getfixturevalue("small_demo")) if backend == "duckdb" else request.getfixturevalue(
        "small_demo_pg")


@pytest.fixture
def demo_copy_db(backend, tmp_path, request) -> str:
    """A copy of the small demo in the backend under test, that the test may change."""
    if backend == "duckdb":
        return str(copy_of(request.getfixturevalue("small_demo"), tmp_path))
    request.getfixturevalue("small_demo_pg")
    return request.getfixturevalue("pg_cluster").create_database(template=SMALL_DEMO_TEMPLATE)
