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

The server's own tileset (``DB.tiles`` beside the store) is brought up to date at start in a process of its own
(:func:`update_in_own_process`: an export of a million buildings passes 2.6 GB, which the server never holds),
which writes nothing when nothing changed; after each grid save, :class:`TileRefresher` rewrites the tiles
whose buildings' grids changed (their property tables hold the grid ids).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
from tornado.web import HTTPError, RequestHandler

from scenes.helper import in_helper
from scenes.layers import SortedIds
from scenes.shared import release_memory
from twin.geo.crs import District
from twin.tiles.export import TILESET
from twin.tiles.frame import enu_frame, enu_to_district_maps
from twin.tiles.glb import accessor_array, property_column, read_glb

log = logging.getLogger(__name__)

TILED_ABOVE = 200_000  # buildings: above, the view streams tiles; at 115,000 one buffer still drew sooner (README)
VIEW_MODES = ("auto", "tiles", "buffer")
GZIP_LEVEL = 6
GZIP_CACHE_BYTES = 32 * 2 ** 20
VIEW_NORMALS = False  # the server's own tiles: the view shades flat itself, from half the bytes


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


class SignedIn:
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


def accepts_gzip(handler: RequestHandler) -> bool:
    return "gzip" in handler.request.headers.get("Accept-Encoding", "")


def finish_binary(handler: RequestHandler, body: bytes) -> None:
    """Answer ``body``, made for this request, as binary: gzipped quickly (level 1) for a browser that accepts it."""
    handler.set_header("Content-Type", "application/octet-stream")
    handler.set_header("Vary", "Accept-Encoding")
    if accepts_gzip(handler):
        handler.set_header("Content-Encoding", "gzip")
        body = gzip.compress(body, 1, mtime=0)
    handler.finish(body)


class TileFileHandler(SignedIn, RequestHandler):
    """The GLB files, gzipped for a browser that accepts it."""

    def initialize(self, folder: Path, gzipped: _Gzipped, signed_in: Callable[[str | None], bool]) -> None:
        self.folder, self.gzipped, self.signed_in = folder, gzipped, signed_in

    def get(self, uri: str) -> None:
        path = _tile_path(self.folder, uri)
        self.set_header("Content-Type", "model/gltf-binary")
        self.set_header("Cache-Control", "no-cache")  # an export may rewrite it; the ETag answers 304 meanwhile
        self.set_header("Vary", "Accept-Encoding")
        if accepts_gzip(self):
            self.set_header("Content-Encoding", "gzip")
            self.finish(self.gzipped.get(path))
        else:
            self.finish(path.read_bytes())


class TilesetHandler(SignedIn, RequestHandler):
    """The tileset with each tile's map to the view's frame (remembered while the file is unchanged)."""

    def initialize(self, folder: Path, district: District, signed_in: Callable[[str | None], bool]) -> None:
        self.folder, self.district, self.signed_in = folder, district, signed_in

    def get(self) -> None:
        path = self.folder / TILESET
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Vary", "Accept-Encoding")
        text, zipped = _annotated(str(path), path.stat().st_mtime_ns, self.district)
        if accepts_gzip(self):
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


class FeatureIndexHandler(SignedIn, RequestHandler):
    """``/tiles/ids/<uri>``: each feature's building index in the view's order, uint32 little-endian."""

    def initialize(self, folder: Path, building_ids: Callable[[], SortedIds],
                   model_elements: Callable[[], dict[str, np.ndarray]],
                   signed_in: Callable[[str | None], bool]) -> None:
        self.folder, self.building_ids, self.signed_in = folder, building_ids, signed_in
        self.model_buildings = lambda: set(model_elements())

    def get(self, uri: str) -> None:
        document, binary = read_glb(_tile_path(self.folder, uri).read_bytes())
        ids = property_column(document, binary, "building_id")
        index = self.building_ids().indices_of(ids)
        if self.model_buildings() & set(ids):
            self.set_header("X-Twin-Elements", "1")  # its models' parts may be picked (/tiles/elements/)
        # made anew each time: the session's order may change
        finish_binary(self, np.where(index < 0, 0xFFFFFFFF, index).astype("<u4").tobytes())


class ElementIndexHandler(SignedIn, RequestHandler):
    """``/tiles/elements/<uri>``: the model element under each triangle of a tile, uint32 little-endian
    (0xFFFFFFFF: none, or a hidden element), in the order the view keeps a tile's triangles: grouped by feature,
    each feature's in the tile's order. 404 for a tile without a model's parts; the ids route says which have them
    (header ``X-Twin-Elements``).

    A feature's triangles are its model's, in order, when there are as many: a tile that draws a model in full
    (its leaf). Elsewhere (LOD1 blocks above) a model building has no parts to pick.
    """

    def initialize(self, folder: Path, model_elements: Callable[[], dict[str, np.ndarray]],
                   signed_in: Callable[[str | None], bool]) -> None:
        self.folder, self.model_elements, self.signed_in = folder, model_elements, signed_in

    def get(self, uri: str) -> None:
        document, binary = read_glb(_tile_path(self.folder, uri).read_bytes())
        elements = tile_elements(document, binary, self.model_elements())
        if elements is None:
            raise HTTPError(404)
        finish_binary(self, elements.astype("<u4").tobytes())


def tile_elements(document: dict, binary: bytes, models: dict[str, np.ndarray]) -> np.ndarray | None:
    """Each triangle's model element in a tile, in the view's order (:class:`ElementIndexHandler`), or None when
    the tile draws no model's parts."""
    ids = property_column(document, binary, "building_id")
    if not any(b in models for b in ids):
        return None
    primitive = document["meshes"][0]["primitives"][0]
    feature = accessor_array(document, binary, primitive["attributes"]["_FEATURE_ID_0"]).astype(np.int64)
    triangle_feature = feature[accessor_array(document, binary, primitive["indices"]).reshape(-1, 3)[:, 0]]
    out = np.full(len(triangle_feature), 0xFFFFFFFF, dtype=np.uint32)
    for f, building_id in enumerate(ids):
        elements = models.get(building_id)
        rows = np.flatnonzero(triangle_feature == f) if elements is not None else ()
        if len(rows) and len(rows) == len(elements):
            out[rows] = elements
    drawn = out[np.argsort(triangle_feature, kind="stable")]
    return drawn if (drawn != 0xFFFFFFFF).any() else None


def tile_routes(folder: str | os.PathLike, *, district: District, building_ids: Callable[[], SortedIds],
                signed_in: Callable[[str | None], bool],
                model_elements: Callable[[], dict[str, np.ndarray]] = dict) -> list[tuple]:
    """Tornado routes serving the tileset in ``folder`` at ``/tiles/`` (see the module's docstring).

    ``building_ids`` gives the view's building ids in its order (read on each request: grid saves keep it);
    ``signed_in(username)`` says whether that user may read the district; ``model_elements`` gives each model
    building's element per triangle (:func:`scenes.layers.model_elements`), for picking a model's parts.
    """
    folder = Path(folder).resolve()
    common = {"signed_in": signed_in}
    return [(r"/tiles/tileset\.json", TilesetHandler, {"folder": folder, "district": district, **common}),
            (r"/tiles/ids/(.+)", FeatureIndexHandler, {"folder": folder, "building_ids": building_ids,
                                                       "model_elements": model_elements, **common}),
            (r"/tiles/elements/(.+)", ElementIndexHandler, {"folder": folder, "model_elements": model_elements,
                                                            **common}),
            (r"/tiles/(.+\.glb)", TileFileHandler, {"folder": folder, "gzipped": _Gzipped(GZIP_CACHE_BYTES),
                                                    **common})]


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the tileset ``folder``'s lock (a file beside it) for the block: the processes of ``twin serve --workers``
    bring the same folder up to date, one after another (the later ones then find it up to date)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _update_tileset(db: str, folder: str) -> dict:
    """Bring the tileset in ``folder`` up to date with the store ``db`` (run in a process of its own)."""
    from twin.store.store import Store
    from twin.tiles.update import update_tiles

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with folder_lock(folder), Store(db, read_only=True) as store:
        store.con.execute("SET enable_progress_bar = false")  # its stderr is the server's log
        return update_tiles(store.con, store.district, folder, normals=VIEW_NORMALS)


def update_in_own_process(db: str, folder: str | os.PathLike) -> dict:
    """:func:`twin.tiles.update.update_tiles` on the store ``db`` into ``folder``, in a helper process that opens the
    store read-only: a DuckDB file must not be open for writing meanwhile (the server opens it after)."""
    return in_helper(_update_tileset, str(db), str(folder))


class TileRefresher:
    """Rewrites the server's tiles whose buildings changed grids, after each grid save, off the event loop.

    One update runs at a time, on a thread of its own; the saves made while one waits to start share it.

    Parameters
    ----------
    cursor : callable
        Gives the calling thread's own cursor of the store (:class:`scenes.shared.Cursors`).
    district : District
    folder : path-like
        The tileset the server exported (:func:`update_in_own_process`).
    """

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection], *, district: District,
                 folder: str | os.PathLike) -> None:
        self._cursor, self._district, self._folder = cursor, district, Path(folder)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twin-tiles")
        self._lock = threading.Lock()
        self._queued: Future | None = None

    def request(self) -> Future:
        """Ask for an update; the future gives its summary (:func:`twin.tiles.update.update_tiles`)."""
        with self._lock:
            if self._queued is None:
                self._queued = self._pool.submit(self._run)
            return self._queued

    def _run(self) -> dict:
        from twin.tiles.update import update_tiles

        with self._lock:
            self._queued = None  # a save from now on asks for another update
        try:
            with folder_lock(self._folder):
                summary = update_tiles(self._cursor(), self._district, self._folder, normals=VIEW_NORMALS)
        except Exception:
            log.exception("the tiles in %s did not follow the saved grids", self._folder)
            raise
        finally:
            release_memory()
        log.info("tiles after the grid save: %s, %d rewritten in %.1f s", summary["how"], len(summary["written"]),
                 summary["seconds"])
        return summary

    def close(self) -> None:
        self._pool.shutdown(wait=True)
