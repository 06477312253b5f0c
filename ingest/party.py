"""Party organisations and party members' reporting (报到), in and out, against the store's grids and residents.

Two kinds of file, by ``what``:

- ``orgs``: the organisations, as CSV or GeoJSON (a point at each organisation's mark, in the district CRS):
  ``org_id``, ``name``, ``kind`` (a code of ``PARTY_ORG_KINDS``, or its Chinese name such as 党支部; left empty,
  the kind the name ends with), ``grid_id``, ``compound_id``, ``parent_id``, ``secretary``, ``members``; an
  export adds ``buildings`` (how many it covers), which an import ignores, as it does a GeoJSON's points
  (coverage follows from the compound and the grid, :mod:`twin.party.orgs`).
- ``members``: which party member reports to which grid, as CSV: ``resident_id``, ``grid_id``, ``reported_on``
  (a date; empty: the store's day). The resident must be in the store and tagged 党员.

An import checks every row before it writes: an unknown grid, compound, parent or resident, a resident who is
not a party member, a bad kind, number or date, or an id given twice is refused with the file and the row named
(a CSV's line, counting its header as line 1; a GeoJSON's feature, from 1), and nothing is written. ``update``
adds the file's rows and replaces those with the same id; ``replace`` makes the file the whole list. Run it in
one transaction (``open_for_command``, or the server's writer). CSV is written UTF-8 with a byte-order mark (so
that Excel opens Chinese text as such) and read as UTF-8, or GB 18030 when it is not UTF-8.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import duckdb
import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from pyogrio.errors import DataSourceError

from twin.errors import N_, InputError, check_choice
from twin.party.orgs import ORG_COLUMNS, PARTY_MEMBER_TAG, load_orgs, org_places
from twin.store.queries import _now, residents_counted
from twin.store.schema import PARTY_KIND_SUFFIXES, PARTY_ORG_KINDS
from twin.store.store import insert_frame

log = logging.getLogger(__name__)

PARTY_FILES = ("orgs", "members")
IMPORT_MODES = ("update", "replace")
REPORT_COLUMNS = ("resident_id", "grid_id", "reported_on")
REQUIRED = {"orgs": ("org_id", "name", "grid_id"), "members": ("resident_id", "grid_id")}
SUFFIXES = {"orgs": (".csv", ".geojson", ".json"), "members": (".csv",)}
# The Chinese names an import takes for each kind (an export writes the codes).
KIND_NAMES = {"综合党委": "committee", **{suffix: kind for suffix, kind in PARTY_KIND_SUFFIXES}}


def _suffix(path: Path, what: str, where: str) -> str:
    check_choice("what", what, PARTY_FILES)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES[what]:
        raise InputError(N_("{where}: party {what} go in and out as {expected}; found the suffix {suffix!r}. "
                            "Rename the file or pick one of those."), where=where, what=what,
                         expected=" or ".join(SUFFIXES[what]), suffix=suffix or "(none)")
    return suffix


# -------------------------------------------------------------------------------------------------- export
def orgs_frame(con: duckdb.DuckDBPyConnection) -> gpd.GeoDataFrame:
    """Every organisation (``ORG_COLUMNS`` and ``buildings``) by id, with its mark as a point in the district CRS."""
    places = org_places(con).sort_values("org_id", ignore_index=True)
    crs = dict(con.execute("SELECT key, value FROM meta WHERE key = 'crs'").fetchall()).get("crs")
    columns = places[[*ORG_COLUMNS, "buildings"]].copy()
    for c in ORG_COLUMNS:
        columns[c] = columns[c].astype(object).where(columns[c].notna(), None)
    columns["members"] = columns["members"].astype("Int64")
    points = [shapely.Point(x, y) if pd.notna(x) else None for x, y in zip(places["x"], places["y"])]
    return gpd.GeoDataFrame(columns, geometry=points, crs=crs)


def members_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every party member's report (``REPORT_COLUMNS``), by resident id; dates as ``YYYY-MM-DD``."""
    frame = con.execute("SELECT resident_id, grid_id, strftime(reported_on, '%Y-%m-%d') AS reported_on "
                        "FROM party_reports ORDER BY resident_id").df()
    return frame


def export_party(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, *, what: str = "orgs") -> dict:
    """Write the organisations (CSV or GeoJSON, by the suffix) or the members' reports (CSV) to a file.

    Returns
    -------
    dict
        ``path``, ``what``, ``rows`` written, and for ``orgs`` ``kinds`` (count per kind).
    """
    path = Path(path)
    suffix = _suffix(path, what, str(path))
    frame = orgs_frame(con) if what == "orgs" else members_frame(con)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if suffix == ".csv":
        table = pd.DataFrame(frame.drop(columns="geometry")) if what == "orgs" else frame
        path.write_bytes(table.to_csv(index=False).encode("utf-8-sig"))
    else:
        pyogrio.write_dataframe(frame, path, driver="GeoJSON")
    log.info("exported %d party %s to %s", len(frame), what, path)
    out = {"path": str(path), "what": what, "rows": len(frame)}
    if what == "orgs":
        out["kinds"] = {str(k): int(v) for k, v in frame["kind"].value_counts().items()}
    return out


# -------------------------------------------------------------------------------------------------- import
def read_party_file(path: str | os.PathLike, *, what: str = "orgs", where: str | None = None) -> pd.DataFrame:
    """Read a party file as text columns (empty cells as None) with a ``row`` column naming each row in messages.

    Raises
    ------
    InputError
        No such file, not readable as CSV or GeoJSON, or a required column missing.
    """
    path = Path(path)
    where = where or str(path)
    suffix = _suffix(path, what, where)
    if not path.exists():
        raise InputError(N_("{where}: no such file."), where=where)
    if suffix == ".csv":
        frame = _read_csv(path, where)
        rows = [N_("line {n}").format(n=k + 2) for k in range(len(frame))]
    else:
        try:
            frame = pyogrio.read_dataframe(path, read_geometry=False)
        except DataSourceError as exc:
            raise InputError(N_("{where}: cannot be read as GeoJSON ({error}); export a file to see the expected "
                                "form."), where=where, error=str(exc).replace(str(path), where)) from exc
        rows = [N_("feature {n}").format(n=k + 1) for k in range(len(frame))]
    frame = pd.DataFrame(frame).rename(columns=lambda c: str(c).strip())
    missing = [c for c in REQUIRED[what] if c not in frame.columns]
    if missing:
        raise InputError(N_("{where}: party {what} need the column(s) {missing}; found {found}. Export a file "
                            "with `twin party export` to see the expected columns."), where=where, what=what,
                         missing=repr(missing), found=repr(list(frame.columns)))
    columns = ORG_COLUMNS if what == "orgs" else REPORT_COLUMNS
    out = pd.DataFrame({c: [_text(v) for v in frame[c]] if c in frame.columns else None for c in columns},
                       index=frame.index, dtype=object)
    out["row"] = rows
    return out.reset_index(drop=True)


def _read_csv(path: Path, where: str) -> pd.DataFrame:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(N_("{where}: cannot be read as CSV ({error}); export a file to see the expected form."),
                             where=where, error=str(exc)) from exc
    raise InputError(N_("{where}: the text is neither UTF-8 nor GB 18030; save the CSV as UTF-8."), where=where)


def _text(value: object) -> str | None:
    """A cell as stripped text; empty and missing cells as None (a whole number read as 12.0 as "12")."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _refuse(where: str, row: dict, message: str, **params: object) -> InputError:
    """An :class:`InputError` naming the file and the row (and its id) before ``message``."""
    ident = row.get("org_id") or row.get("resident_id")
    return InputError(N_("{where}, {row} ({ident}): ") + message, where=where, row=row["row"], ident=ident, **params)


def _in_force(con: duckdb.DuckDBPyConnection, grid_ids: list[str]) -> set[str]:
    return {g for g, in con.execute("SELECT grid_id FROM grids WHERE valid_to IS NULL AND grid_id IN "
                                    "(SELECT unnest(?))", [sorted({g for g in grid_ids if g})]).fetchall()}


def _records(frame: pd.DataFrame, required: tuple[str, ...], key: str, where: str, word: str) -> list[dict]:
    """The rows as dicts (empty cells None), each with its required cells given and its ``key`` given once."""
    records, seen = frame.to_dict("records"), set()
    for row in records:
        for column in required:
            if row[column] is None:
                raise _refuse(where, row, N_("{column} is empty; every {word} needs one."), column=column, word=word)
        if row[key] in seen:
            raise _refuse(where, row, N_("{column} {value!r} is given twice in the file; give each one row."),
                          column=key, value=row[key])
        seen.add(row[key])
    return records


def _kind(row: dict) -> str | None:
    """A row's kind code: its ``kind`` as a code or a Chinese name, or, left empty, the one its name ends with."""
    kind = row["kind"]
    if kind is not None:
        return kind if kind in PARTY_ORG_KINDS else KIND_NAMES.get(kind)
    return next((k for suffix, k in PARTY_KIND_SUFFIXES if row["name"].endswith(suffix)), None)


def check_orgs(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, *, where: str, mode: str) -> pd.DataFrame:
    """The organisations of a file (:func:`read_party_file`) checked against the store and made ready to write.

    Returns
    -------
    DataFrame
        ``ORG_COLUMNS``, ``kind`` a code and ``members`` an integer (None when not given).

    Raises
    ------
    InputError
        The first row that cannot be taken, named, with why and the fix.
    """
    check_choice("mode", mode, IMPORT_MODES)
    records = _records(frame, REQUIRED["orgs"], "org_id", where, "organisation")
    grids = _in_force(con, [r["grid_id"] for r in records])
    compounds = {c for c, in con.execute("SELECT compound_id FROM compounds").fetchall()}
    known = {r["org_id"] for r in records} | (set(load_orgs(con)["org_id"]) if mode == "update" else set())
    for row in records:
        kind = _kind(row)
        if kind is None:
            raise _refuse(where, row, N_("kind {kind!r} is none of {expected} (or their Chinese names: {names}); "
                                         "give one, or leave it empty for a name that ends with one."),
                          kind=row["kind"] or "", expected=", ".join(PARTY_ORG_KINDS), names="、".join(KIND_NAMES))
        row["kind"] = kind
        members = row["members"]
        if members is not None and not (members.isascii() and members.isdigit()):
            raise _refuse(where, row, N_("members {value!r} is not a whole number of 0 or more."), value=members)
        row["members"] = None if members is None else int(members)
        if row["grid_id"] not in grids:
            raise _refuse(where, row, N_("grid {grid_id!r} is not a grid in force in the store; give the id of one "
                                         "(`twin grids export` lists them)."), grid_id=row["grid_id"])
        if row["compound_id"] is not None and row["compound_id"] not in compounds:
            raise _refuse(where, row, N_("compound {compound_id!r} is not in the store; give one of its compounds, "
                                         "or leave compound_id empty."), compound_id=row["compound_id"])
        parent = row["parent_id"]
        if parent is not None and (parent == row["org_id"] or parent not in known):
            raise _refuse(where, row, N_("parent {parent_id!r} is neither another organisation in the file nor one "
                                         "in the store; give one, or leave parent_id empty."), parent_id=parent)
    out = pd.DataFrame([{c: r[c] for c in ORG_COLUMNS} for r in records], columns=list(ORG_COLUMNS), dtype=object)
    out["members"] = pd.array(list(out["members"]), dtype="Int64")
    return out


def check_members(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """The members' reports of a file checked against the store's residents and grids, ready to write.

    Returns
    -------
    DataFrame
        ``REPORT_COLUMNS``, ``reported_on`` a date (the store's day when not given).

    Raises
    ------
    InputError
        The first row that cannot be taken, named, with why and the fix; or a store that counts its residents.
    """
    if residents_counted(con):
        raise InputError(N_("{where}: this store counts its residents per building instead of listing them, so no "
                            "resident can report to a grid."), where=where)
    records = _records(frame, REQUIRED["members"], "resident_id", where, "report")
    tags = dict(con.execute("SELECT resident_id, list_contains(tags, ?) FROM residents WHERE resident_id IN "
                            "(SELECT unnest(?))", [PARTY_MEMBER_TAG, sorted({r["resident_id"] for r in records})]
                            ).fetchall())
    grids = _in_force(con, [r["grid_id"] for r in records])
    today = _now(con).normalize()
    for row in records:
        if row["resident_id"] not in tags:
            raise _refuse(where, row, N_("no resident {resident_id!r} in the store; give the id of a resident."),
                          resident_id=row["resident_id"])
        if not tags[row["resident_id"]]:
            raise _refuse(where, row, N_("resident {resident_id!r} is not tagged 党员 (a party member); tag them, "
                                         "or leave the row out."), resident_id=row["resident_id"])
        if row["grid_id"] not in grids:
            raise _refuse(where, row, N_("grid {grid_id!r} is not a grid in force in the store; give the id of one "
                                         "(`twin grids export` lists them)."), grid_id=row["grid_id"])
        day = row["reported_on"]
        row["reported_on"] = today if day is None else pd.to_datetime(day, format="%Y-%m-%d", errors="coerce")
        if row["reported_on"] is pd.NaT:
            raise _refuse(where, row, N_("reported_on {value!r} is not a date (YYYY-MM-DD)."), value=day)
    out = pd.DataFrame([{c: r[c] for c in REPORT_COLUMNS} for r in records], columns=list(REPORT_COLUMNS))
    out["reported_on"] = pd.to_datetime(out["reported_on"])
    return out


def import_party(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, *, what: str = "orgs", mode: str = "update",
                 where: str = "the file") -> dict:
    """Check a party file's rows (:func:`check_orgs`, :func:`check_members`) and write them; nothing on an error.

    Returns
    -------
    dict
        ``what``, ``mode``, ``rows`` read, ``added`` and ``replaced`` (ids already in the store) and ``removed``
        (by ``replace``: those in the store that the file lacks).
    """
    check_choice("what", what, PARTY_FILES)
    check_choice("mode", mode, IMPORT_MODES)
    table, key = ("party_orgs", "org_id") if what == "orgs" else ("party_reports", "resident_id")
    rows = check_orgs(con, frame, where=where, mode=mode) if what == "orgs" else check_members(con, frame,
                                                                                              where=where)
    before = {k for k, in con.execute(f"SELECT {key} FROM {table}").fetchall()}
    ids = list(rows[key])
    if mode == "replace":
        con.execute(f"DELETE FROM {table}")
    else:
        con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT unnest(?))", [ids])
    if len(rows):
        insert_frame(con, table, rows)
    summary = {"what": what, "mode": mode, "rows": len(rows), "added": sorted(set(ids) - before),
               "replaced": sorted(set(ids) & before),
               "removed": sorted(before - set(ids)) if mode == "replace" else []}
    log.info("%s: imported %d party %s (%d added, %d replaced, %d removed)", where, len(rows), what,
             len(summary["added"]), len(summary["replaced"]), len(summary["removed"]))
    return summary


def import_party_file(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, *, what: str = "orgs",
                      mode: str = "update", where: str | None = None,
                      step: Callable[[str], None] = lambda stage: None) -> dict:
    """Read a party file (:func:`read_party_file`) and import it (:func:`import_party`), as ``twin party import``
    does; ``step`` is told when each stage ("read", "check and save") is done. Run it in one transaction."""
    frame = read_party_file(path, what=what, where=where)
    step("read")
    summary = import_party(con, frame, what=what, mode=mode, where=where or str(path))
    step("check and save")
    return summary
