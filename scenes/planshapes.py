"""Shapes as Bokeh columns for the planner's plan, and what an edit tool's change of them means.

Everything goes to the browser relative to the district origin (nothing
absolute leaves the server), and comes back the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import shapely

from scenes.colours import BASEMAP_COLOURS
from twin.grids.gridedit import snap_point


def ring_rows(shapes: gpd.GeoSeries, origin: Sequence[float]) -> tuple[list[str], list[np.ndarray]]:
    """One row per polygon part: its grid id and exterior ring (n, 2) relative to ``origin``, without the
    closing point (Bokeh closes patches itself; a doubled point would show as two draggable vertices).

    Larger parts come first, so a grid drawn inside another is drawn on top of it.
    """
    rows = []
    for grid_id, geom in shapes.items():
        for part in shapely.get_parts(geom):
            if part.geom_type != "Polygon" or part.is_empty:
                continue
            rows.append((part.area, str(grid_id), np.asarray(part.exterior.coords)[:-1, :2] - origin[:2]))
    rows.sort(key=lambda r: -r[0])
    return [r[1] for r in rows], [r[2] for r in rows]


def polygon_columns(geoms: Sequence, origin: Sequence[float]) -> tuple[list, list]:
    """Bokeh ``multi_polygons`` xs/ys (geometry > polygon > rings), relative to ``origin``; non-polygon
    parts (lines, points) are left out."""
    xs, ys = [], []
    ox, oy = float(origin[0]), float(origin[1])
    for geom in geoms:
        px, py = [], []
        for part in shapely.get_parts(geom):
            if part.geom_type == "MultiPolygon":
                polys = list(part.geoms)
            elif part.geom_type == "Polygon":
                polys = [part]
            else:
                continue
            for poly in polys:
                rings = [np.asarray(poly.exterior.coords)] + [np.asarray(r.coords) for r in poly.interiors]
                px.append([r[:, 0] - ox for r in rings])
                py.append([r[:, 1] - oy for r in rings])
        if px:
            xs.append(px)
            ys.append(py)
    return xs, ys


def basemap_columns(basemap: gpd.GeoDataFrame, origin: Sequence[float], *, clip=None) -> dict:
    """Bokeh ``multi_polygons`` columns of the ground (roads, water, green space) with each one's map colour,
    relative to ``origin``; ``clip`` (a polygon, district CRS) keeps only what lies in it."""
    geoms = np.asarray(basemap.geometry.values, dtype=object)
    if clip is not None:
        geoms = shapely.intersection(geoms, clip)
    polygonal = np.isin(shapely.get_type_id(geoms), (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON,
                                                     shapely.GeometryType.GEOMETRYCOLLECTION))
    polygonal &= ~shapely.is_empty(geoms) & (shapely.area(geoms) > 0)
    xs, ys = polygon_columns(geoms[polygonal], origin)
    return {"xs": xs, "ys": ys, "colour": [BASEMAP_COLOURS[k] for k in basemap["kind"].to_numpy()[polygonal]]}


def outline_columns(footprints: np.ndarray, ids: Sequence[str], origin: Sequence[float]) -> dict:
    """Bokeh ``patches`` columns of footprints: one row per polygon part (its outer ring, relative to
    ``origin``) with its ``building_id``."""
    parts, which = shapely.get_parts(np.asarray(footprints, dtype=object), return_index=True)
    rings = [np.asarray(p.exterior.coords)[:-1, :2] - origin[:2] for p in parts]
    ids = np.asarray(ids, dtype=object)
    return {"xs": [r[:, 0] for r in rings], "ys": [r[:, 1] for r in rings], "building_id": ids[which].tolist()}


def line_columns(geoms: Sequence, origin: Sequence[float]) -> tuple[list, list]:
    """Bokeh ``multi_line`` xs/ys of every ring of the polygons, relative to ``origin``."""
    rings = shapely.get_rings(shapely.get_parts(np.asarray(list(geoms), dtype=object))) if len(geoms) else []
    coords = [np.asarray(r.coords)[:, :2] - origin[:2] for r in rings]
    return [c[:, 0] for c in coords], [c[:, 1] for c in coords]


def vertex_drag(before: Sequence[np.ndarray], xs: Sequence, ys: Sequence
                ) -> tuple[np.ndarray, np.ndarray, bool] | str | None:
    """What a PolyEditTool change did to the rings: ``(at, to, inserted)`` for one dragged or inserted vertex
    (relative coordinates), None for no change, or why it is not one vertex edit."""
    if len(xs) != len(before):
        return "polygons were added or removed on the plan; use the split, draw, merge and delete tools."
    found = None
    for k, (old, x, y) in enumerate(zip(before, xs, ys)):
        new = np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)])
        if new.shape == old.shape and np.allclose(new, old, rtol=0, atol=1e-6):
            continue
        if found is not None:
            return "more than one outline changed at once; move one vertex at a time."
        if new.shape == old.shape:
            moved = np.flatnonzero(~np.isclose(new, old, rtol=0, atol=1e-6).all(axis=1))
            if len(moved) != 1:
                return "more than one vertex moved at once; move one vertex at a time."
            i = moved[0]
            found = (old[i], new[i], False)
        elif len(new) == len(old) + 1:
            # a vertex inserted between two others: it comes from the edge it was inserted into
            same = np.isclose(new[:len(old)], old, rtol=0, atol=1e-6).all(axis=1)
            i = int(np.argmin(same)) if not same.all() else len(old)
            a, b = old[i - 1], old[i % len(old)]
            ab = b - a
            t = np.clip(np.dot(new[i] - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
            found = (a + t * ab, new[i], True)
        else:
            return "vertices were removed or added at once; move one vertex at a time (undo takes an edit back)."
    return found


def snap_point_near(point: np.ndarray, *, shapes: list, footprints: np.ndarray, tolerance_m: float
                    ) -> tuple[tuple[float, float], str | None]:
    """:func:`twin.grids.gridedit.snap_point` on the shapes near ``point`` only (a parent holds tens of grids)."""
    shapes = np.asarray(shapes, dtype=object)
    near = shapes[shapely.dwithin(shapes, shapely.Point(point), tolerance_m)]
    return snap_point(point, shapes=list(near), footprints=footprints, tolerance_m=tolerance_m)
