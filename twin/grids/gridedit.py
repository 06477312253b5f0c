"""Edits of the grids of one parent: pure functions on shapely polygons.

A *partition* is a :class:`geopandas.GeoSeries` of polygons indexed by
``grid_id``: the siblings under one parent, in the district CRS (metres). Every
edit takes a partition and returns a new one (the input is never changed), so
that the caller can keep them for undo and redo (:class:`EditSession`) and
check them with :func:`twin.grids.gridrules.check_partition` before saving them with
:func:`twin.grids.gridversions.save_partition`.

The edits keep the siblings' shared edges shared: a moved vertex moves in
every sibling that has it (or whose edge passes through it), a split line cuts
one grid into pieces that meet along the line, a merge, a drawn grid and a
deleted grid move area between siblings without leaving gaps or overlaps.
Overlay operations run on a 1 mm precision grid (:data:`GRID_SIZE_M`), so no
sliver thinner than that is left behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.ops
from shapely.geometry.base import BaseGeometry

from twin.errors import N_, GridEditError, check_choice

log = logging.getLogger(__name__)

GRID_SIZE_M = 0.001  # overlay precision: 1 mm, well under the 5 cm a 1:500 map needs
SNAP_KINDS = ("vertex", "corner", "edge")
SPLIT_REACH_M = 0.01  # a split line's ends must lie outside the grid, or this close to its outline
# A vertex rounded to the 1 mm grid lies at most 0.71 mm off the edge it was cut from; 0.75 mm finds every such
# T-junction yet never merges two distinct vertices of the 1 mm grid (at least 1 mm apart).
NODE_TOLERANCE_M = 0.00075
OVERLAP_M2 = 0.01  # a move leaving more overlap than this (m²) between siblings is refused
SHARE_STEP_M = 2.0  # spacing (m) of the shared-edge samples that share a deleted grid among its neighbours


def as_partition(shapes: gpd.GeoSeries | Mapping[str, BaseGeometry], *, snap: bool = False) -> gpd.GeoSeries:
    """A partition as a GeoSeries indexed by grid id (a copy; the input is not changed).

    With ``snap``, every vertex goes to the 1 mm grid (:data:`GRID_SIZE_M`), as
    overlay results do, so that a shared edge stays the same edge in both
    neighbours after an edit (a store's centimetre coordinates do not move).
    """
    if isinstance(shapes, gpd.GeoSeries):
        out = shapes.copy()
    else:
        out = gpd.GeoSeries(list(shapes.values()), index=list(shapes.keys()))
    if snap and len(out):
        out = gpd.GeoSeries(shapely.set_precision(out.to_numpy(dtype=object), GRID_SIZE_M), index=out.index,
                            crs=out.crs)
    out.index = out.index.astype(str)
    out.index.name = "grid_id"
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()].unique().tolist()
        raise GridEditError(f"grid ids {dup} appear twice in the partition; every grid needs its own id.")
    return out


def _snapped(out: gpd.GeoSeries, ids: Iterable[str]) -> gpd.GeoSeries:
    """``out`` with the grids ``ids`` put on the 1 mm grid (the others already are)."""
    for g in ids:
        if g in out.index:
            out[g] = shapely.set_precision(out[g], GRID_SIZE_M)
    return out


def _noded(out: gpd.GeoSeries, ids: Iterable[str]) -> gpd.GeoSeries:
    """``out`` with the grids ``ids`` and their neighbours sharing every vertex on a common edge, on the 1 mm grid.

    An overlay puts the vertices it makes on the 1 mm grid, up to 0.71 mm off the
    edge they were cut from. A neighbour whose edge passes there without that vertex
    then runs straight while the edited grid bends: along a 100 m edge that is a
    sliver of about 0.05 m² (overlap on one side of the vertex, gap on the other),
    and a later move of that vertex misses the neighbour. So each grid near an
    edited one gets the vertices of its neighbours lying on its edges (within
    :data:`NODE_TOLERANCE_M`), and the edited ones get theirs.
    """
    ids = [g for g in dict.fromkeys(ids) if g in out.index]
    if not ids or len(out) < 2:
        return _snapped(out, ids)
    out = _snapped(out, ids)
    geoms = out.to_numpy(dtype=object)
    tree = shapely.STRtree(geoms)
    edited = np.flatnonzero(out.index.isin(ids))
    _, near = tree.query(geoms[edited], predicate="dwithin", distance=NODE_TOLERANCE_M)
    todo = np.union1d(edited, near)
    for k in todo:
        others = tree.query(geoms[k], predicate="dwithin", distance=NODE_TOLERANCE_M)
        others = others[others != k]
        if not len(others):
            continue
        snapped = shapely.snap(geoms[k], shapely.multipoints(shapely.get_coordinates(geoms[others])),
                               NODE_TOLERANCE_M)
        snapped = shapely.set_precision(snapped, GRID_SIZE_M)
        # snapping can fold a needle-thin part onto itself: keep the grid as it was then
        if snapped.is_valid and not snapped.is_empty and snapped.geom_type in ("Polygon", "MultiPolygon"):
            out.iloc[k] = snapped
    return out


def _need(shapes: gpd.GeoSeries, grid_id: str) -> BaseGeometry:
    if grid_id not in shapes.index:
        raise GridEditError(f"no grid {grid_id!r} among the edited siblings ({', '.join(shapes.index[:6])}"
                            f"{'…' if len(shapes) > 6 else ''}); pick one of them.")
    return shapes[grid_id]


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """Keep only the polygon parts of an overlay result (drop stray lines and points)."""
    if geom.is_empty or geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts, grid_size=GRID_SIZE_M) if parts else shapely.Polygon()


def fresh_ids(existing: Iterable[str], like: str, count: int) -> list[str]:
    """``count`` new grid ids in the manner of ``like``, unused among ``existing``.

    ``S01-C01-G1-M031`` with siblings up to ``M040`` gives ``S01-C01-G1-M041``,
    ``…M042``; an id without a trailing number gets ``-2``, ``-3``….
    """
    existing = set(existing)
    m = re.match(r"^(.*?)(\d+)$", like)
    prefix, width = (m.group(1), len(m.group(2))) if m else (f"{like}-", 1)
    numbers = [int(e[len(prefix):]) for e in existing if e.startswith(prefix) and e[len(prefix):].isdigit()]
    start = max(numbers, default=1) + 1
    out, k = [], start
    while len(out) < count:
        candidate = f"{prefix}{k:0{width}d}"
        if candidate not in existing:
            out.append(candidate)
        k += 1
    return out


# --------------------------------------------------------------------------- vertices

def _map_rings(poly: BaseGeometry, fn: Callable[[np.ndarray], np.ndarray]) -> BaseGeometry:
    """Apply ``fn`` to the coordinates (shape (n, 2), closed) of every ring of a (multi)polygon."""
    if poly.geom_type == "MultiPolygon":
        return shapely.MultiPolygon([_map_rings(p, fn) for p in poly.geoms])
    shell = fn(np.asarray(poly.exterior.coords)[:, :2])
    holes = [fn(np.asarray(r.coords)[:, :2]) for r in poly.interiors]
    return shapely.Polygon(shell, holes)


def _move_in_ring(ring: np.ndarray, at: np.ndarray, to: np.ndarray, tol: float) -> np.ndarray:
    """Move the ring's vertices within ``tol`` of ``at`` to ``to``; when none is that close but an
    edge passes within ``tol``, insert ``to`` into that edge."""
    d = np.hypot(*(ring - at).T)
    near = d <= tol
    if near.any():
        ring = ring.copy()
        ring[near] = to
        return ring
    a, b = ring[:-1], ring[1:]
    ab = b - a
    length2 = (ab ** 2).sum(axis=1)
    t = np.clip(((at - a) * ab).sum(axis=1) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    dist = np.hypot(*(a + t[:, None] * ab - at).T)
    k = int(np.argmin(dist))
    if dist[k] > tol:
        return ring
    return np.vstack([ring[:k + 1], to[None, :], ring[k + 1:]])


def move_vertex(shapes: gpd.GeoSeries | Mapping[str, BaseGeometry], *, at: Sequence[float], to: Sequence[float],
                tolerance_m: float = 0.01, parent: BaseGeometry | None = None,
                parent_id: str | None = None) -> gpd.GeoSeries:
    """Move the vertex at ``at`` to ``to`` in every grid that has it.

    A sibling whose edge passes through ``at`` (a T-junction) gets the vertex
    inserted there and moved too, so no gap or overlap opens between them.

    A vertex on the parent's outline is the parent's too: moving it off that
    outline would put a grid outside its parent or open a gap, so with
    ``parent`` given such a move is refused (sliding the vertex along a
    straight stretch of the outline is allowed). To move it, edit the parent's
    level (the parent and its siblings); saving that redraws the children.

    Parameters
    ----------
    shapes : GeoSeries of Polygon, indexed by grid_id
        The siblings under one parent, district CRS (metres).
    at, to : (x, y)
        The vertex and where it goes, metres.
    tolerance_m : float
        How close (m) a vertex or an edge must be to ``at`` to count as that vertex.
    parent : Polygon, optional
        The siblings' parent (district CRS, m); with it, a move of a vertex on
        its outline that would change what the siblings cover is refused.
    parent_id : str, optional
        The parent's id, named in messages.

    Returns
    -------
    GeoSeries
        The partition after the move.

    Raises
    ------
    GridEditError
        No grid has a vertex or edge within ``tolerance_m`` of ``at``, the
        move makes a grid's outline cross itself or sweep over a sibling that
        does not share the vertex, or it moves the parent's outline.
    """
    out = as_partition(shapes, snap=True)
    before = out.copy()
    at_, to_ = np.asarray(at, dtype=float)[:2], np.asarray(to, dtype=float)[:2]
    hit = shapely.dwithin(out.values, shapely.Point(at_), tolerance_m)
    hit &= shapely.distance(shapely.boundary(out.values), shapely.Point(at_)) <= tolerance_m
    if not hit.any():
        raise GridEditError(N_("no grid has a vertex or edge within {tolerance_m} m of ({x:.2f}, {y:.2f}); pick a "
                               "point on a grid outline, or raise tolerance_m."), tolerance_m=tolerance_m,
                            x=at_[0], y=at_[1])
    for grid_id in out.index[hit]:
        # first give the grid every sibling vertex lying on its edges, so that its edges pivot about
        # the same points as its neighbours' do
        others = out.drop(grid_id).to_numpy(dtype=object)
        near = others[shapely.dwithin(others, out[grid_id], tolerance_m)]
        if len(near):
            out[grid_id] = shapely.snap(out[grid_id], shapely.multipoints(shapely.get_coordinates(near)), tolerance_m)
        moved = _map_rings(out[grid_id], lambda r: _move_in_ring(r, at_, to_, tolerance_m))
        if not moved.is_valid or moved.area <= 0:
            raise GridEditError(N_("moving ({x:.2f}, {y:.2f}) to ({to_x:.2f}, {to_y:.2f}) makes the outline of grid "
                                   "{grid_id} cross itself ({why}); move the vertex less far, or move its "
                                   "neighbours first."), x=at_[0], y=at_[1], to_x=to_[0], to_y=to_[1],
                                grid_id=grid_id, why=shapely.is_valid_reason(moved))
        out[grid_id] = moved
    moved_ids = list(out.index[hit])
    out = _noded(out, moved_ids)
    _check_move(before, out, moved_ids, at_, to_, parent=parent, parent_id=parent_id, tolerance_m=tolerance_m)
    return out


def _check_move(before: gpd.GeoSeries, after: gpd.GeoSeries, moved: list[str], at: np.ndarray, to: np.ndarray, *,
                parent: BaseGeometry | None, parent_id: str | None, tolerance_m: float) -> None:
    """Refuse a move that makes a moved grid overlap a sibling, or that moves the parent's outline."""
    where = f"moving ({at[0]:.2f}, {at[1]:.2f}) to ({to[0]:.2f}, {to[1]:.2f})"
    geoms = after.to_numpy(dtype=object)
    tree = shapely.STRtree(geoms)
    rows = np.flatnonzero(after.index.isin(moved))
    left, right = tree.query(geoms[rows], predicate="intersects")
    left = rows[left]
    keep = left != right
    if keep.any():
        inter = shapely.area(shapely.intersection(geoms[left[keep]], geoms[right[keep]], grid_size=GRID_SIZE_M))
        k = int(np.argmax(inter))
        if inter[k] > OVERLAP_M2:
            a, b = after.index[left[keep][k]], after.index[right[keep][k]]
            raise GridEditError(N_("{where} makes grid {a} overlap grid {b} by {area:.2f} m² ({b} does not share "
                                   "that vertex); move the vertex less far, or move {b}'s vertices out of the way "
                                   "first."), where=where, a=a, b=b, area=inter[k])
    if parent is None or shapely.distance(parent.boundary, shapely.Point(at)) > tolerance_m:
        return
    outside = float(shapely.area(shapely.difference(shapely.union_all(after[moved].values, grid_size=GRID_SIZE_M),
                                                    parent, grid_size=GRID_SIZE_M)))
    # no sibling overlaps (checked above), so any area the moved grids lost is a gap opened in the parent
    lost = float(before[moved].area.sum() - after[moved].area.sum()) + outside
    if outside > OVERLAP_M2 or lost > OVERLAP_M2:
        name = parent_id or "the parent"
        raise GridEditError(N_(
            "{where}: the vertex lies on the outline of the parent {name}, so the move would put {outside:.2f} m² "
            "of grid(s) {grids} outside {name} and leave {lost:.2f} m² of it uncovered. Expected the vertex to stay "
            "on the parent's outline. Move it at the level above instead (edit the partition holding {name}; "
            "saving that redraws its children), or slide it along {name}'s outline, or move a vertex inside "
            "{name}."), where=where, name=name, outside=outside, grids=", ".join(moved), lost=max(lost, 0.0))


def snap_point(point: Sequence[float], *, shapes: gpd.GeoSeries | Sequence[BaseGeometry],
               footprints: Sequence[BaseGeometry] | np.ndarray = (), tolerance_m: float = 1.0
               ) -> tuple[tuple[float, float], str | None]:
    """Snap a point to the nearest grid vertex or building corner, else the nearest grid edge.

    Parameters
    ----------
    point : (x, y)
        District CRS, metres.
    shapes : sequence of Polygon
        The grids to snap to (the edited siblings and their parent).
    footprints : sequence of Polygon
        Building footprints near the point; their corners are snap targets.
    tolerance_m : float
        Snap radius in metres.

    Returns
    -------
    ((x, y), kind)
        The snapped point and what it snapped to: ``'vertex'``, ``'corner'``,
        ``'edge'``, or None (the point unchanged) when nothing is within
        ``tolerance_m``.
    """
    p = np.asarray(point, dtype=float)[:2]
    shapes = np.asarray(list(shapes.values) if isinstance(shapes, gpd.GeoSeries) else list(shapes), dtype=object)
    best: tuple[float, np.ndarray, str] | None = None
    for kind, geoms in (("vertex", shapes), ("corner", np.asarray(list(footprints), dtype=object))):
        if len(geoms) == 0:
            continue
        xy = shapely.get_coordinates(geoms)
        if len(xy) == 0:
            continue
        d = np.hypot(*(xy - p).T)
        k = int(np.argmin(d))
        if d[k] <= tolerance_m and (best is None or d[k] < best[0]):
            best = (float(d[k]), xy[k], kind)
    if best is not None:
        return (float(best[1][0]), float(best[1][1])), best[2]
    if len(shapes):
        target = shapely.Point(p)
        edges = shapely.boundary(shapes)
        d = shapely.distance(edges, target)
        k = int(np.argmin(d))
        if d[k] <= tolerance_m:
            q = shapely.ops.nearest_points(edges[k], target)[0]
            return (float(q.x), float(q.y)), "edge"
    return (float(p[0]), float(p[1])), None


# --------------------------------------------------------------------------- split, merge, draw, delete

def split_grid(shapes: gpd.GeoSeries | Mapping[str, BaseGeometry], grid_id: str, line: BaseGeometry | Sequence,
               *, new_ids: Sequence[str] | None = None) -> gpd.GeoSeries:
    """Cut one grid in pieces along a line drawn across it.

    The largest piece keeps ``grid_id``; the others get ``new_ids`` (or fresh
    ids after the siblings', see :func:`fresh_ids`), largest first.

    Parameters
    ----------
    line : LineString or sequence of (x, y)
        Drawn from outside (or on) one edge to outside (or on) another, metres.

    Raises
    ------
    GridEditError
        The line does not cut the grid in two, or ``new_ids`` has too few or used ids.
    """
    out = as_partition(shapes, snap=True)
    poly = _need(out, grid_id)
    line = line if isinstance(line, BaseGeometry) else shapely.LineString(line)
    ends = shapely.points(shapely.get_coordinates(line)[[0, -1]])
    inside = shapely.contains(poly, ends) & (shapely.distance(poly.boundary, ends) > SPLIT_REACH_M)
    pieces = [poly] if inside.any() else _cut(poly, line)
    if len(pieces) < 2:
        raise GridEditError(N_("the line does not cut grid {grid_id} in two; draw it across the grid from one edge "
                               "to another, starting and ending outside it."), grid_id=grid_id)
    pieces.sort(key=lambda g: -g.area)
    ids = list(new_ids) if new_ids is not None else fresh_ids(out.index, grid_id, len(pieces) - 1)
    if len(ids) < len(pieces) - 1:
        raise GridEditError(f"splitting grid {grid_id} gives {len(pieces)} pieces, but {len(ids)} new id(s) were "
                            f"given; give {len(pieces) - 1}.")
    used = [i for i in ids[:len(pieces) - 1] if i in out.index]
    if used:
        raise GridEditError(f"new grid id(s) {used} already belong to siblings of {grid_id}; choose unused ids.")
    out[grid_id] = pieces[0]
    for new_id, piece in zip(ids, pieces[1:]):
        out[new_id] = piece
    log.debug("split %s into %d pieces", grid_id, len(pieces))
    return _noded(out, [grid_id, *ids[:len(pieces) - 1]])


def _cut(poly: BaseGeometry, line: BaseGeometry) -> list[BaseGeometry]:
    """The pieces of ``poly`` on either side of ``line`` (extended far past both ends), largest first.

    The sides are cut out of a box around the polygon and overlaid on it on the
    1 mm grid, the last side as what the others leave, so the pieces cover the
    polygon exactly and meet along the line.
    """
    xy = shapely.get_coordinates(line)
    if len(xy) < 2:
        return [poly]
    xmin, ymin, xmax, ymax = shapely.total_bounds(np.array([poly, line], dtype=object))
    reach = 4 * (xmax - xmin + ymax - ymin) + 10.0
    head, tail = xy[0] - xy[1], xy[-1] - xy[-2]
    head, tail = head / (np.hypot(*head) or 1.0), tail / (np.hypot(*tail) or 1.0)
    long_line = shapely.LineString(np.vstack([xy[0] + head * reach, xy, xy[-1] + tail * reach]))
    frame = shapely.box(xmin - reach / 2, ymin - reach / 2, xmax + reach / 2, ymax + reach / 2)
    sides = [s for s in shapely.get_parts(shapely.ops.split(frame, long_line)) if s.area > 0]
    if len(sides) < 2:
        return [poly]
    pieces, rest = [], poly
    for side in sides[:-1]:
        part = _polygonal(shapely.intersection(rest, side, grid_size=GRID_SIZE_M))
        rest = _polygonal(shapely.difference(rest, side, grid_size=GRID_SIZE_M))
        pieces.extend(shapely.get_parts(part))
    pieces.extend(shapely.get_parts(rest))
    pieces = [p for p in pieces if p.area > GRID_SIZE_M]
    return sorted(pieces, key=lambda g: -g.area)


def merge_grids(shapes: gpd.GeoSeries | Mapping[str, BaseGeometry], grid_ids: Sequence[str], *,
                keep: str | None = None) -> gpd.GeoSeries:
    """Merge neighbouring grids into one, which keeps the id ``keep`` (default: the first).

    Raises
    ------
    GridEditError
        Fewer than two grids, or the grids do not form one piece (they share no edge).
    """
    out = as_partition(shapes, snap=True)
    grid_ids = list(dict.fromkeys(grid_ids))
    if len(grid_ids) < 2:
        raise GridEditError(N_("a merge needs at least two grids; got {grids}."), grids=", ".join(grid_ids))
    keep = grid_ids[0] if keep is None else keep
    if keep not in grid_ids:
        raise GridEditError(f"keep={keep!r} is not one of the merged grids {grid_ids}.")
    merged = _polygonal(shapely.union_all([_need(out, g) for g in grid_ids], grid_size=GRID_SIZE_M))
    if merged.geom_type != "Polygon":
        raise GridEditError(N_("grids {grids} do not form one piece when merged (they share no edge); merge only "
                               "neighbours that share a boundary."), grids=", ".join(grid_ids))
    out = out.drop([g for g in grid_ids if g != keep])
    out[keep] = merged
    return _noded(out, [keep])


def draw_grid(shapes: gpd.GeoSeries | Mapping[str, BaseGeometry], polygon: BaseGeometry | Sequence, *,
              parent: BaseGeometry, new_id: str | None = None, min_area_m2: float = 1.0) -> gpd.GeoSeries:
    """Draw a new grid inside the parent, taking its area from the siblings it covers.

    The polygon is clipped to the parent. Siblings lose what it covers; a
    sibling it covers whole disappears.

    Raises
    ------
    GridEditError
        The drawn polygon is invalid, or less than ``min_area_m2`` of it lies inside the parent.
    """
    out = as_partition(shapes, snap=True)
    polygon = polygon if isinstance(polygon, BaseGeometry) else shapely.Polygon(polygon)
    if not polygon.is_valid:
        raise GridEditError(N_("the drawn grid's outline is invalid ({why}); draw it without crossing its own "
                               "edges."), why=shapely.is_valid_reason(polygon))
    new = _polygonal(shapely.intersection(polygon, parent, grid_size=GRID_SIZE_M))
    if new.area < min_area_m2:
        raise GridEditError(N_("the drawn grid has {area:.2f} m² inside its parent, expected at least {least} m²; "
                               "draw it inside the parent."), area=new.area, least=min_area_m2)
    new_id = new_id or fresh_ids(out.index, out.index[0] if len(out) else "M000", 1)[0]
    if new_id in out.index:
        raise GridEditError(f"grid id {new_id!r} already belongs to a sibling; choose an unused id.")
    rest = shapely.difference(out.values, new, grid_size=GRID_SIZE_M)
    touched = [new_id]
    for grid_id, geom, old in zip(list(out.index), rest, out.to_numpy(dtype=object)):
        geom = _polygonal(geom)
        if geom.is_empty or geom.area < GRID_SIZE_M:
            out = out.drop(grid_id)
            log.info("the drawn grid %s covers all of %s, which goes", new_id, grid_id)
        elif not geom.equals(old):
            out[grid_id] = geom
            touched.append(grid_id)
    out[new_id] = new
    return _noded(out, touched)


def neighbours(shapes: gpd.GeoSeries | Mapping[str, BaseGeometry], grid_id: str) -> dict[str, float]:
    """Siblings sharing an edge with ``grid_id``, with the shared length in metres, longest first."""
    out = as_partition(shapes)
    poly = _need(out, grid_id)
    others = out.drop(grid_id)
    shared = shapely.length(shapely.intersection(shapely.boundary(others.values), poly.boundary,
                                                 grid_size=GRID_SIZE_M))
    pairs = sorted(((g, float(s)) for g, s in zip(others.index, shared) if s > GRID_SIZE_M), key=lambda p: -p[1])
    return dict(pairs)


def delete_grid(shapes: gpd.GeoSeries | Mapping[str, BaseGeometry], grid_id: str, *,
                to: str | None = None, footprints: Sequence[BaseGeometry] | np.ndarray = ()) -> gpd.GeoSeries:
    """Delete a grid by sharing its area among its neighbours.

    By default each part of the area goes to the nearest neighbour along the
    edges they share (see :func:`share_area`), moved so that no building
    footprint in ``footprints`` is cut where that can be avoided. With ``to``
    the whole area goes to that one neighbour instead.

    Parameters
    ----------
    to : str, optional
        The one neighbour that takes all the area.
    footprints : sequence of Polygon, optional
        Building footprints near the grid (district CRS, m); each stays whole
        in one neighbour when the shared area would cut it.

    Raises
    ------
    GridEditError
        The grid has no neighbour (its area would be left as a gap), or ``to`` is not a neighbour.
    """
    out = as_partition(shapes, snap=True)
    near = neighbours(out, grid_id)
    if not near:
        raise GridEditError(N_("grid {grid_id} shares no edge with a sibling, so its area cannot go to a neighbour; "
                               "redraw a neighbour over it first, or merge it."), grid_id=grid_id)
    if to is not None:
        if to not in near:
            raise GridEditError(N_("grid {to!r} is not a neighbour of {grid_id}; its neighbours are {near}."),
                                to=to, grid_id=grid_id, near=", ".join(near))
        return merge_grids(out, [to, grid_id], keep=to)
    parts = share_area(out[grid_id], out[list(near)], footprints=footprints)
    out = out.drop(grid_id)
    for g, part in parts.items():
        out[g] = _polygonal(shapely.union(out[g], part, grid_size=GRID_SIZE_M))
    log.debug("deleted %s, its area shared by %s", grid_id, ", ".join(parts))
    return _noded(out, list(parts))


def share_area(area: BaseGeometry, neighbours: gpd.GeoSeries, *,
               footprints: Sequence[BaseGeometry] | np.ndarray = (), step_m: float = SHARE_STEP_M
               ) -> dict[str, BaseGeometry]:
    """Share an area among the grids around it: each part goes to the neighbour nearest to it.

    "Nearest" is measured to the edges each neighbour shares with the area:
    points every ``step_m`` along them are the seeds of a Voronoi diagram,
    whose cells, merged by neighbour, cut the area. A footprint the cut would
    cross goes whole to the neighbour holding most of it, and a part that
    would not touch its neighbour goes to the one it shares most edge with, so
    every neighbour stays in one piece.

    Parameters
    ----------
    area : Polygon
        District CRS, metres.
    neighbours : GeoSeries of Polygon, indexed by grid_id
        The grids around it (those sharing no edge with it get nothing).
    footprints : sequence of Polygon
        Building footprints not to cut, where avoidable.
    step_m : float
        Spacing of the seeds along the shared edges, metres.

    Returns
    -------
    dict grid_id -> Polygon
        The part of ``area`` each neighbour takes; together they cover it exactly, without overlap.
    """
    ids = list(neighbours.index)
    lines = shapely.intersection(shapely.boundary(neighbours.to_numpy(dtype=object)), area.boundary,
                                 grid_size=GRID_SIZE_M)
    shared = shapely.length(lines)
    ids = [g for g, length in zip(ids, shared) if length > GRID_SIZE_M]
    if not ids:
        return {}
    if len(ids) == 1:
        return {ids[0]: area}
    lines = lines[[list(neighbours.index).index(g) for g in ids]]
    step = float(min(step_m, max(0.05, np.sqrt(area.area) / 20)))
    xy, label = [], []
    for k, line in enumerate(lines):
        pts = shapely.get_coordinates(shapely.segmentize(line, step))
        xy.append(pts)
        label.append(np.full(len(pts), k))
    xy, label = np.vstack(xy), np.concatenate(label)
    # a junction point belongs to two neighbours: it seeds neither
    key = np.round(xy / GRID_SIZE_M).astype(np.int64)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    pairs = pd.DataFrame({"k": inverse.ravel(), "label": label}).drop_duplicates()
    mixed = pairs["k"].value_counts()
    single = ~np.isin(inverse.ravel(), mixed.index[mixed > 1])
    first = np.unique(inverse.ravel()[single], return_index=True)[1]
    rows = np.flatnonzero(single)[first]
    xy, label = xy[rows], label[rows]
    owner_cells = _voronoi_cells(xy, label, area, step)
    if owner_cells is None:
        g = ids[int(np.argmax([shared[list(neighbours.index).index(g)] for g in ids]))]
        log.warning("could not share an area of %.1f m² among %s; it all goes to %s (the longest shared edge)",
                    area.area, ", ".join(ids), g)
        return {g: area}
    cells, owner = owner_cells
    parts: dict[int, BaseGeometry] = {}
    rest = area
    for k in range(len(ids) - 1):
        if not (owner == k).any():
            parts[k] = shapely.Polygon()
            continue
        mine = shapely.union_all(cells[owner == k], grid_size=GRID_SIZE_M)
        parts[k] = _polygonal(shapely.intersection(rest, mine, grid_size=GRID_SIZE_M))
        rest = _polygonal(shapely.difference(rest, mine, grid_size=GRID_SIZE_M))
    parts[len(ids) - 1] = rest  # the last takes what the others leave, so the parts cover the area exactly
    parts = _straightened(area, parts, step)
    parts = _keep_footprints_whole(area, parts, footprints)
    parts = _attach(parts, [neighbours[g] for g in ids])
    return {ids[k]: p for k, p in parts.items() if not p.is_empty and p.area > 0}


def _voronoi_cells(xy: np.ndarray, label: np.ndarray, area: BaseGeometry, step: float
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """The Voronoi cells of the seeds ``xy`` and the label of each, or None when GEOS cannot make sound ones.

    Seeds evenly spaced on two perpendicular edges are co-circular in fours, which
    can make GEOS return overlapping cells; a tiny fixed jitter (1 % of the spacing,
    straightened away later) breaks the ties.
    """
    frame = area.envelope.buffer(step + 1.0)
    rng = np.random.default_rng(0)
    for jitter in (0.0, 0.01, 0.05):
        seeds = xy + rng.uniform(-jitter, jitter, xy.shape) * step
        cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=frame))
        cell_of, point_of = shapely.STRtree(shapely.points(seeds)).query(cells, predicate="contains")
        if (len(cells) == len(seeds) and len(cell_of) == len(cells) and shapely.is_valid(cells).all()
                and abs(shapely.area(cells).sum() - shapely.area(shapely.union_all(cells))) < 1e-6 * frame.area):
            owner = np.full(len(cells), -1)
            owner[cell_of] = label[point_of]
            return cells, owner
    return None


def _straightened(area: BaseGeometry, parts: dict[int, BaseGeometry], step: float) -> dict[int, BaseGeometry]:
    """The parts with the Voronoi staircase of their cut lines straightened (their outer outline untouched)."""
    keys = [k for k in parts if not parts[k].is_empty]
    geoms = shapely.set_precision(shapely.coverage_simplify(np.array([parts[k] for k in keys], dtype=object),
                                                            step, simplify_boundary=False), GRID_SIZE_M)
    total = shapely.union_all(geoms, grid_size=GRID_SIZE_M)
    ok = (shapely.is_valid(geoms).all() and not shapely.is_empty(geoms).any()
          and abs(shapely.area(shapely.symmetric_difference(total, area, grid_size=GRID_SIZE_M))) <= GRID_SIZE_M)
    return {**parts, **dict(zip(keys, geoms))} if ok else parts


def _keep_footprints_whole(area: BaseGeometry, parts: dict[int, BaseGeometry],
                           footprints: Sequence[BaseGeometry] | np.ndarray) -> dict[int, BaseGeometry]:
    """Give each footprint that the parts' cut lines cross to the part holding most of it."""
    footprints = np.asarray(list(footprints), dtype=object)
    if not len(footprints):
        return parts
    footprints = footprints[shapely.intersects(footprints, area)]
    keys = list(parts)
    for f in footprints:
        shares = shapely.area(shapely.intersection(np.array([parts[k] for k in keys], dtype=object), f,
                                                   grid_size=GRID_SIZE_M))
        if (shares > GRID_SIZE_M).sum() < 2:
            continue
        win = keys[int(np.argmax(shares))]
        inside = _polygonal(shapely.intersection(f, area, grid_size=GRID_SIZE_M))
        for k, share in zip(keys, shares):
            if k != win and share > 0:
                parts[k] = _polygonal(shapely.difference(parts[k], inside, grid_size=GRID_SIZE_M))
        parts[win] = _polygonal(shapely.union(parts[win], inside, grid_size=GRID_SIZE_M))
    return parts


def _attach(parts: dict[int, BaseGeometry], grids: list[BaseGeometry]) -> dict[int, BaseGeometry]:
    """Move each piece that shares no edge with its own grid to the grid (with its part) it shares most edge with."""
    for _ in range(len(parts) + 2):
        moved = False
        for k in list(parts):
            for piece in shapely.get_parts(parts[k]):
                if shapely.length(shapely.intersection(piece.boundary, grids[k].boundary,
                                                       grid_size=GRID_SIZE_M)) > GRID_SIZE_M:
                    continue
                others = np.array([shapely.union(grids[j], parts[j]) if j != k else shapely.Polygon()
                                   for j in range(len(grids))], dtype=object)
                edge = shapely.length(shapely.intersection(shapely.boundary(others), piece.boundary,
                                                           grid_size=GRID_SIZE_M))
                j = int(np.argmax(edge))
                if edge[j] <= GRID_SIZE_M:
                    continue
                parts[k] = _polygonal(shapely.difference(parts[k], piece, grid_size=GRID_SIZE_M))
                parts[j] = _polygonal(shapely.union(parts[j], piece, grid_size=GRID_SIZE_M))
                moved = True
        if not moved:
            break
    return parts


# --------------------------------------------------------------------------- undo and redo

EDITS: dict[str, Callable[..., gpd.GeoSeries]] = {
    "move_vertex": move_vertex, "split": split_grid, "merge": merge_grids, "draw": draw_grid, "delete": delete_grid,
}


@dataclass
class EditSession:
    """The edits of one planner on one parent's grids, with undo and redo.

    Attributes
    ----------
    shapes : GeoSeries
        The partition after the edits so far.
    parent : Polygon, optional
        The siblings' parent (district CRS, m); with it, moving a vertex of
        the parent's outline is refused.
    parent_id : str, optional
        Its id, named in messages.
    """

    shapes: gpd.GeoSeries
    _done: list[tuple[str, gpd.GeoSeries]] = field(default_factory=list)
    _undone: list[tuple[str, gpd.GeoSeries]] = field(default_factory=list)
    parent: BaseGeometry | None = None
    parent_id: str | None = None

    def __post_init__(self) -> None:
        self.shapes = as_partition(self.shapes)

    def apply(self, edit: str, *args: object, **kwargs: object) -> gpd.GeoSeries:
        """Run one of :data:`EDITS` on the current shapes; a refused edit changes nothing.

        With :attr:`parent` set, a vertex move is checked against the parent's
        outline (see :func:`move_vertex`) unless the call gives ``parent=``.
        """
        check_choice("edit", edit, EDITS)
        if edit == "move_vertex" and self.parent is not None and "parent" not in kwargs:
            kwargs = {**kwargs, "parent": self.parent, "parent_id": kwargs.get("parent_id", self.parent_id)}
        after = EDITS[edit](self.shapes, *args, **kwargs)
        self._done.append((edit, self.shapes))
        self._undone.clear()
        self.shapes = after
        return after

    def undo(self) -> gpd.GeoSeries:
        return self._step(self._done, self._undone, "undo")

    def redo(self) -> gpd.GeoSeries:
        return self._step(self._undone, self._done, "redo")

    def _step(self, source: list, target: list, what: str) -> gpd.GeoSeries:
        """Take the last state off ``source``, keep the current one on ``target``, and show it."""
        if not source:
            raise GridEditError(N_("nothing to undo.") if what == "undo" else N_("nothing to redo."))
        edit, shapes = source.pop()
        target.append((edit, self.shapes))
        self.shapes = shapes
        return shapes

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)


def changed_grids(before: gpd.GeoSeries, after: gpd.GeoSeries, *, tolerance_m: float = GRID_SIZE_M
                  ) -> tuple[list[str], list[str], list[str]]:
    """Grid ids (changed, added, removed) between two partitions of the same parent."""
    common = before.index.intersection(after.index)
    same = shapely.equals_exact(shapely.normalize(before[common].values), shapely.normalize(after[common].values),
                                tolerance=tolerance_m)
    changed = [g for g, s in zip(common, same) if not s]
    # equals_exact is strict about vertex order and count; fall back to a symmetric difference by area
    if changed:
        sym = shapely.area(shapely.symmetric_difference(before[changed].values, after[changed].values))
        changed = [g for g, a in zip(changed, sym) if a > tolerance_m ** 2]
    added = [g for g in after.index if g not in before.index]
    removed = [g for g in before.index if g not in after.index]
    return changed, added, removed
