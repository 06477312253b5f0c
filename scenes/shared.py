"""What every browser session of one server shows alike, computed once per server.

Geometry, hover texts and district totals stay true for the server's lifetime.
What cases change (key figures, per-grid open cases, the open-cases colouring)
is recomputed when the case feed has moved, at most once per ``REFRESH_S``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import duckdb
import numpy as np
import pandas as pd

from scenes.layers import BuildingLayer, building_colours, building_layer, camera_records, model_layer
from twin.cases.live import CaseFeed, IntakeWriter
from twin.store.queries import district_totals, grid_table, grid_tree, key_figures, micro_figures

REFRESH_S = 1.0  # live figures are at most this old


class SharedDistrict:
    """The building layer, hover texts, colourings and per-grid tables of one store, memoised.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A cursor of the server's store connection, kept for the memoised queries.
    feed : CaseFeed, optional
        Committed case changes (``twin serve``); a read-only app has one that never moves.
    writer : IntakeWriter, optional
        The store's writer, for case transitions from the operator's card; None when read-only.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, *, feed: CaseFeed | None = None,
                 writer: IntakeWriter | None = None) -> None:
        self._con = con
        self.feed = feed if feed is not None else CaseFeed()
        self.writer = writer
        self._lock = threading.Lock()
        self.layer: BuildingLayer = building_layer(con)
        self.models: bytes = model_layer(con, self.layer)
        self.hover_text: np.ndarray = self._hover_texts()
        self.cameras: pd.DataFrame = con.execute(
            "SELECT camera_id, ST_X(position) AS x, ST_Y(position) AS y, z, heading_deg, pitch_deg, fov_deg, "
            "range_m, status FROM cameras ORDER BY camera_id").df()
        self.camera_payload: bytes = camera_records(self.cameras, self.layer.origin)
        self._totals = district_totals(con)
        self._tree = grid_tree(con)
        self._micro: pd.DataFrame | None = None
        self._memo: dict[tuple, tuple[int, float, object]] = {}

    def _fresh(self, key: tuple, compute: Callable[[], object], *, live: bool) -> object:
        """A memoised value; a ``live`` one is recomputed once the feed moved (sessions ask once per ``REFRESH_S``)."""
        with self._lock:
            version, now = self.feed.version, time.monotonic()
            hit = self._memo.get(key)
            if hit is None or (live and hit[0] != version):
                hit = self._memo[key] = (version, now, compute())
            return hit[2]

    def forget_grids(self) -> None:
        """Grids were saved (the planner): the grid tree, the micro-grid figures and every memoised table
        and colouring are computed afresh when next asked for."""
        with self._lock:
            self._tree = grid_tree(self._con)
            self._micro = None
            self._memo.clear()
            # Buildings moved to new micro-grids: the grid colouring and hover texts look them up here.
            grid_ids = self._con.execute("SELECT grid_id FROM buildings ORDER BY building_id").df()["grid_id"]
            self.layer = dataclasses.replace(self.layer, grid_id=grid_ids.to_numpy(dtype=object))
            self.hover_text = self._hover_texts()

    def _hover_texts(self) -> np.ndarray:
        """Per building: its name (or id) and its micro-grid's name and id."""
        return self._con.execute(
            "SELECT coalesce(b.name, b.building_id) || coalesce(' · ' || g.name || ' (' || g.grid_id || ')', '') "
            "FROM buildings b LEFT JOIN grids g ON g.grid_id = b.grid_id AND g.valid_to IS NULL "
            "ORDER BY b.building_id").df().iloc[:, 0].to_numpy(dtype=object)

    def colours(self, measure: str) -> tuple[bytes, dict]:
        """Per-building RGB bytes and legend for a measure (see :func:`scenes.layers.building_colours`)."""
        return self._fresh(("colours", measure), lambda: building_colours(self._con, self.layer, measure=measure),
                           live=measure == "open_cases")

    def key_figures(self) -> dict:
        """The leader's key figures (see :func:`twin.store.queries.key_figures`)."""
        return self._fresh(("figures",), lambda: key_figures(self._con, totals=self._totals), live=True)

    def grid_table(self, level: str) -> pd.DataFrame:
        """Figures per grid at a level (see :func:`twin.store.queries.grid_table`); a copy the caller may sort."""
        def compute() -> pd.DataFrame:
            if self._micro is None:
                self._micro = micro_figures(self._con)
            return grid_table(self._con, level=level, micro=self._micro, tree=self._tree)
        return self._fresh(("table", level), compute, live=True).copy()
