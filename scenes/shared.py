"""What every browser session of one server shows alike, computed once per server; and who owns which cursor.

Geometry, hover texts and district totals stay true for the server's lifetime.
What cases change (key figures, per-grid open cases, the open-cases colouring)
is recomputed when the case feed has moved, at most once per ``REFRESH_S``.

Who owns which DuckDB cursor in ``twin serve`` (the one place this rule is written):

- **No cursor is used from two threads.** A cursor belongs to the thread that uses it.
- The **writer thread** (:class:`twin.cases.live.IntakeWriter`) owns its cursor and, after
  start-up, the store's connection itself (its CHECKPOINT): everyone else's cursors are made
  from cursors of it (``scenes.server.serve``).
- The **event loop** owns each session's cursor (``DistrictApp(con)``, the planner's
  editor) and uses it only for light reads the page needs at once.
- **Every other thread** (the reader pool :data:`READS`, ``asyncio.to_thread``) reads
  through :class:`Cursors`, which gives each thread its own cursor of the connection.
  :class:`SharedDistrict`, the API keys' lookup and the Open311 reads use it.
- The event loop **never waits** on the writer or a slow read: audited looks, searches
  and the Open311 reads run on :data:`READS` and their audit rows are committed through
  the writer with an event-loop future (:class:`OffLoop`).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import gc
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from scenes.layers import (COVERAGE_MEASURE, GRID_MEASURES, VOLUNTEER_MEASURES, BuildingLayer, CameraLayer, SortedIds,
                           basemap_layer, building_colours, building_layer, camera_layer, coverage_colours,
                           grid_codes, grid_labels, grid_measure_colours, grid_segments, model_elements, model_layer)
from twin.access.access import audit
from twin.access.policy import Gate, Refusals
from twin.cases.cameras import CameraSight
from twin.cases.live import CaseFeed, IntakeWriter, Written
from twin.errors import TwinError
from twin.field.patrol import field_workers, patrol_coverage
from twin.geo.basemap import load_basemap
from twin.grids.grids import grids_under
from twin.cases.duties import department_figures
from twin.cases.evaluations import satisfaction
from twin.store.queries import (district_totals, grid_boundaries, grid_table, grid_tree, key_figures,
                                micro_figures)
from twin.volunteers.figures import community_ranking, newest_completed, volunteer_table
from twin.store.schema import GRID_LEVELS
from twin.store.store import AttachedConnection

REFRESH_S = 1.0  # live figures are at most this old
WORKERS_REFRESH_S = 5.0  # the grid workers' positions on the operators' maps are at most this old
COVERAGE_REFRESH_S = 60.0  # the day's patrol coverage is at most this old
VOLUNTEER_REFRESH_S = 5.0  # the volunteer figures (tasks confirmed, points) are at most this old
TRIM_PERIOD_S = 2.0  # the server gives its heap's free memory back this often when it grew (HeapTrimmer)
TRIM_GROWN_BYTES = 64 * 2 ** 20
QUIET_REFRESH_S = 60.0  # a screen's figures are read again this often without a case changing (volunteers, patrols)
# The threads that read the store for the event loop (DuckDB runs a query without the GIL, so a few help).
READS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="twin-read")
T = TypeVar("T")


def release_memory() -> None:
    """Give back to the system what the big reads of start-up or of a grid save left free: Arrow's pool and the C
    heap keep freed memory for reuse, and at a million buildings that is a few hundred MB."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its heap stays as it is
        pass


def _resident_bytes() -> int:
    """This process's resident memory (bytes), from ``/proc`` (0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


class HeapTrimmer:
    """Gives the C heap's free memory back to the system, looked at every ``period_s`` on a thread of its own:
    whenever the process grew by ``grown_bytes`` since the last trim, or the heap's free memory did (glibc's
    ``mallinfo2``: a trim during a burst of work sees its memory in use; freed later, only the heap knows).

    A session's first answers (a city's cameras are 47 MB a page, its grid table and outlines more) and its big
    reads leave the heap hundreds of MB larger once sent, freed but kept by glibc for reuse until a trim: at a
    million buildings ``twin serve`` held 1.1-1.5 GB with pages open, about 0.3 GB of it free.
    :func:`release_memory` does it when a session ends; this between.
    """

    def __init__(self, *, period_s: float = TRIM_PERIOD_S, grown_bytes: int = TRIM_GROWN_BYTES) -> None:
        self._period_s, self._grown = period_s, grown_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twin-heap-trim", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            trim = libc.malloc_trim
        except (OSError, AttributeError):  # not glibc: its heap stays as it is
            return
        info = getattr(libc, "mallinfo2", None)
        if info is not None:
            info.restype = _MallInfo2
        free = (lambda: info().fordblks) if info is not None else (lambda: 0)
        # the least resident and free memory seen since the last trim
        base, free_base = _resident_bytes(), free()
        while not self._stop.wait(self._period_s):
            now, free_now = _resident_bytes(), free()
            if now > base + self._grown or free_now > free_base + self._grown:
                pa.default_memory_pool().release_unused()
                trim(0)
                base, free_base = _resident_bytes(), free()  # a trimmed chunk is still free to the heap
            else:
                base, free_base = min(base, now), min(free_base, free_now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class Cursors:
    """One cursor of ``con`` per thread: call it from any thread to get that thread's own."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._local = threading.local()
        self._lock = threading.Lock()  # making a cursor changes the connection's list of them

    def __call__(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._lock:
                cursor = self._local.cursor = self._con.cursor()
        return cursor


class OffLoop:
    """A session's reads through its gate on the reader threads, and their audit rows through the writer.

    Parameters
    ----------
    cursors : Cursors
        Each reader thread's own cursor.
    writer : IntakeWriter
        The store's writer; the loop awaits its commit of a look's audit rows, never blocks on it.
    """

    def __init__(self, cursors: Cursors, writer: IntakeWriter, *,
                 paths: Callable[[str | None], list[dict]] | None = None, sight: CameraSight | None = None,
                 cameras_near: Callable[[float, float, float, float], list[str]] | None = None) -> None:
        self.cursors = cursors
        self.writer = writer
        self.paths = paths  # a grid's path from the server's grid tree (SharedDistrict.grid_path), not the store
        self.sight = sight  # the cameras that see a building, from the server's cameras (SharedDistrict.sight)
        self.cameras_near = cameras_near  # the cameras in a box from the server's layer (SharedDistrict.cameras_near)

    async def read(self, gate: Gate, read: Callable[[Gate], T]) -> tuple[T | TwinError, list[dict]]:
        """``read(gate)`` on a reader thread: its result (or the :class:`TwinError` it raised) and the audit
        rows it asked for, not yet written (see :meth:`record`)."""
        rows: list[dict] = []

        def work() -> T | TwinError:
            try:
                return read(gate.bound(self.cursors(), audit_sink=lambda **row: rows.append(row), paths=self.paths,
                                       sight=self.sight, cameras_near=self.cameras_near))
            except TwinError as exc:
                return exc
        return await asyncio.get_running_loop().run_in_executor(READS, work), rows

    async def record(self, rows: list[dict]) -> None:
        """Commit audit rows through the writer; returns once they are on disk (the loop is free meanwhile)."""
        if rows:
            await self.writer.submit(lambda con: Written([audit(con, **row) for row in rows]),
                                     loop=asyncio.get_running_loop(), quiet=True)

    async def look(self, gate: Gate, read: Callable[[Gate], T]) -> T:
        """``read(gate)`` off the loop, its audit rows committed before it returns; raises what ``read`` raised."""
        result, rows = await self.read(gate, read)
        await self.record(rows)
        if isinstance(result, TwinError):
            raise result
        return result


def _slim_tree(tree: pd.DataFrame) -> pd.DataFrame:
    """The grid tree as the tables, colourings and grid paths read it, in half the memory: the levels, the parents
    and the ancestors above the micro-grids as categories (a city has 700,000 grids under 41,000 ancestors)."""
    for column in ("level", "parent_id", *GRID_LEVELS[:-1]):
        tree[column] = tree[column].astype("category")
    return tree


@dataclasses.dataclass(frozen=True)
class GridOutlines:
    """The grids at one level (:func:`twin.store.queries.grid_boundaries`) and their outlines and labels for the view
    (:func:`scenes.layers.grid_segments`, :func:`scenes.layers.grid_labels`)."""

    frame: pd.DataFrame
    shapes: np.ndarray
    segments: bytes
    labels: list[list]


class SharedDistrict:
    """The building layer, hover texts, colourings and per-grid tables of one store, memoised.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        The server's store connection: each thread that asks reads on its own cursor of it (:class:`Cursors`).
    feed : CaseFeed, optional
        Committed case changes (``twin serve``); a read-only app has one that never moves.
    writer : IntakeWriter, optional
        The store's writer, for case transitions and audit rows; None when read-only. With it,
        :attr:`off_loop` runs the sessions' looks off the event loop.
    tiled : bool
        The view streams the buildings as tiles (:mod:`scenes.tileserve`): no geometry buffer is built.

    Every building's data is held in numpy arrays, never as Python objects per building: at a million
    buildings the server stays within its memory (``twin bench city``).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, *, feed: CaseFeed | None = None,
                 writer: IntakeWriter | None = None, tiled: bool = False) -> None:
        self.cursors = Cursors(con)
        self.feed = feed if feed is not None else CaseFeed()
        self.writer = writer
        self.refusals = Refusals()  # one throttle for every session's refused accesses
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        con = self.cursors()
        # The cameras that see a clicked building, answered from memory where reading them all is a round trip
        # through PostgreSQL's scanner (13 ms of CPU a click at 18,000 cameras); a file reads the near ones by key,
        # found in the camera layer (cameras_near: a city's 1.5 million would take 150-250 MB more held so).
        self.sight: CameraSight | None = CameraSight.read(con) if isinstance(con, AttachedConnection) else None
        self.off_loop = (OffLoop(self.cursors, writer, paths=self.grid_path, sight=self.sight,
                                 cameras_near=None if self.sight else self.cameras_near)
                         if writer is not None else None)
        self.layer: BuildingLayer = building_layer(con, geometry=not tiled)
        self.models: bytes = b"" if tiled else model_layer(con, self.layer)  # tiles carry the models
        # their parts, picked through tiles (scenes.tileserve.ElementIndexHandler)
        self.model_elements: dict[str, np.ndarray] = model_elements(con) if tiled else {}
        self.cameras: CameraLayer = camera_layer(con, self.layer.origin)
        # Set by twin serve (scenes.cameraserve) for a city's cameras: each view fetches those near where it looks.
        self.cameras_url: str = ""
        self.basemap_payload: bytes = basemap_layer(load_basemap(con), self.layer.origin)  # sent after the first frame
        self._totals = district_totals(con)
        self._tree = _slim_tree(grid_tree(con))
        self._tree_index: tuple[pd.DataFrame, SortedIds] | None = None  # the tree's ids, for grid_path
        self._memo: dict[tuple, tuple[int, float, object]] = {}
        self.tileset: str | None = None  # the tileset's URL when the view streams tiles (scenes.tileserve)
        # Called once a grid save is read (twin serve: the tiles holding the moved buildings are rewritten).
        self.after_grids_saved: Callable[[], object] | None = None

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        return self.cursors()  # the asking thread's own cursor

    def _fresh(self, key: tuple, compute: Callable[[], object], *, live: bool,
               max_age_s: float | None = None) -> object:
        """A memoised value; a ``live`` one is recomputed once the feed moved (sessions ask once per ``REFRESH_S``),
        one with ``max_age_s`` once it is that old (what the case feed does not announce: patrol positions).

        Each value has its own lock: a session asking for one never waits for another being computed.
        """
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            version = self.feed.version
            hit = self._memo.get(key)
            if hit is None or (live and hit[0] != version) or (
                    max_age_s is not None and time.monotonic() - hit[1] > max_age_s):
                hit = self._memo[key] = (version, time.monotonic(), compute())
            return hit[2]

    @property
    def camera_payload(self) -> bytes:
        """Every camera for a session's view, or nothing when the view fetches those near it (``cameras_url``)."""
        return b"" if self.cameras_url else self.cameras.payload

    def cameras_near(self, xmin: float, xmax: float, ymin: float, ymax: float) -> list[str]:
        """The ids of the cameras standing within the farthest camera's range of a box of the district CRS (m), a
        metre more, from the camera layer held here (:func:`twin.cases.cameras.cameras_seeing`'s ``near``): a
        click's card reads a few cameras by key, not a city's 1.5 million positions and ranges. The cameras are
        the layer's, read at start as the view's are."""
        ox, oy, _oz = self.layer.origin
        reach = self.cameras.reach_m + 1
        inside = self.cameras.in_box(xmin - ox - reach, ymin - oy - reach, xmax - ox + reach, ymax - oy + reach)
        return [self.cameras.camera_id[i] for i in inside]

    def grid_path(self, grid_id: str | None) -> list[dict]:
        """The grids from the street down to ``grid_id`` (:func:`twin.inspector.grid_path`), from the grid tree
        held here (followed on every grid save), not the store: a click's card costs no read of the grids.

        The tree's ids are searched as :class:`scenes.layers.SortedIds` (20 MB for a city's 700,000 grids, made in
        a fraction of a second): a dict of them held 250 MB more for the server's life, and took seconds to make
        at the first click."""
        with self._lock:
            tree = self._tree
            index = self._tree_index if self._tree_index is not None and self._tree_index[0] is tree else None
        if index is None:
            index = (tree, SortedIds(pa.array(tree["grid_id"], type=pa.string())))
            with self._lock:
                self._tree_index = index
        ids = index[1]
        names, levels, parents = tree["name"], tree["level"], tree["parent_id"]
        path = []
        while isinstance(grid_id, str) and len(path) <= len(GRID_LEVELS):
            row = ids.index_of(grid_id)
            if row < 0:
                break
            path.append({"grid_id": grid_id, "name": names.iat[row], "level": levels.iat[row]})
            grid_id = parents.iat[row]
        return path[::-1]

    def scope_of(self, grids: tuple[str, ...]) -> frozenset[str] | None:
        """The grids at or under ``grids`` (:func:`twin.grids.grids.grids_under`), one set for every session bound
        to them (:class:`twin.access.policy.Gate`'s ``scopes``), read afresh after a grid save; None when they
        are every grid in force: the whole district, which needs no list of 700,000 ids in a city."""
        def read() -> frozenset[str] | None:
            under = grids_under(self._con, grids)
            with self._lock:
                every = len(self._tree)
            return None if len(under) >= every else under
        return self._fresh(("scope", tuple(sorted(grids))), read, live=False)

    def forget_grids(self) -> None:
        """Grids were saved (the planner): the grid tree, the micro-grid figures and every memoised table
        and colouring are computed afresh when next asked for. Reads the store: call it off the event loop."""
        tree = _slim_tree(grid_tree(self._con))
        # Buildings moved to new micro-grids: the grid colouring looks them up here.
        grid_code, micro_ids = grid_codes(self._con.execute("SELECT grid_id FROM buildings ORDER BY building_id")
                                          .arrow().read_all().column(0))
        with self._lock:
            self._tree = tree
            self._memo.clear()
            self.layer = dataclasses.replace(self.layer, grid_code=grid_code, micro_ids=micro_ids)
        if self.after_grids_saved is not None:
            self.after_grids_saved()

    def hover_text(self, con: duckdb.DuckDBPyConnection, index: int) -> str:
        """Building ``index``'s name (or id) and its micro-grid's name and id ("" for no building), read on
        ``con`` (one row by its key: light enough for the event loop)."""
        if not 0 <= index < len(self.layer.building_id):
            return ""
        row = con.execute(
            "SELECT coalesce(b.name, b.building_id) || coalesce(' · ' || g.name || ' (' || g.grid_id || ')', '') "
            "FROM buildings b LEFT JOIN grids g ON g.grid_id = b.grid_id AND g.valid_to IS NULL "
            "WHERE b.building_id = ?", [self.layer.building_id[index]]).fetchall()
        return str(row[0][0]) if row else ""

    def warm(self, *, level: str = "grid") -> None:
        """Compute what a session's first frame asks for (the default colouring, the per-grid table), so that
        the first session does not wait for it: at a million buildings these take seconds."""
        self.colours("grid", level=level)
        self.grid_table(level)
        self.grid_outlines(level)
        self.grid_path(None)  # the tree's index, for the first click's card

    def colours(self, measure: str, *, level: str = "grid") -> tuple[bytes, dict]:
        """Per-building colours (:func:`scenes.layers.indexed_colours`) and legend for a measure: the cases per grid
        at ``level`` (:func:`scenes.layers.grid_measure_colours`), else per building
        (:func:`scenes.layers.building_colours`)."""
        if measure in GRID_MEASURES:
            return self._fresh(("colours", measure, level), lambda: grid_measure_colours(
                self.layer, self.grid_table(level), self._tree, level=level, measure=measure), live=True)
        if measure in VOLUNTEER_MEASURES:
            return self._fresh(("colours", measure, level), lambda: grid_measure_colours(
                self.layer, self.volunteer_table(level), self._tree, level=level, measure=measure),
                live=False, max_age_s=VOLUNTEER_REFRESH_S)
        if measure == COVERAGE_MEASURE:
            return self._fresh(("colours", measure), lambda: coverage_colours(self.layer, self.coverage()),
                               live=False, max_age_s=COVERAGE_REFRESH_S)
        return self._fresh(("colours", measure), lambda: building_colours(self._con, self.layer, measure=measure),
                           live=False)

    def volunteer_table(self, level: str) -> pd.DataFrame:
        """Volunteer hours and points per grid at ``level`` this month (:func:`twin.volunteers.figures.
        volunteer_table`, its columns named as the colour measures), at most ``VOLUNTEER_REFRESH_S`` old."""
        return self._fresh(("volunteers", level), lambda: volunteer_table(self._con, level=level).rename(
            columns={"hours": "volunteer_hours", "points": "volunteer_points"}), live=False,
            max_age_s=VOLUNTEER_REFRESH_S)

    def volunteer_ranking(self) -> pd.DataFrame:
        """The communities ranked by volunteer points this month (:func:`twin.volunteers.figures.
        community_ranking`), at most ``VOLUNTEER_REFRESH_S`` old."""
        return self._fresh(("volunteer ranking",), lambda: community_ranking(self._con), live=False,
                           max_age_s=VOLUNTEER_REFRESH_S)

    def tasks_done(self) -> list[dict]:
        """The newest completed volunteer tasks (:func:`twin.volunteers.figures.newest_completed`), at most
        ``VOLUNTEER_REFRESH_S`` old."""
        return self._fresh(("tasks done",), lambda: newest_completed(self._con, limit=5), live=False,
                           max_age_s=VOLUNTEER_REFRESH_S)

    def coverage(self) -> pd.DataFrame:
        """Each micro-grid's patrol coverage today (:func:`twin.field.patrol.patrol_coverage`), at most a minute old."""
        return self._fresh(("coverage",), lambda: patrol_coverage(self._con), live=False,
                           max_age_s=COVERAGE_REFRESH_S)

    def field_workers(self) -> pd.DataFrame:
        """Every grid worker on patrol at their last position, with their open load
        (:func:`twin.field.patrol.field_workers`), at most ``WORKERS_REFRESH_S`` old; sessions keep their own."""
        return self._fresh(("workers",), lambda: field_workers(self._con), live=False, max_age_s=WORKERS_REFRESH_S)

    def grid_outlines(self, level: str) -> GridOutlines:
        """The grids at ``level``: ids, names, boundaries and what the view draws of them, one copy for every
        session (a city's 32,400 grids are 50 MB of geometry)."""
        def compute() -> GridOutlines:
            frame, shapes = grid_boundaries(self._con, level=level)
            return GridOutlines(frame=frame, shapes=shapes, segments=grid_segments(shapes, self.layer.origin),
                                labels=grid_labels(frame, shapes, self.layer.origin))
        return self._fresh(("outlines", level), compute, live=False)

    def key_figures(self, *, grids: frozenset[str] | None = None) -> dict:
        """The leader's key figures (see :func:`twin.store.queries.key_figures`), or those of ``grids`` (an
        operator's scope: the sessions of operators of the same grids share them). The totals of a grid set (a
        count of its residents: a second and more on PostgreSQL) are computed once, its case figures once per
        change of the cases."""
        if grids is None:
            return self._fresh(("figures",), lambda: key_figures(self._con, totals=self._totals), live=True)
        totals = self._fresh(("totals", grids), lambda: district_totals(self._con, grids=grids), live=False)
        return self._fresh(("figures", grids), lambda: key_figures(self._con, totals=totals, grids=grids), live=True)

    def grid_table(self, level: str) -> pd.DataFrame:
        """Figures per grid at a level (see :func:`twin.store.queries.grid_table`), one frame for every session while
        the figures hold: do not change it (a city's table at the grid level has 32,400 rows)."""
        def compute() -> pd.DataFrame:
            micro = self._fresh(("micro",), lambda: micro_figures(self._con), live=False)
            return grid_table(self._con, level=level, micro=micro, tree=self._tree)
        return self._fresh(("table", level), compute, live=True)

    def loop_figures(self, level: str) -> dict:
        """The field loop's figures for the leader's screen: ``departments`` (:func:`twin.cases.duties.
        department_figures`), the satisfaction per ``grid`` at ``level`` and per ``worker``
        (:func:`twin.cases.evaluations.satisfaction`)."""
        return self._fresh(("loop", level), lambda: {
            "departments": department_figures(self._con), "grid": satisfaction(self._con, by="grid", level=level, tree=self._tree),
            "worker": satisfaction(self._con, by="worker")}, live=True)
