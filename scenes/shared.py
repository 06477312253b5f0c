"""What every browser session of one server shows alike, computed once per server.

The server opens its store read-only, so these stay true for its lifetime;
a server that writes (live cases) must drop them when the store changes.
"""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import pandas as pd

from scenes.layers import BuildingLayer, building_colours, building_layer, camera_records, model_layer
from twin.queries import grid_table


class SharedDistrict:
    """The building layer, hover texts, colourings and per-grid tables of one store, memoised.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A cursor of the server's store connection, kept for the memoised queries.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._lock = threading.Lock()
        self.layer: BuildingLayer = building_layer(con)
        self.models: bytes = model_layer(con, self.layer)
        self.hover_text: np.ndarray = con.execute(
            "SELECT coalesce(b.name, b.building_id) || coalesce(' · ' || g.name || ' (' || g.grid_id || ')', '') "
            "FROM buildings b LEFT JOIN grids g ON g.grid_id = b.grid_id AND g.valid_to IS NULL "
            "ORDER BY b.building_id").df().iloc[:, 0].to_numpy(dtype=object)
        self.cameras: pd.DataFrame = con.execute(
            "SELECT camera_id, ST_X(position) AS x, ST_Y(position) AS y, z, heading_deg, pitch_deg, fov_deg, "
            "range_m, status FROM cameras ORDER BY camera_id").df()
        self.camera_payload: bytes = camera_records(self.cameras, self.layer.origin)
        self._colours: dict[str, tuple[bytes, dict]] = {}
        self._tables: dict[str, pd.DataFrame] = {}

    def colours(self, measure: str) -> tuple[bytes, dict]:
        """Per-building RGB bytes and legend for a measure (see :func:`scenes.layers.building_colours`)."""
        with self._lock:
            if measure not in self._colours:
                self._colours[measure] = building_colours(self._con, self.layer, measure=measure)
            return self._colours[measure]

    def grid_table(self, level: str) -> pd.DataFrame:
        """Figures per grid at a level (see :func:`twin.queries.grid_table`); a copy the caller may sort."""
        with self._lock:
            if level not in self._tables:
                self._tables[level] = grid_table(self._con, level=level)
            return self._tables[level].copy()
