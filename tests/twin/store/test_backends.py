"""The store contract in both backends (a DuckDB file, a PostgreSQL/PostGIS database), and moving a store
between them (`twin store copy`)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import small_demo_in, store_fingerprint
from twin.access.access import verify_audit
from twin.errors import StoreError
from twin.store import copy as copy_module
from twin.store.copy import copy_store
from twin.store.queries import grid_table, key_figures
from twin.store.schema import GEOMETRY_COLUMNS, GRID_LEVELS, TABLES
from twin.store.store import THIS_STORE, Store, open_for_command

KEYS = {"meta": "key", "case_events": 'case_id, "at", to_status', "grids": "grid_id, version",
        "grid_changes": "change_id, grid_id"}


def _table(con, table: str) -> pd.DataFrame:
    """A whole table in a fixed order, geometry as WKB bytes."""
    geometry = {c for t, c in GEOMETRY_COLUMNS if t == table}
    columns = [r[0] for r in con.execute(f"SELECT column_name FROM duckdb_columns() WHERE {THIS_STORE} AND "
                                         "table_name = ? ORDER BY column_index", [table]).fetchall()]
    select = ", ".join(f"ST_AsWKB({c}) AS {c}" if c in geometry else f'"{c}"' for c in columns)
    return con.execute(f"SELECT {select} FROM {table} ORDER BY {KEYS.get(table, columns[0])}").df()


def test_a_new_store_has_the_contract_tables_in_either_backend(new_store_db, backend):
    with Store(new_store_db, create=True) as store:
        types = dict(((t, c), d) for t, c, d in store.con.execute(
            f"SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE {THIS_STORE}").fetchall())
        assert {t for t, _ in types} >= set(TABLES)  # PostGIS adds its own (spatial_ref_sys, geometry_columns)
        assert all(types[key] == "GEOMETRY" for key in GEOMETRY_COLUMNS)
        assert types[("meshes", "vertices")] == "BLOB" and types[("residents", "tags")] == "VARCHAR[]"
        if backend == "postgres":  # what PostgreSQL itself holds: PostGIS geometry and bytea
            kinds = dict(((t, c), u) for t, c, u in store.con.execute(
                "SELECT * FROM postgres_query('store', 'SELECT table_name::text, column_name::text, udt_name::text "
                "FROM information_schema.columns WHERE table_schema = ''public''')").fetchall())
            assert all(kinds[key] == "geometry" for key in GEOMETRY_COLUMNS)
            assert kinds[("meshes", "vertices")] == "bytea"


def test_postgres_finds_a_buildings_residents_through_its_index(request):
    """PostgreSQL-only: DuckDB's scanner sends text filters with COLLATE "C", which only a "C" index serves."""
    import psycopg

    with psycopg.connect(small_demo_in("postgres", request)) as con:
        plan = "\n".join(r[0] for r in con.execute(
            "EXPLAIN SELECT household_id FROM residents WHERE building_id = 'demo:B000001' COLLATE \"C\"").fetchall())
    assert "residents_building" in plan, plan


def test_a_failed_first_command_leaves_no_store_in_either_backend(new_store_db):
    with pytest.raises(RuntimeError), open_for_command(new_store_db) as store:
        store.set_meta(crs="EPSG:4547")
        raise RuntimeError("boom")
    with pytest.raises(StoreError, match="no such store"):
        Store(new_store_db)


def test_the_figures_are_the_same_in_both_backends(request):
    with Store(small_demo_in("duckdb", request), read_only=True) as file, \
            Store(small_demo_in("postgres", request), read_only=True) as database:
        assert key_figures(file.con) == key_figures(database.con)
        for level in GRID_LEVELS:
            pd.testing.assert_frame_equal(grid_table(file.con, level=level), grid_table(database.con, level=level))


def test_a_store_copied_to_postgres_and_back_is_the_same_row_for_row_and_byte_for_byte(small_demo, pg_cluster,
                                                                                        tmp_path):
    url = pg_cluster.create_database()
    there = copy_store(small_demo, url)
    assert there["tables"]["residents"] > 0 and {"buildings", "meshes", "grids", "cases"} <= set(there["checked"])
    back = tmp_path / "back.duckdb"
    copy_store(url, back)
    with Store(small_demo, read_only=True) as first, Store(back, read_only=True) as last, \
            Store(url, read_only=True) as middle:
        for table in TABLES:
            pd.testing.assert_frame_equal(_table(first.con, table), _table(last.con, table), obj=table)
        assert verify_audit(middle.con) is None and verify_audit(last.con) is None  # the hash chain holds
        srids = middle.con.execute("SELECT * FROM postgres_query('store', "
                                   "'SELECT DISTINCT ST_SRID(footprint) FROM buildings')").fetchall()
        assert srids == [(4547,)], "PostGIS knows the store's CRS from the column"
    assert store_fingerprint(url) == store_fingerprint(small_demo), "every column, as PostgreSQL holds it"


def test_a_copy_that_fails_its_check_leaves_the_target_unchanged(small_demo, pg_cluster, tmp_path, monkeypatch):
    checksum = copy_module.table_checksum

    def corrupted(con, table, *, catalog=None):  # as if the target had lost a residents row on the way
        rows, value = checksum(con, table, catalog=catalog)
        return (rows - 1 if table == "residents" and catalog is None else rows), value

    monkeypatch.setattr(copy_module, "table_checksum", corrupted)
    url = pg_cluster.create_database()
    with pytest.raises(StoreError, match="copying residents.*nothing was written"):
        copy_store(small_demo, url)
    with pytest.raises(StoreError, match="no such store"):
        Store(url)
    with pytest.raises(StoreError, match="copying residents"):
        copy_store(small_demo, tmp_path / "copy.duckdb")
    assert not (tmp_path / "copy.duckdb").exists()


def test_a_copy_refuses_a_target_that_holds_a_store(small_demo, request, tmp_path):
    url = small_demo_in("postgres", request)
    with Store(url, read_only=True) as store:
        before = store.count("residents")
    with pytest.raises(StoreError, match="a store is there already"):
        copy_store(small_demo, url)
    with Store(url, read_only=True) as store:
        assert store.count("residents") == before
    with pytest.raises(StoreError, match="a file exists there"):
        copy_store(url, small_demo)


def test_a_password_in_the_db_url_is_refused_before_anything_runs(capsys):
    from cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["keys", "add", "client", "--db", "postgresql://twin:secret@127.0.0.1:1/twin"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "PGPASSWORD" in err and "secret" not in err


def test_every_command_takes_a_postgres_store(demo_copy_db, backend, capsys):
    """Writes and reads through the command line, the same in both backends."""
    from cli import main

    assert main(["keys", "add", "camera-7", "--db", demo_copy_db, "--json"]) == 0
    assert main(["keys", "add", "camera-8", "--db", demo_copy_db, "--json"]) == 0
    assert main(["keys", "revoke", "camera-8", "--db", demo_copy_db, "--json"]) == 0
    assert main(["keys", "revoke", "camera-8", "--db", demo_copy_db, "--json"]) == 2, "revoked already"
    assert main(["audit", "verify", "--db", demo_copy_db, "--json"]) == 0
    assert '"intact": true' in capsys.readouterr().out
    with Store(demo_copy_db, read_only=True) as store:
        assert store.con.execute("SELECT name FROM api_keys WHERE name LIKE 'camera-%' AND revoked_at IS NULL"
                                 ).fetchall() == [("camera-7",)]


def test_the_change_notices_name_their_sender_and_an_older_stores_triggers_are_brought_up_to_date(pg_cluster):
    """PostgreSQL-only (a file has no notices): a serving process's writer signs its transactions, and its own
    changes come back named after it; anyone else's (the command line) as ``store``. A store whose triggers
    sent no sender (before this version) gets this version's when a writer opens it."""
    import psycopg

    from twin.access.keys import add_key
    from twin.store.notices import sign_transaction
    from twin.store.schema import CHANGES_CHANNEL

    url = pg_cluster.create_database()
    Store(url, create=True).close()
    with psycopg.connect(url, autocommit=True) as con:  # the trigger function as the earlier version made it
        con.execute("CREATE OR REPLACE FUNCTION twin_announce_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"PERFORM pg_notify('{CHANGES_CHANNEL}', 'store|' || TG_TABLE_NAME); RETURN NULL; END $$")
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANGES_CHANNEL}")
        with Store(url) as store:
            with store.transaction():
                sign_transaction(store.con, "process-7")
                add_key(store.con, "signed")
            with store.transaction():
                add_key(store.con, "unsigned")
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert payloads == ["process-7|api_keys", "store|api_keys"]
