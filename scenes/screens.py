"""The app: one screen for the leader (Overview) and the operator, and the planner's plan.

Layout, as in district operations centres: header with the screen tabs and
search, key figures and the per-grid table on the left, the 3D district in
the middle, the inspector on the right, and the live case ticker below.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd
import panel as pn
import param
import shapely
from panel.io.callbacks import PeriodicCallback

from scenes.admin import AdminScreen
from scenes.drilldown import DrillDown
from scenes.figures import GridTable, KeyFigures
from scenes.framing import frame_view
from scenes.i18n import (N_, _, case_kind_name, current_lang, error_text, level_name, role_name, status_name,
                         translated_legend)
from scenes.inspector import Inspector
from scenes.layers import (COLOUR_MEASURES, COVERAGE_MEASURE, GRID_MEASURES, VOLUNTEER_MEASURES, case_markers,
                           case_update_records, grid_segments, worker_records)
from scenes.loopfigures import LoopFigures
from scenes.party import PartyLayer
from scenes.planner import GridEditor, save_through_writer
from scenes.shared import QUIET_REFRESH_S, READS, REFRESH_S, WORKERS_REFRESH_S, GridOutlines, SharedDistrict
from scenes.theme import CSS
from scenes.ticker import CaseTicker
from scenes.volunteerboard import VolunteerRanking, ticker_items
from scenes.view3d import DistrictView
from twin.access.access import Principal
from twin.cases.cases import CASE_STATUSES, OPEN_STATUSES
from twin.errors import TwinError
from twin.field.patrol import of_grids
from twin.access.policy import Gate
from twin.store.schema import GRID_LEVELS

log = logging.getLogger(__name__)
SCREENS = ("Overview", "Planner", "Operator", "Admin")
SCREEN_NAMES = {"Overview": N_("Overview"), "Planner": N_("Planner"), "Operator": N_("Operator"), "Admin": N_("Admin")}
# The screens each role works on; the first is where it starts.
ROLE_SCREENS = {"leader": ("Overview",), "operator": ("Operator", "Overview"), "planner": ("Planner", "Overview"),
                "admin": ("Admin", "Overview"), "worker": ("Operator", "Overview"),
                "department": ("Operator", "Overview")}
TICKER_SIZE = 8
LIVE_POLL_MS = 250  # how often a session looks for committed case changes
T = TypeVar("T")
MEASURE_LABELS = {"grid": N_("grid"), "open_cases": N_("open cases"), "overdue_cases": N_("overdue"),
                  "cases_per_1000": N_("per 1,000"), COVERAGE_MEASURE: N_("patrol coverage"),
                  "volunteer_hours": N_("volunteer hours"), "volunteer_points": N_("volunteer points"),
                  "population": N_("population"), "height": N_("height")}
LANG_SWITCH = (("zh", "中文"), ("en", "English"))  # each named in its own language
# Side panels take a share of the screen's width between these bounds: the 3D view keeps the rest at
# 1280 px and a wall screen's 3840 px alike (Panel's fixed widths would push controls off a small screen).
LEFT_WIDTH = "clamp(290px, 19vw, 560px)"
RIGHT_WIDTH = "clamp(330px, 22vw, 640px)"


# Bokeh adds up its children's fixed widths into a row's min-width, hidden ones included: a row that may shrink.
SHRINKS = [":host { min-width: 0 !important; }"]


def _panel_width(width: str) -> list[str]:
    """A stylesheet giving a side panel ``width`` (a CSS length) in place of its fixed width in pixels."""
    return [f":host {{ flex: 0 0 {width} !important; width: {width} !important; min-width: 0 !important; "
            f"max-width: {width} !important; }}"]


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()



def session_poll(callback: Callable[[], object], *, period_ms: int) -> PeriodicCallback:
    """Run ``callback`` every ``period_ms`` in the current session, until the session ends.

    As ``pn.state.add_periodic_callback``, without Panel's busy bookkeeping and its two log lines per run:
    Panel counts every run of a callback in one list shared by all sessions, so at 25 sessions polling four times
    a second that bookkeeping took a fifth of a core and held the event loop from the clicks (the poll's own work
    took a fiftieth of it). Nothing here shows Panel's busy state.
    """
    poll = PeriodicCallback(callback=callback, period=period_ms, background=True, log=False)
    poll.start()
    pn.state.on_session_destroyed(lambda _context: poll.stop())
    return poll

class DistrictApp(pn.viewable.Viewer):
    """The whole app on one store.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A cursor on the store (one per browser session).
    shared : SharedDistrict
        The buildings' geometry buffer and what else every session shows alike.
    principal : Principal
        The signed-in user: the screens offered follow the role, and every read of
        residents and cases goes through a :class:`twin.access.policy.Gate` for them.
    """

    screen = param.Selector(default="Overview", objects=list(SCREENS))
    colour_by = param.Selector(default="grid", objects=list(COLOUR_MEASURES))
    level = param.Selector(default="grid", objects=list(GRID_LEVELS))

    def __init__(self, con: duckdb.DuckDBPyConnection, shared: SharedDistrict, *, principal: Principal,
                 **params) -> None:
        super().__init__(**params)
        self._con = con
        self.principal = principal
        writer = shared.writer
        # Served, the looks run off the event loop (scenes.shared.OffLoop): their audit rows go through the
        # store's writer, and what they record is shown only once committed. What still reads through this
        # gate on the loop (the admin's trail) waits on the writer only for a refusal's row.
        self.gate = Gate(con, principal, refusals=shared.refusals, audit_sink=None if writer is None else
                         (lambda **row: writer.audit(**row).result(timeout=10)), scopes=shared.scope_of)
        self.param.screen.objects = list(ROLE_SCREENS[principal.role])
        self.shared = shared
        self.layer = layer = shared.layer
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        self.district_name = meta.get("district_name") or _("District")
        self.figures = KeyFigures(shared.key_figures)
        # An operator's own grids (with every grid under them): their figures stand beside the district's.
        self._my_grids = self.gate.scope if principal.role == "operator" else None
        if self._my_grids is not None:
            self.figures.refresh(mine=shared.key_figures(grids=self._my_grids))
        self.grid_table = GridTable(shared.grid_table, level=self.level)
        self.inspector = Inspector(self.gate, writer=writer, off_loop=shared.off_loop, coverage=shared.coverage)
        self.drilldown = DrillDown(self.inspector.look, lambda: dict(zip(self.grid_table.value["grid_id"],
                                                                          self.grid_table.value["name"])),
                                   lambda: dict(zip(self.loop.value["departments"]["department_id"],
                                                    self.loop.value["departments"]["name"])))
        self.figures.param.watch(lambda e: self.drilldown.open(e.new["kind"]), "door")
        self.loop = LoopFigures(shared.loop_figures, level=self.level)
        self.loop.param.watch(lambda e: self.drilldown.open("escalated"), "door")
        self.drilldown.param.watch(lambda e: self._go_to(f"{e.new['kind']}|{e.new['id']}"), "picked")
        tiled = shared.tileset is not None  # tiles carry the models too; else one buffer of every building
        self.view = DistrictView(buildings=b"" if tiled else layer.payload, models=b"" if tiled else shared.models,
                                 tileset=shared.tileset or "", sizing_mode="stretch_both", min_height=400)
        self._editor: GridEditor | None = None
        self._cameras = shared.cameras
        self._load_cases()
        self._live_at, self._live_version = time.monotonic(), self._seen
        self._poll = None
        self._figures_task: asyncio.Future | None = None
        self._figures_ready: tuple | None = None
        # Operators see their grids' workers on patrol, with their open load (refreshed every WORKERS_REFRESH_S).
        self._sees_workers = self.gate.may("positions")
        self._workers_at = -WORKERS_REFRESH_S
        self._workers_task: asyncio.Future | None = None
        self._worker_names: list[str] = []
        self._show_colours(shared.colours(self.colour_by, level=self.level))  # the first frame's, at once
        # A city's grid outlines and labels (3 MB at the grid level) follow its first frame, as the ground does.
        self._grids_late = tiled
        self._show_grids(shared.grid_outlines(self.level))
        self.search_box = pn.widgets.TextInput(placeholder=_("Search address, building or case id"), width=260,
                                               css_classes=["twin-search"])
        self.search_box.param.watch(self._search, "enter_pressed")
        # The results list and the message take turns in one place of the header.
        self.search_results = pn.widgets.Select(options={}, width=230, visible=False)
        self.search_results.param.watch(lambda e: self._go_to(e.new), "value")
        self.message = pn.pane.HTML("", stylesheets=[CSS], width=230, height=44, visible=False,
                                    css_classes=["twin-search-message"],
                                    styles={"overflow": "hidden", "font-size": "12px"})
        self.show_cameras = pn.widgets.Checkbox(label=_("cameras"), value=True, width=80)
        self.show_cameras.link(self.view, value="show_cameras")
        self.show_cases = pn.widgets.Checkbox(label=_("cases"), value=True, width=65)
        self.show_cases.link(self.view, value="show_cases")
        self.party = PartyLayer(self)  # its toggle in the toolbar, its table under the grid table
        self.volunteers = VolunteerRanking(self)  # the communities ranked, under the party table
        self._tasks_done: list[dict] = shared.tasks_done()  # the newest completed volunteer tasks, first in the ticker
        self.ticker = CaseTicker(title=_("LIVE CASES"), sizing_mode="stretch_width", height=44)
        self.ticker.param.watch(lambda e: self._go_to(e.new["case_id"] if e.new["case_id"].startswith("task|")
                                                      else f"case|{e.new['case_id']}"), "clicked")
        self._fill_ticker()
        self.toolbar = pn.Row(
            # Eight colourings: a list in the toolbar's room (buttons would not fit beside the level at 1280 px).
            pn.widgets.Select.from_param(self.param.colour_by, label="", width=160, css_classes=["twin-colour-by"],
                                         options={_(label): m for m, label in MEASURE_LABELS.items()}),
            pn.widgets.Select.from_param(self.param.level, label="", width=100,
                                         options={level_name(v): v for v in GRID_LEVELS}),
            self.show_cases, self.show_cameras, self.party.toggle, sizing_mode="stretch_width", height=44,
            css_classes=["twin-toolbar"])
        self.centre = pn.Column(self.toolbar, self.view, sizing_mode="stretch_both", css_classes=["twin-centre"])
        self.view.param.watch(self._picked, "pick")
        self.inspector.param.watch(self._building_shown, "shown_building_id")
        self.view.param.watch(self._hovered, "hovered")
        self.view.param.watch(self._ready, "ready")
        # The side panels join the page after the district's first frame: the browser builds them while
        # the first frame is already on screen, not before it (their places are kept, so nothing moves).
        self._left = pn.Column(width=360, sizing_mode="stretch_height", scroll=True, css_classes=["twin-left"],
                               stylesheets=_panel_width(LEFT_WIDTH))
        self._right = pn.Column(width=400, sizing_mode="stretch_height", scroll=True, css_classes=["twin-right"],
                                stylesheets=_panel_width(RIGHT_WIDTH))
        self._bottom = pn.Column(height=44, sizing_mode="stretch_width", css_classes=["twin-bottom"])
        self._admin: AdminScreen | None = None
        self.grid_table.param.watch(self._grid_clicked, "selected_grid")
        self.grid_table.param.watch(lambda e: setattr(self, "level", e.new), "level")
        self.screen = ROLE_SCREENS[principal.role][0]
        self._screen_changed()

    # -- data shaped for the view -------------------------------------------
    def _load_cases(self) -> None:
        """All open cases as markers; their order gives the markers' slots."""
        self._seen = self.shared.feed.version  # before the read: a change in between is applied twice, harmlessly
        placeholders = ", ".join("?" for _ in OPEN_STATUSES)
        cases = _frame(self._con, f"SELECT case_id, status, building_id, ST_X(location) AS x, ST_Y(location) AS y, "
                                  f"category, subcategory, updated_at FROM cases WHERE status IN ({placeholders}) "
                                  "ORDER BY case_id", list(OPEN_STATUSES))
        self._case_ids: list[str] = cases["case_id"].tolist()
        self._case_slot = {c: i for i, c in enumerate(self._case_ids)}
        self._latest = cases.sort_values("updated_at", ascending=False).head(TICKER_SIZE)[
            ["case_id", "subcategory", "status"]].values.tolist()
        self.view.cases = case_markers(cases, self.layer)

    def catch_up(self) -> None:
        """Draw the case changes committed since this session last looked; refresh the figures once a second.

        A served session runs it (as :meth:`_catch_up_live`) every ``LIVE_POLL_MS`` from its first frame on.
        """
        self._draw_changes()
        if self._figures_due():
            self._show_figures(*self._live_figures())

    def _draw_changes(self) -> None:
        version, rows = self.shared.feed.since(self._seen)
        if rows is None:  # too far behind: start over
            self._load_cases()
        elif rows:
            self._seen = version
            self.view.case_updates = case_update_records(self._marker_updates(rows))
            for r in rows:
                self._latest = [[r["case_id"], r["subcategory"], r["status"]]] + [
                    t for t in self._latest if t[0] != r["case_id"]][:TICKER_SIZE - 1]

    async def _catch_up_live(self) -> None:
        """:meth:`catch_up` for the periodic callback. The figures' queries run in a thread of their own:
        intake requests are not held up behind them, and neither are the next markers."""
        self._draw_changes()
        if self._figures_ready is not None:
            figures, self._figures_ready = self._figures_ready, None
            self._show_figures(*figures)
        if self._figures_task is None and self._figures_due():
            self._figures_task = asyncio.get_running_loop().run_in_executor(READS, self._live_figures)
            self._figures_task.add_done_callback(self._figures_computed)
        workers_due = time.monotonic() - self._workers_at > WORKERS_REFRESH_S
        if self._sees_workers and self._workers_task is None and workers_due:
            self._workers_at = time.monotonic()
            self._workers_task = asyncio.get_running_loop().run_in_executor(READS, self._read_workers)
        elif self._workers_task is not None and self._workers_task.done():
            task, self._workers_task = self._workers_task, None
            if task.exception() is None:
                self.show_workers(task.result())
            else:
                log.error("the workers' positions failed", exc_info=task.exception())

    def _read_workers(self) -> pd.DataFrame:
        """The workers on patrol of this operator's grids (on a reader thread)."""
        found = self.shared.field_workers()
        return found if self._my_grids is None else of_grids(found, self._my_grids)

    def show_workers(self, workers: pd.DataFrame) -> None:
        """Draw the grid workers on patrol at their last positions, with their open load."""
        names = workers["worker"].tolist()
        records = worker_records(workers, self.layer.origin)
        if names != self._worker_names or records != self.view.workers:
            self._worker_names = names
            self.view.param.update(workers=records, worker_names=names)

    def _figures_computed(self, task: asyncio.Future) -> None:
        self._figures_task = None
        if task.exception() is None:
            self._figures_ready = task.result()  # shown at the next tick, inside the session's callback
        else:
            log.error("live figures failed", exc_info=task.exception())

    def _figures_due(self) -> bool:
        # Cases move the figures at once; what the case feed does not announce (volunteer tasks confirmed, patrol
        # coverage) is read again every QUIET_REFRESH_S all the same.
        wait = REFRESH_S if self._seen != self._live_version else QUIET_REFRESH_S
        if time.monotonic() - self._live_at < wait:
            return False
        self._live_at, self._live_version = time.monotonic(), self._seen
        return True

    def _live_figures(self) -> tuple[dict, pd.DataFrame, tuple | None, dict | None, tuple[str, dict], tuple]:
        measure, level = self.colour_by, self.level
        colours = ((measure, level, self.shared.colours(measure, level=level))
                   if measure in (*GRID_MEASURES, COVERAGE_MEASURE, *VOLUNTEER_MEASURES) else None)
        mine = None if self._my_grids is None else self.shared.key_figures(grids=self._my_grids)
        loop_level = self.loop.level
        return (self.shared.key_figures(), self.shared.grid_table(self.grid_table.level), colours, mine,
                (loop_level, self.shared.loop_figures(loop_level)),
                (self.shared.volunteer_ranking(), self.shared.tasks_done()))

    def _show_figures(self, figures: dict, table: pd.DataFrame, colours: tuple | None, mine: dict | None,
                      loop: tuple[str, dict], volunteers: tuple[pd.DataFrame, list[dict]]) -> None:
        with pn.io.hold():
            self.figures.refresh(figures, mine)
            self._tasks_done = volunteers[1]
            if self.volunteers.value is None or not self.volunteers.value.equals(volunteers[0]):
                self.volunteers._show(volunteers[0])
            self.grid_table.refresh(table)
            if loop[0] == self.loop.level:
                self.loop.refresh(loop[1])
            self._fill_ticker()
            if colours is not None and colours[:2] == (self.colour_by, self.level):
                self._show_colours(colours[2])

    def _marker_updates(self, rows: list[dict]) -> list[tuple]:
        """``(slot, x, y, z, status, fresh, case_id)`` per changed case (the last change of each)."""
        ox, oy, _ = self.layer.origin
        updates = []
        for r in {r["case_id"]: r for r in rows}.values():
            slot = self._case_slot.get(r["case_id"])
            status = CASE_STATUSES.index(r["status"]) if r["status"] in OPEN_STATUSES else -1
            new = slot is None  # a new marker pulses
            if new:
                if status < 0:
                    continue
                slot = self._case_slot[r["case_id"]] = len(self._case_ids)
                self._case_ids.append(r["case_id"])
            index = self.layer.index_of(r["building_id"]) if r["building_id"] else -1
            z = float(self.layer.centre[index, 2]) if index >= 0 else 0.0
            updates.append((slot, float(r["x"] - ox), float(r["y"] - oy), z, status, new, r["case_id"]))
        return updates

    def _read_then(self, read: Callable[[duckdb.DuckDBPyConnection], T], show: Callable[[T], None]) -> None:
        """``show(read(cursor))``: served, ``read`` runs on a reader thread (on that thread's cursor) and ``show``
        back on the event loop; otherwise both at once, on this session's cursor."""
        if self.shared.off_loop is None:
            return show(read(self._con))

        async def run() -> None:
            loop = asyncio.get_running_loop()
            show(await loop.run_in_executor(READS, lambda: read(self.shared.cursors())))
        pn.state.execute(run)

    @param.depends("colour_by", watch=True)
    def _colour(self) -> None:
        measure, level = self.colour_by, self.level
        self._read_then(lambda _con: self.shared.colours(measure, level=level),
                        lambda found: self._show_colours(found) if (measure, level) == (self.colour_by, self.level)
                        else None)

    def _show_colours(self, found: tuple[bytes, dict]) -> None:
        self.view.param.update(colors=found[0], legend=translated_legend(found[1]))

    @param.depends("level", watch=True)
    def _grids(self) -> None:
        level = self.level
        self._read_then(lambda _con: self.shared.grid_outlines(level),
                        lambda found: self._show_grids(found) if level == self.level else None)
        if self.colour_by in (*GRID_MEASURES, *VOLUNTEER_MEASURES):  # coloured per grid at the level
            self._colour()

    def _show_grids(self, outlines: GridOutlines) -> None:
        self._grid_frame, self._grid_shapes = outlines.frame, outlines.shapes  # shared by every session
        if not self._grids_late:
            self.view.param.update(grid_lines=outlines.segments, labels=outlines.labels, grid_highlight=b"")
        self.grid_table.level = self.loop.level = self.level

    def _ready(self, event: param.parameterized.Event) -> None:
        # The ground, cameras and live updates start after the first frame, so they never delay it.
        if not event.new:
            return
        self.show_panels()
        if self._my_grids is not None:
            self.frame_my_grids()
        # The ground and the cameras in one message: the browser draws them in one more frame.
        late = {"basemap": self.shared.basemap_payload, "cameras": self.shared.camera_payload,
                "cameras_near": self.shared.cameras_url}
        if self._grids_late:
            self._grids_late = False
            outlines = self.shared.grid_outlines(self.level)
            late.update(grid_lines=outlines.segments, labels=outlines.labels)
        self.view.param.update({name: payload for name, payload in late.items() if not getattr(self.view, name)})
        if self._poll is None and pn.state.curdoc is not None:
            self._poll = session_poll(self._catch_up_live, period_ms=LIVE_POLL_MS)

    def show_panels(self) -> None:
        """Put the key figures, the grid table, the inspector and the ticker on the page."""
        if not self._left.objects:
            with pn.io.hold():
                self._left.objects = [self.figures, self.grid_table, self.loop, self.party, self.volunteers]
                self.volunteers.refresh()
                self._right.objects = [self.drilldown, self.inspector]
                self._bottom.objects = [self.ticker]

    # -- interaction ---------------------------------------------------------
    def select_building(self, index: int, *, fly: bool = False) -> None:
        if index < 0:
            self.inspector.clear()
            self.view.selected = -1
            return
        # The highlight is drawn once the card is shown (_building_shown): a software-GL frame drawn first
        # would hold the browser, and the card behind it, for a frame's time.
        self.inspector.building_id = str(self.layer.building_id[index])
        if self.inspector.shown_building_id == self.inspector.building_id:
            self.view.selected = index
        if fly:
            self.frame(self.layer.box[index])

    def _building_shown(self, event: param.parameterized.Event) -> None:
        if event.new is not None and event.new == self.inspector.building_id:
            self.view.selected = self.layer.index_of(event.new)

    def _picked(self, event: param.parameterized.Event) -> None:
        with pn.io.hold():  # one message: the card lands before the highlight is drawn
            pick = event.new
            element = pick.get("element")
            if pick.get("kind") == "ground":
                self._ground_clicked(float(pick["x"]), float(pick["y"]))
                return
            self._show_pick(pick.get("kind"), int(pick.get("index", -1)), -1 if element is None else int(element))

    def _show_pick(self, kind: str | None, index: int, element: int = -1) -> None:
        if kind == "building":
            self.select_building(index)
            if element >= 0:
                self.inspector.show_element(element)
        elif kind == "case" and 0 <= index < len(self._case_ids):
            self.view.selected = -1
            self.inspector.show_case(self._case_ids[index])
        elif kind == "camera" and 0 <= index < len(self._cameras):
            self.view.selected = -1
            self.inspector.show_camera(self._cameras.camera_id[index])
        elif kind == "party":
            self.party.picked(index)
        elif kind == "worker" and 0 <= index < len(self._worker_names):
            self.view.selected = -1
            self.inspector.show_worker(self._worker_names[index])
        else:
            self.select_building(-1)

    def _hovered(self, event: param.parameterized.Event) -> None:
        self.view.tooltip = self.shared.hover_text(self._con, event.new)

    def _grid_clicked(self, event: param.parameterized.Event) -> None:
        self.select_grid(event.new, fly=True)

    def select_grid(self, grid_id: str, *, fly: bool = False) -> None:
        """Highlight a grid at the chosen level and show its card; ``fly`` frames it."""
        hits = np.flatnonzero(self._grid_frame["grid_id"].to_numpy() == grid_id)
        if not len(hits):
            return
        self.view.selected = -1
        self.inspector.show_grid(grid_id)
        shapes = self._grid_shapes[hits[:1]]
        if fly:
            self._frame_grids(shapes)
        else:
            self.view.grid_highlight = grid_segments(shapes, self.layer.origin)

    def _ground_clicked(self, x: float, y: float) -> None:
        """A click on open ground (``x``, ``y`` relative to the origin): the grid there at the chosen level."""
        point = shapely.Point(x + self.layer.origin[0], y + self.layer.origin[1])
        inside = np.flatnonzero(shapely.contains(self._grid_shapes, point)) if len(self._grid_shapes) else []
        if len(inside):
            self.select_grid(str(self._grid_frame["grid_id"].iloc[inside[0]]))
        else:
            self.select_building(-1)

    def _frame_grids(self, shapes: np.ndarray) -> None:
        """Outline ``shapes`` (shapely, district CRS) and fly to frame them from outside every building."""
        self.view.grid_highlight = grid_segments(shapes, self.layer.origin)
        ox, oy, _z = self.layer.origin
        xmin, ymin, xmax, ymax = shapely.total_bounds(shapes)
        self.frame(np.array([xmin - ox, ymin - oy, 0.0, xmax - ox, ymax - oy, 0.0]))

    def frame_my_grids(self) -> None:
        """The operator's start: their own grids outlined and framed in the 3D view."""
        grids = list(self.principal.grids)

        def read(con: duckdb.DuckDBPyConnection) -> list[bytes]:
            return [bytes(w) for w, in con.execute("SELECT ST_AsWKB(boundary) FROM grids WHERE grid_id IN "
                                                   "(SELECT unnest(?)) AND valid_to IS NULL", [grids]).fetchall()]
        self._read_then(read, lambda wkb: self._frame_grids(shapely.from_wkb(wkb)) if wkb else None)

    def _search(self, _event: param.parameterized.Event) -> None:
        text = self.search_box.value_input or self.search_box.value or ""
        # A building's very id flies there at once, from the layer held in memory. Nothing else can match it
        # (twin.inspector.search), so the search's scan of a city's names and addresses, a second or two of the
        # server's CPU while the flight's tiles are served, is not made.
        index = self.layer.index_of(text.strip()) if text.strip() else -1
        if index >= 0:
            self.search_results.param.update(options={}, visible=False)
            self.message.visible = False
            self.select_building(index, fly=True)
            return

        def read(gate: Gate) -> tuple[list[dict], TwinError | None]:
            found = gate.search(text)
            return found, None if any(r["kind"] == "case" for r in found) else gate.search_refusal(text)
        self.inspector.look(read, self._show_found, replaces=False)

    def _show_found(self, answer: tuple[list[dict], TwinError | None] | TwinError) -> None:
        found, refused = ([], answer) if isinstance(answer, TwinError) else answer
        options = {r["label"]: f"{r['kind']}|{r['id']}" for r in found}
        self.search_results.options = options
        self.search_results.visible = len(found) > 1
        note = error_text(refused) if refused else "" if found else _("nothing found")
        self.message.param.update(object=f"<span class='twin-muted' title='{html.escape(note)}'>{html.escape(note)}"
                                         "</span>", visible=bool(note) and not self.search_results.visible)
        if found:
            self._go_to(f"{found[0]['kind']}|{found[0]['id']}")

    def _go_to(self, target: str | None) -> None:
        if not target:
            return
        kind, ident = target.split("|", 1)
        if kind == "building":
            index = self.layer.index_of(ident)
            if index >= 0:
                self.select_building(index, fly=True)
        elif kind == "case":
            self.inspector.show_case(ident, then=self._fly_to_case)
        elif kind == "task":  # a completed volunteer task in the ticker: its place
            for task in self._tasks_done:
                if task["task_id"] == ident:
                    self._frame_point(task["x"], task["y"], 20.0, half_m=30.0)
        elif kind == "camera":
            index = self._cameras.camera_id.index_of(ident)
            if index >= 0:
                self.view.selected = -1
                self.inspector.show_camera(ident)
                x, y, z = self._cameras.position(index)
                ox, oy, _oz = self.layer.origin
                self._frame_point(x + ox, y + oy, z)

    def frame(self, box: np.ndarray) -> None:
        """Fly to a box (``xmin, ymin, zmin, xmax, ymax, zmax`` relative to the origin) from outside every
        building, above the tallest near it (:func:`scenes.framing.frame_view`)."""
        self.view.fly_frame(*frame_view(box, self.layer.box))

    def _frame_point(self, x: float, y: float, top: float, *, half_m: float = 10.0) -> None:
        """Frame a point of the district CRS with what stands there, up to ``top`` (m)."""
        x, y = x - self.layer.origin[0], y - self.layer.origin[1]
        self.frame(np.array([x - half_m, y - half_m, 0.0, x + half_m, y + half_m, top]))

    def _fly_to_case(self, card: dict) -> None:
        if card["location"]:
            index = self.layer.index_of(card["building_id"]) if card["building_id"] else -1
            self._frame_point(*card["location"], self.layer.box[index, 5] if index >= 0 else 0.0)

    def _fill_ticker(self) -> None:
        cases = [[case_id, f"{case_id} · {case_kind_name(sub)} · {status_name(status)}"]
                 for case_id, sub, status in self._latest]
        items = ticker_items(self._tasks_done) + cases
        if items != self.ticker.items:
            self.ticker.items = items

    @param.depends("screen", watch=True)
    def _screen_changed(self) -> None:
        # The plan and its before → after table need the width; the admin's tables too, and they have no side panels.
        self._right.visible = self.screen not in ("Planner", "Admin")
        self._left.visible = self.screen != "Admin"
        self.inspector.show_residents = self.inspector.can_act = self.screen == "Operator"
        if self.screen == "Admin":
            if self._admin is None:
                self._admin = AdminScreen(self.gate, writer=self.shared.writer, off_loop=self.shared.off_loop)
            self.centre.objects = [self._admin]
        elif self.screen == "Planner":
            self.show_panels()  # the per-grid table beside the plan follows the planner's saves
            if self._editor is None:
                writer = self.shared.writer
                self._editor = GridEditor(self._con, save=None if writer is None else save_through_writer(writer),
                                          actor=self.principal.username, source=self.principal.source,
                                          allowed_parents=set(self.principal.grids) or None)
                self._editor.param.watch(self._grids_saved, "saved")
            self.centre.objects = [self._editor]
        elif self.centre.objects != [self.toolbar, self.view]:
            self.centre.objects = [self.toolbar, self.view]

    def _grids_saved(self, _event: param.parameterized.Event) -> None:
        """A planner saved grids: outlines, labels, colours and the per-grid table follow the store.
        Served, the shared figures are read again on a reader thread, not on the event loop."""
        self._read_then(self._saved_grids_read, self._show_saved_grids)

    def _saved_grids_read(self, con: duckdb.DuckDBPyConnection) -> tuple:
        """What a grid save changes on this screen, read on ``con`` (the calling thread's own cursor)."""
        self.shared.forget_grids()
        return (self.shared.grid_outlines(self.level), self.shared.colours(self.colour_by, level=self.level),
                self.shared.grid_table(self.grid_table.level))

    def _show_saved_grids(self, read: tuple) -> None:
        outlines, (colours, legend), table = read
        with pn.io.hold():
            self._show_grids(outlines)
            self.view.param.update(colors=colours, legend=translated_legend(legend))
            self.grid_table.refresh(table)
            self.party.forget()  # coverage follows the buildings into their new grids

    def _lang_switch(self) -> str:
        """Links to the page in the other language; ``set_lang`` keeps the choice as the user's preference."""
        return " ".join(f"<b>{name}</b>" if lang == current_lang() else
                        f"<a class='twin-lang-{lang}' href='./app?set_lang={lang}'>{name}</a>"
                        for lang, name in LANG_SWITCH)

    def __panel__(self) -> pn.viewable.Viewable:
        who = f"{html.escape(self.principal.username)} · {role_name(self.principal.role)}"
        header = pn.Row(
            pn.pane.HTML(f"<div class='twin-title'>{self.district_name}</div>", stylesheets=[CSS], width=220),
            pn.widgets.RadioButtonGroup.from_param(self.param.screen, color="primary",
                                                   width=110 * len(self.param.screen.objects),
                                                   options={_(SCREEN_NAMES[s]): s for s in self.param.screen.objects}),
            pn.layout.HSpacer(), self.search_box, self.search_results, self.message,
            pn.pane.HTML(f"<div class='twin-user'><span>{self._lang_switch()}&nbsp;·&nbsp;</span>"
                         f"<span class='twin-user-name' title='{who}'>{who}</span>"
                         f"<span>&nbsp;·&nbsp;<a href='./logout?lang={current_lang()}'>" + _("sign out")
                         + "</a></span></div>", stylesheets=[CSS], width=250),
            sizing_mode="stretch_width", height=52, css_classes=["twin-header"], stylesheets=SHRINKS)
        body = pn.Row(self._left, self.centre, self._right, sizing_mode="stretch_both", css_classes=["twin-body"],
                      stylesheets=SHRINKS)
        return pn.Column(header, body, self._bottom, sizing_mode="stretch_both", stylesheets=[CSS, *SHRINKS])



class SignedOut(pn.viewable.Viewer):
    """What a session gets without a known, enabled user: nothing of the district, and why."""

    def __panel__(self) -> pn.viewable.Viewable:
        reason = _("This account is disabled or unknown. <a href='./logout'>Sign in again</a>, or ask the "
                   "district's admin.")
        return pn.pane.HTML("<div class='twin-card'><div class='twin-title'>" + _("Signed out") +
                            f"</div><p>{reason}</p></div>", stylesheets=[CSS])


class FieldWorkerElsewhere(pn.viewable.Viewer):
    """What a grid worker gets at ``/app``: their page is the phone's, at ``/worker``; a resident's or a merchant's
    of the volunteer scheme is ``page`` (``/v``, ``/m``)."""

    page = param.String(default="/worker")

    def __panel__(self) -> pn.viewable.Viewable:
        if self.page != "/worker":
            return pn.pane.HTML("<div class='twin-card'><p>" + _("Your page is the phone page: <a href='{page}'>open "
                                                                 "it</a>.").format(page=self.page) + "</p></div>",
                                stylesheets=[CSS])
        return pn.pane.HTML("<div class='twin-card'><div class='twin-title'>" + _("Grid worker") + "</div><p>"
                            + _("Grid workers work on the phone page: <a href='/worker'>open it</a>.") + "</p></div>",
                            stylesheets=[CSS])
