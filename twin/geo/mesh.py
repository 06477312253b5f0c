"""LOD1 meshes: footprints extruded to prisms, for all buildings at once.

Each building's mesh shares its vertices between walls, roof and floor, so it
is watertight by index: ``2 * n`` vertices for a footprint of ``n`` ring
vertices (floor ring then roof ring), roof and floor triangulated by earcut
(or a fan for convex footprints without holes), and two wall triangles per
ring edge. Triangles wind counter-clockwise seen from outside, so normals
point out. Everything but the earcut call itself is vectorised over all
buildings with numpy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mapbox_earcut
import numpy as np
import shapely

log = logging.getLogger(__name__)

_CONVEX_TOLERANCE = 1e-9  # relative area difference to the convex hull


@dataclass(frozen=True)
class MeshBatch:
    """Triangle meshes of many buildings in flat arrays.

    Attributes
    ----------
    vertices : ndarray, shape (V, 3), float32
        Metres, relative to ``origin``; building ``i`` owns rows
        ``vertex_offsets[i]:vertex_offsets[i + 1]``.
    triangles : ndarray, shape (T, 3), uint32
        Vertex indices local to each building (0 is its first vertex);
        building ``i`` owns rows ``triangle_offsets[i]:triangle_offsets[i + 1]``.
    vertex_offsets, triangle_offsets : ndarray, shape (n + 1,), int64
    origin : tuple of float
        ``(x, y, z)`` in the district CRS, metres.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    vertex_offsets: np.ndarray
    triangle_offsets: np.ndarray
    origin: tuple[float, float, float]

    def __len__(self) -> int:
        return len(self.vertex_offsets) - 1

    def building(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (float32, relative) and local triangles of building ``i``."""
        v = self.vertices[self.vertex_offsets[i]:self.vertex_offsets[i + 1]]
        t = self.triangles[self.triangle_offsets[i]:self.triangle_offsets[i + 1]]
        return v, t

    @property
    def triangle_building(self) -> np.ndarray:
        """Index of the building each triangle belongs to, shape (T,), int64."""
        return np.repeat(np.arange(len(self)), np.diff(self.triangle_offsets))


def _ring_coordinates(polygons: np.ndarray):
    """Open ring coordinates, exteriors counter-clockwise and holes clockwise.

    Returns ``xy`` (R, 2) float64, ``ring_start`` and ``ring_length`` (rings,)
    into ``xy``, ``ring_polygon`` (rings,) and ``poly_ring_offsets`` (n + 1,).
    """
    if len(polygons) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros((0, 2)), empty, empty, empty, np.zeros(1, dtype=np.int64)
    if not (shapely.get_type_id(polygons) == shapely.GeometryType.POLYGON).all():
        raise ValueError("triangulate_polygons needs Polygons")
    # Every polygon's closed rings, exterior first. Ring lengths come from splitting the few polygons
    # with holes into rings; splitting them all (shapely.get_rings) costs more than the rest together.
    coords = shapely.get_coordinates(polygons)
    n_holes = shapely.get_num_interior_rings(polygons)
    poly_ring_offsets = np.concatenate([[0], np.cumsum(n_holes + 1)])
    closed_length = np.empty(poly_ring_offsets[-1], dtype=np.int64)
    closed_length[poly_ring_offsets[:-1]] = shapely.get_num_coordinates(polygons)
    holed = np.flatnonzero(n_holes)
    if len(holed):
        rings, owner = shapely.get_rings(polygons[holed], return_index=True)
        first = poly_ring_offsets[holed][owner]
        rank = np.arange(len(rings)) - np.searchsorted(owner, owner)
        closed_length[first + rank] = shapely.get_num_coordinates(rings)
    ring_offsets = np.concatenate([[0], np.cumsum(closed_length)])
    keep = np.ones(len(coords), dtype=bool)
    keep[ring_offsets[1:] - 1] = False  # drop each ring's closing vertex
    xy = coords[keep]
    ring_length = closed_length - 1
    ring_start = ring_offsets[:-1] - np.arange(len(ring_length))
    n_rings = len(ring_length)
    ring_polygon = np.repeat(np.arange(len(polygons)), np.diff(poly_ring_offsets))
    point_ring = np.repeat(np.arange(n_rings), ring_length)

    # Signed ring areas (shoelace, relative to each ring's first vertex) decide which rings to reverse.
    local = np.arange(len(xy)) - ring_start[point_ring]
    nxt = np.arange(len(xy)) + 1
    nxt[ring_start + ring_length - 1] = ring_start
    rel = xy - xy[ring_start[point_ring]]
    twice_area = np.add.reduceat(rel[:, 0] * rel[nxt, 1] - rel[nxt, 0] * rel[:, 1], ring_start)
    exterior = np.zeros(n_rings, dtype=bool)
    exterior[poly_ring_offsets[:-1]] = True
    reverse = (twice_area < 0) == exterior
    if reverse.any():
        flip = reverse[point_ring]
        perm = np.arange(len(xy))
        perm[flip] = (ring_start + ring_length - 1)[point_ring[flip]] - local[flip]
        xy = xy[perm]
    return xy, ring_start, ring_length, ring_polygon, poly_ring_offsets


def _convex_single_rings(xy: np.ndarray, ring_start: np.ndarray, ring_length: np.ndarray,
                         ring_polygon: np.ndarray, n: int) -> np.ndarray:
    """Which polygons are one counter-clockwise convex ring (no reflex vertex)."""
    k = np.arange(len(xy))
    nxt, prv = k + 1, k - 1
    nxt[ring_start + ring_length - 1] = ring_start
    prv[ring_start] = ring_start + ring_length - 1
    a, b = xy[k] - xy[prv], xy[nxt] - xy[k]
    turn = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    ring_convex = np.minimum.reduceat(turn, ring_start) >= -1e-9
    single = np.bincount(ring_polygon, minlength=n) == 1
    convex = np.zeros(n, dtype=bool)
    convex[ring_polygon] = ring_convex
    return single & convex


def _fan_triangles(poly_start: np.ndarray, poly_length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan triangulation of convex single-ring polygons, in polygon-local indices.

    Returns triangles (T, 3) and the polygon index of each, grouped by polygon.
    """
    n_tri = poly_length - 2
    which = np.repeat(np.arange(len(poly_length)), n_tri)
    first = np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    k = np.arange(len(which)) - first + 1
    tri = np.column_stack([np.zeros_like(k), k, k + 1])
    return tri, which


def _earcut_triangles(xy: np.ndarray, polys: np.ndarray, poly_xy_start: np.ndarray,
                      poly_xy_length: np.ndarray, ring_ends: np.ndarray, poly_ring_offsets: np.ndarray):
    """Earcut each polygon in ``polys``; polygon-local triangle indices.

    ``ring_ends`` holds each ring's end relative to its polygon's first vertex,
    rings of polygon ``p`` at ``poly_ring_offsets[p]:poly_ring_offsets[p + 1]``.
    Each polygon is triangulated relative to its first vertex; the relative
    coordinates are computed for all polygons at once, so the loop only slices.
    """
    if len(polys) == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0, dtype=np.int64)
    # Polygons' vertices are contiguous and in order, so this is ``xy[s:s + n] - xy[s]`` for every polygon at once.
    rel = np.repeat(xy[poly_xy_start], poly_xy_length, axis=0)
    np.subtract(xy, rel, out=rel)
    starts = poly_xy_start[polys]
    ring_ends = np.ascontiguousarray(ring_ends, dtype=np.uint32)
    triangulate = mapbox_earcut.triangulate_float64
    parts = [triangulate(rel[s:e], ring_ends[r:q])
             for s, e, r, q in zip(starts.tolist(), (starts + poly_xy_length[polys]).tolist(),
                                   poly_ring_offsets[polys].tolist(), poly_ring_offsets[polys + 1].tolist())]
    counts = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts)) // 3
    tri = np.concatenate(parts).astype(np.int64).reshape(-1, 3)
    return tri, np.repeat(polys, counts)


def triangulate_polygons(polygons: np.ndarray) -> tuple[np.ndarray, ...]:
    """Triangulate polygons (holes kept): a fan for convex ones without holes, earcut for the rest.

    Parameters
    ----------
    polygons : ndarray of shapely.Polygon, shape (n,)
        Valid polygons, metres.

    Returns
    -------
    xy : ndarray, shape (V, 2), float64
        Open ring vertices, exteriors counter-clockwise and holes clockwise; polygon ``i`` owns rows
        ``poly_start[i]:poly_start[i] + poly_length[i]``.
    poly_start, poly_length : ndarray, shape (n,), int64
    ring_start, ring_length : ndarray, shape (rings,), int64
        Each ring's rows of ``xy``.
    triangles : ndarray, shape (T, 3), int32
        Indices local to their polygon, counter-clockwise seen from above.
    triangle_polygon : ndarray, shape (T,), int64
        The polygon of each triangle.
    """
    polygons = np.asarray(polygons, dtype=object)
    n = len(polygons)
    xy, ring_start, ring_length, ring_polygon, poly_ring_offsets = _ring_coordinates(polygons)

    # Per-polygon ring vertex ranges (rings of one polygon are contiguous).
    poly_length = np.bincount(ring_polygon, weights=ring_length, minlength=n).astype(np.int64)
    poly_start = np.concatenate([[0], np.cumsum(poly_length)[:-1]]).astype(np.int64)

    # A fan for convex polygons without holes, earcut otherwise.
    convex = _convex_single_rings(xy, ring_start, ring_length, ring_polygon, n)
    fan_polys = np.flatnonzero(convex)
    fan_tri, fan_which = _fan_triangles(poly_start[fan_polys], poly_length[fan_polys])
    fan_which = fan_polys[fan_which]
    ear_polys = np.flatnonzero(~convex)
    ring_end_rel = (ring_start + ring_length - poly_start[ring_polygon]).astype(np.uint32)
    ear_tri, ear_which = _earcut_triangles(xy, ear_polys, poly_start, poly_length, ring_end_rel, poly_ring_offsets)
    if len(ear_polys):
        log.debug("earcut on %d of %d polygons; fan on the rest", len(ear_polys), n)

    roof = np.concatenate([fan_tri, ear_tri]).astype(np.int32)
    roof_which = np.concatenate([fan_which, ear_which])
    del fan_tri, ear_tri
    # Make every triangle counter-clockwise seen from above.
    g = roof + poly_start[roof_which][:, None]
    a, b, c = xy[g[:, 0]], xy[g[:, 1]], xy[g[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    roof[cross < 0] = roof[cross < 0][:, [0, 2, 1]]
    del g, a, b, c, cross
    return xy, poly_start, poly_length, ring_start, ring_length, roof, roof_which


def extrude_footprints(polygons: np.ndarray, *, base_z: np.ndarray, height: np.ndarray,
                       origin: tuple[float, float, float]) -> MeshBatch:
    """Extrude footprints into watertight LOD1 prisms.

    Parameters
    ----------
    polygons : ndarray of shapely.Polygon, shape (n,)
        Valid footprints in the district CRS (metres). Holes are kept as
        courtyards.
    base_z : ndarray, shape (n,)
        Floor elevation of each building, metres.
    height : ndarray, shape (n,)
        Height above ``base_z``, metres, > 0.
    origin : tuple of float
        ``(x, y, z)`` the vertices are made relative to.

    Returns
    -------
    MeshBatch
    """
    polygons = np.asarray(polygons, dtype=object)
    n = len(polygons)
    base_z = np.asarray(base_z, dtype=np.float64)
    top_z = base_z + np.asarray(height, dtype=np.float64)
    xy, poly_start, poly_length, ring_start, ring_length, roof, roof_which = triangulate_polygons(polygons)

    # Vertices: each building's floor ring then its roof ring.
    vertex_offsets = np.concatenate([[0], np.cumsum(2 * poly_length)])
    point_poly = np.repeat(np.arange(n), poly_length)
    local = np.arange(len(xy)) - poly_start[point_poly]
    rel = xy - np.asarray(origin[:2])
    verts = np.empty((2 * len(xy), 3), dtype=np.float32)  # offsets from the origin: mm at 10 km
    floor_idx = vertex_offsets[point_poly] + local
    roof_idx = floor_idx + poly_length[point_poly]
    verts[floor_idx, :2] = rel
    verts[roof_idx, :2] = rel
    verts[floor_idx, 2] = base_z[point_poly] - origin[2]
    verts[roof_idx, 2] = top_z[point_poly] - origin[2]

    # Walls: two triangles per ring edge k -> k+1, outward for CCW shells and CW holes.
    nxt = np.arange(1, len(xy) + 1)
    nxt[ring_start + ring_length - 1] = ring_start
    fk = local.astype(np.int32)
    fn = fk[nxt]
    hk = poly_length[point_poly].astype(np.int32)
    walls = np.concatenate([np.column_stack([fk, fn, fn + hk]), np.column_stack([fk, fn + hk, fk + hk])])
    wall_which = np.concatenate([point_poly, point_poly])
    del nxt, fk, fn, hk

    roof_tris = roof + poly_length[roof_which][:, None].astype(np.int32)  # roof ring follows the floor ring
    floor_tris = roof[:, [0, 2, 1]]
    tris = np.concatenate([roof_tris, floor_tris, walls])
    del roof_tris, floor_tris, walls
    which = np.concatenate([roof_which, roof_which, wall_which])
    order = np.argsort(which, kind="stable")
    tri_counts = np.bincount(which, minlength=n)
    del which
    return MeshBatch(
        vertices=verts,
        triangles=tris[order].view(np.uint32),
        vertex_offsets=vertex_offsets,
        triangle_offsets=np.concatenate([[0], np.cumsum(tri_counts)]),
        origin=tuple(float(o) for o in origin),
    )
