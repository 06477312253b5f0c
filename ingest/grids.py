"""Grids in and out as GeoJSON or GeoPackage, with level, parent and version.

Export writes the grids in force (or every version, with ``history``) in the
district CRS, one feature per grid version: ``grid_id``, ``parent_id``,
``level``, ``name``, ``kind``, ``worker``, ``worker_phone``, ``version``, ``valid_from``,
``valid_to``.

Import reads the same columns (``grid_id`` and ``level`` required), level by
level from the top, and saves each parent's children through
:func:`twin.grids.gridversions.save_partition`, so every rule is checked and every
changed grid gets a new version with who, when and why. Run it in one
transaction (``open_for_command``): on the first broken rule it raises
:class:`~twin.errors.GridRuleError` naming the file, the grid and the rule,
and the store is left unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from pyogrio.errors import DataSourceError

from twin.errors import N_, AccessError, GridRuleError, InputError, check_choice
from twin.grids.gridversions import ATTRS, current_grids, save_partition
from twin.store.schema import GRID_LEVELS

log = logging.getLogger(__name__)

DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG"}
COLUMNS = ("grid_id", "parent_id", "level", "name", "kind", "worker", "worker_phone", "version", "valid_from", "valid_to")
IMPORT_MODES = ("update", "replace")


def _driver(path: Path, where: str | None = None) -> str:
    driver = DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise InputError(N_("{where}: grids go in and out as GeoJSON (.geojson, .json) or GeoPackage (.gpkg); "
                            "found the suffix {suffix!r}. Rename the file or pick one of those."),
                         where=where or str(path), suffix=path.suffix or "(none)")
    return driver


def grids_frame(con: duckdb.DuckDBPyConnection, *, level: str | None = None, history: bool = False,
                parent_id: str | None = None) -> gpd.GeoDataFrame:
    """The grids in force (every version with ``history``), optionally of one level or of one parent's children,
    as a GeoDataFrame."""
    where, params = [], []
    if parent_id is not None:
        where.append("parent_id = ?")
        params.append(parent_id)
    if not history:
        where.append("valid_to IS NULL")
    if level is not None:
        check_choice("level", level, GRID_LEVELS)
        where.append("level = ?")
        params.append(level)
    sql = (f"SELECT {', '.join(COLUMNS)}, ST_AsWKB(boundary) AS wkb FROM grids "
           f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY grid_id, version")
    df = con.execute(sql, params).df()
    crs = dict(con.execute("SELECT key, value FROM meta WHERE key = 'crs'").fetchall()).get("crs")
    wkb = df.pop("wkb").map(bytes).to_numpy()
    geoms = gpd.GeoSeries.from_wkb(wkb, crs=crs) if len(df) else gpd.GeoSeries([], crs=crs)
    for c in ("valid_from", "valid_to"):
        df[c] = df[c].map(lambda t: None if pd.isna(t) else pd.Timestamp(t).isoformat())
    return gpd.GeoDataFrame(df, geometry=geoms.values, crs=crs)


def export_grids(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, *, level: str | None = None,
                 history: bool = False, parent_id: str | None = None, layer: str = "grids") -> dict:
    """Write grids to a GeoJSON or GeoPackage file (by its suffix).

    Parameters
    ----------
    level : {'street', 'community', 'grid', 'micro'}, optional
        Only this level (default all).
    history : bool
        Every version, not only those in force.
    parent_id : str, optional
        Only the children of this grid (default any parent).
    layer : str
        GeoPackage layer name.

    Returns
    -------
    dict
        ``path``, ``driver``, ``grids`` (features written), ``levels`` (count per level), ``crs``.
    """
    path = Path(path)
    driver = _driver(path)
    frame = grids_frame(con, level=level, history=history, parent_id=parent_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    pyogrio.write_dataframe(frame, path, driver=driver, **({"layer": layer} if driver == "GPKG" else {}))
    log.info("exported %d grids to %s", len(frame), path)
    return {"path": str(path), "driver": driver, "grids": len(frame),
            "levels": {k: int(v) for k, v in frame["level"].value_counts().items()}, "crs": str(frame.crs)}


def read_grids(path: str | os.PathLike, *, layer: str | None = None, crs: str | None = None,
               where: str | None = None) -> gpd.GeoDataFrame:
    """Read a grid file and check its columns and values (not yet the rules).

    Parameters
    ----------
    crs : str, optional
        The district CRS to reproject to (a file without a CRS is taken to be in it).
    where : str, optional
        The file as messages name it (default its path; an upload's own name, not its temporary copy's).

    Raises
    ------
    InputError
        A required column is missing, a level is unknown, an id repeats, or a geometry is not a polygon;
        the message names the file, the grid and the fix.
    """
    path = Path(path)
    where = where or str(path)
    _driver(path, where)
    if not path.exists():
        raise InputError(N_("{where}: no such file."), where=where)
    try:
        frame = pyogrio.read_dataframe(path, layer=layer)
    except DataSourceError as exc:
        raise InputError(N_("{where}: cannot be read as grids ({error}); export a file to see the expected form."),
                         where=where, error=str(exc).replace(str(path), where)) from exc
    missing = [c for c in ("grid_id", "level") if c not in frame.columns]
    if missing:
        raise InputError(N_("{where}: the grids need the column(s) {missing}; found {found}. "
                            "Export a template with `export_grids` to see the expected columns."),
                         where=where, missing=repr(missing), found=repr(list(frame.columns)))
    for c in COLUMNS:
        if c not in frame.columns:
            frame[c] = None
    frame["grid_id"] = frame["grid_id"].astype(str)
    frame["parent_id"] = frame["parent_id"].map(lambda v: None if v is None or pd.isna(v) or v == "" else str(v))
    dup = frame["grid_id"][frame["grid_id"].duplicated()].unique().tolist()
    if dup:
        raise InputError(N_("{where}: grid(s) {grids} appear more than once; give each grid one feature "
                            "(export without history)."), where=where, grids=", ".join(dup[:5]))
    bad_level = frame[~frame["level"].isin(GRID_LEVELS)]
    if len(bad_level):
        row = bad_level.iloc[0]
        raise InputError(N_("{where}: grid {grid_id}: level {found!r} is not one of {expected}."), where=where,
                         grid_id=str(row["grid_id"]), found=str(row["level"]), expected=", ".join(GRID_LEVELS))
    kinds = frame.geometry.geom_type.to_numpy()
    bad = ~np.isin(kinds, ["Polygon", "MultiPolygon"])
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(N_("{where}: grid {grid_id}: valid: expected a polygon, found {found}; draw the grid as "
                            "a polygon."), where=where, grid_id=str(frame["grid_id"].iloc[k]), found=str(kinds[k]))
    if crs is not None:
        frame = frame.set_crs(crs) if frame.crs is None else frame.to_crs(crs)
    return frame


def import_grids(con: duckdb.DuckDBPyConnection, frame: gpd.GeoDataFrame, *, actor: str, reason: str,
                 where: str = "the file", mode: str = "update", source: str | None = None,
                 parents: set[str] | None = None) -> dict:
    """Save grids read by :func:`read_grids` as new versions, level by level from the top.

    Run inside one transaction (``open_for_command``): on an error nothing is saved.

    Parameters
    ----------
    frame : GeoDataFrame
        In the district CRS (``read_grids(..., crs=store.district.crs)``).
    actor, reason : str
        Who imports, and why.
    where : str
        The file, named in messages.
    mode : {'update', 'replace'}
        ``update``: the file's grids replace or join their siblings in force;
        ``replace``: the children of each parent in the file become exactly the file's grids
        (those in force that the file lacks are deleted).
    source : str, optional
        Where the import came from (a host, ``cli``); each saved parent's change
        gets a ``grid.import`` row in the audit trail with it.
    parents : set of str, optional
        The parents whose children the importer may change (a planner bound to grids); None: any.

    Returns
    -------
    dict
        ``grids`` read, ``changed``/``added``/``deleted`` ids, ``versions``, ``moved`` totals,
        ``warnings`` (rule warnings, such as households outside 70–80), per parent ``saves``.

    Raises
    ------
    GridRuleError
        A grid breaks a rule; the message names the file, the grid and the rule.
    InputError
        A stale version (the store's is newer), or a parent that is neither in force nor in the file.
    AccessError
        A grid's parent is not among ``parents``.
    """
    check_choice("mode", mode, IMPORT_MODES)
    out = {"grids": len(frame), "changed": [], "added": [], "deleted": [], "reparented": [], "versions": {},
           "moved": {}, "warnings": [], "saves": []}
    in_force = current_grids(con, grid_ids=list(frame["grid_id"]))
    stale = [(g, int(v), int(in_force.at[g, "version"])) for g, v in zip(frame["grid_id"], frame["version"])
             if g in in_force.index and v is not None and not pd.isna(v) and int(v) < int(in_force.at[g, "version"])]
    if stale:
        g, v, now = stale[0]
        raise InputError(N_("{where}: grid {grid_id} is version {version} in the file but version {now} in the store "
                            "(and {more} more like it); export again and redo the changes on the newer version, or "
                            "drop the version column to overwrite."), where=where, grid_id=g, version=v, now=now,
                         more=len(stale) - 1)
    for level in GRID_LEVELS:
        rows = frame[frame["level"] == level]
        for parent_id, group in rows.groupby(rows["parent_id"].fillna("\0"), sort=True):
            parent_id = None if parent_id == "\0" else parent_id
            if parents is not None and parent_id not in parents:
                raise AccessError(N_("{where}: grid {grid_id}: you may not change the grids under {parent}; import "
                                     "only grids under those you edit."), where=where,
                                  grid_id=str(group["grid_id"].iloc[0]), parent=str(parent_id))
            if parent_id is not None and current_grids(con, grid_ids=[parent_id]).empty:
                raise InputError(N_("{where}: grid {grid_id}: its parent {parent!r} is neither in force nor in the "
                                    "file; add the parent first or fix parent_id."),
                                 where=where, grid_id=str(group["grid_id"].iloc[0]), parent=parent_id)
            current = current_grids(con, parent_id=parent_id)
            shapes = gpd.GeoSeries(group.geometry.to_numpy(dtype=object),
                                   index=pd.Index(group["grid_id"], name="grid_id"))
            if mode == "update":
                shapes = pd.concat([current.geometry.drop(shapes.index, errors="ignore"), shapes])
            attrs = group.set_index("grid_id")[list(ATTRS)]
            try:
                saved = save_partition(con, parent_id, gpd.GeoSeries(shapes), actor=actor, reason=reason,
                                       level=level, attrs=attrs, action="import", source=source)
            except GridRuleError as exc:
                first = exc.violations[0] if exc.violations else None
                named = f" grid {first.grid_id} breaks the rule {first.rule!r}." if first else ""
                raise GridRuleError(f"{where}:{named} {exc}", exc.violations) from exc
            if saved.change_id is None:
                continue
            summary = saved.summary()
            for key in ("changed", "added", "deleted", "reparented"):
                out[key] += summary[key]
            out["versions"].update(summary["versions"])
            for k, v in summary["moved"].items():
                if k != "grids":
                    out["moved"][k] = out["moved"].get(k, 0) + v
            out["warnings"] += summary["warnings"]
            out["saves"].append({"parent_id": parent_id, "level": level, "change_id": saved.change_id})
    log.info("%s: imported %d grids (%d changed, %d added, %d deleted)", where, len(frame), len(out["changed"]),
             len(out["added"]), len(out["deleted"]))
    return out


def import_grids_file(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, *, actor: str, reason: str,
                      layer: str | None = None, mode: str = "update", where: str | None = None,
                      source: str | None = None, parents: set[str] | None = None,
                      step: Callable[[str], None] = lambda stage: None) -> dict:
    """Read a grid file (:func:`read_grids`, into the store's CRS) and save it (:func:`import_grids`), as
    ``twin grids import`` and the planner's screen do; ``where`` names the file in messages (default its path),
    ``step`` is told when each stage ("read", "check and save") is done; ``parents`` as for :func:`import_grids`.
    Run it in one transaction."""
    crs, = con.execute("SELECT value FROM meta WHERE key = 'crs'").fetchall()[0]
    frame = read_grids(path, layer=layer, crs=crs, where=where)
    step("read")
    summary = import_grids(con, frame, actor=actor, reason=reason, where=where or str(path), mode=mode, source=source,
                           parents=parents)
    step("check and save")
    return summary
