"""The 2D plan: grid polygons of one level over the building footprints (Bokeh)."""

from __future__ import annotations

import duckdb
import numpy as np
import panel as pn
import param
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


class PlanMap(pn.viewable.Viewer):
    """Footprints coloured by micro-grid, with the grid outlines of one level on top."""

    level = param.Selector(default="grid", objects=list(GRID_LEVELS))

    def __init__(self, con: duckdb.DuckDBPyConnection, **params) -> None:
        super().__init__(**params)
        self._con = con
        buildings, footprints = building_footprints(con)
        micro, micro_shapes = grid_boundaries(con, level="micro")
        grid_class = dict(zip(micro["grid_id"], neighbour_distinct_classes(micro_shapes)))
        colour = [CATEGORICAL[grid_class[g]] if g in grid_class else MUTED for g in buildings["grid_id"]]
        xs, ys = multipolygon_columns(footprints)
        self._buildings = ColumnDataSource({"xs": xs, "ys": ys, "colour": colour,
                                            "building_id": buildings["building_id"].tolist(),
                                            "name": buildings["name"].fillna("").tolist(),
                                            "grid_id": buildings["grid_id"].fillna("").tolist()})
        self._grids = ColumnDataSource({"xs": [], "ys": [], "grid_id": [], "name": []})
        self.figure = self._make_figure()
        self._load_grids()

    def _make_figure(self):
        fig = figure(match_aspect=True, sizing_mode="stretch_both", min_height=400, background_fill_color=BACKGROUND,
                     border_fill_color=BACKGROUND, tools="pan,wheel_zoom,box_zoom,reset", active_scroll="wheel_zoom",
                     x_axis_label="easting (m)", y_axis_label="northing (m)")
        fig.grid.visible = False
        footprints = fig.multi_polygons("xs", "ys", source=self._buildings, fill_color="colour", line_color=None,
                                        fill_alpha=0.9)
        fig.multi_polygons("xs", "ys", source=self._grids, fill_alpha=0, line_color="#e6edf7", line_width=1.2)
        fig.add_tools(HoverTool(renderers=[footprints], tooltips=[("building", "@building_id"), ("name", "@name"),
                                                                  ("micro-grid", "@grid_id")]))
        return fig

    @param.depends("level", watch=True)
    def _load_grids(self) -> None:
        grids, shapes = grid_boundaries(self._con, level=self.level)
        xs, ys = multipolygon_columns(shapes)
        self._grids.data = {"xs": xs, "ys": ys, "grid_id": grids["grid_id"].tolist(), "name": grids["name"].tolist()}

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.pane.Bokeh(self.figure, sizing_mode="stretch_both")

