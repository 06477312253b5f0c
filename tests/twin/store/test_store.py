"""The store contract: tables, columns, indexes, schema version, offline spatial extension, transactions."""

from __future__ import annotations

import duckdb
import pytest

from twin.errors import StoreError
from twin.store import store as store_module
from twin.store.schema import SCHEMA_VERSION
from twin.store.store import Store, create_indexes, drop_indexes, open_for_command, spatial_extension_path

CONTRACT = {
    "meta": {"key", "value"},
    "buildings": {"building_id", "source", "source_id", "name", "address", "footprint", "height", "base_z",
                  "floors", "height_source", "grid_id"},
    "meshes": {"mesh_id", "building_id", "lod", "vertices", "triangles", "element_ids", "bbox_xmin", "bbox_ymin",
               "bbox_zmin", "bbox_xmax", "bbox_ymax", "bbox_zmax"},
    "grids": {"grid_id", "parent_id", "level", "name", "boundary", "version", "valid_from", "valid_to"},
    "residents": {"resident_id", "household_id", "building_id", "unit", "room", "name", "id_number", "phone",
                  "birth_date", "tags"},
    "cases": {"case_id", "category", "subcategory", "source", "status", "location", "building_id", "grid_id",
              "camera_id", "reported_at", "updated_at", "due_at"},
    "case_events": {"case_id", "at", "from_status", "to_status", "actor", "note"},
    "cameras": {"camera_id", "name", "position", "z", "heading_deg", "pitch_deg", "fov_deg", "range_m",
                "stream_url", "status", "grid_id", "building_id"},
}
GEOMETRY = {("buildings", "footprint"), ("grids", "boundary"), ("cases", "location"), ("cameras", "position")}


def test_a_new_store_has_the_contract_tables_and_indexes(tmp_path):
    with Store(tmp_path / "s.duckdb", create=True) as store:
        columns = store.con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns").fetchall()
        found: dict[str, set] = {}
        for table, column, _ in columns:
            found.setdefault(table, set()).add(column)
        for table, wanted in CONTRACT.items():
            assert wanted <= found[table], (table, wanted - found[table])
        types = {(t, c): d for t, c, d in columns}
        assert all(types[key] == "GEOMETRY" for key in GEOMETRY)
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
        indexes = {r[0] for r in store.con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
        assert {"residents_building", "cases_building", "buildings_grid", "grids_parent"} <= indexes
        assert "grids_boundary" not in indexes  # DuckDB's R-tree breaks on UPDATE (twin/store/schema.py)


def test_the_spatial_extension_comes_from_the_pinned_wheel():
    path = spatial_extension_path()
    assert path.exists() and f"v{duckdb.__version__}" in str(path)


def test_a_missing_store_and_a_foreign_file_are_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="no such store.*twin demo"):
        Store(tmp_path / "missing.duckdb")
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE t (x INT)").close()
    with pytest.raises(StoreError, match="not a district store"):
        Store(other)


def test_a_failed_command_rolls_back_and_removes_a_store_it_created(tmp_path):
    path = tmp_path / "new.duckdb"
    with pytest.raises(RuntimeError), open_for_command(path) as store:
        store.set_meta(crs="EPSG:4547")
        raise RuntimeError("boom")
    assert not path.exists()
    with open_for_command(path) as store:
        store.set_meta(district_name="x")
    with pytest.raises(RuntimeError), open_for_command(path) as store:
        store.set_meta(district_name="y")
        raise RuntimeError("boom")
    with Store(path, read_only=True) as store:
        assert store.meta()["district_name"] == "x"


def _schema_1_store(path):
    """A store that looks like schema 1: no elements table, no cases.media_url, one case."""
    with Store(path, create=True) as store:
        drop_indexes(store.con)
        store.con.execute("ALTER TABLE cases DROP COLUMN media_url")
        create_indexes(store.con)
        store.con.execute("DROP TABLE elements")
        store.con.execute("INSERT INTO cases (case_id, category, subcategory, source, status, location, reported_at, "
                          "updated_at) VALUES ('C1', 'c', 's', 'patrol', 'reported', ST_Point(1, 2), now(), now())")
        store.con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    return path


def test_a_failed_upgrade_leaves_the_old_store_as_it_was(tmp_path, monkeypatch):
    path = _schema_1_store(tmp_path / "old.duckdb")

    def a_step_that_fails(con):  # after the real steps have added tables and columns
        con.execute("CREATE TABLE upgrade_scratch AS SELECT 1 AS x")
        con.execute("SELECT no_such_column FROM cases")

    steps = list(store_module.UPGRADE_STEPS)
    monkeypatch.setattr(store_module, "UPGRADE_STEPS", [*steps[:-1], a_step_that_fails, steps[-1]])
    with pytest.raises(StoreError, match="(?s)from schema 1 to .* failed at a_step_that_fails.*nothing was changed"):
        Store(path)
    with duckdb.connect(str(path), read_only=True) as con:  # as the program of schema 1 reads it
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [("1",)]
        assert "elements" not in tables and "upgrade_scratch" not in tables
        assert "media_url" not in {r[0] for r in con.execute("DESCRIBE cases").fetchall()}
        assert con.execute("SELECT case_id FROM cases").fetchall() == [("C1",)]
    monkeypatch.setattr(store_module, "UPGRADE_STEPS", steps)
    with Store(path) as store:
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION) and store.count("cases") == 1


def test_an_older_store_is_upgraded_when_opened_for_writing(tmp_path):
    path = _schema_1_store(tmp_path / "old.duckdb")
    with pytest.raises(StoreError, match="older than this program.*twin serve"):
        Store(path, read_only=True)
    with Store(path) as store:
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
        assert store.count("elements") == 0
        assert "media_url" in store.con.execute("SELECT * FROM cases LIMIT 0").df().columns
    Store(path, read_only=True).close()


def test_a_grid_change_survives_a_crash_before_the_store_is_closed(demo_copy):
    """A new grid version (UPDATE and INSERT of grids), then the process dies: the log replays on open."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    crash = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from twin.store.store import Store
con = Store({str(demo_copy)!r}).con.cursor()
g = con.execute("SELECT grid_id, version FROM grids WHERE level = 'micro' AND valid_to IS NULL LIMIT 1").fetchone()
con.execute("BEGIN TRANSACTION")
con.execute("UPDATE grids SET valid_to = now()::TIMESTAMP WHERE grid_id = ? AND version = ?", list(g))
con.execute("INSERT INTO grids SELECT * REPLACE (version + 1 AS version, NULL AS valid_to) FROM grids "
            "WHERE grid_id = ? AND version = ?", list(g))
con.execute("COMMIT")
os._exit(0)
"""
    assert subprocess.run([sys.executable, "-c", crash], timeout=120).returncode == 0
    with Store(demo_copy, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM grids WHERE version = 2").fetchone()[0] >= 1
