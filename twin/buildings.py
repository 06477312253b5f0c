"""Writing buildings and their LOD1 meshes to the store, idempotently."""

from __future__ import annotations

import logging

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from twin.grids.grids import current_micro_grids, locate
from twin.geo.mesh import MeshBatch
from twin.store.store import binary_column, insert_frame, one_thread

log = logging.getLogger(__name__)

BUILDING_COLUMNS = ("building_id", "source", "source_id", "name", "address", "use", "height", "base_z",
                    "floors", "height_source", "grid_id", "compound_id", "households", "residents")


def building_ids(source: str, source_ids: pd.Series) -> pd.Series:
    """Stable building ids: ``source:source_id``."""
    return source + ":" + source_ids.astype("string")


def upsert_buildings(con: duckdb.DuckDBPyConnection, buildings: gpd.GeoDataFrame, meshes: MeshBatch) -> dict:
    """Insert or replace buildings and their LOD1 meshes, keyed by ``building_id``.

    Parameters
    ----------
    buildings : GeoDataFrame, n rows
        Footprints in the district CRS with the columns of ``BUILDING_COLUMNS``
        that are known (``building_id``, ``source``, ``source_id``, ``height``,
        ``base_z``, ``height_source`` at least).
    meshes : MeshBatch
        The LOD1 mesh of each row, in the same order.

    Returns
    -------
    dict
        ``inserted`` and ``updated`` counts.
    """
    frame = pd.DataFrame({c: buildings[c] for c in BUILDING_COLUMNS if c in buildings.columns})
    footprints = np.asarray(buildings.geometry.values, dtype=object)
    label = shapely.get_coordinates(shapely.point_on_surface(footprints))
    frame["label_x"], frame["label_y"] = label[:, 0], label[:, 1]
    if "grid_id" not in frame.columns:
        frame["grid_id"] = locate(label, *current_micro_grids(con))
    frame["footprint"] = footprints

    existing = 0
    with one_thread(con):
        if con.execute("SELECT count(*) FROM buildings").fetchone()[0]:  # nothing to replace in a new store
            con.register("incoming_ids", pd.DataFrame({"building_id": frame["building_id"].astype(str)}))
            try:
                existing = con.execute(
                    "SELECT count(*) FROM buildings JOIN incoming_ids USING (building_id)").fetchone()[0]
                con.execute("DELETE FROM meshes WHERE lod = 'lod1' AND building_id IN "
                            "(SELECT building_id FROM incoming_ids)")
                con.execute("DELETE FROM buildings WHERE building_id IN (SELECT building_id FROM incoming_ids)")
            finally:
                con.unregister("incoming_ids")
        insert_frame(con, "buildings", frame, geometry=("footprint",))
        insert_meshes(con, frame["building_id"].astype(str).to_numpy(), meshes, lod="lod1")
    return {"inserted": len(frame) - existing, "updated": existing}


def insert_meshes(con: duckdb.DuckDBPyConnection, building_id: np.ndarray, meshes: MeshBatch, *, lod: str,
                  element_ids: list[np.ndarray] | None = None) -> None:
    """Append one mesh row per building: float32/uint32 little-endian blobs and a bbox.

    ``element_ids`` holds, per building, one uint32 per triangle (the element it belongs to).
    """
    v_off, t_off = meshes.vertex_offsets, meshes.triangle_offsets
    starts = v_off[:-1]
    vmin = np.minimum.reduceat(meshes.vertices, starts).astype(np.float64) + meshes.origin
    vmax = np.maximum.reduceat(meshes.vertices, starts).astype(np.float64) + meshes.origin
    ids = pa.array(np.asarray(building_id, dtype=object), type=pa.string())
    text = {"mesh_id": pc.binary_join_element_wise(ids, lod, "/"), "building_id": ids,
            "lod": pa.array(np.full(len(ids), lod, dtype=object), type=pa.string())}
    frame = pd.DataFrame({
        "n_vertices": np.diff(v_off).astype(np.int32),
        "n_triangles": np.diff(t_off).astype(np.int32),
        "bbox_xmin": vmin[:, 0], "bbox_ymin": vmin[:, 1], "bbox_zmin": vmin[:, 2],
        "bbox_xmax": vmax[:, 0], "bbox_ymax": vmax[:, 1], "bbox_zmax": vmax[:, 2],
    })
    blobs = {"vertices": binary_column(meshes.vertices, v_off), "triangles": binary_column(meshes.triangles, t_off)}
    if element_ids is not None:
        blobs["element_ids"] = binary_column(np.concatenate(element_ids).astype(np.uint32), t_off)
    insert_frame(con, "meshes", frame, arrow_columns={**text, **blobs})


def load_meshes(con: duckdb.DuckDBPyConnection, *, lod: str = "lod1",
                building_ids: list[str] | None = None) -> tuple[np.ndarray, MeshBatch]:
    """Every building's mesh of one level of detail (or only those of ``building_ids``), in one flat batch.

    Returns
    -------
    building_id : ndarray of str, shape (n,)
    meshes : MeshBatch
        Vertices relative to the district origin (from ``meta``).
    """
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    origin = (float(meta.get("origin_x", 0)), float(meta.get("origin_y", 0)), float(meta.get("origin_z", 0)))
    among = "" if building_ids is None else "AND building_id IN (SELECT unnest(?))"
    table = con.execute("SELECT building_id, vertices, triangles, n_vertices, n_triangles FROM meshes "
                        f"WHERE lod = ? {among} ORDER BY building_id",
                        [lod] + ([list(building_ids)] if building_ids is not None else [])).arrow().read_all()
    vertices = np.frombuffer(_joined_bytes(table.column("vertices")), dtype="<f4").reshape(-1, 3)
    triangles = np.frombuffer(_joined_bytes(table.column("triangles")), dtype="<u4").reshape(-1, 3)
    v_counts = table.column("n_vertices").to_numpy().astype(np.int64)
    t_counts = table.column("n_triangles").to_numpy().astype(np.int64)
    batch = MeshBatch(vertices=vertices, triangles=triangles,
                      vertex_offsets=np.concatenate([[0], np.cumsum(v_counts)]),
                      triangle_offsets=np.concatenate([[0], np.cumsum(t_counts)]), origin=origin)
    return np.asarray(table.column("building_id").to_pylist(), dtype=object), batch


def _joined_bytes(column: pa.ChunkedArray) -> bytes:
    """The values of a binary column end to end, without a Python object per value."""
    parts = []
    for chunk in column.chunks:
        chunk = chunk.cast(pa.large_binary())
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[chunk.offset:chunk.offset + len(chunk) + 1]
        if len(offsets):
            parts.append(memoryview(chunk.buffers()[2])[offsets[0]:offsets[-1]])
    return b"".join(parts)
