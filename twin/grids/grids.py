"""Grid polygons: locating points in the micro-grid that holds them (:func:`locate`, the one rule)."""

from __future__ import annotations

import duckdb
import numpy as np
import shapely

from twin.store.schema import GRID_LEVELS


def locate(points_xy: np.ndarray, grid_ids: np.ndarray, boundaries: np.ndarray, *,
           tree: shapely.STRtree | None = None) -> np.ndarray:
    """The grid holding each point: the one rule by which points (buildings, cameras, cases) go to grids.

    Every matcher of the product calls this: the demo build and building ingest, case intake
    (:func:`twin.cases.cases.match_location` and :class:`~twin.cases.cases.LocationMatcher`) and
    the planner's live reassignment (:func:`twin.grids.reassign.reassign`).

    Parameters
    ----------
    points_xy : array_like of float, shape (n, 2)
        x, y in the district CRS, metres.
    grid_ids : array_like of str, shape (m,)
        The grids' ids, in any order.
    boundaries : array_like of shapely.Polygon or MultiPolygon, shape (m,)
        The grids' boundaries in the same CRS and order as ``grid_ids``; normally the grids of
        one level, which tile the district without overlaps.
    tree : shapely.STRtree, optional
        An STRtree built over ``boundaries`` (in that order), to reuse across calls; built here
        when not given.

    Returns
    -------
    ndarray of object, shape (n,)
        The id of the grid holding each point, or None for a point outside every grid (a gap,
        or outside the district). A grid holds the points on its boundary too: a point on the
        edge shared by two grids (or in an overlap) goes to the smallest grid id, whatever the
        order of ``grid_ids``.
    """
    points_xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(points_xy), None, dtype=object)
    if len(points_xy) == 0 or len(grid_ids) == 0:
        return out
    if tree is None:
        tree = shapely.STRtree(np.asarray(boundaries, dtype=object))
    point_idx, grid_idx = tree.query(shapely.points(points_xy), predicate="intersects")
    held_by = np.asarray(grid_ids, dtype=object)[grid_idx]
    by_id = np.argsort(held_by, kind="stable")
    points, first = np.unique(point_idx[by_id], return_index=True)  # each point's first hit: its smallest id
    out[points] = held_by[by_id][first]
    return out


def current_micro_grids(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray]:
    """Ids and boundaries of the micro-grids in force."""
    rows = con.execute("SELECT grid_id, ST_AsWKB(boundary) FROM grids "
                       "WHERE level = 'micro' AND valid_to IS NULL ORDER BY grid_id").fetchall()
    ids = np.array([r[0] for r in rows], dtype=object)
    return ids, shapely.from_wkb([bytes(r[1]) for r in rows]) if rows else np.array([], dtype=object)


def grids_under(con: duckdb.DuckDBPyConnection, grid_ids: tuple[str, ...] | list[str]) -> frozenset[str]:
    """The grids in force at or under ``grid_ids`` (any level), as ids.

    One query per level below rather than a recursive query: DuckDB's scanner of PostgreSQL tables reuses the
    first step's filter in every step of a recursion, and found only the first two levels there (an operator of
    streets saw the residents of none of their micro-grids). Nor one join per level: on a city's 700,000 grids the
    joins' hash tables outgrew a serving process's memory cap.
    """
    frontier = [r[0] for r in con.execute("SELECT grid_id FROM grids WHERE grid_id IN (SELECT unnest(?)) AND "
                                          "valid_to IS NULL", [list(grid_ids)]).fetchall()]
    found = set(frontier)
    for _level in GRID_LEVELS[1:]:
        if not frontier:
            break
        frontier = [r[0] for r in con.execute("SELECT grid_id FROM grids WHERE parent_id IN (SELECT unnest(?)) AND "
                                              "valid_to IS NULL", [frontier]).fetchall()]
        found.update(frontier)
    return frozenset(found)
