"""The app's 3D tiles: the store's tileset served beside the app, to signed-in users only.

``/tiles/tileset.json`` is the exported tileset (:mod:`twin.tiles.export`), each tile given under
``extras.district_map`` the quadratic map from the tileset's ENU frame to the district CRS relative to its origin,
the frame the 3D view draws in (:func:`twin.tiles.frame.enu_to_district_maps`, under a millimetre over 4 km). ``/tiles/ids/<uri>`` is a
tile's building index per feature (uint32, the order of :class:`scenes.layers.BuildingLayer`), so the view colours
and picks a feature through the session's small per-building arrays. ``/tiles/<uri>`` are the GLB files.
Every route answers 403 without a signed-in, enabled user, as the app does.

GLB files and ids go out gzipped to a browser that accepts it (every browser does): tiles are mostly integers
and repeated ids, and shrink to about half (the app's Tornado compresses only text types, and nginx in front of
several processes passes the encoding on). The latest compressed tiles are remembered, up to
``GZIP_CACHE_BYTES``.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tornado.web import HTTPError, RequestHandler

from twin.geo.crs import District
from twin.tiles.export import TILESET
from twin.tiles.frame import enu_frame, enu_to_district_maps
from twin.tiles.glb import property_column, read_glb

log = logging.getLogger(__name__)

TILED_ABOVE = 200_000  # buildings: above, the view streams tiles; at 115,000 one buffer still drew sooner (README)
VIEW_MODES = ("auto", "tiles", "buffer")
GZIP_LEVEL = 6
GZIP_CACHE_BYTES = 32 * 2 ** 20


def tiled_view(mode: str, buildings: int) -> bool:
    """Whether the 3D view streams tiles: ``mode`` "tiles" or "buffer" says so, "auto" by the district's size."""
    return mode == "tiles" or (mode == "auto" and buildings > TILED_ABOVE)


def annotated_tileset(tileset: dict, district: District) -> dict:
    """A copy of ``tileset`` whose every tile carries ``extras.district_map``: its box's ENU ``centre`` and the
    27 ``coefficients`` (row-major 3 x 9) of :func:`twin.tiles.frame.enu_to_district_maps`."""
    tileset = json.loads(json.dumps(tileset))
    nodes, stack = [], [tileset["root"]]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("children", []))
    boxes = np.array([node["boundingVolume"]["box"] for node in nodes], dtype=np.float64)
    half = np.abs(boxes[:, 3:].reshape(-1, 3, 3)).sum(axis=1)
    centres, maps = enu_to_district_maps(boxes[:, :3] - half, boxes[:, :3] + half, district, enu_frame(district))
    for node, centre, coefficients in zip(nodes, centres, maps):
        node.setdefault("extras", {})["district_map"] = {"centre": centre.tolist(),
                                                         "coefficients": coefficients.ravel().tolist()}
    return tileset


class _SignedIn:
    """Refuses anyone but a signed-in, enabled user (the app's cookie), as the app's routes do."""

    signed_in: Callable[[str | None], bool]

    def prepare(self) -> None:
        name = self.get_secure_cookie("user")
        if not self.signed_in(name.decode("utf-8") if name else None):
            raise HTTPError(403, "sign in at /login to read the district's tiles")


class _Gzipped:
    """Compressed files, the most recently asked first, up to ``budget`` bytes; a file is known by its path,
    modification time and size, so a tile rewritten by an export is compressed anew."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self.entries: OrderedDict[tuple, bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, path: Path) -> bytes:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        data = gzip.compress(path.read_bytes(), GZIP_LEVEL, mtime=0)
        with self.lock:
            if key not in self.entries and len(data) <= self.budget:
                self.entries[key] = data
                self.used += len(data)
                while self.used > self.budget:
                    self.used -= len(self.entries.popitem(last=False)[1])
        return data


def _tile_path(folder: Path, uri: str) -> Path:
    """The GLB file ``uri`` names inside ``folder``; 404 for anything else."""
    path = (folder / uri).resolve()
    if not path.is_relative_to(folder) or path.suffix != ".glb" or not path.is_file():
        raise HTTPError(404)
    return path


def _accepts_gzip(handler: RequestHandler) -> bool:
    return "gzip" in handler.request.headers.get("Accept-Encoding", "")


class TileFileHandler(_SignedIn, RequestHandler):
    """The GLB files, gzipped for a browser that accepts it."""

    def initialize(self, folder: Path, gzipped: _Gzipped, signed_in: Callable[[str | None], bool]) -> None:
        self.folder, self.gzipped, self.signed_in = folder, gzipped, signed_in

    def get(self, uri: str) -> None:
        path = _tile_path(self.folder, uri)
        self.set_header("Content-Type", "model/gltf-binary")
        self.set_header("Cache-Control", "no-cache")  # an export may rewrite it; the ETag answers 304 meanwhile
        self.set_header("Vary", "Accept-Encoding")
        if _accepts_gzip(self):
            self.set_header("Content-Encoding", "gzip")
            self.finish(self.gzipped.get(path))
        else:
            self.finish(path.read_bytes())


class TilesetHandler(_SignedIn, RequestHandler):
    """The tileset with each tile's map to the view's frame (remembered while the file is unchanged)."""

    def initialize(self, folder: Path, district: District, signed_in: Callable[[str | None], bool]) -> None:
        self.folder, self.district, self.signed_in = folder, district, signed_in

    def get(self) -> None:
        path = self.folder / TILESET
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Vary", "Accept-Encoding")
        text, zipped = _annotated(str(path), path.stat().st_mtime_ns, self.district)
        if _accepts_gzip(self):
            self.set_header("Content-Encoding", "gzip")
            self.finish(zipped)
        else:
            self.finish(text)


@functools.lru_cache(maxsize=2)
def _annotated(path: str, mtime_ns: int, district: District) -> tuple[bytes, bytes]:
    """The annotated tileset as JSON, and gzipped."""
    with open(path, "rb") as f:
        text = json.dumps(annotated_tileset(json.load(f), district), separators=(",", ":")).encode()
    return text, gzip.compress(text, GZIP_LEVEL, mtime=0)


class FeatureIndexHandler(_SignedIn, RequestHandler):
    """``/tiles/ids/<uri>``: each feature's building index in the view's order, uint32 little-endian."""

    def initialize(self, folder: Path, building_ids: Callable[[], pd.Index],
                   signed_in: Callable[[str | None], bool]) -> None:
        self.folder, self.building_ids, self.signed_in = folder, building_ids, signed_in

    def get(self, uri: str) -> None:
        document, binary = read_glb(_tile_path(self.folder, uri).read_bytes())
        index = self.building_ids().get_indexer(property_column(document, binary, "building_id"))
        body = np.where(index < 0, 0xFFFFFFFF, index).astype("<u4").tobytes()
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Vary", "Accept-Encoding")
        if _accepts_gzip(self):
            self.set_header("Content-Encoding", "gzip")
            body = gzip.compress(body, 1, mtime=0)  # made anew each time: the session's order may change
        self.finish(body)


def tile_routes(folder: str | os.PathLike, *, district: District, building_ids: Callable[[], pd.Index],
                signed_in: Callable[[str | None], bool]) -> list[tuple]:
    """Tornado routes serving the tileset in ``folder`` at ``/tiles/`` (see the module's docstring).

    ``building_ids`` gives the view's building ids in its order (read on each request: grid saves keep it);
    ``signed_in(username)`` says whether that user may read the district.
    """
    folder = Path(folder).resolve()
    common = {"signed_in": signed_in}
    return [(r"/tiles/tileset\.json", TilesetHandler, {"folder": folder, "district": district, **common}),
            (r"/tiles/ids/(.+)", FeatureIndexHandler, {"folder": folder, "building_ids": building_ids, **common}),
            (r"/tiles/(.+\.glb)", TileFileHandler, {"folder": folder, "gzipped": _Gzipped(GZIP_CACHE_BYTES),
                                                    **common})]
