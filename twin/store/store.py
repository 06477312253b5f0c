"""The store: a DuckDB file, or a PostgreSQL/PostGIS database that DuckDB attaches.

``INSTALL spatial`` downloads from the internet, which neither these machines
nor a government intranet have, so the extensions are loaded by path from the
``duckdb-extension-spatial`` and ``duckdb-extension-postgres`` wheels that match the pinned DuckDB.

Both backends run the same SQL, DuckDB's: a PostgreSQL store is a DuckDB in memory that has
attached the database as ``store`` and made it the default catalog (see the README, "Backends", for
why and for what that costs). ``--db`` names either a file or a ``postgresql://user@host:port/dbname``
URL; the password comes from ``PGPASSWORD`` or ``~/.pgpass``, never from the URL.

Every command runs in one transaction (:meth:`Store.transaction`); a store
file that a failed command created is removed again, so a failed command
leaves the disk as it found it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from twin.geo.crs import District
from twin.errors import StoreError, StoreUnavailable
from twin.store.schema import (ADDED_COLUMNS, CHANGES_CHANNEL, DEFAULT_TIMEZONE, DROPPED_INDEXES, GEOMETRY_COLUMNS,
                               INDEXES, NOTIFIED_TABLES, ORIGIN_SETTING, PARTY_KIND_SUFFIXES, SCHEMA_VERSION, SEQUENCES,
                               TABLES)

log = logging.getLogger(__name__)


def spatial_extension_path() -> Path:
    """Path of the spatial extension shipped by ``duckdb-extension-spatial``."""
    return _extension_path("duckdb-extension-spatial", "spatial")


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
ATTACHED = "store"  # the name a PostgreSQL store is attached under, and made the default catalog


def is_postgres(db: str | os.PathLike) -> bool:
    """Whether ``--db`` names a PostgreSQL database (a ``postgresql://`` URL) rather than a DuckDB file."""
    return isinstance(db, str) and db.startswith(POSTGRES_SCHEMES)


def check_postgres_url(url: str) -> str:
    """The URL unchanged when it names a database and holds no password; else a :class:`StoreError` saying why."""
    parts = urllib.parse.urlsplit(url)
    shown = url.replace(f":{parts.password}@", ":***@") if parts.password else url
    if parts.password is not None:
        raise StoreError(f"{shown}: a password in the --db URL would be seen by every user of this machine "
                         "(process list, shell history). Give the URL without it and put the password in "
                         "PGPASSWORD or ~/.pgpass (host:port:dbname:user:password, mode 600).")
    if not parts.path.strip("/"):
        raise StoreError(f"{url}: the URL names no database; expected postgresql://user@host:port/dbname.")
    return url


def _extension_path(package: str, name: str) -> Path:
    """The extension ``name`` shipped by the wheel ``package`` for the running DuckDB."""
    module = package.replace("-", "_")
    try:
        wheel = importlib.import_module(module)
    except ImportError as exc:
        raise StoreError(f"The DuckDB {name} extension is not installed. Install the project "
                         f"(pip install -e .), which pins {package}=={duckdb.__version__}.") from exc
    root = Path(wheel.__file__).parent / "extensions"
    path = root / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        found = ", ".join(p.name for p in root.glob("v*")) or "none"
        raise StoreError(f"No {name} extension for DuckDB {duckdb.__version__} in {root} (found: {found}). "
                         f"Install {package}=={duckdb.__version__}.")
    return path


# What DuckDB's postgres scanner says when the PostgreSQL server is gone (stopped, restarting, the network down):
# it fails to connect, or a connection it held was closed under it.
UNREACHABLE = ("Unable to connect to Postgres", "server closed the connection", "terminating connection",
               "the database system is shutting down", "the database system is starting up",
               "the database system is in recovery mode", "no connection to the server", "could not receive data",
               "could not send data", "SSL SYSCALL error", "connection to server", "Connection refused")


def is_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` says only that a PostgreSQL store's server cannot be reached now (a retry may succeed)."""
    return isinstance(exc, StoreUnavailable) or (
        isinstance(exc, duckdb.Error) and any(marker in str(exc) for marker in UNREACHABLE))


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The :class:`StoreUnavailable` to raise for ``exc`` (see :func:`is_unavailable`)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreUnavailable(f"the store's PostgreSQL server cannot be reached ({first}); the work was not done, "
                            "or its COMMIT was cut off. Check, or send it again, in a few seconds.")


def user_folder() -> Path:
    """This user's own folder for the program's files (``~/.cache/twin``, mode 700)."""
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "twin"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def postgres_extension_path() -> Path:
    """The postgres extension of ``duckdb-extension-postgres``, under the file name DuckDB loads it by.

    The wheel names the file ``postgres.duckdb_extension``, but DuckDB derives the entry point from the file
    name and the library's is ``postgres_scanner_init``; so a link named ``postgres_scanner`` is made in a
    folder of this user's own (not a shared temporary one, where another user could put a library in its place).
    """
    shipped = _extension_path("duckdb-extension-postgres", "postgres")
    folder = user_folder() / f"v{duckdb.__version__}"
    folder.mkdir(exist_ok=True, mode=0o700)
    link = folder / "postgres_scanner.duckdb_extension"
    if not (link.is_symlink() and link.resolve() == shipped.resolve()):
        link.unlink(missing_ok=True)
        link.symlink_to(shipped)
    return link


class MetaCache:
    """The store's ``meta`` as last read, shared by a PostgreSQL store's connection and all its cursors.

    Its keys (the time zone, the district's clock, how residents are kept) are set rarely, and each read through
    DuckDB's scanner is a round trip to the server that costs about as much CPU as the intake's work on a case.
    :meth:`Store.set_meta` forgets it; so does a serving process when another process (or psql) changed ``meta``
    (the change trigger's notice, :func:`scenes.server.follow_store_changes`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, str] | None = None

    def get(self, con: duckdb.DuckDBPyConnection, key: str) -> str | None:
        """``meta[key]`` (None when unset), read through ``con`` when not known."""
        values = self._values
        if values is None:
            with self._lock:
                values = self._values
                if values is None:
                    # fetchall: a result read to its end closes its transaction (see Store.count)
                    values = self._values = dict(con.execute("SELECT key, value FROM meta").fetchall())
        return values.get(key)

    def forget(self) -> None:
        with self._lock:
            self._values = None


class AttachedConnection:
    """A DuckDB connection whose default catalog is the attached PostgreSQL database, and whose cursors' are too.

    DuckDB's ``USE`` holds for one connection only, and the product reads through cursors (one per thread and
    per browser session), so each cursor is made to ``USE`` the store as it is made. Everything else is the
    DuckDB connection's own, but :attr:`meta` (:class:`MetaCache`), which its cursors share with it.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, *, meta: MetaCache | None = None) -> None:
        con.execute(f"USE {ATTACHED}")
        # One query per table read, so that PostgreSQL looks a building's rows up in its index; the scanner's
        # default, parallel reads of page ranges, reads every page for them (see whole_table_reads).
        con.execute("SET SESSION pg_use_ctid_scan = false")
        self._con = con
        self.meta = meta if meta is not None else MetaCache()

    def cursor(self) -> AttachedConnection:
        return AttachedConnection(self._con.cursor(), meta=self.meta)

    def execute(self, *args: object, **kwargs: object) -> AttachedConnection:
        self._con.execute(*args, **kwargs)
        return self

    def fetchone(self) -> tuple | None:
        """The first row, the result read to its end: a result left unread keeps its PostgreSQL transaction open
        (``idle in transaction``) until the cursor's next query, holding locks that a starting process's upgrade
        or change triggers wait for, and rows that VACUUM may not clean."""
        rows = self._con.fetchall()
        return rows[0] if rows else None

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)

    def __enter__(self) -> AttachedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._con.close()


def read_frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    """A query's rows as a DataFrame (as ``.df()`` gives them), streamed through Arrow: DuckDB holds a batch at a
    time, never the whole result, so a server's DuckDB stays within a small memory limit for city-sized reads."""
    return con.execute(sql, params or []).arrow().read_all().to_pandas()


@contextlib.contextmanager
def whole_table_reads(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Read PostgreSQL tables in parallel page ranges within the block: for aggregates over whole tables.

    On the full demo, per-grid figures take 0.6 s so and 2.2 s in one stream; a lookup of one building's
    residents reads every page that way (50 ms or more) and 0.1 ms through the index in one stream, which is
    the connection's default. Nothing changes on a DuckDB file.
    """
    if not isinstance(con, AttachedConnection):
        yield
        return
    con.execute("SET SESSION pg_use_ctid_scan = true")
    try:
        yield
    finally:
        con.execute("SET SESSION pg_use_ctid_scan = false")


def meta_value(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    """``meta[key]`` of the store ``con`` reads (None when unset): remembered per PostgreSQL store connection
    (:class:`MetaCache`), read afresh from a DuckDB file (where a read costs microseconds)."""
    if isinstance(con, AttachedConnection):
        return con.meta.get(con, key)
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()  # fetchall: see Store.count
    return rows[0][0] if rows else None


def forget_meta(con: duckdb.DuckDBPyConnection) -> None:
    """Have :func:`meta_value` read ``meta`` afresh (it was changed; nothing to do on a DuckDB file)."""
    if isinstance(con, AttachedConnection):
        con.meta.forget()


def building_rows(con: duckdb.DuckDBPyConnection, table: str = "residents") -> str:
    """A WHERE clause, with one parameter (the building id), that picks one building's rows of ``table`` fast.

    In a DuckDB file, filtering by rowid first fetches only those rows (10x faster than a plain filter on
    the residents). A PostgreSQL table has no rowid that DuckDB's scanner can filter on (the same clause finds
    nothing there), and the plain filter goes down to PostgreSQL, which answers it from its index.
    """
    if isinstance(con, AttachedConnection):
        return "building_id = ?"
    return f"rowid IN (SELECT rowid FROM {table} WHERE building_id = ?)"


def connect(path: str | os.PathLike, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, or attach a PostgreSQL database, with the spatial extension loaded, downloading nothing."""
    postgres = is_postgres(path)
    con = duckdb.connect(":memory:" if postgres else str(path), read_only=read_only and not postgres,
                         config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{spatial_extension_path()}'")
    if not postgres:
        return con
    url = check_postgres_url(str(path))
    con.execute(f"LOAD '{postgres_extension_path()}'")
    mode = ", READ_ONLY" if read_only else ""
    quoted = url.replace("'", "''")
    try:
        con.execute(f"ATTACH '{quoted}' AS {ATTACHED} (TYPE postgres{mode})")
    except duckdb.Error:
        con.close()
        raise
    return AttachedConnection(con)


class Store:
    """An open store.

    Parameters
    ----------
    path : path-like or str
        The DuckDB file, or a ``postgresql://user@host:port/dbname`` URL (see :func:`check_postgres_url`).
    read_only : bool
        Open without write access (several readers may share the file).
    create : bool
        Create the file (or, in a PostgreSQL database, the tables) and the schema when missing; otherwise a
        missing store is an error.
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False, create: bool = False) -> None:
        self.postgres = is_postgres(path)
        self.name = str(path)  # what messages call the store: the file, or the URL
        self.path = None if self.postgres else Path(path)
        if not self.postgres:
            self.created = not self.path.exists()
            self._refuse_missing(create=create, read_only=read_only)
        try:
            self.con = connect(path, read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"{self.name}: cannot open the store ({exc}). " + (
                "Check that the server runs, that the database exists with PostGIS in it "
                "(CREATE EXTENSION postgis), and the password in PGPASSWORD or ~/.pgpass." if self.postgres else
                "If another process holds it for writing, stop that process first.")) from exc
        try:
            if self.postgres:
                self.created = not has_table(self.con, "meta")
                self._refuse_missing(create=create, read_only=read_only)
            if self.created:
                if self.postgres:
                    require_postgis(self.con, self.name)
                create_schema(self.con)
            else:
                check_schema(self.con, self.name, read_only=read_only)
                if self.postgres and not read_only:
                    refresh_change_triggers(self.con)
        except BaseException:
            self.con.close()  # let go of the file: another open, even in this process, must find it free
            raise

    def _refuse_missing(self, *, create: bool, read_only: bool) -> None:
        where = " in that database" if self.postgres else ""
        if self.created and not create:
            raise StoreError(f"{self.name}: no such store{where}. Create one with `twin demo --db {self.name}`, "
                             f"`twin store copy FILE {self.name}` or `twin ingest footprints FILE --db {self.name}`.")
        if self.created and read_only:
            raise StoreError(f"{self.name}: no such store{where} to open read-only.")

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
        forget_meta(self.con)

    @property
    def district(self) -> District | None:
        """The district CRS and origin, or None before the first data arrive."""
        return district_of(self.con)

    def set_district(self, district: District) -> None:
        ox, oy, oz = district.origin
        self.set_meta(crs=district.crs, origin_x=repr(ox), origin_y=repr(oy), origin_z=repr(oz))
        if self.postgres:
            tag_geometry_srid(self.con, district.crs)

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
        if store.created and store.postgres:  # its tables were made before the command's transaction began
            drop_schema(store.con)
        store.close()
        if store.created and store.path is not None:
            for p in (store.path, Path(f"{store.path}.wal")):
                p.unlink(missing_ok=True)
        raise
    store.close()


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and index of the store contract."""
    for name, columns in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    if isinstance(con, AttachedConnection):
        collate_text_binary(con)
        for name in SEQUENCES:  # DuckDB cannot make a sequence in PostgreSQL; PostgreSQL can
            con.execute(f"CALL postgres_execute('{ATTACHED}', 'CREATE SEQUENCE IF NOT EXISTS {name}')")
        create_change_triggers(con)
    create_indexes(con)
    set_timezone(con)
    set_schema_version(con)


# What the change triggers run: the sender is the writing transaction's ORIGIN_SETTING (a serving process's writer
# sets it, twin.store.notices.sign_transaction), else ``store``.
ANNOUNCE_CHANGE = (f" BEGIN PERFORM pg_notify('{CHANGES_CHANNEL}', coalesce(nullif(current_setting('{ORIGIN_SETTING}', "
                   f"true), ''), 'store') || '|' || TG_TABLE_NAME); RETURN NULL; END ")


def _quoted(sql: str) -> str:
    """``sql`` as the text of a single-quoted SQL string."""
    return sql.replace("'", "''")


def create_change_triggers(con: duckdb.DuckDBPyConnection) -> None:
    """Have PostgreSQL announce every committed change of :data:`NOTIFIED_TABLES` (``NOTIFY twin_changes``,
    payload ``<sender>|<table>``), whoever makes it: a process's writer, the command line, psql."""
    function = ("CREATE OR REPLACE FUNCTION twin_announce_change() RETURNS trigger LANGUAGE plpgsql "
                f"AS $${ANNOUNCE_CHANGE}$$")
    con.execute(f"CALL postgres_execute('{ATTACHED}', '{_quoted(function)}')")
    for table in NOTIFIED_TABLES:
        con.execute(f"CALL postgres_execute('{ATTACHED}', 'CREATE OR REPLACE TRIGGER {table}_changed AFTER INSERT OR "
                    f"UPDATE OR DELETE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION twin_announce_change()')")


def refresh_change_triggers(con: duckdb.DuckDBPyConnection) -> None:
    """Give a PostgreSQL store made by an earlier version this version's change triggers (they name the sender,
    and are on every table of :data:`NOTIFIED_TABLES`); nothing is written when they are this version's already."""
    names = ", ".join(f"'{table}_changed'" for table in NOTIFIED_TABLES)
    query = ("SELECT (SELECT prosrc FROM pg_proc WHERE proname = 'twin_announce_change'), "
             f"(SELECT count(DISTINCT tgname) FROM pg_trigger WHERE tgname IN ({names}))")
    found = con.execute(f"SELECT * FROM postgres_query('{ATTACHED}', '{_quoted(query)}')").fetchall()
    if found and found[0][0] == ANNOUNCE_CHANGE and found[0][1] == len(NOTIFIED_TABLES):
        return
    try:
        create_change_triggers(con)
    except duckdb.Error as exc:  # another process starting at the same time replaced them first
        log.info("the change triggers were being replaced by another process (%s)", exc)


def advance_sequences(con: duckdb.DuckDBPyConnection) -> None:
    """Start a PostgreSQL store's sequences after the numbers its tables hold (after a copy into it)."""
    for name, last_used in SEQUENCES.items():
        last = con.execute(last_used).fetchall()[0][0] or 0
        con.execute(f"CALL postgres_execute('{ATTACHED}', 'SELECT setval(''{name}'', {int(last) + 1}, false)')")


def next_numbers(con: duckdb.DuckDBPyConnection, sequence: str, count: int) -> list[int]:
    """``count`` numbers from a PostgreSQL store's sequence, in one round trip (never rolled back: gaps happen)."""
    return [r[0] for r in con.execute(
        f"SELECT * FROM postgres_query('{ATTACHED}', 'SELECT nextval(''{sequence}'') "
        f"FROM generate_series(1, {int(count)})')").fetchall()]


def newest_row(con: duckdb.DuckDBPyConnection, table: str, columns: str) -> tuple | None:
    """``columns`` of the row of ``table`` with the highest ``seq`` (a hash chain's head), or None when it is empty.

    On PostgreSQL the query is PostgreSQL's own, inside the caller's transaction, so that the primary key's index
    answers it: the scanner pushes no ``ORDER BY … LIMIT`` down and would read the whole table on every write.
    """
    query = f"SELECT {columns} FROM {table} ORDER BY seq DESC LIMIT 1"
    if isinstance(con, AttachedConnection):
        query = f"SELECT * FROM postgres_query('{ATTACHED}', '{_quoted(query)}')"
    rows = con.execute(query).fetchall()
    return rows[0] if rows else None


def collate_text_binary(con: duckdb.DuckDBPyConnection) -> None:
    """Give a PostgreSQL store's text columns the "C" collation (bytewise, as DuckDB compares text).

    DuckDB's scanner sends every text filter as ``column = 'value' COLLATE "C"``, and PostgreSQL uses an
    index only for the collation it was built with: under the database's default collation, a building's
    residents were found by reading all 1.1 M rows (150 ms) instead of through the index (0.1 ms). Text sorts
    the same in both backends as a result. The primary keys, made with the tables, are rebuilt with them.
    """
    columns = con.execute(f"SELECT table_name, column_name FROM duckdb_columns() WHERE {THIS_STORE} AND "
                          "data_type = 'VARCHAR' ORDER BY table_name, column_index").fetchall()
    by_table: dict[str, list[str]] = {}
    for table, column in columns:
        if table in TABLES:
            by_table.setdefault(table, []).append(column)
    for table, names in by_table.items():
        alter = ", ".join(f'ALTER COLUMN "{c}" TYPE varchar COLLATE "C"' for c in names)
        con.execute(f"CALL postgres_execute('{ATTACHED}', 'ALTER TABLE {table} {alter}')")
    con.execute("CALL pg_clear_cache()")


# The store's own tables in DuckDB's catalog views: a DuckDB in memory that attached PostgreSQL lists its own
# catalogs and PostgreSQL's system tables there too.
THIS_STORE = "database_name = current_database() AND schema_name = current_schema()"


def has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(con.execute(f"SELECT count(*) FROM duckdb_tables() WHERE {THIS_STORE} AND table_name = ?",
                            [table]).fetchall()[0][0])


def drop_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Drop every table of the store contract (a PostgreSQL store that its first command failed to fill)."""
    for name in TABLES:
        con.execute(f"DROP TABLE IF EXISTS {name}")


def require_postgis(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Make sure PostGIS is in the attached database (creating it needs the right to; an admin may do it once)."""
    try:
        con.execute(f"CALL postgres_execute('{ATTACHED}', 'CREATE EXTENSION IF NOT EXISTS postgis')")
    except duckdb.Error as exc:
        raise StoreError(f"{name}: PostGIS is not in this database and cannot be added by this user ({exc}). "
                         "Have the database's owner run CREATE EXTENSION postgis; once.") from exc


def tag_geometry_srid(con: duckdb.DuckDBPyConnection, crs: str) -> None:
    """Type a PostgreSQL store's geometry columns ``geometry(Geometry, SRID)`` of the store CRS, if it is an EPSG code.

    Other tools (QGIS, PostGIS functions) then know the CRS from the column; DuckDB writes the SRID into what
    it inserts there. A CRS without an EPSG code leaves the columns untyped (SRID 0), with the CRS in ``meta``.
    """
    match = re.fullmatch(r"EPSG:(\d+)", crs.strip(), flags=re.IGNORECASE)
    if not match:
        log.warning("store CRS %r has no EPSG code: PostGIS geometry columns keep SRID 0", crs)
        return
    srid = int(match.group(1))
    for table, column in GEOMETRY_COLUMNS:
        con.execute(f"CALL postgres_execute('{ATTACHED}', 'ALTER TABLE {table} ALTER COLUMN {column} "
                    f"TYPE geometry(Geometry, {srid}) USING ST_SetSRID({column}, {srid})')")
    con.execute("CALL pg_clear_cache()")  # DuckDB's copy of the column types is stale now


def add_missing_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Add tables, columns and indexes this version has and an older store lacks (writes nothing otherwise)."""
    tables = {r[0] for r in con.execute(f"SELECT table_name FROM duckdb_tables() WHERE {THIS_STORE}").fetchall()}
    for name, columns in TABLES.items():
        if name not in tables:
            con.execute(f"CREATE TABLE {name} ({columns})")
    have = set(con.execute(f"SELECT table_name, column_name FROM duckdb_columns() WHERE {THIS_STORE}").fetchall())
    for table in sorted({t for t, c, _ in ADDED_COLUMNS if (t, c) not in have}):
        _make_anew(con, table)
    indexes = {r[0] for r in con.execute(f"SELECT index_name FROM duckdb_indexes() WHERE {THIS_STORE}").fetchall()}
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


def postgres_upkeep(con: duckdb.DuckDBPyConnection) -> None:
    """In a PostgreSQL store, give the tables an upgrade made (or made anew) what :func:`create_schema` gives them:
    the "C" collation of their text columns and the change triggers (a table made anew has neither)."""
    if isinstance(con, AttachedConnection):
        collate_text_binary(con)
        create_change_triggers(con)


def name_party_kinds(con: duckdb.DuckDBPyConnection) -> None:
    """Give party organisations without a kind (stores before schema 14) the kind their name ends with
    (``PARTY_KIND_SUFFIXES``); a name that ends otherwise keeps none."""
    cases = " ".join(f"WHEN name LIKE '%{suffix}' THEN '{kind}'" for suffix, kind in PARTY_KIND_SUFFIXES)
    con.execute(f"UPDATE party_orgs SET kind = CASE {cases} END WHERE kind IS NULL")


# The steps that bring an older store to this version, in order, inside one transaction
# (every step so far added tables, columns and indexes, dropped indexes, added meta keys, and named the kinds of
# party organisations from their names).
UPGRADE_STEPS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [add_missing_tables, postgres_upkeep,
                                                                      set_timezone, name_party_kinds,
                                                                      set_schema_version]


def create_indexes(con: duckdb.DuckDBPyConnection) -> None:
    for name, target in INDEXES.items():
        con.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def drop_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the lookup indexes (bulk loads are faster without them)."""
    for name in INDEXES:
        con.execute(f"DROP INDEX IF EXISTS {name}")


def check_schema(con: duckdb.DuckDBPyConnection, path: str | Path, *, read_only: bool) -> None:
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
