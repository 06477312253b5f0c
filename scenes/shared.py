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
import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd

from scenes.layers import (COVERAGE_MEASURE, GRID_MEASURES, BuildingLayer, basemap_layer, building_colours,
                           building_layer, camera_records, coverage_colours, grid_measure_colours, model_layer)
from twin.access.access import audit
from twin.access.policy import Gate, Refusals
from twin.cases.live import CaseFeed, IntakeWriter, Written
from twin.errors import TwinError
from twin.field.patrol import field_workers, patrol_coverage
from twin.geo.basemap import load_basemap
from twin.cases.duties import department_figures
from twin.cases.evaluations import satisfaction
from twin.store.queries import district_totals, grid_table, grid_tree, key_figures, micro_figures
from twin.store.schema import GRID_LEVELS

REFRESH_S = 1.0  # live figures are at most this old
WORKERS_REFRESH_S = 5.0  # the grid workers' positions on the operators' maps are at most this old
COVERAGE_REFRESH_S = 60.0  # the day's patrol coverage is at most this old
# The threads that read the store for the event loop (DuckDB runs a query without the GIL, so a few help).
READS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="twin-read")
T = TypeVar("T")


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
                 paths: Callable[[str | None], list[dict]] | None = None) -> None:
        self.cursors = cursors
        self.writer = writer
        self.paths = paths  # a grid's path from the server's grid tree (SharedDistrict.grid_path), not the store

    async def read(self, gate: Gate, read: Callable[[Gate], T]) -> tuple[T | TwinError, list[dict]]:
        """``read(gate)`` on a reader thread: its result (or the :class:`TwinError` it raised) and the audit
        rows it asked for, not yet written (see :meth:`record`)."""
        rows: list[dict] = []

        def work() -> T | TwinError:
            try:
                return read(gate.bound(self.cursors(), audit_sink=lambda **row: rows.append(row), paths=self.paths))
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
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, *, feed: CaseFeed | None = None,
                 writer: IntakeWriter | None = None) -> None:
        self.cursors = Cursors(con)
        self.feed = feed if feed is not None else CaseFeed()
        self.writer = writer
        self.off_loop = OffLoop(self.cursors, writer, paths=self.grid_path) if writer is not None else None
        self.refusals = Refusals()  # one throttle for every session's refused accesses
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        con = self.cursors()
        self.layer: BuildingLayer = building_layer(con)
        self.models: bytes = model_layer(con, self.layer)
        self.hover_text: np.ndarray = self._hover_texts()
        self.cameras: pd.DataFrame = con.execute(
            "SELECT camera_id, ST_X(position) AS x, ST_Y(position) AS y, z, heading_deg, pitch_deg, fov_deg, "
            "range_m, status FROM cameras ORDER BY camera_id").df()
        self.camera_payload: bytes = camera_records(self.cameras, self.layer.origin)
        self.basemap_payload: bytes = basemap_layer(load_basemap(con), self.layer.origin)  # sent after the first frame
        self._totals = district_totals(con)
        self._tree = grid_tree(con)
        self._tree_index: tuple[pd.DataFrame, dict] | None = None  # the tree's grids by id, for grid_path
        self._memo: dict[tuple, tuple[int, float, object]] = {}
        self.tileset: str | None = None  # the tileset's URL when the view streams tiles (scenes.tileserve)

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

    def grid_path(self, grid_id: str | None) -> list[dict]:
        """The grids from the street down to ``grid_id`` (:func:`twin.inspector.grid_path`), from the grid tree
        held here (followed on every grid save), not the store: a click's card costs no read of the grids."""
        with self._lock:
            tree = self._tree
            index = self._tree_index if self._tree_index is not None and self._tree_index[0] is tree else None
        if index is None:
            index = (tree, {g: (n, lv, p) for g, n, lv, p in zip(tree["grid_id"], tree["name"], tree["level"],
                                                                 tree["parent_id"])})
            with self._lock:
                self._tree_index = index
        path = []
        while isinstance(grid_id, str) and grid_id in index[1] and len(path) <= len(GRID_LEVELS):
            name, level, parent = index[1][grid_id]
            path.append({"grid_id": grid_id, "name": name, "level": level})
            grid_id = parent
        return path[::-1]

    def forget_grids(self) -> None:
        """Grids were saved (the planner): the grid tree, the micro-grid figures and every memoised table
        and colouring are computed afresh when next asked for. Reads the store: call it off the event loop."""
        tree = grid_tree(self._con)
        # Buildings moved to new micro-grids: the grid colouring and hover texts look them up here.
        grid_ids = self._con.execute("SELECT grid_id FROM buildings ORDER BY building_id").df()["grid_id"]
        hover_text = self._hover_texts()
        with self._lock:
            self._tree = tree
            self._memo.clear()
            self.layer = dataclasses.replace(self.layer, grid_id=grid_ids.to_numpy(dtype=object))
            self.hover_text = hover_text

    def _hover_texts(self) -> np.ndarray:
        """Per building: its name (or id) and its micro-grid's name and id."""
        return self._con.execute(
            "SELECT coalesce(b.name, b.building_id) || coalesce(' · ' || g.name || ' (' || g.grid_id || ')', '') "
            "FROM buildings b LEFT JOIN grids g ON g.grid_id = b.grid_id AND g.valid_to IS NULL "
            "ORDER BY b.building_id").df().iloc[:, 0].to_numpy(dtype=object)

    def colours(self, measure: str, *, level: str = "grid") -> tuple[bytes, dict]:
        """Per-building RGB bytes and legend for a measure: the cases per grid at ``level``
        (:func:`scenes.layers.grid_measure_colours`), else per building (:func:`scenes.layers.building_colours`)."""
        if measure in GRID_MEASURES:
            return self._fresh(("colours", measure, level), lambda: grid_measure_colours(
                self.layer, self.grid_table(level), self._tree, level=level, measure=measure), live=True)
        if measure == COVERAGE_MEASURE:
            return self._fresh(("colours", measure), lambda: coverage_colours(self.layer, self.coverage()),
                               live=False, max_age_s=COVERAGE_REFRESH_S)
        return self._fresh(("colours", measure), lambda: building_colours(self._con, self.layer, measure=measure),
                           live=False)

    def coverage(self) -> pd.DataFrame:
        """Each micro-grid's patrol coverage today (:func:`twin.field.patrol.patrol_coverage`), at most a minute old."""
        return self._fresh(("coverage",), lambda: patrol_coverage(self._con), live=False,
                           max_age_s=COVERAGE_REFRESH_S)

    def field_workers(self) -> pd.DataFrame:
        """Every grid worker on patrol at their last position, with their open load
        (:func:`twin.field.patrol.field_workers`), at most ``WORKERS_REFRESH_S`` old; sessions keep their own."""
        return self._fresh(("workers",), lambda: field_workers(self._con), live=False, max_age_s=WORKERS_REFRESH_S)

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
        """Figures per grid at a level (see :func:`twin.store.queries.grid_table`); a copy the caller may sort."""
        def compute() -> pd.DataFrame:
            micro = self._fresh(("micro",), lambda: micro_figures(self._con), live=False)
            return grid_table(self._con, level=level, micro=micro, tree=self._tree)
        return self._fresh(("table", level), compute, live=True).copy()

    def loop_figures(self, level: str) -> dict:
        """The field loop's figures for the leader's screen: ``departments`` (:func:`twin.cases.duties.
        department_figures`), the satisfaction per ``grid`` at ``level`` and per ``worker``
        (:func:`twin.cases.evaluations.satisfaction`)."""
        return self._fresh(("loop", level), lambda: {
            "departments": department_figures(self._con), "grid": satisfaction(self._con, by="grid", level=level, tree=self._tree),
            "worker": satisfaction(self._con, by="worker")}, live=True)
