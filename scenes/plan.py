"""The 2D plan: grid polygons of one level over the building footprints (Bokeh).

On the full demo district (12,813 footprints) a ``multi_polygons`` glyph with
one nested list per building took about 12 s to appear in Chromium: Bokeh
sends every ring as a buffer of its own (26,000 of them) and builds a
spatial index over every polygon. Here the footprints of one colour are one
``patch`` glyph whose rings are separated by NaN (one float32 array per
colour), the grid outlines one NaN-separated ``line``, and the hover comes from
an invisible point per building. Coordinates are relative to the district
origin, as everything the browser gets.
"""

from __future__ import annotations

import duckdb
import numpy as np
import panel as pn
import param
import shapely
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from scenes.colours import CATEGORICAL, neighbour_distinct_classes
from scenes.theme import BACKGROUND, MUTED
from twin.queries import building_footprints, grid_boundaries
from twin.schema import GRID_LEVELS


def multipolygon_columns(shapes: np.ndarray) -> tuple[list, list]:
    """Bokeh ``multi_polygons`` xs/ys (polygon > rings > coordinates) from shapely polygons."""
    xs, ys = [], []
    for poly in shapes:
        parts = poly.geoms if poly.geom_type == "MultiPolygon" else [poly]
        px, py = [], []
        for part in parts:
            rings = [np.asarray(part.exterior.coords)] + [np.asarray(r.coords) for r in part.interiors]
            px.append([r[:, 0] for r in rings])
            py.append([r[:, 1] for r in rings])
        xs.append(px)
        ys.append(py)
    return xs, ys


def nan_separated(rings: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coordinates of many rings or lines as two float32 arrays, relative to ``origin``, one NaN
    between consecutive rings (Bokeh's ``patch`` and ``line`` break there).

    Parameters
    ----------
    rings : ndarray of shapely LinearRing or LineString, shape (n,)
    origin : (x, y)
        District origin, metres.

    Returns
    -------
    (x, y) : ndarray of float32
    """
    if not len(rings):
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    xy, which = shapely.get_coordinates(rings, return_index=True)
    breaks = np.flatnonzero(np.diff(which)) + 1  # where a new ring starts
    out = np.insert(xy - np.asarray(origin[:2], dtype=float), breaks, np.nan, axis=0).astype(np.float32)
    return out[:, 0], out[:, 1]


class PlanMap(pn.viewable.Viewer):
    """Footprints coloured by micro-grid, with the grid outlines of one level on top."""

    level = param.Selector(default="grid", objects=list(GRID_LEVELS))

    def __init__(self, con: duckdb.DuckDBPyConnection, **params) -> None:
        super().__init__(**params)
        self._con = con
        meta = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('origin_x', 'origin_y')").fetchall())
        self.origin = np.array([float(meta.get("origin_x", 0.0)), float(meta.get("origin_y", 0.0))])
        buildings, footprints = building_footprints(con)
        micro, micro_shapes = grid_boundaries(con, level="micro")
        grid_class = dict(zip(micro["grid_id"], neighbour_distinct_classes(micro_shapes)))
        classes = np.array([grid_class.get(g, -1) for g in buildings["grid_id"]], dtype=np.int64)
        self._footprints = {}
        for k, colour in [(-1, MUTED), *enumerate(CATEGORICAL)]:
            rings = shapely.get_exterior_ring(shapely.get_parts(footprints[classes == k])) if len(footprints) else []
            x, y = nan_separated(np.asarray(rings, dtype=object), self.origin)
            self._footprints[colour] = ColumnDataSource({"x": x, "y": y})
        labels = shapely.point_on_surface(footprints) if len(footprints) else np.array([])
        lx, ly = (shapely.get_x(labels) - self.origin[0], shapely.get_y(labels) - self.origin[1]) \
            if len(labels) else ([], [])
        self._buildings = ColumnDataSource({"x": np.asarray(lx, dtype=np.float32),
                                            "y": np.asarray(ly, dtype=np.float32),
                                            "building_id": buildings["building_id"].tolist(),
                                            "name": buildings["name"].fillna("").tolist(),
                                            "grid_id": buildings["grid_id"].fillna("").tolist()})
        self._grids = ColumnDataSource({"x": np.zeros(0, dtype=np.float32), "y": np.zeros(0, dtype=np.float32)})
        self.figure = self._make_figure()
        self._load_grids()

    def _make_figure(self):
        fig = figure(match_aspect=True, sizing_mode="stretch_both", min_height=400, background_fill_color=BACKGROUND,
                     border_fill_color=BACKGROUND, tools="pan,wheel_zoom,box_zoom,reset", active_scroll="wheel_zoom",
                     x_axis_label="easting from the district origin (m)",
                     y_axis_label="northing from the district origin (m)", output_backend="webgl")
        fig.grid.visible = False
        for colour, source in self._footprints.items():
            fig.patch("x", "y", source=source, fill_color=colour, line_color=None, fill_alpha=0.9)
        fig.line("x", "y", source=self._grids, line_color="#e6edf7", line_width=1.2)
        points = fig.scatter("x", "y", source=self._buildings, size=6, alpha=0)
        fig.add_tools(HoverTool(renderers=[points], tooltips=[("building", "@building_id"), ("name", "@name"),
                                                              ("micro-grid", "@grid_id")]))
        return fig

    @param.depends("level", watch=True)
    def _load_grids(self) -> None:
        _grids, shapes = grid_boundaries(self._con, level=self.level)
        rings = shapely.get_rings(shapely.get_parts(shapes)) if len(shapes) else np.array([], dtype=object)
        x, y = nan_separated(rings, self.origin)
        self._grids.data = {"x": x, "y": y}

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.pane.Bokeh(self.figure, sizing_mode="stretch_both")
