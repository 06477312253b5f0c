"""Writing the store as a 3D Tiles 1.1 tileset folder, rewriting only the tiles that changed.

The folder holds ``tileset.json``, one ``tiles/LEVEL/X/Y.glb`` per tile (see :mod:`twin.tiles.quadtree`
for the tree, :mod:`twin.tiles.lod` for what the tiles above the leaves draw, :mod:`twin.tiles.glb` for the
encoding) and ``tiles.manifest.json``, the sha256 of every tile as last written. Leaves hold every property
of their buildings; the coarse tiles above them only ``building_id``, ``height`` and ``buildings`` (how many
buildings a feature stands for: a block's row is its main building's id, the block's height and its count).
A later export builds every tile in memory and writes only those whose bytes differ, removes tiles
that are gone, and says which: after an ingest, the leaf holding a changed building and the coarse tiles above
it whose blocks it changes; after a grid save, only the leaves holding buildings whose grids changed. This module is the edge: it reads
the store and writes files; the rest of :mod:`twin.tiles` is pure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from twin.buildings import load_meshes
from twin.errors import InputError, OptionError
from twin.geo.crs import District
from twin.store.queries import grid_tree
from twin.store.schema import GRID_LEVELS
from twin.tiles.frame import enu_frame, relative_to_enu
from twin.tiles.glb import encode_positions, enu_to_gltf, flat_shaded, gltf_to_enu, tile_glb
from twin.tiles.lod import CONTENT_ERROR_SHARE, box_meshes, coarse_content
from twin.tiles.quadtree import CELL_M, ERROR_PER_METRE, MAX_LEAF_CELLS, MAX_VERTICES, Tile, build_quadtree
from twin.tiles.sources import building_digests, export_source, sources_table, write_sources

log = logging.getLogger(__name__)

TILESET = "tileset.json"
MANIFEST = "tiles.manifest.json"
MANIFEST_FORMAT = 1
FULL_DETAIL_LODS = ("bim", "mesh")  # the first a building has is its full detail; LOD1 blocks otherwise
BOX_PAD_M = 0.001  # bounding boxes grow by this, so float32 rounding of a vertex never leaves its box
LEAF_POSITION_ERROR_M = 0.005  # a leaf's vertices may move this far when stored in 16 bits (1:500 maps: 1 cm)
CLASS_NAME = "building"
GRID_PROPERTIES = {level: f"{level}_id" for level in GRID_LEVELS}  # street_id, community_id, grid_id, micro_id
SCHEMA = {
    "id": "district_twin",
    "name": "District twin buildings",
    "classes": {CLASS_NAME: {"name": "Building", "properties": {
        "building_id": {"type": "STRING", "required": True, "description": "The store's stable building id"},
        "name": {"type": "STRING", "noData": ""},
        "use": {"type": "STRING", "noData": "", "description": "residential, office, ... as the store has it"},
        "height": {"type": "SCALAR", "componentType": "FLOAT64", "required": True,
                   "description": "Metres from the building's base to its top"},
        "floors": {"type": "SCALAR", "componentType": "INT32", "noData": -1},
        **{prop: {"type": "STRING", "noData": "", "description": f"The {level}-level grid holding the building"}
           for level, prop in GRID_PROPERTIES.items()},
        "buildings": {"type": "SCALAR", "componentType": "UINT32", "default": 1,
                      "description": "How many buildings the feature stands for: 1, or a block's count in the "
                                     "coarse tiles (its building_id is then its main building's)"},
    }}},
}
COARSE_PROPERTIES = ("building_id", "height", "buildings")


@dataclass(frozen=True)
class _Meshes:
    """Every mesh the tileset draws, in one pool, and which of them each building shows at each level.

    ``enu`` (V, 3) float64 vertices in the tileset's frame; ``triangles`` (T, 3) local to each mesh; mesh
    ``k`` owns ``vertex_offsets[k]:vertex_offsets[k + 1]`` and likewise for triangles. ``full`` and ``lod1``
    (n,) are each building's mesh; ``low``/``high`` (meshes, 3) their bounding boxes. Per building for
    :mod:`twin.tiles.lod`: ``area`` (n,) its footprint (the LOD1 block's upward faces, square metres) and
    ``spine_bottom``/``spine_top`` (n, 3) the vertical segment at its label point from its lowest to its highest
    vertex at full detail.
    """

    enu: np.ndarray
    triangles: np.ndarray
    vertex_offsets: np.ndarray
    triangle_offsets: np.ndarray
    full: np.ndarray
    lod1: np.ndarray
    low: np.ndarray
    high: np.ndarray
    area: np.ndarray
    spine_bottom: np.ndarray
    spine_top: np.ndarray

    def vertex_counts(self, mesh: np.ndarray) -> np.ndarray:
        return self.vertex_offsets[mesh + 1] - self.vertex_offsets[mesh]

    def gather(self, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vertices (V, 3), triangles (T, 3) indexing them, and each vertex's feature (0.. of ``mesh``)."""
        v_rows, v_counts = _rows(self.vertex_offsets, mesh)
        t_rows, t_counts = _rows(self.triangle_offsets, mesh)
        base = np.repeat(np.cumsum(v_counts) - v_counts, t_counts)
        triangles = self.triangles[t_rows].astype(np.int64) + base[:, None]
        return self.enu[v_rows], triangles, np.repeat(np.arange(len(mesh)), v_counts)


def _rows(offsets: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row indices of slices ``offsets[w]:offsets[w + 1]`` for each ``w``, concatenated, and their counts."""
    starts = offsets[which]
    counts = offsets[which + 1] - starts
    first = np.cumsum(counts) - counts
    return np.repeat(starts - first, counts) + np.arange(int(counts.sum())), counts


def _load(con: duckdb.DuckDBPyConnection, district: District, *,
          only: list[str] | None = None) -> tuple[pa.Table, _Meshes, int]:
    """The buildings that have a mesh, their properties (one row each), and their meshes in the tileset's frame;
    those of the buildings ``only`` when given (in the same order as among all)."""
    among = "" if only is None else "WHERE building_id IN (SELECT unnest(?))"
    frame = con.execute("SELECT building_id, name, use, height, floors, grid_id, label_x, label_y FROM buildings "
                        f"{among} ORDER BY building_id", [] if only is None else [list(only)]).df()
    label = frame.pop("label_x").to_numpy(np.float64), frame.pop("label_y").to_numpy(np.float64)
    tree = grid_tree(con).set_index("grid_id")
    holding = frame.pop("grid_id")  # the micro-grid; its id is also a property name, for the grid level
    for level, prop in GRID_PROPERTIES.items():
        frame[prop] = holding.map(tree[level]).astype(object)
    ids = pd.Index(frame["building_id"])
    vertices, triangles, v_counts, t_counts = [], [], [], []
    mesh_of = {}
    n_meshes = 0
    for lod in ("lod1", *FULL_DETAIL_LODS):
        mesh_ids, batch = load_meshes(con, lod=lod, building_ids=only)
        position = ids.get_indexer(mesh_ids)
        keep = position >= 0
        mesh_of[lod] = np.full(len(ids), -1)
        mesh_of[lod][position[keep]] = n_meshes + np.flatnonzero(keep)
        n_meshes += len(mesh_ids)
        vertices.append(batch.vertices)
        triangles.append(batch.triangles)
        v_counts.append(np.diff(batch.vertex_offsets))
        t_counts.append(np.diff(batch.triangle_offsets))
    full = mesh_of["lod1"].copy()
    for lod in reversed(FULL_DETAIL_LODS):
        full = np.where(mesh_of[lod] >= 0, mesh_of[lod], full)
    lod1 = np.where(mesh_of["lod1"] >= 0, mesh_of["lod1"], full)
    has_mesh = full >= 0
    v_counts, t_counts = np.concatenate(v_counts), np.concatenate(t_counts)
    empty = np.flatnonzero(v_counts == 0)
    has_mesh &= ~np.isin(full, empty) & ~np.isin(lod1, empty)
    vertex_offsets = np.concatenate([[0], np.cumsum(v_counts)])
    triangle_offsets = np.concatenate([[0], np.cumsum(t_counts)])
    relative = np.concatenate(vertices)
    triangles = np.concatenate(triangles)
    frame_enu = enu_frame(district)
    enu = relative_to_enu(relative, district, frame_enu)
    starts = vertex_offsets[:-1][v_counts > 0]
    low = np.zeros((n_meshes, 3))
    high = np.zeros((n_meshes, 3))
    z_low = np.zeros(n_meshes)
    z_high = np.zeros(n_meshes)
    if len(enu):
        low[v_counts > 0] = np.minimum.reduceat(enu, starts)
        high[v_counts > 0] = np.maximum.reduceat(enu, starts)
        z_low[v_counts > 0] = np.minimum.reduceat(relative[:, 2], starts)
        z_high[v_counts > 0] = np.maximum.reduceat(relative[:, 2], starts)
    full, lod1 = full[has_mesh], lod1[has_mesh]
    upward = _upward_area(relative, triangles, vertex_offsets, triangle_offsets, lod1)
    label_relative = np.column_stack([label[0] - district.origin[0], label[1] - district.origin[1]])[has_mesh]
    spine = relative_to_enu(np.vstack([np.column_stack([label_relative, z_low[full]]),
                                       np.column_stack([label_relative, z_high[full]])]), district, frame_enu)
    kept = frame[has_mesh].reset_index(drop=True)
    kept["floors"] = kept["floors"].astype("Int32")
    meshes = _Meshes(enu=enu, triangles=triangles, vertex_offsets=vertex_offsets, triangle_offsets=triangle_offsets,
                     full=full, lod1=lod1, low=low, high=high, area=upward,
                     spine_bottom=spine[:len(full)], spine_top=spine[len(full):])
    skipped = int((~has_mesh).sum())
    if skipped:
        log.warning("%d buildings have no mesh and are left out of the tileset", skipped)
    return pa.Table.from_pandas(kept, preserve_index=False), meshes, skipped


def _upward_area(vertices: np.ndarray, triangles: np.ndarray, vertex_offsets: np.ndarray,
                 triangle_offsets: np.ndarray, meshes: np.ndarray, *, chunk: int = 1 << 20) -> np.ndarray:
    """Each of ``meshes``' upward faces' area seen from above, square metres (an LOD1 block's: its footprint).

    Vertices (V, 3) and triangles (T, 3) as in :class:`_Meshes`; read a million triangles at a time.
    """
    rows, counts = _rows(triangle_offsets, meshes)
    owner = np.repeat(np.arange(len(meshes)), counts)
    area = np.zeros(len(meshes))
    for s in range(0, len(rows), chunk):
        corner = (triangles[rows[s:s + chunk]].astype(np.int64)
                  + vertex_offsets[meshes[owner[s:s + chunk]]][:, None])
        x, y = vertices[corner, 0].astype(np.float64), vertices[corner, 1].astype(np.float64)
        up = 0.5 * ((x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0]))
        area += np.bincount(owner[s:s + chunk], weights=np.maximum(up, 0.0), minlength=len(meshes))
    return area


def _box(low: np.ndarray, high: np.ndarray) -> list[float]:
    """A 3D Tiles box (centre and three half-axes) around an axis-aligned box, grown by ``BOX_PAD_M``."""
    centre = (low + high) / 2
    half = (high - low) / 2 + BOX_PAD_M
    return [*centre.tolist(), half[0], 0.0, 0.0, 0.0, half[1], 0.0, 0.0, 0.0, half[2]]


def _coarse_rows(tile: Tile, meshes: _Meshes, properties: pa.Table, cell_m: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, float]:
    """A coarse tile's vertices (ENU), triangles, vertex features, property columns and worst block error."""
    low, high = meshes.low[meshes.full], meshes.high[meshes.full]
    content = coarse_content(tile.buildings, level=tile.level, cell_m=cell_m,
                             target_m=tile.geometric_error * CONTENT_ERROR_SHARE,
                             centres=(low[:, :2] + high[:, :2]) / 2, low=low, high=high, area=meshes.area,
                             spine_bottom=meshes.spine_bottom, spine_top=meshes.spine_top)
    kept, kept_triangles, kept_feature = meshes.gather(meshes.lod1[content.singles])
    a, b, c = (kept[kept_triangles[:, k]] for k in range(3))
    up = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    kept_triangles = kept_triangles[up >= 0]  # floors face down: unseen from the heights a coarse tile is seen from
    box_vertices, box_triangles = box_meshes(content.low, content.high)
    vertices = np.vstack([kept, box_vertices])
    triangles = np.vstack([kept_triangles, box_triangles + len(kept)])
    feature = np.concatenate([kept_feature, len(content.singles) + np.repeat(np.arange(content.blocks), 8)])
    rows = np.concatenate([content.singles, content.main])
    columns = {"building_id": properties.column("building_id").take(pa.array(rows)).combine_chunks(),
               "height": np.concatenate([properties.column("height").to_numpy()[content.singles],
                                         content.high[:, 2] - content.low[:, 2]]),
               "buildings": np.concatenate([np.ones(len(content.singles), np.uint32),
                                            np.diff(content.block_offsets).astype(np.uint32)])}
    return vertices, triangles, feature, columns, float(content.error.max(initial=0.0))


def _tile_bytes(tile: Tile, meshes: _Meshes, properties: pa.Table, *, cell_m: float, normals: bool
                ) -> tuple[bytes, np.ndarray, np.ndarray, float]:
    """One tile's GLB, the low and high corners of what it draws, and its content's error bound (metres)."""
    if tile.content == "full":
        vertices, triangles, feature = meshes.gather(meshes.full[tile.buildings])
        rows = properties.take(pa.array(tile.buildings))
        columns = {name: rows.column(name).combine_chunks() for name in SCHEMA["classes"][CLASS_NAME]["properties"]
                   if name != "buildings"}
        columns["floors"] = pc.fill_null(columns["floors"], -1).to_numpy(zero_copy_only=False)
        columns["height"] = columns["height"].to_numpy(zero_copy_only=False)
        max_error, error = LEAF_POSITION_ERROR_M, 0.0
    else:
        vertices, triangles, feature, columns, error = _coarse_rows(tile, meshes, properties, cell_m)
        max_error = tile.geometric_error * (1 - CONTENT_ERROR_SHARE)
    normal = None
    if normals:
        vertices, normal, feature, triangles = flat_shaded(vertices, triangles, feature)
        normal = enu_to_gltf(normal)
    positions = encode_positions(enu_to_gltf(vertices), max_error_m=max_error)
    drawn = gltf_to_enu(positions.decoded())
    data = tile_glb(positions=positions, normals=normal, features=feature, triangles=triangles, schema=SCHEMA,
                    class_name=CLASS_NAME, columns=columns)
    return data, drawn.min(axis=0), drawn.max(axis=0), error


def _tile_json(tile: Tile, boxes: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict:
    low, high = boxes[id(tile)]
    node = {"boundingVolume": {"box": _box(low, high)}, "geometricError": tile.geometric_error}
    if tile.content:
        node["content"] = {"uri": tile.uri}
    if tile.children:
        node["children"] = [_tile_json(child, boxes) for child in tile.children]
    return node


def _read_manifest(out_dir: Path) -> dict[str, dict]:
    """The tiles last written to ``out_dir`` ({} for a new folder); refuse a folder of other files."""
    manifest = out_dir / MANIFEST
    if manifest.exists():
        try:
            document = json.loads(manifest.read_text())
            if document.get("format") == MANIFEST_FORMAT:
                return document["tiles"]
        except (ValueError, KeyError) as exc:
            log.warning("%s is unreadable (%s); every tile is written anew", manifest, exc)
        return {}
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir}: the folder holds files but no {MANIFEST}, so it is not a tileset this "
                         "program wrote, and exporting would mix with or overwrite them. Give a new or empty folder.")
    return {}


def write_manifest(out_dir: Path, tiles: dict[str, dict], source: dict) -> None:
    """Write the manifest: each tile's digest and size, and what the export was made with (``source``)."""
    _write_file(out_dir / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "source": source, "tiles": tiles},
                                               indent=1).encode())


def _write_file(path: Path, data: bytes) -> None:
    """Write through a temporary file, so a reader never sees half a tile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def export_tiles(con: duckdb.DuckDBPyConnection, district: District, out_dir: str | os.PathLike, *,
                 cell_m: float = CELL_M, max_vertices: int = MAX_VERTICES, normals: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the store's buildings as a 3D Tiles 1.1 tileset, rewriting only tiles that changed.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        The store (only read).
    district : District
        Its CRS and origin; the tileset's root frame is east-north-up at the origin.
    out_dir : path-like
        The tileset folder: new, empty, or written by an earlier export.
    cell_m : float
        The leaves' smallest width, metres.
    max_vertices : int
        The most vertices a tile above one cell may hold (see :mod:`twin.tiles.quadtree`).
    normals : bool
        Write normals (faces then do not share vertices): CesiumJS draws a mesh without them unlit. Without,
        the tiles are about half as big, for viewers that shade flat themselves (the app's 3D view).
    progress : callable, optional
        Called as ``progress(done, total)`` after each tile is built.

    Returns
    -------
    dict
        ``tiles`` (with content: every tile), ``features`` (buildings), ``bytes`` (the folder's tiles and
        tileset.json), ``leaf_bytes`` and ``coarse_bytes`` (the tiles' GLBs of each kind), ``written`` and
        ``removed`` (tile uris), ``unchanged`` (count), ``skipped`` (buildings without a mesh), ``depth``,
        ``geometric_error`` (the root's, metres), ``worst_error_share`` (the largest content error bound of a
        coarse tile over its geometric error) and ``seconds``.
    """
    started = time.perf_counter()
    if not (cell_m > 0 and max_vertices > 0):
        raise OptionError(f"cell size {cell_m!r} m, max vertices {max_vertices!r} (--cell-size, --max-vertices): "
                          "both must be positive "
                          f"(tyler's rule: {CELL_M:g} m cells, {MAX_VERTICES} vertices).")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file; give a folder for the tileset (new, empty, or an earlier export).")
    before = _read_manifest(out_dir)
    digests = building_digests(con)  # before the rows themselves: a change in between shows next time
    properties, meshes, skipped = _load(con, district)
    frame = enu_frame(district)
    low, high = meshes.low[meshes.full], meshes.high[meshes.full]
    centres, full_vertices = (low[:, :2] + high[:, :2]) / 2, meshes.vertex_counts(meshes.full)
    root = build_quadtree(centres, full_vertices=full_vertices, cell_m=cell_m, max_vertices=max_vertices)
    if root is None:
        raise InputError("The store has no buildings with a mesh to export. Ingest footprints or run `twin demo`.")
    tiles = list(root.walk())
    with_content = [t for t in tiles if t.content]
    boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    after: dict[str, dict] = {}
    written = []
    kind_bytes = {"full": 0, "coarse": 0}
    worst_share = 0.0
    for done, tile in enumerate(with_content, start=1):
        data, tile_low, tile_high, error = _tile_bytes(tile, meshes, properties, cell_m=cell_m, normals=normals)
        boxes[id(tile)] = (tile_low, tile_high)
        kind_bytes[tile.content] += len(data)
        if tile.children:
            worst_share = max(worst_share, error / tile.geometric_error)
        digest = hashlib.sha256(data).hexdigest()
        after[tile.uri] = {"sha256": digest, "bytes": len(data)}
        path = out_dir / tile.uri
        if before.get(tile.uri) != after[tile.uri] or not path.exists() or path.stat().st_size != len(data):
            _write_file(path, data)
            written.append(tile.uri)
        if progress:
            progress(done, len(with_content))
    for tile in reversed(tiles):  # children first: a parent's box holds its content and its children's boxes
        parts = ([boxes[id(tile)]] if tile.content else []) + [boxes[id(c)] for c in tile.children]
        boxes[id(tile)] = (np.min([p[0] for p in parts], axis=0), np.max([p[1] for p in parts], axis=0))
    removed = sorted(set(before) - set(after))
    for uri in removed:
        (out_dir / uri).unlink(missing_ok=True)
    tileset = {
        "asset": {"version": "1.1", "generator": "district-twin"},
        "extras": {"crs": district.crs, "origin": list(district.origin), "buildings": len(properties),
                   "tiling": {"cell_m": cell_m, "max_vertices": max_vertices, "max_leaf_cells": MAX_LEAF_CELLS,
                              "error_per_metre": ERROR_PER_METRE,
                              "content_error_share": CONTENT_ERROR_SHARE, "normals": normals}},
        # The error of drawing nothing: the whole district missing, its box's diagonal. CesiumJS draws nothing
        # once this is under its 16 pixels, so the root's own error (width x 0.024) would hide a city seen whole.
        "geometricError": max(float(np.linalg.norm(np.subtract(*boxes[id(root)]))), root.geometric_error),
        "root": {"transform": frame.matrix.T.ravel().tolist(), "refine": "REPLACE", **_tile_json(root, boxes)},
    }
    _write_file(out_dir / TILESET, json.dumps(tileset, indent=1).encode())
    write_sources(out_dir, sources_table(digests, properties.column("building_id"), centres, full_vertices))
    write_manifest(out_dir, after, export_source(district, cell_m=cell_m, max_vertices=max_vertices, normals=normals))
    size = sum(t["bytes"] for t in after.values()) + (out_dir / TILESET).stat().st_size
    log.info("%d of %d tiles written to %s, %d removed", len(written), len(after), out_dir, len(removed))
    return {"out_dir": str(out_dir), "tiles": len(with_content), "features": len(properties), "bytes": size,
            "leaf_bytes": kind_bytes["full"], "coarse_bytes": kind_bytes["coarse"], "written": written,
            "unchanged": len(after) - len(written), "removed": removed, "skipped": skipped,
            "depth": max(t.level for t in tiles) - root.level, "geometric_error": tileset["geometricError"],
            "worst_error_share": round(worst_share, 4),
            "seconds": round(time.perf_counter() - started, 3)}
