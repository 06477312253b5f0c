"""The planner's grid editor: the grids of one parent on a 2D plan, edited with Bokeh's own tools.

Every edit on the plan becomes one call of the grid engine (:mod:`twin.grids.gridedit`)
through an :class:`~twin.grids.gridedit.EditSession`, so undo and redo work. After
each edit the rules are checked (:func:`twin.grids.gridversions.check_edit`), the
offending places are drawn on a red layer and listed, and a side table shows
what the edit moves, before → after per affected grid
(:func:`twin.grids.reassign.reassign`). Saving needs a reason and goes through a
``save`` callable: in ``twin serve`` the store's one writer thread
(:func:`save_through_writer`), otherwise one transaction on the editor's own
connection (:func:`save_in_transaction`).

The plan keeps the edit path lean: the footprints of the chosen parent are
sent once per parent; an edit only resends the parent's grid outlines (tens of
rings), the red layer and the moved buildings. Coordinates go to the browser
relative to the district origin (nothing absolute leaves the server).

The class is driven from Python as well as from the browser: the methods
(:meth:`GridEditor.move_vertex`, :meth:`~GridEditor.split`, …) are what the
plan's edit events call, and what the tests call.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Sequence

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import panel as pn
import param
import shapely
from bokeh.models import ColumnDataSource, HoverTool, PolyDrawTool, PolyEditTool, TapTool
from bokeh.plotting import figure

from scenes.colours import CATEGORICAL, neighbour_distinct_classes
from scenes.planshapes import (line_columns, outline_columns, polygon_columns, ring_rows, snap_point_near,
                               vertex_drag)
from scenes.theme import ACCENT, BACKGROUND, CSS, MUTED, TEXT
from twin.errors import GridEditError, TwinError
from twin.grids.gridedit import EditSession, changed_grids
from twin.grids.gridrules import Violation, errors
from twin.grids.gridversions import (SavedEdit, check_edit, current_grids, grid_history, restore_version,
                               save_partition)
from twin.cases.live import IntakeWriter, Written
from twin.grids.partition import Proposal, propose_micro_grids
from twin.store.queries import grid_tree
from twin.grids.reassign import FIGURES, Assets, Reassignment, load_assets, reassign

log = logging.getLogger(__name__)

PARENT_LEVELS = ("community", "grid")  # a community's grids, a grid's micro-grids
VERTEX_MATCH_M = 0.05  # a dragged vertex is every grid vertex this close to where it was (1:500 map precision)
NO_MOVE_M = 0.001  # a drag shorter than this moves nothing
ASSET_PAD_M = 50.0  # buildings, cameras and cases read around the parent's bounds
WRITE_TIMEOUT_S = 30.0
RED = "#f87171"
DRAWN = "#facc15"
FIGURE_TITLES = {"buildings": "buildings", "households": "households", "residents": "residents",
                 "cameras": "cameras", "open_cases": "open cases"}

# what a write gets: the connection of its transaction; what it returns: the saved edits
Write = Callable[[duckdb.DuckDBPyConnection], list[SavedEdit]]
Save = Callable[[Write], list[SavedEdit]]


def save_in_transaction(con: duckdb.DuckDBPyConnection) -> Save:
    """A ``save`` that runs a write in one transaction on ``con`` (no writer thread: tests, notebooks)."""
    def save(write: Write) -> list[SavedEdit]:
        con.execute("BEGIN TRANSACTION")
        try:
            answer = write(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return answer
    return save


def save_through_writer(writer: IntakeWriter, *, timeout_s: float = WRITE_TIMEOUT_S) -> Save:
    """A ``save`` that runs a write on the store's one writer thread (``twin serve``) and waits for its commit.

    The open cases a save moves to another micro-grid are published on the case
    feed, so every session sees their new grid. The job asks the writer for a
    CHECKPOINT right after the commit, so the new versions go into the
    database file, not only its log.
    """
    def save(write: Write) -> list[SavedEdit]:
        def job(con: duckdb.DuckDBPyConnection) -> Written:
            saved = write(con)
            moved = [c for s in saved if s.reassignment is not None
                     for c in s.reassignment.moves["cases"]["case_id"].tolist()]
            # A save rewrites many rows: fold it into the database file now rather than at the next restart.
            return Written(saved, changed=moved, checkpoint=True)
        return writer.submit(job).result(timeout=timeout_s)
    return save


def _versions_of(con: duckdb.DuckDBPyConnection, parent_id: str) -> dict[str, int]:
    return {str(g): int(v) for g, v in con.execute("SELECT grid_id, version FROM grids WHERE parent_id = ? AND "
                                                   "valid_to IS NULL", [parent_id]).fetchall()}


def _check_unchanged(con: duckdb.DuckDBPyConnection, loaded: dict[str, dict[str, int]]) -> None:
    """Refuse a save when someone else saved the same parent's grids since this session read them
    (the later save would silently undo the earlier one)."""
    for parent_id, versions in loaded.items():
        now = _versions_of(con, parent_id)
        if now != versions:
            differ = sorted(g for g in set(now) | set(versions) if now.get(g) != versions.get(g))
            raise GridEditError(f"the grids of {parent_id} were saved by someone else since you loaded them "
                                f"({', '.join(differ[:5])}{'…' if len(differ) > 5 else ''}); nothing was saved. "
                                "Pick the parent again to load them, and redo the edit.")


class GridEditor(pn.viewable.Viewer):
    """Redraw the grids of one parent: move, split, merge, draw, delete; check, compare, save, restore, propose.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A cursor on the store (reads; writes only through ``save``).
    save : callable, optional
        ``save(write) -> list[SavedEdit]``: runs ``write(con)`` in one transaction
        and commits (:func:`save_through_writer` in ``twin serve``); default
        :func:`save_in_transaction` on ``con``.
    actor : str
        The signed-in user, recorded with every saved version.
    source : str, optional
        Where the user works from (an address), for the audit trail.
    allowed_parents : set of str, optional
        Grid ids the planner may edit under (any level: the communities and
        grids under them are offered too); None: the whole district.
    """

    parent_id = param.Selector(default=None, objects=[], doc="The community or grid whose children are edited")
    tolerance_m = param.Number(default=1.0, bounds=(0.0, 25.0), step=0.5,
                               doc="Snap radius (m): a moved vertex goes to a grid vertex, building corner or edge "
                                   "this close")
    reason = param.String(default="", doc="Why: required to save, restore or accept")
    selected = param.List(default=[], item_type=str, doc="Grids selected on the plan (merge, delete, history)")
    message = param.String(default="", doc="The outcome of the last action, or why it was refused")
    show = param.Selector(default="edit", objects=["edit", "proposal"], doc="The plan shows the edit or the proposal")
    history_grid = param.String(default=None, allow_None=True, doc="The grid whose versions are shown")
    history_version = param.Selector(default=None, objects=[], doc="The version drawn on the plan")
    saved = param.Dict(default={}, doc="Set after every save: change ids, parent, level, action")

    def __init__(self, con: duckdb.DuckDBPyConnection, *, save: Save | None = None, actor: str,
                 source: str | None = None, allowed_parents: set[str] | None = None, **params) -> None:
        if not actor or not str(actor).strip():
            raise GridEditError("the grid editor needs the signed-in user as actor=; got an empty name.")
        first = params.pop("parent_id", None)
        super().__init__(**params)
        self._con = con
        self._save = save if save is not None else save_in_transaction(con)
        self.actor, self.source = str(actor), source
        meta = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('origin_x', 'origin_y')").fetchall())
        self.origin = np.array([float(meta.get("origin_x", 0.0)), float(meta.get("origin_y", 0.0))])
        self.session: EditSession | None = None
        self.violations: list[Violation] = []
        self.reassignment: Reassignment | None = None
        self.proposal: Proposal | None = None
        self.last_edit_s = 0.0
        self._assets: Assets | None = None
        self._saved_grids: gpd.GeoDataFrame | None = None
        self._parent_shape = None
        self._level = "micro"
        self._rings: list[np.ndarray] = []
        self._ring_ids: list[str] = []
        self._pushing = False
        self._history: gpd.GeoDataFrame | None = None
        self._proposal_versions: dict[str, dict[str, int]] = {}
        self._sources()
        self.figure = self._make_figure()
        self._widgets()
        options = self._parent_options(allowed_parents)
        if not options:
            # shown instead of the plan: a planner bound to micro-grids only has nothing to redraw here
            self.message = (f"Refused: no community or grid with children to edit under "
                            f"{', '.join(sorted(allowed_parents or [])) or 'the district'}; an administrator can "
                            "bind this planner to a street, community or grid in force (`twin users`).")
            return
        self.param.parent_id.objects = options
        ids = list(options.values())
        if first is not None and first not in ids:
            raise GridEditError(f"parent_id={first!r} is not a community or grid with children that this planner "
                                f"may edit; pick one of {', '.join(ids[:6])}{'…' if len(ids) > 6 else ''}.")
        levels = dict(con.execute("SELECT grid_id, level FROM grids WHERE valid_to IS NULL AND grid_id IN "
                                  "(SELECT unnest(?))", [ids]).fetchall())
        self.parent_id = first or next((g for g in ids if levels.get(g) == "grid"), ids[0])

    # -- set-up --------------------------------------------------------------
    def _parent_options(self, allowed: set[str] | None) -> dict[str, str]:
        """Communities and grids with children in force, ``label -> id``; with ``allowed``, those under it."""
        tree = grid_tree(self._con)
        kids = set(tree["parent_id"].dropna())
        rows = tree[tree["level"].isin(PARENT_LEVELS) & tree["grid_id"].isin(kids)].sort_values("grid_id")
        if allowed is not None:
            allowed = set(allowed)
            under = np.zeros(len(rows), dtype=bool)
            for column in ("grid_id", "street", "community", "grid"):
                under |= rows[column].isin(allowed).to_numpy()
            rows = rows[under]
        return {f"{g} {n or ''} ({lvl})": g for g, n, lvl in zip(rows["grid_id"], rows["name"], rows["level"])}

    def _sources(self) -> None:
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
        self.grid_source.on_change("data", self._grid_data_changed)
        self.grid_source.selected.on_change("indices", self._grid_picked)

    def _make_figure(self):
        fig = figure(match_aspect=True, sizing_mode="stretch_both", min_height=500, background_fill_color=BACKGROUND,
                     border_fill_color=BACKGROUND, tools="pan,wheel_zoom,reset", active_scroll="wheel_zoom",
                     x_axis_label="easting from the district origin (m)",
                     y_axis_label="northing from the district origin (m)", name="twin-plan")
        fig.grid.visible = False
        for axis in (fig.xaxis, fig.yaxis):
            axis.axis_label_text_color = axis.major_label_text_color = MUTED
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
        vertices = fig.scatter("x", "y", source=self.vertex_source, size=10, fill_color=ACCENT, line_color=TEXT)
        edit = PolyEditTool(renderers=[self.grid_renderer], vertex_renderer=vertices,
                            description="Move a vertex: press and hold on a grid to show its vertices, then drag "
                                        "one (a shared vertex moves in every neighbour)")
        split = PolyDrawTool(renderers=[line], num_objects=1,
                             description="Draw a split line: press and hold to start, click to add points, press "
                                         "and hold to end; then Split along the line")
        new = PolyDrawTool(renderers=[drawn], num_objects=1,
                           description="Draw a new grid: press and hold to start, click to add corners, press and "
                                       "hold to end; then Add drawn grid")
        tap = TapTool(renderers=[self.grid_renderer], description="Select grids (shift: several)")
        fig.add_tools(edit, split, new, tap, HoverTool(renderers=[self.grid_renderer], tooltips=[("grid", "@grid_id")]))
        fig.toolbar.active_tap = tap
        self.tools = {"edit": edit, "split": split, "draw": new, "select": tap}
        return fig

    def _widgets(self) -> None:
        def button(label: str, action: Callable[[], object], **kw) -> pn.widgets.Button:
            b = pn.widgets.Button(label=label, height=32, margin=(4, 4), **kw)
            b.on_click(lambda _e: action())
            return b

        self.undo_button = button("Undo", self.undo, width=70)
        self.redo_button = button("Redo", self.redo, width=70)
        self.edit_buttons = pn.Row(
            button("Split along the line", self.split), button("Merge selected", self.merge),
            button("Add drawn grid", self.draw), button("Delete selected", self.delete),
            self.undo_button, self.redo_button, sizing_mode="stretch_width", css_classes=["twin-planner-tools"])
        self.save_button = button("Save", self.save, color="primary", width=90)
        self.message_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                         css_classes=["twin-planner-message"])
        self.figures_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                         css_classes=["twin-before-after"])
        self.rules_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["twin-rules"])
        self.history_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                         css_classes=["twin-history-versions"])
        self.proposal_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                          css_classes=["twin-proposal"])
        self.history_buttons = pn.Row(button("Show history of selected", self.show_history),
                                      button("Restore this version", self.restore))
        self.proposal_buttons = pn.Row(button("Accept", self.accept_proposal, color="primary"),
                                       button("Edit", self.edit_proposal), button("Discard", self.discard_proposal),
                                       visible=False)

    # -- loading a parent ------------------------------------------------------
    @param.depends("parent_id", watch=True)
    def _load_parent(self) -> None:
        """Read the parent's children, the assets around it and its footprints; start a new edit session."""
        started = time.perf_counter()
        parent = current_grids(self._con, grid_ids=[self.parent_id])
        if not len(parent):
            raise GridEditError(f"grid {self.parent_id!r} is not in force; pick another parent.")
        self._parent_shape = parent.geometry.iloc[0]
        self._saved_grids = current_grids(self._con, parent_id=self.parent_id)
        self._level = str(self._saved_grids["level"].iloc[0])
        xmin, ymin, xmax, ymax = self._parent_shape.bounds
        self._assets = load_assets(self._con, bbox=(xmin - ASSET_PAD_M, ymin - ASSET_PAD_M, xmax + ASSET_PAD_M,
                                                    ymax + ASSET_PAD_M))
        self._footprint_tree = shapely.STRtree(self._assets.footprints)  # building corners to snap to
        self.session = self._new_session(self._saved_grids.geometry)
        self.proposal = None
        self._history = None
        with pn.io.hold():
            # Footprints go once per parent; edits never resend them.
            self._push(self.footprint_source, outline_columns(self._assets.footprints,
                                                              self._assets.buildings["building_id"], self.origin))
            px, py = line_columns([self._parent_shape], self.origin)
            self._push(self.parent_source, {"xs": px, "ys": py})
            for source in (self.history_source, self.proposal_source, self.compare_source, self.line_source,
                           self.draw_source):
                self._push(source, {k: [] for k in source.data})
            self.param.update(selected=[], show="edit", history_grid=None, message="")
            self.proposal_pane.object = ""
            self.proposal_buttons.visible = False
            self.history_pane.object = ""
            self._after_edit()
        log.info("planner: %s (%d %s grids, %d buildings) loaded in %.2f s", self.parent_id,
                 len(self._saved_grids), self._level, len(self._assets.buildings), time.perf_counter() - started)

    def _new_session(self, shapes: gpd.GeoSeries) -> EditSession:
        """An edit session on ``shapes`` that knows the parent, so a move of its outline is refused."""
        return EditSession(shapes, parent=self._parent_shape, parent_id=self.parent_id)

    # -- edits -------------------------------------------------------------------
    def _apply(self, edit: str, *args, **kwargs) -> bool:
        """Run one engine edit through the session; a refused edit changes nothing and says why."""
        started = time.perf_counter()
        try:
            self.session.apply(edit, *args, **kwargs)
        except TwinError as exc:
            self.message = f"Refused: {exc}"
            self._push_grids()  # undo what the browser tool did locally
            return False
        self.message = ""
        self._after_edit()
        self.last_edit_s = time.perf_counter() - started
        log.debug("planner: %s took %.3f s", edit, self.last_edit_s)
        return True

    def move_vertex(self, at: Sequence[float], to: Sequence[float]) -> bool:
        """Move the vertex at ``at`` to ``to`` (district CRS, m) in every grid that has it, after snapping
        ``to`` to a grid vertex, building corner or grid edge within :attr:`tolerance_m`."""
        at, to = np.asarray(at, dtype=float)[:2], np.asarray(to, dtype=float)[:2]
        if self.tolerance_m > 0:
            near = self._nearby_footprints(to, self.tolerance_m)
            shapes = list(self.session.shapes.values) + [self._parent_shape]
            (x, y), kind = snap_point_near(to, shapes=shapes, footprints=near, tolerance_m=self.tolerance_m)
            to = np.array([x, y])
        if np.hypot(*(to - at)) < NO_MOVE_M:
            self._push_grids()
            return False
        return self._apply("move_vertex", at=at, to=to, tolerance_m=VERTEX_MATCH_M)

    def split(self, line: Sequence | None = None, *, grid_id: str | None = None) -> bool:
        """Split a grid along ``line`` (district CRS, m; default: the line drawn on the plan). The grid is the
        selected one, or the one the line crosses most."""
        if line is None:
            xs, ys = self.line_source.data["xs"], self.line_source.data["ys"]
            if not len(xs) or len(xs[-1]) < 2:
                self.message = "Refused: draw a split line across a grid first (the split-line tool), then Split."
                return False
            line = np.column_stack([np.asarray(xs[-1], dtype=float), np.asarray(ys[-1], dtype=float)]) + self.origin
        line = shapely.LineString(np.asarray(line, dtype=float)[:, :2])
        if grid_id is None:
            grid_id = self.selected[0] if len(self.selected) == 1 else self._crossed_most(line)
        done = self._apply("split", grid_id, line)
        self._push(self.line_source, {"xs": [], "ys": []})
        return done

    def _crossed_most(self, line) -> str:
        inside = shapely.length(shapely.intersection(self.session.shapes.values, line))
        return str(self.session.shapes.index[int(np.argmax(inside))])

    def merge(self, grid_ids: Sequence[str] | None = None) -> bool:
        """Merge neighbouring grids (default: the selected ones); the first keeps its id."""
        ids = list(grid_ids if grid_ids is not None else self.selected)
        if len(ids) < 2:
            self.message = "Refused: select two or more neighbouring grids (shift-click) to merge."
            return False
        return self._apply("merge", ids)

    def draw(self, polygon: Sequence | None = None) -> bool:
        """Add a grid (district CRS, m; default: the one drawn on the plan), clipped to the parent; it takes
        its area from the siblings it covers."""
        if polygon is None:
            xs, ys = self.draw_source.data["xs"], self.draw_source.data["ys"]
            if not len(xs) or len(xs[-1]) < 3:
                self.message = "Refused: draw the new grid first (the draw tool), then Add drawn grid."
                return False
            polygon = np.column_stack([np.asarray(xs[-1], dtype=float), np.asarray(ys[-1], dtype=float)]) + \
                self.origin
        done = self._apply("draw", shapely.Polygon(np.asarray(polygon, dtype=float)[:, :2]),
                           parent=self._parent_shape)
        self._push(self.draw_source, {"xs": [], "ys": []})
        return done

    def delete(self, grid_id: str | None = None, *, to: str | None = None) -> bool:
        """Delete a grid by giving its area to a neighbour (default: the selected grid, to the second selected
        one or the neighbour sharing the longest edge)."""
        if grid_id is None:
            if not self.selected:
                self.message = "Refused: select the grid to delete (and, shift-click, the neighbour to take it)."
                return False
            grid_id = self.selected[0]
            to = to if to is not None else (self.selected[1] if len(self.selected) > 1 else None)
        # the footprints around the grid: its area is shared so that no building is cut
        shapes = self.session.shapes
        near = (self._assets.footprints[self._footprint_tree.query(shapes[grid_id])] if grid_id in shapes.index
                else np.array([], dtype=object))
        return self._apply("delete", grid_id, to=to, footprints=near)

    def undo(self) -> bool:
        return self._step("undo")

    def redo(self) -> bool:
        return self._step("redo")

    def _step(self, what: str) -> bool:
        try:
            getattr(self.session, what)()
        except TwinError as exc:
            self.message = f"Refused: {exc}"
            return False
        self.message = ""
        self._after_edit()
        return True

    # -- what an edit changes ----------------------------------------------------
    def _after_edit(self) -> None:
        """Check the rules, reassign, and send only what changed: the grids, the red layer, moved buildings."""
        shapes = self.session.shapes
        changed, added, removed = changed_grids(self._saved_grids.geometry, shapes)
        if changed or added or removed:
            self.violations = check_edit(self._con, self.parent_id, shapes, level=self._level, assets=self._assets)
            self.reassignment = reassign(self._assets, {**{g: shapes[g] for g in changed + added},
                                                        **{g: None for g in removed}}, level=self._level)
        else:
            self.violations, self.reassignment = [], None
        self.selected = [g for g in self.selected if g in shapes.index]
        with pn.io.hold():
            self._push_grids()
            # a violation without area (none so far, but an empty geometry is possible) has nothing to draw
            shown = [v for v in self.violations if v.geometry is not None and v.geometry.area > 0]
            vx, vy = polygon_columns([v.geometry for v in shown], self.origin)
            self._push(self.violation_source, {"xs": vx, "ys": vy, "rule": [v.rule for v in shown],
                                               "grid_id": [v.grid_id for v in shown],
                                               "area": [round(v.area_m2, 2) for v in shown]})
            self._push_moved()
            self.figures_pane.object = self._figures_html()
            self.rules_pane.object = self._rules_html()
            self.undo_button.disabled = not self.session.can_undo
            self.redo_button.disabled = not self.session.can_redo

    def _push(self, source: ColumnDataSource, data: dict) -> None:
        self._pushing = True
        try:
            source.data = data
        finally:
            self._pushing = False

    def _push_grids(self) -> None:
        shapes = self.session.shapes
        ids, rings = ring_rows(shapes, self.origin)
        classes = dict(zip(shapes.index, neighbour_distinct_classes(shapes.to_numpy(dtype=object))))
        self._ring_ids, self._rings = ids, rings
        picked = [i for i, g in enumerate(ids) if g in self.selected]
        self._push(self.grid_source, {"xs": [r[:, 0] for r in rings], "ys": [r[:, 1] for r in rings],
                                      "grid_id": ids, "colour": [CATEGORICAL[classes[g] % len(CATEGORICAL)]
                                                                 for g in ids]})
        self._pushing = True
        try:
            self.grid_source.selected.indices = picked
        finally:
            self._pushing = False

    def _push_moved(self) -> None:
        moved = self.reassignment.moves["buildings"]["building_id"] if self.reassignment is not None else []
        rows = np.flatnonzero(self._assets.buildings["building_id"].isin(list(moved)).to_numpy())
        self._push(self.moved_source, outline_columns(self._assets.footprints[rows],
                                                      self._assets.buildings["building_id"].iloc[rows], self.origin))

    def _nearby_footprints(self, point: np.ndarray, radius: float) -> np.ndarray:
        return self._assets.footprints[self._footprint_tree.query(shapely.Point(point).buffer(radius))]

    # -- browser events ------------------------------------------------------------
    def _grid_data_changed(self, _attr: str, _old: dict, new: dict) -> None:
        """The PolyEditTool moved (or inserted) a vertex in the browser: one engine move."""
        if self._pushing:
            return
        drag = vertex_drag(self._rings, new.get("xs", []), new.get("ys", []))
        if drag is None:
            return
        if isinstance(drag, str):
            self.message = f"Refused: {drag}"
            self._push_grids()
            return
        at, to, inserted = drag
        if inserted and np.hypot(*(to - at)) <= max(self.tolerance_m, 0.5):
            self._push_grids()  # the tool's new vertex still lies on its edge: nothing to move yet
            return
        self.move_vertex(at + self.origin, to + self.origin)

    def _grid_picked(self, _attr: str, _old: list, new: list) -> None:
        if self._pushing:
            return
        ids = list(dict.fromkeys(self._ring_ids[i] for i in new if 0 <= i < len(self._ring_ids)))
        self.selected = ids

    # -- saving ------------------------------------------------------------------
    def _versions(self) -> dict[str, int]:
        """The version of each child of the parent that this session started from."""
        return {str(g): int(v) for g, v in self._saved_grids["version"].items()}

    def _reason(self, reason: str | None) -> str | None:
        reason = (self.reason if reason is None else reason).strip()
        if not reason:
            self.message = "Refused: give a reason first (it is kept with the new versions); nothing was saved."
            return None
        return reason

    def _write(self, write: Write, *, action: str) -> list[SavedEdit] | None:
        """Run a write through the injected ``save``; on success reload the parent and announce it."""
        try:
            saved = self._save(write)
        except TwinError as exc:
            self.message = f"Refused: {exc}"
            return None
        except duckdb.Error as exc:
            log.exception("planner: saving failed")
            self.message = f"Refused: the store did not take the write ({exc}); nothing was saved."
            return None
        ids = [s.change_id for s in saved if s.change_id]
        written = {g: v for s in saved for g, v in s.versions.items()}
        self._load_parent()  # a fresh session on the saved grids; the assets follow the store
        self.message = (f"Saved {', '.join(ids)}: " + ", ".join(f"{g} v{v}" for g, v in sorted(written.items()))
                        if ids else "Nothing differed from the store; nothing was written.")
        self.reason = ""
        self.saved = {"change_ids": ids, "parent_id": self.parent_id, "level": self._level, "action": action,
                      "versions": written}
        return saved

    def save(self, reason: str | None = None) -> list[SavedEdit] | None:
        """Save the edited grids as new versions, with the actor and ``reason`` (default :attr:`reason`).

        Refused, with the reasons and nothing written, when the edit breaks a rule.
        """
        reason = self._reason(reason)
        if reason is None:
            return None
        bad = errors(self.violations)
        if bad:
            listed = "; ".join(v.message for v in bad[:5])
            self.message = f"Refused: the edit breaks {len(bad)} grid rule(s); nothing was saved: {listed}"
            return None
        parent, shapes, level, loaded = self.parent_id, self.session.shapes.copy(), self._level, self._versions()

        def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
            _check_unchanged(con, {parent: loaded})
            # the buildings, cameras and cases are read in this transaction: another planner may have moved some
            # save_partition writes the audit row (grid.save) in this transaction
            return [save_partition(con, parent, shapes, actor=self.actor, reason=reason, level=level,
                                   source=self.source)]
        return self._write(write, action="edit")

    # -- history -------------------------------------------------------------------
    def show_history(self, grid_id: str | None = None) -> None:
        """Show the past versions of a grid (default: the selected one) and draw the chosen one on the plan."""
        grid_id = grid_id or (self.selected[0] if self.selected else None)
        if grid_id is None:
            self.message = "Refused: select a grid on the plan to see its versions."
            return
        try:
            self._history = grid_history(self._con, grid_id)
        except TwinError as exc:
            self.message = f"Refused: {exc}"
            return
        versions = [int(v) for v in self._history["version"]]
        self.history_grid = grid_id
        self.param.history_version.objects = versions
        earlier = [v for v in versions if v < versions[-1]]
        pick = earlier[-1] if earlier else versions[-1]
        if self.history_version == pick:
            self._draw_version()
        else:
            self.history_version = pick

    @param.depends("history_version", watch=True)
    def _draw_version(self) -> None:
        if self._history is None or self.history_grid is None or self.history_version not in set(
                self._history["version"]):
            self._push(self.history_source, {"xs": [], "ys": []})
            return
        row = self._history[self._history["version"] == self.history_version].iloc[0]
        xs, ys = polygon_columns([row.geometry], self.origin)
        self._push(self.history_source, {"xs": xs, "ys": ys})
        items = []
        for r in self._history.itertuples():
            until = "in force" if pd.isna(r.valid_to) else f"until {str(r.valid_to)[:19]}"
            mark = " class='twin-group'" if r.version == self.history_version else ""
            items.append(f"<tr{mark}><td>v{r.version}</td><td>{str(r.valid_from)[:19]}</td><td>{until}</td>"
                         f"<td>{html.escape(str(r.actor if isinstance(r.actor, str) else '—'))}</td>"
                         f"<td>{html.escape(str(r.reason if isinstance(r.reason, str) else 'first version'))}</td>"
                         "</tr>")
        self.history_pane.object = (f"<div class='label'>versions of {html.escape(self.history_grid)}</div>"
                                    "<table class='twin-table'><tr><th>version</th><th>from</th><th>to</th>"
                                    f"<th>who</th><th>why</th></tr>{''.join(items)}</table>")

    def restore(self, reason: str | None = None) -> list[SavedEdit] | None:
        """Restore the shown version (:attr:`history_version` of :attr:`history_grid`) as a new version."""
        if self.history_grid is None or self.history_version is None:
            self.message = "Refused: show a grid's history and pick the version to restore first."
            return None
        reason = self._reason(reason)
        if reason is None:
            return None
        grid_id, version = self.history_grid, int(self.history_version)

        def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
            return [restore_version(con, grid_id, version, actor=self.actor, reason=reason, source=self.source)]
        return self._write(write, action="restore")

    # -- proposal --------------------------------------------------------------------
    def propose(self) -> Proposal | None:
        """Propose micro-grids of 70–80 households for the parent, and show it against the current ones."""
        try:
            self.proposal = propose_micro_grids(self._con, self.parent_id, assets=self._assets)
        except TwinError as exc:
            self.message = f"Refused: {exc}"
            return None
        self._proposal_versions = {p: _versions_of(self._con, p) for p in self.proposal.partitions}
        shapes = pd.concat(list(self.proposal.partitions.values()))
        ids, rings = ring_rows(shapes, self.origin)
        classes = dict(zip(shapes.index, neighbour_distinct_classes(shapes.to_numpy(dtype=object))))
        now = current_grids(self._con, level="micro")
        now = now[now["parent_id"].isin(list(self.proposal.partitions))]
        cx, cy = line_columns(list(now.geometry), self.origin)
        with pn.io.hold():
            self._push(self.proposal_source, {"xs": [r[:, 0] for r in rings], "ys": [r[:, 1] for r in rings],
                                              "grid_id": ids, "colour": [CATEGORICAL[classes[g] % len(CATEGORICAL)]
                                                                         for g in ids]})
            self._push(self.compare_source, {"xs": cx, "ys": cy})
            self.proposal_pane.object = self._proposal_html()
            self.proposal_buttons.visible = True
            self.show = "proposal"
        self.message = ""
        return self.proposal

    @param.depends("show", watch=True)
    def _toggle(self) -> None:
        proposal = self.show == "proposal" and self.proposal is not None
        self.proposal_renderer.visible = self.compare_renderer.visible = proposal
        self.grid_renderer.visible = not proposal

    def accept_proposal(self, reason: str | None = None) -> list[SavedEdit] | None:
        """Save the proposal's micro-grids (every grid of the scope, one transaction), with ``reason``."""
        if self.proposal is None:
            self.message = "Refused: there is no proposal; press Propose micro-grids first."
            return None
        reason = self._reason(reason)
        if reason is None:
            return None
        partitions = dict(self.proposal.partitions)
        loaded = self._proposal_versions

        def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
            _check_unchanged(con, loaded)
            return [save_partition(con, parent, shapes, actor=self.actor, reason=f"micro-grid proposal: {reason}",
                                   level="micro", source=self.source) for parent, shapes in partitions.items()]
        return self._write(write, action="proposal")

    def edit_proposal(self) -> bool:
        """Load the proposal into the edit session (for a community: its first grid's micro-grids)."""
        if self.proposal is None:
            self.message = "Refused: there is no proposal to edit."
            return False
        proposal = self.proposal
        parent = self.parent_id if self.parent_id in proposal.partitions else next(iter(proposal.partitions))
        if parent != self.parent_id:
            self.parent_id = parent  # loads that grid and clears the proposal
        self.session = self._new_session(proposal.partitions[parent])
        self.proposal = None
        self.proposal_buttons.visible = False
        self.proposal_pane.object = ""
        self.show = "edit"
        self._after_edit()
        self.message = f"The proposal for {parent} is loaded for editing; Save keeps it, Undo does not go past it."
        return True

    def discard_proposal(self) -> None:
        self.proposal = None
        with pn.io.hold():
            self.show = "edit"
            self._push(self.proposal_source, {k: [] for k in self.proposal_source.data})
            self._push(self.compare_source, {"xs": [], "ys": []})
            self.proposal_pane.object = ""
            self.proposal_buttons.visible = False

    # -- side panels -------------------------------------------------------------------
    def _figures_html(self) -> str:
        r = self.reassignment
        if r is None or not len(r.figures):
            return "<div class='label'>before → after</div><div class='twin-muted'>No change yet.</div>"
        head = "".join(f"<th>{FIGURE_TITLES[f]}</th>" for f in FIGURES)
        rows = []
        for row in r.figures.itertuples(index=False):
            d = row._asdict()
            cells = []
            for f in FIGURES:
                b, a = int(d[f"{f}_before"]), int(d[f"{f}_after"])
                cls = " class='twin-alert'" if a != b else ""
                cells.append(f"<td{cls}>{b:,} → {a:,}</td>")
            rows.append(f"<tr><td>{html.escape(str(d['grid_id']))}</td>{''.join(cells)}</tr>")
        moved = r.summary()
        note = (f"moves {moved['buildings']:,} buildings, {moved['households']:,} households, "
                f"{moved['residents']:,} residents, {moved['cameras']:,} cameras, {moved['open_cases']:,} open cases")
        return (f"<div class='label'>before → after</div><div class='twin-muted'>{note}</div>"
                f"<table class='twin-table'><tr><th>grid</th>{head}</tr>{''.join(rows)}</table>")

    def _rules_html(self) -> str:
        if not self.violations:
            return "<div class='label'>rules</div><div class='twin-ok'>All rules hold.</div>"
        rows = "".join(
            f"<tr class='twin-{v.severity}'><td class='{'twin-alert' if v.severity == 'error' else ''}'>"
            f"{v.severity}</td><td>{v.rule}</td><td>{html.escape(v.grid_id)}</td><td>{v.area_m2:,.2f}</td>"
            f"<td>{html.escape(v.message)}</td></tr>" for v in self.violations)
        n = len(errors(self.violations))
        return (f"<div class='label'>rules: {n} error(s), {len(self.violations) - n} warning(s)</div>"
                "<table class='twin-table'><tr><th></th><th>rule</th><th>grid</th><th>area m²</th><th>what</th></tr>"
                f"{rows}</table>")

    def _proposal_html(self) -> str:
        s = self.proposal.summary()
        rows = []
        for key, label in (("micro_grids", "micro-grids"), ("share_in_70_80", "share with 70–80 households"),
                           ("high_rise_alone", "high-rise buildings alone"),
                           ("polsby_popper_median", "Polsby–Popper, median"),
                           ("polsby_popper_min", "Polsby–Popper, min"),
                           ("households_min", "households, min"), ("households_max", "households, max")):
            rows.append(f"<tr><td>{label}</td><td>{s['current'].get(key, '—')}</td>"
                        f"<td>{s['proposed'].get(key, '—')}</td></tr>")
        return ("<div class='label'>micro-grid proposal for " + html.escape(self.proposal.scope) + "</div>"
                "<table class='twin-table'><tr><th></th><th>now</th><th>proposed</th></tr>" + "".join(rows) +
                "</table>")

    @param.depends("message", watch=True)
    def _show_message(self) -> None:
        text = html.escape(self.message)
        self.message_pane.object = f"<span class='{'twin-alert' if text.startswith('Refused') else 'twin-ok'}'>" \
                                   f"{text}</span>" if text else ""

    def __panel__(self) -> pn.viewable.Viewable:
        if self.session is None:
            return pn.Column(self.message_pane, sizing_mode="stretch_both", stylesheets=[CSS])
        controls = pn.Row(
            pn.widgets.Select.from_param(self.param.parent_id, name="parent", width=320),
            pn.widgets.FloatInput.from_param(self.param.tolerance_m, name="snap (m)", width=90),
            sizing_mode="stretch_width")
        saving = pn.Row(
            pn.widgets.TextInput.from_param(self.param.reason, name="", placeholder="why (required to save)",
                                            sizing_mode="stretch_width"),
            self.save_button, sizing_mode="stretch_width")
        propose = pn.widgets.Button(label="Propose micro-grids", height=32, margin=(4, 4))
        propose.on_click(lambda _e: self.propose())
        side = pn.Column(
            self.message_pane, self.figures_pane, self.rules_pane, saving,
            pn.Row(propose, pn.widgets.RadioButtonGroup.from_param(self.param.show, width=160)),
            self.proposal_pane, self.proposal_buttons,
            pn.Row(pn.widgets.Select.from_param(self.param.history_version, name="", width=90),
                   self.history_buttons),
            self.history_pane, width=440, scroll=True, sizing_mode="stretch_height")
        plan = pn.Column(controls, self.edit_buttons, pn.pane.Bokeh(self.figure, sizing_mode="stretch_both"),
                         sizing_mode="stretch_both")
        return pn.Row(plan, side, sizing_mode="stretch_both", stylesheets=[CSS])
