"""Moving a whole store between backends: a DuckDB file to a PostgreSQL database, or back, or file to file.

The target's DuckDB attaches the source read-only as ``source`` and copies table by table with one
``INSERT ... SELECT`` each, so the same SQL serves every direction. Everything is written in one
transaction on the target; before it commits, each table's row count and a checksum of its geometry (as WKB)
and mesh bytes are compared on both sides. A failed copy leaves the target as it was: a new file is removed,
and PostgreSQL rolls its tables back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from twin.errors import StoreError
from twin.store.schema import GEOMETRY_COLUMNS, TABLES
from twin.store.store import (Store, advance_sequences, create_indexes, drop_indexes, is_postgres, one_thread,
                              open_for_command, postgres_extension_path, tag_geometry_srid)

log = logging.getLogger(__name__)

SOURCE = "source"  # the name the source is attached under in the target's DuckDB
BINARY_COLUMNS = {"meshes": ("vertices", "triangles", "element_ids")}


def _row_key(table: str) -> str:
    """The columns that tell a table's rows apart (its primary key), so equal rows cannot cancel in a checksum."""
    return "grid_id, version" if table == "grids" else TABLES[table].split()[0]


def table_checksum(con, table: str, *, catalog: str | None = None) -> tuple[int, int | None]:
    """(rows, checksum) of one table (in ``catalog``, else the default one): the checksum covers its geometry
    (as WKB) and mesh bytes, None when it has neither.

    The checksum is the XOR of one hash per row of its key and those columns, so row order does not matter.
    """
    name = f"{catalog}.{table}" if catalog else table
    checked = [f"ST_AsWKB({c})" for t, c in GEOMETRY_COLUMNS if t == table] + list(BINARY_COLUMNS.get(table, ()))
    if not checked:
        return con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0], None
    row = f"hash({_row_key(table)}, {', '.join(checked)})"
    count, checksum = con.execute(f"SELECT count(*), coalesce(bit_xor({row}), 0) FROM {name}").fetchall()[0]
    return count, checksum


def copy_store(source: str | os.PathLike, target: str | os.PathLike, *,
               step: Callable[[str, int], None] = lambda table, rows: None) -> dict:
    """Copy the whole store at ``source`` into a new store at ``target`` (a DuckDB file or a PostgreSQL URL).

    Parameters
    ----------
    source, target : path-like or str
        DuckDB files or ``postgresql://`` URLs; the target must hold no store yet.
    step : callable
        Called with each table's name and row count once it is copied (a progress bar).

    Returns
    -------
    dict
        ``source``, ``target``, ``tables`` (rows per table) and ``checked`` (tables whose geometry or mesh
        checksums matched).
    """
    if str(source) == str(target):
        raise StoreError(f"{source}: the source and the target of a copy are the same store.")
    with Store(source, read_only=True):  # refuses a missing, foreign or older store, with its own message
        pass
    if not is_postgres(target) and os.path.exists(target):
        raise StoreError(f"{target}: a file exists there. Copy into a new file, or remove this one first.")
    rows: dict[str, int] = {}
    checked: list[str] = []
    with open_for_command(target) as store:
        if not store.created:
            raise StoreError(f"{target}: a store is there already; copy into an empty database or a new file.")
        con = store.con
        _attach_source(con, source)  # until the store is closed: DuckDB detaches nothing a transaction used
        drop_indexes(con)
        crs = con.execute(f"SELECT value FROM {SOURCE}.meta WHERE key = 'crs'").fetchall()
        if store.postgres and crs:
            tag_geometry_srid(con, crs[0][0])
        with one_thread(con):
            for table in TABLES:
                con.execute(f"DELETE FROM {table}")  # a new store's meta has its own rows already
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {SOURCE}.{table}")
                rows[table] = _compare(con, table, checked)
                step(table, rows[table])
        create_indexes(con)
        if store.postgres:
            advance_sequences(con)
    log.info("copied %s to %s: %s", source, target, rows)
    return {"source": str(source), "target": str(target), "tables": rows, "checked": checked}


def _attach_source(con, source: str | os.PathLike) -> None:
    quoted = str(source).replace("'", "''")
    if is_postgres(source):
        con.execute(f"LOAD '{postgres_extension_path()}'")
        con.execute(f"ATTACH '{quoted}' AS {SOURCE} (TYPE postgres, READ_ONLY)")
    else:
        con.execute(f"ATTACH '{quoted}' AS {SOURCE} (READ_ONLY)")


def _compare(con, table: str, checked: list[str]) -> int:
    """The table's row count, once it and its checksum match the source's; else a :class:`StoreError`."""
    ours = table_checksum(con, table)
    theirs = table_checksum(con, table, catalog=SOURCE)
    if ours != theirs:
        raise StoreError(f"copying {table}: the target has {ours[0]} rows (checksum {ours[1]}), the source "
                         f"{theirs[0]} (checksum {theirs[1]}); nothing was written. Report this with both stores.")
    if ours[1] is not None:
        checked.append(table)
    return ours[0]
