"""The store contract: tables, columns, indexes, schema version, offline spatial extension, transactions.

DuckDB-only: these tests are about the DuckDB file itself (its catalog views and R-tree, a foreign DuckDB file,
the file removed after a failed first command, upgrades of an older file in place, its write-ahead log after a
crash). The contract in both backends is in test_backends.py; the read-side queries run on both in
test_queries.py.
"""

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
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION) and store.meta()["timezone"] == "Asia/Shanghai"
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
    """A store that looks like schema 1: no elements table, no cases.media_url or attributes, no zone, one case."""
    with Store(path, create=True) as store:
        drop_indexes(store.con)
        store.con.execute("ALTER TABLE cases DROP COLUMN media_url")
        store.con.execute("ALTER TABLE cases DROP COLUMN attributes")
        store.con.execute("DELETE FROM meta WHERE key = 'timezone'")
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
        assert {"media_url", "attributes"} <= set(store.con.execute("SELECT * FROM cases LIMIT 0").df().columns)
        assert store.meta()["timezone"] == "Asia/Shanghai", "an old store's times are the demo district's local ones"
    Store(path, read_only=True).close()


# A planner's save as `twin serve` runs it: the store opened for writing, its one writer thread, the
# planner's save_through_writer and save_partition (a merge of two micro-grids). Once the save is
# acknowledged, the process says what it saved and waits to be killed.
SAVE_THEN_WAIT = """
import asyncio, json, sys, time
sys.path.insert(0, {root!r})
from scenes.planner import save_through_writer
from twin.cases.live import CaseFeed, IntakeWriter
from twin.grids.gridedit import merge_grids
from twin.grids.gridversions import current_grids, save_partition
from twin.store.store import Store

store = Store({db!r})
writer = IntakeWriter(store.con, CaseFeed(), dedupe_window_s=600)
shapes = current_grids(store.con.cursor(), parent_id={parent!r}).geometry
a, b = shapes.index[2], shapes.index[3]
merged = merge_grids(shapes, [a, b])


async def save():  # the planner awaits its saves on the server's event loop
    return await save_through_writer(writer)(lambda con: [save_partition(con, {parent!r}, merged,
                                                                         actor="planner1", reason="compound merged")])
saved, = asyncio.run(save())
print(json.dumps({{"kept": a, "deleted": b, "versions": saved.versions, "wkt": merged[a].wkt,
                  "moved": saved.reassignment.moves["buildings"]["building_id"].tolist(),
                  "audit_seq": saved.audit_seq}}), flush=True)
time.sleep(600)
"""


def test_a_grid_change_survives_a_crash_before_the_store_is_closed(demo_copy):
    """The server's grid save path in a process killed with SIGKILL right after the save is acknowledged:
    on the next open, the new versions are in force and the buildings are in their new grid."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = SAVE_THEN_WAIT.format(root=str(ROOT), db=str(demo_copy), parent="S01-C01-G1")
    server = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        acknowledged = json.loads(server.stdout.readline() or "null")
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    assert server.returncode == -signal.SIGKILL and acknowledged, "the save was acknowledged, then the process died"
    kept, deleted = acknowledged["kept"], acknowledged["deleted"]
    assert acknowledged["versions"] == {kept: 2} and acknowledged["moved"]
    with Store(demo_copy, read_only=True) as store:
        con = store.con
        in_force = dict(con.execute("SELECT grid_id, version FROM grids WHERE grid_id IN (?, ?) AND valid_to IS NULL",
                                    [kept, deleted]).fetchall())
        assert in_force == {kept: 2}, "the merged grid's new version is in force, the other one is not"
        same, = con.execute("SELECT ST_Equals(boundary, ST_GeomFromText(?)) FROM grids WHERE grid_id = ? "
                            "AND valid_to IS NULL", [acknowledged["wkt"], kept]).fetchone()
        assert same, "with the boundary that was saved"
        owners = {g for g, in con.execute("SELECT DISTINCT grid_id FROM buildings WHERE building_id IN "
                                          "(SELECT unnest(?))", [acknowledged["moved"]]).fetchall()}
        assert owners == {kept}, "the buildings it moved are in their new grid"
        assert con.execute("SELECT count(*) FROM audit WHERE seq = ?", [acknowledged["audit_seq"]]).fetchone()[0] == 1


def test_a_store_before_schema_14_gets_the_party_tables_and_its_organisations_kinds_from_their_names(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path, create=True) as store:
        con = store.con
        for column in ("kind", "parent_id", "secretary"):
            con.execute(f"ALTER TABLE party_orgs DROP COLUMN {column}")
        con.execute("DROP TABLE party_reports")
        con.execute("DROP TABLE party_services")
        con.execute("INSERT INTO party_orgs (org_id, name, members) VALUES ('A', '普罗新村党委', 111), "
                    "('B', '如意家园党支部', 46), ('C', '第3网格联合党支部', 9), ('D', '怡景雅居党总支', 62), "
                    "('E', '某某协会', 5)")
        con.execute("UPDATE meta SET value = '11' WHERE key = 'schema_version'")
    with Store(path) as store:
        kinds = dict(store.con.execute("SELECT org_id, kind FROM party_orgs").fetchall())
        assert kinds == {"A": "committee", "B": "branch", "C": "joint_branch", "D": "general_branch", "E": None}
        assert store.count("party_reports") == store.count("party_services") == 0
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)


def test_a_store_before_schema_16_gets_the_intake_keys(new_store_db):
    with Store(new_store_db, create=True) as store:
        store.con.execute("DROP TABLE intake_keys")
        store.con.execute("UPDATE meta SET value = '14' WHERE key = 'schema_version'")
    with Store(new_store_db) as store:
        assert store.count("intake_keys") == 0 and store.meta()["schema_version"] == str(SCHEMA_VERSION)


@pytest.mark.parametrize("found", [15, 16])
def test_a_store_at_schema_15_or_16_gets_the_kept_camera_coverage_table(tmp_path, found):
    path = tmp_path / "old.duckdb"
    with Store(path, create=True) as store:
        store.con.execute("DROP TABLE camera_sight")
        store.con.execute("INSERT INTO volunteer_tasks (task_id, title, place, x, y, grid_id, starts_at, ends_at, "
                          "places, points, eligibility, published_by, published_at) VALUES ('t1', 'sweep', 'gate', "
                          "0, 0, 'g', now(), now(), 1, 5, 'anyone', 'lu', now())")
        store.con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(found)])
    with Store(path) as store:
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION) == "17"
        assert store.count("camera_sight") == 0
        assert store.con.execute("SELECT task_id FROM volunteer_tasks").fetchall() == [("t1",)]


def test_a_row_read_alone_leaves_no_postgresql_transaction_open(new_store_db, backend):
    """PostgreSQL-only: fetchone reads the result to its end, so the cursor's transaction ends with it (an open one
    held the locks that another process's start waited for, as long as the cursor was not used again)."""
    if backend == "duckdb":
        pytest.skip("a DuckDB file's transactions are the process's own")
    import psycopg

    with Store(new_store_db, create=True) as store:
        cursor = store.con.cursor()
        assert cursor.execute("SELECT key FROM meta WHERE key = 'no such key'").fetchone() is None
        assert cursor.execute("SELECT value FROM meta WHERE key = 'timezone'").fetchone() == ("Asia/Shanghai",)
        with psycopg.connect(new_store_db) as con:
            open_ones, = con.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                     "state = 'idle in transaction'").fetchone()
        assert open_ones == 0
