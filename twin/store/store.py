"""The DuckDB store: one file, the spatial extension loaded from its PyPI package.

``INSTALL spatial`` downloads from the internet, which neither these machines
nor a government intranet have, so the extension is loaded by path from the
``duckdb-extension-spatial`` wheel that matches the pinned DuckDB.

Every command runs in one transaction (:meth:`Store.transaction`); a store
file that a failed command created is removed again, so a failed command
leaves the disk as it found it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from twin.geo.crs import District
from twin.errors import StoreError
from twin.store.schema import ADDED_COLUMNS, DEFAULT_TIMEZONE, DROPPED_INDEXES, INDEXES, SCHEMA_VERSION, TABLES

log = logging.getLogger(__name__)


def spatial_extension_path() -> Path:
    """Path of the spatial extension shipped by ``duckdb-extension-spatial``."""
    try:
        import duckdb_extension_spatial
    except ImportError as exc:
        raise StoreError("The DuckDB spatial extension is not installed. Install the project "
                         f"(pip install -e .), which pins duckdb-extension-spatial=={duckdb.__version__}.") from exc
    root = Path(duckdb_extension_spatial.__file__).parent / "extensions"
    path = root / f"v{duckdb.__version__}" / "spatial.duckdb_extension"
    if not path.exists():
        found = ", ".join(p.name for p in root.glob("v*")) or "none"
        raise StoreError(f"No spatial extension for DuckDB {duckdb.__version__} in {root} (found: {found}). "
                         f"Install duckdb-extension-spatial=={duckdb.__version__}.")
    return path


def connect(path: str | os.PathLike, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file with the spatial extension loaded, downloading nothing."""
    con = duckdb.connect(str(path), read_only=read_only,
                         config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{spatial_extension_path()}'")
    return con


class Store:
    """An open store.

    Parameters
    ----------
    path : path-like
        The DuckDB file.
    read_only : bool
        Open without write access (several readers may share the file).
    create : bool
        Create the file and its schema when missing; otherwise a missing file
        is an error.
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False, create: bool = False) -> None:
        self.path = Path(path)
        self.created = not self.path.exists()
        if self.created and not create:
            raise StoreError(f"{self.path}: no such store. Create one with `twin demo --db {self.path}` "
                             f"or `twin ingest footprints FILE --db {self.path}`.")
        if self.created and read_only:
            raise StoreError(f"{self.path}: no such store to open read-only.")
        try:
            self.con = connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"{self.path}: cannot open the store ({exc}). If another process "
                             "holds it for writing, stop that process first.") from exc
        try:
            if self.created:
                create_schema(self.con)
            else:
                check_schema(self.con, self.path, read_only=read_only)
        except BaseException:
            self.con.close()  # let go of the file: another open, even in this process, must find it free
            raise

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run a block as one transaction: all of it is committed, or none."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- meta ------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self.con.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, **values: object) -> None:
        if not values:
            return
        # One statement: executemany costs a few milliseconds per row.
        params = [x for k, v in values.items() for x in (k, str(v))]
        self.con.execute("INSERT OR REPLACE INTO meta VALUES " + ", ".join(["(?, ?)"] * len(values)), params)

    @property
    def district(self) -> District | None:
        """The district CRS and origin, or None before the first data arrive."""
        return district_of(self.con)

    def set_district(self, district: District) -> None:
        ox, oy, oz = district.origin
        self.set_meta(crs=district.crs, origin_x=repr(ox), origin_y=repr(oy), origin_z=repr(oz))

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise StoreError(f"no table {table!r} in the store; tables are {', '.join(TABLES)}")
        # fetchall, not fetchone: a result read to its end closes its transaction, and one left open on the
        # server's shared connection would refuse the writer's CHECKPOINT after a grid save for good.
        return self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def district_of(con: duckdb.DuckDBPyConnection) -> District | None:
    """The district CRS and origin kept in a store's ``meta``, or None before the first data arrive."""
    m = dict(con.execute("SELECT key, value FROM meta").fetchall())
    if "crs" not in m:
        return None
    return District(crs=m["crs"], origin=(float(m["origin_x"]), float(m["origin_y"]), float(m["origin_z"])))


@contextlib.contextmanager
def open_for_command(path: str | os.PathLike, *, create: bool = True) -> Iterator[Store]:
    """Open a store for one command, in one transaction.

    On any error the transaction is rolled back, and a file that this
    command created is deleted, so the disk is left as it was.
    """
    store = Store(path, create=create)
    try:
        with store.transaction():
            yield store
    except BaseException:
        store.close()
        if store.created:
            for p in (store.path, Path(f"{store.path}.wal")):
                p.unlink(missing_ok=True)
        raise
    store.close()


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and index of the store contract."""
    for name, columns in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    create_indexes(con)
    set_timezone(con)
    set_schema_version(con)


def add_missing_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Add tables, columns and indexes this version has and an older store lacks (writes nothing otherwise)."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    for name, columns in TABLES.items():
        if name not in tables:
            con.execute(f"CREATE TABLE {name} ({columns})")
    have = set(con.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall())
    for table in sorted({t for t, c, _ in ADDED_COLUMNS if (t, c) not in have}):
        _make_anew(con, table)
    indexes = {r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    for name, target in INDEXES.items():
        if name not in indexes:
            con.execute(f"CREATE INDEX {name} ON {target}")
    for name in DROPPED_INDEXES:
        if name in indexes:
            con.execute(f"DROP INDEX {name}")


def _make_anew(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Give a table this version's columns by copying its rows into a new one (its indexes go with the old).

    DuckDB alters no table that an index depends on, and DuckDB 1.5.5 aborts the process at
    COMMIT when one transaction drops an index and creates it again; a new table avoids both.
    """
    con.execute(f"CREATE TABLE {table}__new ({TABLES[table]})")
    con.execute(f"INSERT INTO {table}__new BY NAME SELECT * FROM {table}")
    con.execute(f"DROP TABLE {table}")
    con.execute(f"ALTER TABLE {table}__new RENAME TO {table}")


def set_schema_version(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


def set_timezone(con: duckdb.DuckDBPyConnection) -> None:
    """Name the zone of the store's naive timestamps (``meta.timezone``) unless one is named already.

    Stores before schema 8 kept the demo district's local times, so they get ``DEFAULT_TIMEZONE``.
    """
    con.execute("INSERT INTO meta SELECT 'timezone', ? WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'timezone')",
                [DEFAULT_TIMEZONE])


# The steps that bring an older store to this version, in order, inside one transaction
# (every step so far only added tables, columns and indexes, dropped indexes, and added meta keys).
UPGRADE_STEPS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [add_missing_tables, set_timezone,
                                                                      set_schema_version]


def create_indexes(con: duckdb.DuckDBPyConnection) -> None:
    for name, target in INDEXES.items():
        con.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def drop_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the lookup indexes (bulk loads are faster without them)."""
    for name in INDEXES:
        con.execute(f"DROP INDEX IF EXISTS {name}")


def check_schema(con: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool) -> None:
    """Refuse a foreign file or a newer store; upgrade an older one in place when writable."""
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()  # see Store.count
    except duckdb.CatalogException as exc:
        raise StoreError(f"{path}: this DuckDB file is not a district store (no meta table).") from exc
    found = int(rows[0][0]) if rows else 0
    if found == SCHEMA_VERSION:
        return
    if found > SCHEMA_VERSION or found < 1:
        raise StoreError(f"{path}: store schema version {found}, this program knows {SCHEMA_VERSION}. "
                         "Use the program that wrote it, or rebuild the store with this one.")
    if read_only:
        raise StoreError(f"{path}: store schema version {found} is older than this program's {SCHEMA_VERSION}. "
                         f"`twin serve --db {path}` (or any ingest) upgrades it in place.")
    log.info("%s: upgrading the store from schema %d to %d", path, found, SCHEMA_VERSION)
    con.execute("BEGIN TRANSACTION")
    try:
        for step in UPGRADE_STEPS:
            step(con)
    except Exception as exc:
        con.execute("ROLLBACK")
        raise StoreError(f"{path}: upgrading the store from schema {found} to {SCHEMA_VERSION} failed at "
                         f"{getattr(step, '__name__', step)} ({exc}); nothing was changed, and the store is still "
                         f"readable at schema {found} by the program that wrote it. Keep a copy and report this."
                         ) from exc
    con.execute("COMMIT")


def _arrow_column(values: pd.Series) -> pa.Array:
    if values.dtype == object:
        first = values.dropna().iloc[0] if values.notna().any() else None
        if isinstance(first, list | np.ndarray):  # tags: lists of text
            return pa.array(values.tolist(), type=pa.list_(pa.string()))
    return pa.Array.from_pandas(values)


@contextlib.contextmanager
def one_thread(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run a block of bulk inserts on one DuckDB thread, and restore the thread count after.

    Inserting Arrow data into the indexed tables is faster on one thread than
    on two here (13,000 to 1,000,000 buildings): the threads cost more in
    coordination than they share in work.
    """
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {threads}")


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, *,
                 geometry: Sequence[str] = (), arrow_columns: dict[str, pa.Array] | None = None) -> int:
    """Append a frame to a table; shapely columns named in ``geometry`` become GEOMETRY.

    Columns of ``frame`` (and of ``arrow_columns``, Arrow arrays of the same
    length, such as :func:`binary_column` blobs) must be columns of ``table``;
    the others keep their defaults. Returns the number of rows written.
    """
    columns = {}
    for name in frame.columns:
        if name in geometry:
            wkb = shapely.to_wkb(np.asarray(frame[name], dtype=object))
            columns[name] = pa.array(wkb, type=pa.binary())
        else:
            columns[name] = _arrow_column(frame[name])
    columns.update(arrow_columns or {})
    view = f"incoming_{table}"
    con.register(view, pa.table(columns))
    try:
        select = ", ".join(f'ST_GeomFromWKB("{c}")' if c in geometry else f'"{c}"' for c in columns)
        names = ", ".join(f'"{c}"' for c in columns)
        con.execute(f"INSERT INTO {table} ({names}) SELECT {select} FROM {view}")
    finally:
        con.unregister(view)
    return len(frame)


def binary_column(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """Slices of one contiguous array as an Arrow binary column, without a Python loop.

    Parameters
    ----------
    data : ndarray, shape (N, ...)
        Rows to slice (any fixed-size dtype), written little-endian.
    offsets : ndarray, shape (n + 1,)
        Row offsets of each slice.
    """
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    row_bytes = data.itemsize * (int(np.prod(data.shape[1:])) if data.ndim > 1 else 1)
    byte_offsets = (np.asarray(offsets, dtype=np.int64) * row_bytes)
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(offsets) - 1,
                                            [None, pa.py_buffer(byte_offsets), pa.py_buffer(data.tobytes())])
