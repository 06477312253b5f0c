"""The lists behind the leader's key figures: open cases (by status, category and grid), the overdue
cases (oldest first) and the offline cameras. A click on a row sets ``picked``; the app flies there."""

from __future__ import annotations

import html
from collections.abc import Callable

import pandas as pd
import panel as pn
import param

from scenes.i18n import N_, _, camera_status_name, case_kind_name, error_text, format_number, format_time, status_name
from scenes.inspector import overdue_text
from scenes.table import SortableTable
from scenes.theme import CSS
from twin.access.policy import Gate
from twin.cases.cases import OPEN_STATUSES, load_taxonomy
from twin.errors import TwinError

DRILL_TITLES = {"open": N_("Open cases"), "overdue": N_("Overdue cases, longest overdue first"),
                "offline": N_("Cameras not online"),
                "escalated": N_("Escalated by departments, longest past the deadline first")}
ANY = "any"
CATEGORIES = tuple(c["code"] for c in load_taxonomy()["categories"])


def drill_rows(kind: str, found: pd.DataFrame, grid_names: dict[str, str],
               departments: dict[str, str] | None = None) -> tuple[list[list], list[list]]:
    """``(columns, rows)`` for :class:`SortableTable`: the first column is the case or camera id.
    ``departments`` names the departments (by id) of the escalated cases."""
    departments = departments or {}
    def grid(grid_id: str | None) -> str:
        return grid_names.get(grid_id, grid_id or "")

    if kind == "offline":
        return ([[_("Camera"), False], [_("Name"), False], [_("Status"), False], [_("Grid"), False]],
                [[r.camera_id, r.name or "", camera_status_name(r.status), grid(r.grid_id)]
                 for r in found.itertuples()])
    if kind == "escalated":
        return ([[_("Case"), False], [_("Category"), False], [_("Department"), False], [_("Grid"), False],
                 [_("Department's deadline"), False], [_("Overdue by"), False]],
                [[r.case_id, case_kind_name(r.category), departments.get(r.department, r.department or ""),
                  grid(r.grid_id), format_time(r.deadline, short=True), overdue_text(r.overdue_h)]
                 for r in found.itertuples()])
    if kind == "overdue":
        return ([[_("Case"), False], [_("Category"), False], [_("Grid"), False], [_("Due"), False],
                 [_("Overdue by"), False]],
                [[r.case_id, case_kind_name(r.category), grid(r.grid_id), format_time(r.due_at, short=True),
                  overdue_text(r.overdue_h)] for r in found.itertuples()])
    return ([[_("Case"), False], [_("Category"), False], [_("Status"), False], [_("Grid"), False],
             [_("Reported at"), False]],
            [[r.case_id, case_kind_name(r.category), status_name(r.status), grid(r.grid_id),
              format_time(r.reported_at, short=True)] for r in found.itertuples()])


class DrillDown(pn.viewable.Viewer):
    """One list at a time, read through the gate; hidden until a key figure opens it.

    Parameters
    ----------
    look : callable
        ``look(read, show)``, as :meth:`scenes.inspector.Inspector.look`: ``show(read(gate))`` off the event loop.
    grids : callable
        ``grids() -> {grid_id: name}`` of the grids at the chosen level, for the grid filter.
    departments : callable, optional
        ``departments() -> {department_id: name}``, to name the escalated cases' departments.
    """

    kind = param.Selector(default=None, objects=[None, *DRILL_TITLES], allow_None=True)
    picked = param.Dict(default={}, doc="The clicked row: {'kind': 'case'|'camera', 'id', 'seq'}")

    def __init__(self, look: Callable, grids: Callable[[], dict[str, str]],
                 departments: Callable[[], dict[str, str]] = dict, **params) -> None:
        super().__init__(**params)
        self._look = look
        self._grids = grids
        self._departments = departments
        self._grid_names: dict[str, str] = {}
        self.title = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width")
        self.close = pn.widgets.Button(label="×", width=36, css_classes=["twin-drill-close"])
        self.close.on_click(lambda _e: setattr(self, "kind", None))
        every = _("all")
        self.status = pn.widgets.Select(label=_("status"), width=110,
                                        options={every: ANY, **{status_name(s): s for s in OPEN_STATUSES}})
        self.category = pn.widgets.Select(label=_("category"), width=120,
                                          options={every: ANY, **{case_kind_name(c): c for c in CATEGORIES}})
        self.grid = pn.widgets.Select(label=_("grid"), options={every: ANY}, width=110)
        self._filling = False  # the grid filter's options are being replaced: no read for each change
        for w in (self.status, self.category, self.grid):
            w.param.watch(lambda _e: None if self._filling else self.refresh(), "value")
        self.filters = pn.Row(self.status, self.category, self.grid, sizing_mode="stretch_width")
        self.table = SortableTable(rows_word=_("rows"), sizing_mode="stretch_width", page_size=12,
                                   css_classes=["twin-drill-table"])
        self.table.param.watch(self._clicked, "clicked")
        self._ids: list[str] = []
        self._panel = pn.Column(pn.Row(self.title, self.close, sizing_mode="stretch_width"), self.filters, self.table,
                                sizing_mode="stretch_width", visible=False, css_classes=["twin-drill"])

    @param.depends("kind", watch=True)
    def _opened(self) -> None:
        self._panel.visible = self.kind is not None
        if self.kind is None:
            return
        self._grid_names = self._grids()
        self._filling = True
        try:  # names repeat across communities (第1网格), so each option names its grid's id too
            self.grid.options = {_("all"): ANY, **{f"{name} · {g}": g for g, name in self._grid_names.items()}}
            self.grid.value = ANY
        finally:
            self._filling = False
        self.filters.visible = self.kind == "open"
        self.refresh()

    def open(self, kind: str) -> None:
        """Show the list behind a key figure ('open', 'overdue' or 'offline'), afresh."""
        if self.kind == kind:
            self.refresh()
        else:
            self.kind = kind

    def refresh(self) -> None:
        """Read the list again with the filters as set."""
        kind = self.kind
        if kind is None:
            return
        status, category, grid = (None if w.value == ANY else w.value for w in (self.status, self.category, self.grid))

        def read(gate: Gate) -> pd.DataFrame:
            if kind == "offline":
                return gate.offline_cameras()
            if kind == "overdue":
                return gate.case_list(overdue=True)
            if kind == "escalated":
                return gate.case_list(escalated=True)
            return gate.case_list(statuses=(status,) if status else None, category=category, grid_id=grid)
        self._look(read, lambda found: self._show(kind, found))

    def _show(self, kind: str, found: pd.DataFrame | TwinError) -> None:
        if kind != self.kind:
            return
        if isinstance(found, TwinError):
            self.title.object = f"<span class='twin-muted'>{html.escape(error_text(found))}</span>"
            self.table.param.update(columns=[], rows=[])
            return
        units = dict(self._departments()) if kind == "escalated" else {}
        columns, rows = drill_rows(kind, found, self._grid_names, units)
        self._ids = [r[0] for r in rows]
        more = _(" (the first {count})").format(count=format_number(len(rows))) if len(rows) >= 500 else ""
        self.title.object = (f"<div class='twin-title' style='font-size:16px'>{_(DRILL_TITLES[kind])}: "
                             f"{format_number(len(rows))}{more}</div>")
        self.table.param.update(columns=columns, rows=rows)

    def _clicked(self, event: param.parameterized.Event) -> None:
        row = int(event.new["row"])
        if 0 <= row < len(self._ids):
            self.picked = {"kind": "camera" if self.kind == "offline" else "case", "id": self._ids[row],
                           "seq": self.picked.get("seq", 0) + 1}

    def __panel__(self) -> pn.viewable.Viewable:
        return self._panel
