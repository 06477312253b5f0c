"""The planner's 2D plan: Bokeh sources, figure and edit tools, and what the browser's tools send back.

Everything goes to the browser relative to the district origin (nothing absolute
leaves the server) and comes back the same way; this class alone converts.
The footprints of a parent are sent once; an edit resends only the grid
outlines (tens of rings), the red layer and the moved buildings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import geopandas as gpd
import numpy as np
import shapely
from bokeh.models import (ColumnDataSource, CustomJS, HoverTool, Label, Node, PanTool, PolyDrawTool, PolyEditTool,
                          ResetTool, ScaleBar, TapTool, WheelZoomTool)
from bokeh.plotting import figure

from scenes.i18n import _
from scenes.colours import CATEGORICAL, neighbour_distinct_classes
from scenes.planshapes import line_columns, outline_columns, polygon_columns, ring_rows, vertex_drag
from scenes.theme import ACCENT, BACKGROUND, TEXT
from twin.grids.gridrules import Violation
from twin.grids.reassign import Assets, Reassignment

RED = "#f87171"
DRAWN = "#facc15"

# The editing modes (the labelled buttons beside the plan) -> the Bokeh tool each turns on (PlanPlot.tools).
MODE_TOOLS = {"vertex": "edit", "split": "split", "merge": "select", "draw": "draw", "delete": "select"}

# Put away the vertex tool's handles and forget which outline they were of: Bokeh's PolyEditTool redraws the
# handles of "its" outline (by row) whenever the outlines change, which shows another grid's vertices, or fails,
# once the rows are other grids (another parent, a split, a merge).
FORGET_HANDLES = """
const view = Bokeh.index.query_one((v) => v.model === plot);
const tool_view = view == null ? null : view.tool_views.get(tool);
if (tool_view != null) {
  tool_view._cur_index = null;
  tool_view._selected_renderer = null;
  tool_view._drawing = false;
}
const handles = tool.vertex_renderer.data_source;
handles.data = {x: [], y: []};
"""

# a vertex drag from the plan: (at, to, inserted) in district coordinates (m), or why it is no single-vertex edit
Drag = tuple[np.ndarray, np.ndarray, bool] | str


class PlanPlot:
    """The plan of one parent's grids, with Bokeh's own edit tools.

    Parameters
    ----------
    origin : ndarray, shape (2,)
        The district origin (m, district CRS); every column sent is relative to it.
    on_drag : callable
        Called with a :data:`Drag` when the vertex tool changed the grid outlines in the browser.
    on_pick : callable
        Called with the picked grid ids (list of str) when the selection on the plan changed.
    """

    def __init__(self, origin: np.ndarray, *, on_drag: Callable[[Drag], None],
                 on_pick: Callable[[list[str]], None]) -> None:
        self.origin = origin
        self._on_drag, self._on_pick = on_drag, on_pick
        self._rings: list[np.ndarray] = []
        self._ring_ids: list[str] = []
        self._pushing = False
        self.footprint_source = ColumnDataSource({"xs": [], "ys": [], "building_id": []})
        self.grid_source = ColumnDataSource({"xs": [], "ys": [], "grid_id": [], "colour": []})
        self.vertex_source = ColumnDataSource({"x": [], "y": []})
        self.parent_source = ColumnDataSource({"xs": [], "ys": []})
        self.violation_source = ColumnDataSource({"xs": [], "ys": [], "rule": [], "grid_id": [], "area": []})
        self.moved_source = ColumnDataSource({"xs": [], "ys": [], "building_id": []})
        self.history_source = ColumnDataSource({"xs": [], "ys": []})
        self.proposal_source = ColumnDataSource({"xs": [], "ys": [], "grid_id": [], "colour": []})
        self.compare_source = ColumnDataSource({"xs": [], "ys": []})
        self.line_source = ColumnDataSource({"xs": [], "ys": []})
        self.draw_source = ColumnDataSource({"xs": [], "ys": []})
        self.label_source = ColumnDataSource({"x": [], "y": [], "name": []})
        self._forgotten = 0  # how often the handles were put away: the vertex source's tag, which runs FORGET_HANDLES
        self.grid_source.on_change("data", self._grid_data_changed)
        self.grid_source.selected.on_change("indices", self._grid_picked)
        self.figure = self._make_figure()

    def _make_figure(self):
        fig = figure(match_aspect=True, sizing_mode="stretch_both", min_height=200, background_fill_color=BACKGROUND,
                     border_fill_color=BACKGROUND, tools="pan,wheel_zoom,reset", active_scroll="wheel_zoom",
                     name="twin-plan")
        fig.grid.visible = False
        names = {PanTool: _("Pan"), WheelZoomTool: _("Wheel zoom"), ResetTool: _("Reset")}  # Bokeh's own are English
        for tool in fig.tools:
            tool.description = names.get(type(tool), tool.description)
        _map_furniture(fig)
        self.basemap_source = add_basemap(fig)
        fig.patches("xs", "ys", source=self.footprint_source, fill_color="#52627a", fill_alpha=0.8, line_color=None)
        self.grid_renderer = fig.patches("xs", "ys", source=self.grid_source, fill_color="colour", fill_alpha=0.22,
                                         line_color=TEXT, line_width=1.6, selection_fill_alpha=0.5,
                                         selection_line_color=ACCENT, selection_line_width=3,
                                         nonselection_fill_alpha=0.22, nonselection_line_alpha=1.0)
        fig.patches("xs", "ys", source=self.moved_source, fill_color=ACCENT, fill_alpha=0.9, line_color=None)
        self.proposal_renderer = fig.patches("xs", "ys", source=self.proposal_source, fill_color="colour",
                                             fill_alpha=0.3, line_color=DRAWN, line_width=1.6, visible=False)
        self.compare_renderer = fig.multi_line("xs", "ys", source=self.compare_source, line_color=TEXT,
                                               line_dash="dotted", line_width=1, visible=False)
        fig.multi_line("xs", "ys", source=self.parent_source, line_color=TEXT, line_width=3.5, line_dash="dashed")
        fig.multi_polygons("xs", "ys", source=self.history_source, fill_alpha=0, line_color=DRAWN, line_width=3,
                           line_dash="dashdot")
        fig.multi_polygons("xs", "ys", source=self.violation_source, fill_color=RED, fill_alpha=0.6,
                           line_color=RED, line_width=2, name="twin-violations")
        line = fig.multi_line("xs", "ys", source=self.line_source, line_color=DRAWN, line_width=2.5,
                              line_dash="dashed")
        drawn = fig.patches("xs", "ys", source=self.draw_source, fill_color=DRAWN, fill_alpha=0.25, line_color=DRAWN,
                            line_width=2)
        fig.text("x", "y", text="name", source=self.label_source, text_color=TEXT, text_font_size="12px",
                 text_font_style="bold", text_align="center", text_baseline="middle", name="twin-grid-names")
        vertices = fig.scatter("x", "y", source=self.vertex_source, size=10, fill_color=ACCENT, line_color=TEXT)
        edit = PolyEditTool(renderers=[self.grid_renderer], vertex_renderer=vertices,
                            description=_("Move a vertex: press and hold on a grid to show its vertices, then "
                                          "drag one (a shared vertex moves in every neighbour)"))
        split = PolyDrawTool(renderers=[line], num_objects=1,
                             description=_("Draw a split line: press and hold to start, click to add points, "
                                           "press and hold to end; then Split along the line"))
        new = PolyDrawTool(renderers=[drawn], num_objects=1,
                           description=_("Draw a new grid: press and hold to start, click to add corners, press "
                                         "and hold to end; then Add drawn grid"))
        tap = TapTool(renderers=[self.grid_renderer], description=_("Select grids (shift: several)"))
        fig.add_tools(edit, split, new, tap,
                      HoverTool(renderers=[self.grid_renderer], tooltips=[(_("grid"), "@grid_id")]))
        self.vertex_source.js_on_change("tags", CustomJS(args={"plot": fig, "tool": edit}, code=FORGET_HANDLES))
        for tool in (edit, split, new, tap):
            tool.visible = False  # turned on by the labelled mode buttons (set_mode): a toolbar click toggles off
        fig.toolbar.active_tap = tap
        fig.toolbar.active_multi = edit
        self.tools = {"edit": edit, "split": split, "draw": new, "select": tap}
        return fig

    def mode_switch_js(self, modes: Sequence[str]) -> tuple[dict, str]:
        """``(args, code)`` of a browser callback that turns on the tool of ``modes[cb_obj.active]`` (and off the
        others) at once, in the page: the next press on the plan must use the new mode's tool."""
        pan = next(t for t in self.figure.tools if isinstance(t, PanTool))
        args = {**self.tools, "pan": pan}
        tools = ", ".join(MODE_TOOLS[m] for m in modes)
        return args, (f"const on = [{tools}][cb_obj.active];\n"
                      "for (const tool of [edit, split, draw, select]) { tool.active = tool === on; }\n"
                      "if (on === select) { pan.active = true; }")  # the edit tools had taken the drag

    def set_mode(self, mode: str) -> None:
        """A new editing mode (:data:`MODE_TOOLS`; its tool is turned on in the page, :meth:`mode_switch_js`):
        put away the vertex handles."""
        self.forget_handles()

    def forget_handles(self) -> None:
        """Put away the vertex handles in the page, and the tool's memory of the outline they were of."""
        self._forgotten += 1
        self.vertex_source.tags = [self._forgotten]

    # -- what is drawn -------------------------------------------------------------
    def push(self, source: ColumnDataSource, data: dict) -> None:
        """Send ``data`` to ``source`` without taking the change for an edit made in the browser."""
        self._pushing = True
        try:
            source.data = data
        finally:
            self._pushing = False

    def clear(self, *sources: ColumnDataSource) -> None:
        for source in sources:
            self.push(source, {k: [] for k in source.data})

    def show_parent(self, parent_shape, assets: Assets) -> None:
        """The parent's outline and the footprints around it (sent once per parent; edits never resend them)."""
        self.push(self.footprint_source, outline_columns(assets.footprints, assets.buildings["building_id"],
                                                         self.origin))
        px, py = line_columns([parent_shape], self.origin)
        self.push(self.parent_source, {"xs": px, "ys": py})

    def show_grids(self, shapes: gpd.GeoSeries, selected: Sequence[str], names: dict[str, str]) -> None:
        """The grids being edited, neighbours in distinct colours, ``selected`` ones selected, each labelled with
        its name. The vertex handles follow a moved outline; when the rows are other grids they are put away
        first (a long press shows them anew)."""
        ids, rings = ring_rows(shapes, self.origin)
        if ids != self._ring_ids:
            self.forget_handles()
        self._ring_ids, self._rings = ids, rings
        self.push(self.grid_source, _coloured_rings(shapes, ids, rings))
        at = shapely.get_coordinates(shapely.point_on_surface(shapes.to_numpy(dtype=object))) - self.origin
        self.push(self.label_source, {"x": at[:, 0], "y": at[:, 1],
                                      "name": [names.get(str(g), str(g)) for g in shapes.index]})
        self._pushing = True
        try:
            self.grid_source.selected.indices = [i for i, g in enumerate(ids) if g in selected]
        finally:
            self._pushing = False

    def show_violations(self, violations: list[Violation]) -> None:
        """The red layer: the places where the edit breaks a rule."""
        # a violation without area (none so far, but an empty geometry is possible) has nothing to draw
        shown = [v for v in violations if v.geometry is not None and v.geometry.area > 0]
        vx, vy = polygon_columns([v.geometry for v in shown], self.origin)
        self.push(self.violation_source, {"xs": vx, "ys": vy, "rule": [v.rule for v in shown],
                                          "grid_id": [v.grid_id for v in shown],
                                          "area": [round(v.area_m2, 2) for v in shown]})

    def show_moved(self, assets: Assets, reassignment: Reassignment | None) -> None:
        """The buildings the edit moves to another grid."""
        moved = reassignment.moves["buildings"]["building_id"] if reassignment is not None else []
        rows = np.flatnonzero(assets.buildings["building_id"].isin(list(moved)).to_numpy())
        self.push(self.moved_source, outline_columns(assets.footprints[rows],
                                                     assets.buildings["building_id"].iloc[rows], self.origin))

    def show_version(self, geometry) -> None:
        """One past version of a grid, dash-dotted over the plan (None: none)."""
        xs, ys = polygon_columns([geometry], self.origin) if geometry is not None else ([], [])
        self.push(self.history_source, {"xs": xs, "ys": ys})

    def show_proposal(self, shapes: gpd.GeoSeries, now: Sequence) -> None:
        """Proposed grids, coloured, over the dotted outlines of the grids ``now`` in force."""
        ids, rings = ring_rows(shapes, self.origin)
        self.push(self.proposal_source, _coloured_rings(shapes, ids, rings))
        cx, cy = line_columns(list(now), self.origin)
        self.push(self.compare_source, {"xs": cx, "ys": cy})

    def show_proposal_layer(self, shown: bool) -> None:
        """Show the proposal instead of the edited grids, or the other way round."""
        self.proposal_renderer.visible = self.compare_renderer.visible = shown
        self.grid_renderer.visible = not shown

    # -- what the browser's tools drew ---------------------------------------------
    def drawn_line(self) -> np.ndarray | None:
        """The split line drawn with the split-line tool, (n, 2) in district coordinates; None if none."""
        return self._drawn(self.line_source, at_least=2)

    def drawn_polygon(self) -> np.ndarray | None:
        """The corners drawn with the draw tool, (n, 2) in district coordinates; None if none."""
        return self._drawn(self.draw_source, at_least=3)

    def _drawn(self, source: ColumnDataSource, *, at_least: int) -> np.ndarray | None:
        xs, ys = source.data["xs"], source.data["ys"]
        if not len(xs) or len(xs[-1]) < at_least:
            return None
        return np.column_stack([np.asarray(xs[-1], dtype=float), np.asarray(ys[-1], dtype=float)]) + self.origin

    def _grid_data_changed(self, _attr: str, _old: dict, new: dict) -> None:
        """The PolyEditTool moved (or inserted) a vertex in the browser."""
        if self._pushing:
            return
        drag = vertex_drag(self._rings, new.get("xs", []), new.get("ys", []))
        if drag is None:
            return
        if isinstance(drag, str):
            self._on_drag(drag)
            return
        at, to, inserted = drag
        self._on_drag((at + self.origin, to + self.origin, inserted))

    def _grid_picked(self, _attr: str, _old: list, new: list) -> None:
        if self._pushing:
            return
        self._on_pick(list(dict.fromkeys(self._ring_ids[i] for i in new if 0 <= i < len(self._ring_ids))))


def add_basemap(fig) -> ColumnDataSource:
    """The ground (roads, water, green space; ``scenes.planshapes.basemap_columns``) under what follows it."""
    source = ColumnDataSource({"xs": [], "ys": [], "colour": []})
    fig.multi_polygons("xs", "ys", source=source, fill_color="colour", fill_alpha=1.0, line_color=None,
                       name="twin-basemap")
    return source


def _map_furniture(fig) -> None:
    """The plan as a map: no axes of offsets from the district origin, a scale bar and a north arrow."""
    fig.axis.visible = False
    fig.add_layout(ScaleBar(range=fig.x_range, unit="m", location="bottom_left", bar_line_color=TEXT,
                            label_text_color=TEXT, background_fill_color=BACKGROUND, background_fill_alpha=0.7,
                            border_line_color=None, name="twin-scale-bar"))
    fig.add_layout(Label(x=Node(target="frame", symbol="right"), y=Node(target="frame", symbol="top"),
                         x_offset=-28, y_offset=-12, anchor="top_center", text="▲\n" + _("N"), text_color=TEXT,
                         text_font_size="15px", text_align="center", name="twin-north-arrow"))


def _coloured_rings(shapes: gpd.GeoSeries, ids: list[str], rings: list[np.ndarray]) -> dict:
    """Patches columns of ``ring_rows``, each grid in a colour its neighbours do not have."""
    classes = dict(zip(shapes.index, neighbour_distinct_classes(shapes.to_numpy(dtype=object))))
    return {"xs": [r[:, 0] for r in rings], "ys": [r[:, 1] for r in rings], "grid_id": ids,
            "colour": [CATEGORICAL[classes[g] % len(CATEGORICAL)] for g in ids]}
