"""Layer buffers for the 3D view: numpy arrays packed as little-endian bytes.

Positions are float32 offsets from the district origin, never absolute
projected coordinates (float32 at 3.8e6 m resolves only 0.25 m).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from scenes.colours import (BASEMAP_COLOURS, CATEGORICAL, CLASSED, SEQUENTIAL, class_breaks, class_labels, classify,
                            neighbour_distinct_classes_wkb, sequential)
from scenes.helper import HELPER_ABOVE, in_helper
from scenes.i18n import N_
from twin.buildings import load_meshes
from twin.cases.cases import CASE_STATUSES
from twin.cases.cameras import DEFAULT_RANGE_M
from twin.errors import check_choice
from twin.geo.basemap import DRAW_ORDER
from twin.geo.mesh import triangulate_polygons
from twin.store.queries import per_building_population
from twin.store.store import district_of, read_frame

BUILDING_MAGIC = 0x31425754  # "TWB1"
# Per building: its micro-grid, its residents, its height. Per grid at the chosen level: its cases.
BUILDING_MEASURES = ("grid", "population", "height")
GRID_MEASURES = ("open_cases", "overdue_cases", "cases_per_1000")
# Per micro-grid: the share of its buildings the day's patrols passed (twin.field.patrol).
COVERAGE_MEASURE = "coverage"
# Per grid at the chosen level: its volunteers' hours and points this month (twin.volunteers.figures).
VOLUNTEER_MEASURES = ("volunteer_hours", "volunteer_points")
COLOUR_MEASURES = ("grid", *GRID_MEASURES, COVERAGE_MEASURE, *VOLUNTEER_MEASURES, "population", "height")
MEASURE_TITLES = {"grid": N_("Micro-grid"), "open_cases": N_("Open cases"), "overdue_cases": N_("Overdue cases"),
                  "cases_per_1000": N_("Open cases per 1,000 residents"), "population": N_("Residents"),
                  "height": N_("Height (m)"), COVERAGE_MEASURE: N_("Patrol coverage today"),
                  "volunteer_hours": N_("Volunteer hours this month"),
                  "volunteer_points": N_("Volunteer points this month")}
# Coverage classes, low to full (grid-management practice scores 95 % and more as full).
COVERAGE_CLASSES = ((0.0, CLASSED[0], N_("not patrolled")), (1e-9, CLASSED[4], N_("under 50 %")),
                    (0.5, CLASSED[3], N_("50-80 %")), (0.8, CLASSED[2], N_("80-95 %")),
                    (0.95, "#22c55e", N_("full (95 % and more)")))
OUTSIDE_GRIDS = "#8fa3bf"  # buildings outside every grid


def _pack(*arrays: np.ndarray) -> bytes:
    """Concatenate arrays as little-endian bytes, each padded to 4 bytes."""
    out = []
    for a in arrays:
        raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        out.append(raw + b"\0" * (-len(raw) % 4))
    return b"".join(out)


class SortedIds:
    """Text ids in sorted order, held as fixed-width UTF-8 bytes and found by binary search.

    A million ids of 16 characters take 16 MB here, against about 70 MB as Python strings (and a hash table
    more for a pandas Index of them): the server keeps every building's id for a million buildings.

    Parameters
    ----------
    ids : pyarrow string array or sequence of str, shape (n,)
        Unique ids, best in ascending order (the store's ``ORDER BY``); any other order is searched through a
        sorting permutation, and position ``i`` stays the ``i``-th id given.
    """

    def __init__(self, ids: pa.Array | pa.ChunkedArray | list[str] | np.ndarray) -> None:
        if isinstance(ids, (pa.Array, pa.ChunkedArray)):
            encoded = ids.cast(pa.binary()).to_numpy(zero_copy_only=False)
        else:
            encoded = [str(i).encode() for i in ids]
        self._ids = np.asarray(encoded, dtype="S") if len(encoded) else np.zeros(0, dtype="S1")
        ordered = bool((self._ids[1:] > self._ids[:-1]).all())
        self._sorter = None if ordered else np.argsort(self._ids, kind="stable")

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i: int) -> str:
        return self._ids[i].decode()

    def __iter__(self):
        return (v.decode() for v in self._ids)

    def to_list(self) -> list[str]:
        return [v.decode() for v in self._ids]

    def same_as(self, ids: pa.Array | pa.ChunkedArray) -> bool:
        """Whether ``ids`` are these, in this order (then values read beside them need no lookup)."""
        return len(ids) == len(self) and np.array_equal(SortedIds(ids)._ids, self._ids)

    def index_of(self, value: str) -> int:
        """Position of ``value``, -1 when absent."""
        return int(self.indices_of([value])[0])

    def indices_of(self, values: pa.Array | pa.ChunkedArray | list[str] | np.ndarray) -> np.ndarray:
        """Positions of ``values`` (int64, shape (m,)), -1 for those absent."""
        wanted = SortedIds.__new__(SortedIds)
        wanted._ids = (values._ids if isinstance(values, SortedIds) else
                       np.asarray(values.cast(pa.binary()).to_numpy(zero_copy_only=False) if isinstance(
                           values, (pa.Array, pa.ChunkedArray)) else [str(v).encode() for v in values], dtype="S"))
        if not len(wanted._ids) or not len(self._ids):
            return np.full(len(wanted._ids), -1, dtype=np.int64)
        found = np.searchsorted(self._ids, wanted._ids, sorter=self._sorter)
        found = np.minimum(found, len(self._ids) - 1)
        if self._sorter is not None:
            found = self._sorter[found]
        return np.where(self._ids[found] == wanted._ids, found, -1).astype(np.int64)


@dataclass(frozen=True)
class BuildingLayer:
    """What the browser needs to draw and identify every building, as numpy arrays (a million buildings fit).

    Attributes
    ----------
    building_id : SortedIds, length n
        Index ``i`` in every per-building array is this building (the store's order of ``building_id``).
    centre : ndarray, shape (n, 3), float32
        A point inside each footprint at its roof, relative to the origin (m).
    radius : ndarray, shape (n,), float32
        Half the footprint's diagonal (m), for "fly to".
    grid_code : ndarray, shape (n,), int32
        Each building's micro-grid as its position in ``micro_ids``; -1 outside every grid.
    micro_ids : SortedIds
        The micro-grids that hold buildings.
    height : ndarray, shape (n,)
    box : ndarray, shape (n, 6), float32
        Each building's ``xmin, ymin, zmin, xmax, ymax, zmax`` relative to the origin (m), for framing a view.
    payload : bytes
        The binary geometry buffer (see ``view3d.js``'s ``parseBuildings``); empty when the view streams tiles.
    """

    building_id: SortedIds
    centre: np.ndarray
    radius: np.ndarray
    grid_code: np.ndarray
    micro_ids: SortedIds
    height: np.ndarray
    box: np.ndarray
    origin: tuple[float, float, float]
    payload: bytes

    def index_of(self, building_id: str) -> int:
        return self.building_id.index_of(building_id)

    @property
    def grid_id(self) -> np.ndarray:
        """Each building's micro-grid id (None outside every grid), as Python strings: for tests and small
        districts; per-building work goes through ``grid_code``."""
        names = np.array([*self.micro_ids, None], dtype=object)
        return names[self.grid_code]

    def per_building(self, micro_ids: pd.Series | np.ndarray, values: np.ndarray, *, missing) -> np.ndarray:
        """Spread values given per micro-grid (``values[k]`` of ``micro_ids[k]``) to the buildings in them;
        ``missing`` for buildings outside every grid or in a grid not given."""
        values = np.asarray(values)
        per_grid = np.full(len(self.micro_ids) + 1, missing, dtype=np.result_type(values, np.asarray(missing)))
        where = self.micro_ids.indices_of(np.asarray(micro_ids, dtype=object))
        per_grid[where[where >= 0]] = values[where >= 0]
        return per_grid[self.grid_code]  # -1 takes the last: missing


def grid_codes(grid_ids: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, SortedIds]:
    """Each row's position among the distinct ids of ``grid_ids`` (-1 for null) and those ids, sorted."""
    encoded = pc.dictionary_encode(grid_ids.combine_chunks() if isinstance(grid_ids, pa.ChunkedArray) else grid_ids)
    order = pc.array_sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int32)
    return np.where(codes >= 0, rank[codes.clip(0)], -1).astype(np.int32), SortedIds(encoded.dictionary.take(order))


def building_layer(con: duckdb.DuckDBPyConnection, *, geometry: bool = True) -> BuildingLayer:
    """Every building's id, place, box and micro-grid, and with ``geometry`` the buffer that draws them all.

    The LOD1 mesh of each building holds its floor ring, then its roof ring
    (oriented: shells counter-clockwise, holes clockwise), and its roof
    triangles first; the browser makes floors and walls from those. Without ``geometry`` (the view streams
    tiles) no mesh is read and ``payload`` is empty.
    """
    info = con.execute("SELECT building_id, grid_id, height, base_z, label_x, label_y, ST_XMin(footprint) AS xmin, "
                       "ST_YMin(footprint) AS ymin, ST_XMax(footprint) AS xmax, ST_YMax(footprint) AS ymax "
                       "FROM buildings ORDER BY building_id").arrow().read_all()
    ids = SortedIds(info.column("building_id"))
    district = district_of(con)
    origin = district.origin if district is not None else (0.0, 0.0, 0.0)
    payload = _building_payload(con, info, ids) if geometry else b""
    column = {name: info.column(name).to_numpy() for name in info.column_names
              if name not in ("building_id", "grid_id")}
    base_z, top = column["base_z"], column["base_z"] + column["height"]
    # float32 relative to the origin: millimetres 30 km out, and half the memory of a million buildings
    centre = np.column_stack([column["label_x"] - origin[0], column["label_y"] - origin[1], top]).astype(np.float32)
    radius = (0.5 * np.hypot(column["xmax"] - column["xmin"], column["ymax"] - column["ymin"])).astype(np.float32)
    box = np.column_stack([column["xmin"] - origin[0], column["ymin"] - origin[1], base_z,
                           column["xmax"] - origin[0], column["ymax"] - origin[1], top]).astype(np.float32)
    grid_code, micro_ids = grid_codes(info.column("grid_id"))
    return BuildingLayer(building_id=ids, centre=centre, radius=radius, grid_code=grid_code, micro_ids=micro_ids,
                         height=column["height"], box=box, origin=origin, payload=payload)


def _building_payload(con: duckdb.DuckDBPyConnection, info: pa.Table, ids: SortedIds) -> bytes:
    """The buffer of every building's rings, heights and roof triangles (see :func:`building_layer`)."""
    mesh_ids, meshes = load_meshes(con)
    if not ids.same_as(pa.array(mesh_ids, type=pa.string())):
        raise RuntimeError("buildings and meshes disagree; rebuild the LOD1 meshes")
    footprints = shapely.from_wkb(con.execute("SELECT ST_AsWKB(footprint) FROM buildings ORDER BY building_id")
                                  .arrow().read_all().column(0).to_numpy(zero_copy_only=False))
    _, _, (ring_offsets, poly_offsets) = shapely.to_ragged_array(footprints)
    ring_length = np.diff(ring_offsets) - 1
    rings_per = np.diff(poly_offsets)
    n_points = np.diff(meshes.vertex_offsets) // 2
    # Roof triangles come first in each building and use only roof-ring vertices.
    tri = meshes.triangles.astype(np.int64)
    owner = meshes.triangle_building
    on_roof = (tri >= n_points[owner][:, None]).all(axis=1)
    normal_z = _triangle_normal_z(meshes.vertices, tri, meshes.vertex_offsets[:-1][owner])
    roof = on_roof & (normal_z > 0)
    roof_per = np.bincount(owner[roof], minlength=len(ids))
    roof_local = tri[roof] - n_points[owner[roof]][:, None]
    v = meshes.vertices
    starts = meshes.vertex_offsets[:-1]
    vertex_building = np.repeat(np.arange(len(ids)), 2 * n_points)
    floor_mask = np.arange(len(v)) - starts[vertex_building] < n_points[vertex_building]
    xy = v[floor_mask][:, :2]
    base = v[starts, 2] if len(ids) else np.zeros(0, np.float32)
    top = v[starts + n_points, 2] if len(ids) else np.zeros(0, np.float32)
    big = max(int(ring_length.max(initial=0)), int(roof_local.max(initial=0)), int(rings_per.max(initial=0)),
              int(roof_per.max(initial=0)))
    index = np.uint16 if big < 2**16 else np.uint32
    header = np.array([BUILDING_MAGIC, len(ids), len(ring_length), len(xy), len(roof_local), np.dtype(index).itemsize,
                       0, 0], dtype=np.uint32)
    return _pack(header, rings_per.astype(index), ring_length.astype(index), roof_per.astype(index),
                 base.astype(np.float32), top.astype(np.float32), xy.astype(np.float32), roof_local.astype(index))


MODEL_MAGIC = 0x314D5754  # "TWM1"
BASEMAP_MAGIC = 0x31475754  # "TWG1"


def basemap_layer(basemap: pd.DataFrame, origin: tuple[float, float, float]) -> bytes:
    """Triangulate the ground's polygons into one buffer, by kind in drawing order (``DRAW_ORDER``).

    Layout: header u32[4] (magic, kinds, vertices, triangles); u32 triangle count per kind; uint8 RGB per
    kind; float32 vertices (x, y relative to the origin); uint32 triangles (three vertex indices each).
    Empty when there is no ground to draw.

    Parameters
    ----------
    basemap : DataFrame
        ``kind`` and polygonal ``geometry`` (district CRS), as :func:`twin.geo.basemap.load_basemap` reads them.
    """
    if len(basemap) == 0:
        return b""
    geoms = np.asarray(basemap["geometry"], dtype=object)
    parts, owner = shapely.get_parts(geoms, return_index=True)
    polygons = shapely.get_type_id(parts) == shapely.GeometryType.POLYGON
    parts, owner = parts[polygons], owner[polygons]
    rank = pd.Series({k: i for i, k in enumerate(DRAW_ORDER)})[basemap["kind"].to_numpy()].to_numpy()[owner]
    order = np.argsort(rank, kind="stable")
    parts, rank = parts[order], rank[order]
    xy, poly_start, _, _, _, triangles, triangle_polygon = triangulate_polygons(parts)
    by_polygon = np.argsort(triangle_polygon, kind="stable")  # fans come first, then earcut's: back in kind order
    triangles, triangle_polygon = triangles[by_polygon], triangle_polygon[by_polygon]
    per_kind = np.bincount(rank[triangle_polygon], minlength=len(DRAW_ORDER))
    triangles = triangles + poly_start[triangle_polygon][:, None]
    rgb = np.array([[int(BASEMAP_COLOURS[k][i:i + 2], 16) for i in (1, 3, 5)] for k in DRAW_ORDER], dtype=np.uint8)
    header = np.array([BASEMAP_MAGIC, len(DRAW_ORDER), len(xy), len(triangles)], dtype=np.uint32)
    return _pack(header, per_kind.astype(np.uint32), rgb.ravel(), (xy - np.asarray(origin[:2])).astype(np.float32),
                 triangles.astype(np.uint32))


def model_layer(con: duckdb.DuckDBPyConnection, layer: BuildingLayer) -> bytes:
    """Pack the BIM and mesh models that replace their buildings' LOD1 blocks in the view.

    Layout: header u32[4] (magic, models, vertices, triangles); per model u32 building index,
    vertex count, triangle count; then float32 vertices (relative to the origin), uint32
    triangles (per model) and uint32 element index per triangle. Triangles of hidden
    elements (spaces) are left out.
    """
    rows = con.execute("""
        SELECT m.building_id, m.vertices, m.triangles, m.element_ids,
               list(e.element_index ORDER BY e.element_index) FILTER (WHERE e.hidden) AS hidden
        FROM meshes m LEFT JOIN elements e ON e.mesh_id = m.mesh_id
        WHERE m.lod IN ('bim', 'mesh') GROUP BY ALL ORDER BY m.building_id""").fetchall()
    heads, verts, tris, elems = [], [], [], []
    for building_id, v, t, e, hidden in rows:
        index = layer.index_of(building_id)
        if index < 0:
            continue
        v = np.frombuffer(v, "<f4").reshape(-1, 3)
        t = np.frombuffer(t, "<u4").reshape(-1, 3)
        e = np.frombuffer(e, "<u4") if e is not None else np.zeros(len(t), np.uint32)
        shown = ~np.isin(e, np.asarray(hidden or [], dtype=np.uint32))
        heads.append((index, len(v), int(shown.sum())))
        verts.append(v)
        tris.append(t[shown])
        elems.append(e[shown])
    if not heads:
        return b""
    header = np.array([MODEL_MAGIC, len(heads), sum(h[1] for h in heads), sum(h[2] for h in heads)], dtype=np.uint32)
    return _pack(header, np.array(heads, dtype=np.uint32).ravel(), np.concatenate(verts).astype(np.float32),
                 np.concatenate(tris).astype(np.uint32), np.concatenate(elems).astype(np.uint32))


def model_elements(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Per building with a BIM or mesh model: the element index of each of its model's triangles (uint32, in the
    model's order; 0xFFFFFFFF for hidden elements such as spaces, which :func:`model_layer` leaves out).

    For picking a model's parts through tiles (:class:`scenes.tileserve.ElementIndexHandler`): models are few, so
    the server keeps these.
    """
    rows = con.execute("""
        SELECT m.building_id, m.lod, m.element_ids,
               list(e.element_index ORDER BY e.element_index) FILTER (WHERE e.hidden) AS hidden
        FROM meshes m LEFT JOIN elements e ON e.mesh_id = m.mesh_id
        WHERE m.lod IN ('bim', 'mesh') AND m.element_ids IS NOT NULL
        GROUP BY ALL ORDER BY m.building_id, m.lod""").fetchall()
    out = {}
    for building_id, _lod, element_ids, hidden in rows:
        e = np.frombuffer(element_ids, "<u4").copy()
        e[np.isin(e, np.asarray(hidden or [], dtype=np.uint32))] = 0xFFFFFFFF
        out.setdefault(building_id, e)  # its BIM model before a mesh model, as the tiles draw it
    return out


def _triangle_normal_z(vertices: np.ndarray, tri: np.ndarray, base: np.ndarray) -> np.ndarray:
    g = tri + base[:, None]
    a, b, c = (vertices[g[:, k], :2].astype(np.float64) for k in range(3))
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def _hex_rgb(colours: list[str]) -> np.ndarray:
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=np.uint8)


COLOURS_MAGIC = 0x31435754  # "TWC1"


def indexed_colours(palette: np.ndarray, index: np.ndarray) -> bytes:
    """Per-building colours as a palette and one byte per building: a third of RGB (1 MB for a million buildings,
    sent before the first frame).

    Layout: header u32[3] (magic, buildings n, palette size k); k RGB uint8 triples (padded to 4 bytes); n uint8
    palette indices. ``index`` -1 takes the palette's last colour.
    """
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    index = np.asarray(index, dtype=np.int64) % len(palette)
    header = np.array([COLOURS_MAGIC, len(index), len(palette)], dtype=np.uint32)
    return _pack(header, palette.ravel(), index.astype(np.uint8))


def colours_rgb(data: bytes) -> np.ndarray:
    """The RGB (n x 3 uint8) of :func:`indexed_colours`' bytes, as the view reads them."""
    n, k = (int(v) for v in np.frombuffer(data, dtype="<u4", count=3)[1:])
    palette = np.frombuffer(data, dtype=np.uint8, count=3 * k, offset=12).reshape(-1, 3)
    return palette[np.frombuffer(data, dtype=np.uint8, count=n, offset=12 + 3 * k + (-3 * k) % 4)]


def building_colours(con: duckdb.DuckDBPyConnection, layer: BuildingLayer, *, measure: str) -> tuple[bytes, dict]:
    """Per-building colours (:func:`indexed_colours`) for a measure, and its legend.

    Parameters
    ----------
    measure : {'grid', 'population', 'height'}
        The cases are coloured per grid: see :func:`grid_measure_colours`.
    """
    check_choice("measure", measure, BUILDING_MEASURES)
    n = len(layer.building_id)
    if measure == "grid":
        micro = con.execute("SELECT grid_id, ST_AsWKB(boundary) AS wkb FROM grids WHERE level = 'micro' "
                            "AND valid_to IS NULL ORDER BY grid_id").arrow().read_all()
        wkb = micro.column("wkb").combine_chunks()
        # A city's 650,000 polygons would leave the server's heap in pieces: they are made in a helper process.
        classes = (in_helper(neighbour_distinct_classes_wkb, wkb) if len(wkb) > HELPER_ABOVE
                   else neighbour_distinct_classes_wkb(wkb))
        idx = layer.per_building(micro.column("grid_id").to_numpy(zero_copy_only=False), classes, missing=-1)
        palette = _hex_rgb(list(CATEGORICAL) + [OUTSIDE_GRIDS])  # -1 takes the last, grey: outside every grid
        legend = {"title": MEASURE_TITLES["grid"], "items": [[CATEGORICAL[0], N_("neighbouring micro-grids")],
                                                             [CATEGORICAL[1], N_("differ in colour")],
                                                             [OUTSIDE_GRIDS, N_("outside any grid")]]}
        return indexed_colours(palette, idx), legend
    values = _measure_values(con, layer, measure)
    idx, top = sequential(values)
    steps = np.linspace(0, top, len(SEQUENTIAL))
    legend = {"title": MEASURE_TITLES[measure],
              "items": [[SEQUENTIAL[i], f"{steps[i]:,.0f}" + (" +" if i == len(SEQUENTIAL) - 1 else "")]
                        for i in range(0, len(SEQUENTIAL), 2)]}
    assert len(idx) == n
    return indexed_colours(_hex_rgb(list(SEQUENTIAL)), idx), legend


def _measure_values(con: duckdb.DuckDBPyConnection, layer: BuildingLayer, measure: str) -> np.ndarray:
    if measure == "height":
        return layer.height
    counts = con.execute(f"SELECT building_id, residents FROM ({per_building_population(con)}) "
                         "ORDER BY building_id").arrow().read_all()
    values = np.zeros(len(layer.building_id), dtype=np.float64)
    where = layer.building_id.indices_of(counts.column("building_id"))
    values[where[where >= 0]] = counts.column("residents").to_numpy()[where >= 0]
    return values


def grid_measure_colours(layer: BuildingLayer, table: pd.DataFrame, tree: pd.DataFrame, *, level: str,
                         measure: str) -> tuple[bytes, dict]:
    """Per-building colours (:func:`indexed_colours`) painting each grid at ``level`` in the class of its ``measure``.

    Classes are quantiles of the grids' values with distinct bounds (:func:`scenes.colours.class_breaks`);
    each building takes its grid's colour, and buildings outside every grid are grey.

    Parameters
    ----------
    table : DataFrame
        :func:`twin.store.queries.grid_table` at ``level``: ``grid_id`` and the measure's column (for the
        volunteer measures, :func:`twin.volunteers.figures.volunteer_table` with its columns so named).
    tree : DataFrame
        :func:`twin.store.queries.grid_tree`: each micro-grid's ancestor at ``level``.
    measure : {'open_cases', 'overdue_cases', 'cases_per_1000', 'volunteer_hours', 'volunteer_points'}
    """
    check_choice("measure", measure, (*GRID_MEASURES, *VOLUNTEER_MEASURES))
    values = table[measure].to_numpy(dtype=np.float64)
    edges = class_breaks(values)
    palette = _hex_rgb(list(CLASSED[:len(edges) - 1]) + [OUTSIDE_GRIDS])
    grid_class = pd.Series(classify(values, edges), index=table["grid_id"].to_numpy(dtype=object))
    micro = tree[tree["level"] == "micro"]
    micro_class = micro[level].astype(object).map(grid_class).fillna(-1).to_numpy(dtype=np.int64)
    idx = layer.per_building(micro["grid_id"], micro_class, missing=-1)
    labels = class_labels(edges, integer=measure not in ("cases_per_1000", "volunteer_hours"))
    legend = {"title": MEASURE_TITLES[measure], "level": level,
              "items": [[CLASSED[k], text] for k, text in enumerate(labels)]
              + [[OUTSIDE_GRIDS, N_("outside any grid")]]}
    return indexed_colours(palette, idx), legend


def grid_segments(shapes: np.ndarray, origin: tuple[float, float, float]) -> bytes:
    """Boundary edges of polygons as float32 segment end points (x0, y0, x1, y1 ...), relative to the origin."""
    if len(shapes) == 0:
        return b""
    rings = shapely.get_rings(shapes)
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[1:] == ring[:-1]
    seg = np.concatenate([coords[:-1][same], coords[1:][same]], axis=1) - np.array(origin[:2] * 2)
    return seg.astype("<f4").tobytes()


def grid_labels(frame: pd.DataFrame, shapes: np.ndarray, origin: tuple[float, float, float]) -> list[list]:
    """``[name, x, y]`` at a point inside each grid (relative to the origin), the largest grid first: the view
    shows them in this order and leaves out any that would overlap one already shown (``view3d.js``)."""
    if len(shapes) == 0:
        return []
    pts = shapely.get_coordinates(shapely.point_on_surface(shapes)) - np.array(origin[:2])
    order = np.argsort(-shapely.area(shapes), kind="stable")
    names = frame["name"].to_numpy(dtype=object)
    return [[str(names[i]), float(pts[i, 0]), float(pts[i, 1])] for i in order]


def case_markers(cases: pd.DataFrame, layer: BuildingLayer) -> bytes:
    """Float32 records (x, y, z, status index) per case; on the roof of its building, else on the ground.

    ``cases`` has ``x``, ``y`` (district CRS), ``building_id`` and ``status``.
    """
    if len(cases) == 0:
        return b""
    index = layer.building_id.indices_of(cases["building_id"].fillna("").to_numpy(dtype=object))
    z = np.where(index >= 0, layer.centre[index, 2], 0.0)
    status = pd.Categorical(cases["status"], categories=CASE_STATUSES).codes.clip(0)
    rec = np.column_stack([cases["x"] - layer.origin[0], cases["y"] - layer.origin[1], z, status])
    return rec.astype("<f4").tobytes()


def case_update_records(updates: list[tuple[int, float, float, float, int, bool, str]]) -> bytes:
    """Live marker changes as one binary message: uint32 count, float32 records (slot, x, y, z, status,
    fresh) and the case ids joined by newlines. Bytes, unlike a list, cost the server nothing to inspect."""
    rec = np.array([u[:6] for u in updates], dtype="<f4").reshape(-1, 6)
    ids = "\n".join(u[6] for u in updates).encode()
    return np.uint32(len(updates)).astype("<u4").tobytes() + rec.tobytes() + ids


def camera_records(cameras: pd.DataFrame, origin: tuple[float, float, float]) -> bytes:
    """Float32 records (x, y, z, heading, pitch, fov, range, online) per camera, relative to the origin."""
    if len(cameras) == 0:
        return b""
    rec = np.column_stack([cameras["x"] - origin[0], cameras["y"] - origin[1], cameras["z"].fillna(4.0),
                           cameras["heading_deg"].fillna(0), cameras["pitch_deg"].fillna(-20),
                           cameras["fov_deg"].fillna(60), cameras["range_m"].fillna(DEFAULT_RANGE_M),
                           (cameras["status"] == "online").astype(float)])
    return rec.astype("<f4").tobytes()


CAMERA_CELL_M = 500.0  # the camera layer's index cells (m): a box of a few km reads a few dozen of them


@dataclass(frozen=True)
class CameraLayer:
    """Every camera's id and its record for the view (:func:`camera_records`), in ``camera_id`` order, with an
    index of square cells to find those in a box without reading them all (a city has 1.5 million).

    Attributes
    ----------
    camera_id : SortedIds, length n
    payload : bytes
        n float32 records of 8 (x, y, z relative to the origin, heading, pitch, fov, range, online).
    by_cell : ndarray of int32, shape (n,)
        The cameras' indices ordered by their cell of ``CAMERA_CELL_M`` (then by index).
    cells, cell_starts : ndarray of int64, shapes (c,) and (c + 1,)
        Each occupied cell's key (:func:`_cell_keys`) in ascending order, and where its cameras start in
        ``by_cell``.
    """

    camera_id: SortedIds
    payload: bytes
    by_cell: np.ndarray
    cells: np.ndarray
    cell_starts: np.ndarray

    def __len__(self) -> int:
        return len(self.camera_id)

    @property
    def records(self) -> np.ndarray:
        """The payload as an (n, 8) float32 array (a view, no copy)."""
        return np.frombuffer(self.payload, dtype="<f4").reshape(-1, 8)

    @functools.cached_property
    def reach_m(self) -> float:
        """The farthest any camera sees (m; 0 without cameras)."""
        return float(self.records[:, 6].max()) if len(self) else 0.0

    def position(self, index: int) -> tuple[float, float, float]:
        """Where camera ``index`` is: x, y, z relative to the origin (m)."""
        x, y, z = self.records[index, :3]
        return float(x), float(y), float(z)

    def in_box(self, xmin: float, ymin: float, xmax: float, ymax: float) -> np.ndarray:
        """The indices (ascending, int64) of the cameras standing in a box relative to the origin (m), edges
        included: read from the cells the box touches, then checked exactly."""
        if len(self) == 0 or not (xmax >= xmin and ymax >= ymin):
            return np.zeros(0, dtype=np.int64)
        i0, i1 = (int(np.floor(v / CAMERA_CELL_M)) for v in (xmin, xmax))
        j0, j1 = (int(np.floor(v / CAMERA_CELL_M)) for v in (ymin, ymax))
        # A box wider than the cameras' own extent reads the occupied cells, not every empty one in it.
        wanted = (self.cells if (i1 - i0 + 1) * (j1 - j0 + 1) > len(self.cells)
                  else _cell_keys(*np.meshgrid(np.arange(i0, i1 + 1), np.arange(j0, j1 + 1))).ravel())
        at = np.searchsorted(self.cells, wanted)
        found = at < len(self.cells)
        found[found] = self.cells[at[found]] == wanted[found]
        chunks = [self.by_cell[self.cell_starts[k]:self.cell_starts[k + 1]] for k in at[found]]
        if not chunks:
            return np.zeros(0, dtype=np.int64)
        index = np.sort(np.concatenate(chunks)).astype(np.int64)
        x, y = self.records[index, 0], self.records[index, 1]
        return index[(x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax)]


def _cell_keys(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """One int64 per cell (column ``i``, row ``j``, each within ±2^31), ordered by ``i`` then ``j``."""
    return (np.asarray(i, dtype=np.int64) << 32) + (np.asarray(j, dtype=np.int64) + (1 << 31))


def camera_layer(con: duckdb.DuckDBPyConnection, origin: tuple[float, float, float]) -> CameraLayer:
    """The cameras of the store (see :class:`CameraLayer`)."""
    return cameras_as_layer(read_frame(con, "SELECT camera_id, ST_X(position) AS x, ST_Y(position) AS y, z, "
                                            "heading_deg, pitch_deg, fov_deg, range_m, status FROM cameras "
                                            "ORDER BY camera_id"), origin)


def cameras_as_layer(cameras: pd.DataFrame, origin: tuple[float, float, float]) -> CameraLayer:
    """The :class:`CameraLayer` of a frame of cameras (``camera_id``, ``x``, ``y`` in the district CRS, and the
    columns of :func:`camera_records`), best in ``camera_id`` order."""
    cameras = cameras.copy()
    payload = camera_records(cameras, origin)
    xy = np.frombuffer(payload, dtype="<f4").reshape(-1, 8)[:, :2]
    keys = _cell_keys(np.floor(xy[:, 0] / CAMERA_CELL_M), np.floor(xy[:, 1] / CAMERA_CELL_M))
    by_cell = np.argsort(keys, kind="stable").astype(np.int32)
    cells, starts = np.unique(keys[by_cell], return_index=True)
    return CameraLayer(camera_id=SortedIds(pa.array(cameras.pop("camera_id"), type=pa.string())), payload=payload,
                       by_cell=by_cell, cells=cells, cell_starts=np.append(starts, len(keys)).astype(np.int64))


def coverage_colours(layer: BuildingLayer, coverage: pd.DataFrame) -> tuple[bytes, dict]:
    """Per-building colours (:func:`indexed_colours`) painting each micro-grid in the class of its patrol coverage,
    and the legend.

    Parameters
    ----------
    coverage : DataFrame
        :func:`twin.field.patrol.patrol_coverage`: ``grid_id`` and ``share`` (0-1) per micro-grid.
    """
    bounds = np.array([c[0] for c in COVERAGE_CLASSES])
    values = layer.per_building(coverage["grid_id"].to_numpy(dtype=object),
                                coverage["share"].to_numpy(dtype=np.float64), missing=np.nan)
    idx = np.where(np.isnan(values), -1, np.searchsorted(bounds, np.nan_to_num(values), side="right") - 1)
    palette = _hex_rgb([c[1] for c in COVERAGE_CLASSES] + [OUTSIDE_GRIDS])
    legend = {"title": MEASURE_TITLES[COVERAGE_MEASURE],
              "items": [[colour, text] for _, colour, text in reversed(COVERAGE_CLASSES)]
              + [[OUTSIDE_GRIDS, N_("outside any grid")]]}
    return indexed_colours(palette, idx), legend


def worker_records(workers: pd.DataFrame, origin: tuple[float, float, float]) -> bytes:
    """Float32 records (x, y, z, open load) per grid worker on patrol, relative to the origin, on the ground.

    ``workers`` is :func:`twin.field.patrol.field_workers`: ``x``, ``y`` (district CRS) and ``open_load``.
    """
    if len(workers) == 0:
        return b""
    rec = np.column_stack([workers["x"] - origin[0], workers["y"] - origin[1], np.full(len(workers), 1.5),
                           workers["open_load"]])
    return rec.astype("<f4").tobytes()
