"""What an export was made from, so that a later one can tell what changed without building a single tile.

Beside the tileset, ``tiles.sources.parquet`` holds one row per building of the store (in ``building_id`` order):

- ``row``: a digest of everything a tile's property table takes from the store for it (its ``buildings`` row,
  and its grid at every level, which a grid save changes);
- ``coarse``: a digest of what the coarse tiles above the leaves take from its row (:mod:`twin.tiles.lod`: its
  ``height`` and label point), so a change there rebuilds them (a whole export);
- ``meshes``: a digest of its meshes (null without one);
- ``exported``, and for the exported buildings the inputs of :func:`twin.tiles.quadtree.build_quadtree`
  (``centre_e``, ``centre_n``, ``full_vertices``), so the same quadtree is cut again from this file alone.

The digests are the store's own ``hash`` of the rows, so a million buildings are digested in a couple of
seconds, without reading their meshes into Python. The manifest says with which exporter (a digest of this
package's code), options and district the tiles were made (:func:`export_source`): any change there makes
a whole new export.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twin.geo.crs import District
from twin.store.queries import grid_tree
from twin.store.schema import GRID_LEVELS

log = logging.getLogger(__name__)

SOURCES = "tiles.sources.parquet"
QUADTREE_INPUTS = ("centre_e", "centre_n", "full_vertices")


def exporter_digest() -> str:
    """A digest of the code that writes tiles (this package's modules): tiles from other code are not reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def export_source(district: District, *, cell_m: float, max_vertices: int, normals: bool) -> dict:
    """What, besides the store's rows, the tiles depend on (kept in the manifest under ``source``)."""
    return {"exporter": exporter_digest(), "crs": district.crs, "origin": [float(v) for v in district.origin],
            "cell_m": float(cell_m), "max_vertices": int(max_vertices), "normals": bool(normals)}


def building_digests(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``building_id``, ``row``, ``coarse`` and ``meshes`` digests (uint64) of every building, by ``building_id``.

    Read this before the rows it digests: a change made in between then shows as a change next time.
    """
    con.register("tile_grid_tree", grid_tree(con)[["grid_id", *GRID_LEVELS]])
    try:
        return con.execute(f"""
            SELECT b.building_id, hash(b, {", ".join(f"t.{level}" for level in GRID_LEVELS)}) AS row,
                   hash(b.height, b.label_x, b.label_y) AS coarse, m.meshes
            FROM buildings b LEFT JOIN tile_grid_tree t ON t.grid_id = b.grid_id
            LEFT JOIN (SELECT building_id, bit_xor(hash(m)) AS meshes FROM meshes m GROUP BY building_id) m
                 USING (building_id)
            ORDER BY b.building_id""").arrow().read_all()
    finally:
        con.unregister("tile_grid_tree")


def sources_table(digests: pa.Table, exported_ids: pa.Array | pa.ChunkedArray, centres: np.ndarray,
                  full_vertices: np.ndarray) -> pa.Table:
    """The rows of ``tiles.sources.parquet``: ``digests`` with the quadtree inputs of the exported buildings.

    Parameters
    ----------
    digests : pyarrow.Table
        :func:`building_digests`.
    exported_ids : pyarrow string array, shape (m,)
        The exported buildings, in the order of the other arrays.
    centres : ndarray, shape (m, 2), float64
    full_vertices : ndarray, shape (m,), int
    """
    digests = digests.set_column(0, "building_id", digests.column("building_id").cast(pa.string()))  # as parquet
    exported = pa.table({"building_id": exported_ids.cast(pa.string()),
                         "centre_e": centres[:, 0], "centre_n": centres[:, 1],
                         "full_vertices": np.asarray(full_vertices, dtype=np.int64),
                         "exported": np.ones(len(centres), dtype=bool)})
    joined = digests.join(exported, "building_id", join_type="left outer")
    joined = joined.set_column(joined.schema.get_field_index("exported"), "exported",
                               joined.column("exported").fill_null(False))
    return joined.sort_by("building_id")


def write_sources(out_dir: Path, table: pa.Table) -> None:
    """Write ``tiles.sources.parquet`` through a temporary file."""
    partial = out_dir / (SOURCES + ".partial")
    pq.write_table(table, partial)
    os.replace(partial, out_dir / SOURCES)


def read_sources(out_dir: Path) -> pa.Table | None:
    """``tiles.sources.parquet`` of an export, or None without a readable one."""
    path = out_dir / SOURCES
    if not path.exists():
        return None
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        log.warning("%s is unreadable (%s); the tiles are exported anew", path, exc)
        return None
