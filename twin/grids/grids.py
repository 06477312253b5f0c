"""Grid polygons: locating points in the micro-grid that holds them."""

from __future__ import annotations

import duckdb
import numpy as np
import shapely


def locate(points_xy: np.ndarray, grid_ids: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """The grid holding each point.

    Parameters
    ----------
    points_xy : ndarray, shape (n, 2)
        District CRS, metres.
    grid_ids : ndarray of str, shape (m,)
    boundaries : ndarray of shapely.Polygon, shape (m,)
        Grids of one level that tile the district (no overlaps).

    Returns
    -------
    ndarray of object, shape (n,)
        The grid id, or None for points outside every grid. A point on a
        shared edge goes to the grid listed first.
    """
    out = np.full(len(points_xy), None, dtype=object)
    if len(points_xy) == 0 or len(boundaries) == 0:
        return out
    points = shapely.points(np.asarray(points_xy, dtype=np.float64))
    tree = shapely.STRtree(boundaries)
    point_idx, grid_idx = tree.query(points, predicate="intersects")
    # First grid per point in input order: reverse so earlier assignments win.
    order = np.lexsort((-grid_idx, point_idx))[::-1]
    out[point_idx[order]] = np.asarray(grid_ids, dtype=object)[grid_idx[order]]
    return out


def current_micro_grids(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray]:
    """Ids and boundaries of the micro-grids in force."""
    rows = con.execute("SELECT grid_id, ST_AsWKB(boundary) FROM grids "
                       "WHERE level = 'micro' AND valid_to IS NULL ORDER BY grid_id").fetchall()
    ids = np.array([r[0] for r in rows], dtype=object)
    return ids, shapely.from_wkb([bytes(r[1]) for r in rows]) if rows else np.array([], dtype=object)
