"""Bringing an exported tileset up to date with the store, at the cost of what changed.

:func:`twin.tiles.export.export_tiles` builds every tile to find those that changed: 55 s and 2.6 GB at a
million buildings. :func:`update_tiles` first compares the store with what the export was made from
(:mod:`twin.tiles.sources`, a couple of seconds):

- nothing changed: nothing is built or written (``twin serve`` starts on the tiles it exported before);
- only buildings' properties changed (a grid save or import moves buildings between grids): the quadtree is
  cut again from the sources file, and only the leaves that hold those buildings are built, from only the
  buildings they hold, and rewritten when their bytes differ; the coarse tiles above (:mod:`twin.tiles.lod`)
  show no property a grid save changes, and the bounding volumes, and so ``tileset.json``, stay as they are;
- anything else (buildings or meshes added, removed or changed, a building's height or label point changed,
  which the coarse tiles draw, another exporter, other options or district, an export without a sources file or
  with a tile missing): a whole export.

Either way the folder ends as a whole export would leave it, byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from twin.geo.crs import District
from twin.tiles.export import MANIFEST, MANIFEST_FORMAT, TILESET, _load, _tile_bytes, _write_file, export_tiles, \
    write_manifest
from twin.tiles.quadtree import CELL_M, MAX_VERTICES, build_quadtree
from twin.tiles.sources import QUADTREE_INPUTS, building_digests, export_source, read_sources, sources_table, \
    write_sources

log = logging.getLogger(__name__)


def _whole_export_needed(out_dir: Path, source: dict) -> tuple[str | None, dict, pa.Table | None]:
    """Why the folder needs a whole export (None when it may be updated), its tiles and its sources."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return "no readable manifest", {}, None
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("source") != source:
        return "made by other code, options or district", {}, None
    tiles = manifest.get("tiles", {})
    if not (out_dir / TILESET).is_file():
        return f"no {TILESET}", tiles, None
    for uri, entry in tiles.items():
        path = out_dir / uri
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return f"{uri} is missing or changed", tiles, None
    sources = read_sources(out_dir)
    if sources is None:
        return "no sources file", tiles, None
    return None, tiles, sources


def update_tiles(con: duckdb.DuckDBPyConnection, district: District, out_dir: str | os.PathLike, *,
                 cell_m: float = CELL_M, max_vertices: int = MAX_VERTICES, normals: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Bring the tileset in ``out_dir`` up to date with the store, building only what changed (module docstring).

    Parameters are those of :func:`twin.tiles.export.export_tiles`.

    Returns
    -------
    dict
        As :func:`twin.tiles.export.export_tiles` returns, and ``how``: "unchanged", "properties" (only the
        tiles holding buildings whose properties changed were built) or "export" (a whole export), with
        ``why`` for a whole export.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    source = export_source(district, cell_m=cell_m, max_vertices=max_vertices, normals=normals)
    why, tiles, sources = _whole_export_needed(out_dir, source)
    digests = building_digests(con) if why is None else None  # before the rows themselves, as export_tiles does
    if why is None:
        if not digests.column("building_id").cast(pa.string()).equals(sources.column("building_id").cast(pa.string())):
            why = "buildings were added or removed"
        elif not _same(digests.column("meshes"), sources.column("meshes")):
            why = "meshes changed"
        elif "coarse" not in sources.column_names or not _same(digests.column("coarse"), sources.column("coarse")):
            why = "heights or label points changed"
    if why is not None:
        log.info("%s: a whole export (%s)", out_dir, why)
        return {**export_tiles(con, district, out_dir, cell_m=cell_m, max_vertices=max_vertices, normals=normals,
                             progress=progress),
                "how": "export", "why": why, "seconds": round(time.perf_counter() - started, 3)}
    exported = sources.filter(sources.column("exported"))
    changed_rows = ~_equal(digests.column("row"), sources.column("row"))
    changed = np.flatnonzero(changed_rows[sources.column("exported").to_numpy(zero_copy_only=False)])
    tileset = json.loads((out_dir / TILESET).read_text())
    summary = {"out_dir": str(out_dir), "tiles": len(tiles), "features": len(exported), "removed": [],
               "skipped": len(sources) - len(exported), "depth": _depth(tileset["root"]),
               "geometric_error": tileset["geometricError"]}
    written = []
    if len(changed):
        inputs = {name: exported.column(name).to_numpy() for name in QUADTREE_INPUTS}
        centres = np.column_stack([inputs["centre_e"], inputs["centre_n"]])
        root = build_quadtree(centres, full_vertices=inputs["full_vertices"], cell_m=cell_m,
                              max_vertices=max_vertices)
        # the leaves: a coarse tile shows ids, heights and counts only, none of which a property change changes
        affected = [t for t in root.walk() if t.content == "full" and np.isin(t.buildings, changed).any()]
        members = np.unique(np.concatenate([t.buildings for t in affected]))
        ids = exported.column("building_id").take(pa.array(members)).to_pylist()
        properties, meshes, _ = _load(con, district, only=ids)
        if properties.column("building_id").to_pylist() != ids:
            log.info("%s: buildings lost their meshes meanwhile; a whole export", out_dir)
            return {**export_tiles(con, district, out_dir, cell_m=cell_m, max_vertices=max_vertices,
                                   normals=normals, progress=progress), "how": "export", "why": "meshes changed",
                    "seconds": round(time.perf_counter() - started, 3)}
        for done, tile in enumerate(affected, start=1):
            local = dataclasses.replace(tile, buildings=np.searchsorted(members, tile.buildings), children=[])
            data, _, _, _ = _tile_bytes(local, meshes, properties, cell_m=cell_m, normals=normals)
            entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            if tiles.get(tile.uri) != entry:
                _write_file(out_dir / tile.uri, data)
                tiles[tile.uri] = entry
                written.append(tile.uri)
            if progress:
                progress(done, len(affected))
        write_sources(out_dir, sources_table(digests, exported.column("building_id"), centres,
                                             inputs["full_vertices"]))
        write_manifest(out_dir, tiles, source)
        log.info("%s: %d changed buildings, %d of %d tiles rewritten", out_dir, len(changed), len(written),
                 len(tiles))
    size = sum(t["bytes"] for t in tiles.values()) + (out_dir / TILESET).stat().st_size
    return {**summary, "bytes": size, "written": written, "unchanged": len(tiles) - len(written),
            "how": "properties" if len(changed) else "unchanged", "seconds": round(time.perf_counter() - started, 3)}


def _depth(node: dict) -> int:
    """Levels under a tileset node."""
    return max((1 + _depth(child) for child in node.get("children", [])), default=0)


def _equal(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Element-wise equality of two columns of the same length, nulls equal to nulls (as bools)."""
    same = pc.fill_null(pc.equal(a, b), False)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return pc.or_(same, both_null).to_numpy(zero_copy_only=False).astype(bool)


def _same(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    return bool(_equal(a, b).all())
