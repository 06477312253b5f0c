"""The leader's key figures and the per-grid table."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import panel as pn
import param
from panel.custom import JSComponent

from scenes.i18n import N_, _, format_number, status_name
from scenes.table import SortableTable
from scenes.theme import CSS, MUTED
from twin.store.schema import GRID_LEVELS

def _figure_html(label: str, value: object, note: str = "", *, mine: tuple[object, str] | None = None) -> str:
    """One key figure's card; with ``mine`` (value, note), the user's own grids' figure stands beside the district's."""
    if mine is None:
        extra = f"<div style='color:{MUTED};font-size:12px'>{note}</div>" if note else ""
        return (f"<div class='twin-figure twin-card'><div class='label'>{label}</div><div class='value'>{value}</div>"
                f"{extra}</div>")
    halves = "".join(
        f"<div class='twin-figure-half {kind}'><div class='twin-figure-scope'>{scope}</div>"
        f"<div class='value'>{v}</div>" + (f"<div class='twin-figure-note'>{n}</div>" if n else "") + "</div>"
        for kind, scope, v, n in (("twin-mine", _("my grids"), *mine), ("twin-district", _("district"), value, note)))
    return (f"<div class='twin-figure twin-card'><div class='label'>{label}</div>"
            f"<div class='twin-figure-pair'>{halves}</div></div>")


def _figure_texts(f: dict) -> list[tuple[str, str, str]]:
    """(label, value, note) of each key figure."""
    open_total = sum(f["open_cases"].values())
    by_status = " · ".join(f"{status_name(s)} {format_number(n)}" for s, n in f["open_cases"].items())
    return [(_("Buildings"), format_number(f["buildings"]), ""),
            (_("Residents"), format_number(f["residents"]),
             _("{households} households").format(households=format_number(f["households"]))),
            (_("Open cases"), format_number(open_total), by_status),
            (_("Overdue cases"), format_number(f["overdue_cases"]), ""),
            (_("Cameras online"), f"{format_number(f['cameras_online'])} / {format_number(f['cameras'])}", "")]


class FigureDoor(JSComponent):
    """A key figure's card that is a door: a click sets ``clicks`` (the count of clicks so far)."""

    object = param.String(default="", doc="The card's HTML")
    clicks = param.Integer(default=0)

    _esm = """
    export function render({ model, el }) {
      const box = document.createElement("div");
      box.className = "twin-door";
      box.setAttribute("role", "button");
      box.tabIndex = 0;
      box.innerHTML = model.object;
      box.addEventListener("click", () => { model.clicks = model.clicks + 1; });
      box.addEventListener("keydown", (e) => { if (e.key === "Enter") model.clicks = model.clicks + 1; });
      model.on("object", () => { box.innerHTML = model.object; });
      el.appendChild(box);
    }
    """
    _stylesheets = [CSS, ".twin-door { cursor: pointer; } .twin-door:hover .twin-card { outline: 1px solid #38bdf8; }"
                         " .twin-door .twin-figure .label::after { content: ' ›'; }"]


# The figures that open a list (scenes.drilldown), by their card's place.
DOORS = {2: "open", 3: "overdue", 4: "offline"}


class KeyFigures(pn.viewable.Viewer):
    """Buildings, residents, households, open cases by status, overdue cases, cameras online.

    The five cards stay on the page; a change of figures only replaces their text. With ``mine``
    (an operator's), each card shows the figure of the user's own grids beside the district's.
    Open cases, overdue cases and cameras online are doors: a click sets ``door`` to ``{'kind', 'seq'}``.
    """

    figures = param.Dict(default={}, doc="The latest figures from twin.store.queries.key_figures")
    mine = param.Dict(default={}, doc="The same figures for the user's own grids; empty for none")
    door = param.Dict(default={}, doc="The door last clicked: {'kind': 'open'|'overdue'|'offline', 'seq': n}")

    def __init__(self, source: Callable[[], dict], **params) -> None:
        super().__init__(**params)
        self._source = source
        self.cards = [FigureDoor(sizing_mode="stretch_width", margin=(4, 0)) if i in DOORS else
                      pn.pane.HTML("", sizing_mode="stretch_width", margin=(4, 0), stylesheets=[CSS])
                      for i in range(5)]
        for i, kind in DOORS.items():
            self.cards[i].param.watch(lambda e, k=kind: self.open_door(k), "clicks")
        self.refresh()

    def open_door(self, kind: str) -> None:
        """What a click on a door does: ``kind`` is 'open', 'overdue' or 'offline'."""
        self.door = {"kind": kind, "seq": self.door.get("seq", 0) + 1}

    def refresh(self, figures: dict | None = None, mine: dict | None = None) -> None:
        """Show new figures (fetched from the source when not given); nothing is sent when they are unchanged."""
        figures = self._source() if figures is None else figures
        self.param.update(figures=figures, **({} if mine is None else {"mine": mine}))

    @param.depends("figures", "mine", watch=True)
    def _show(self) -> None:
        district = _figure_texts(self.figures)
        mine = _figure_texts(self.mine) if self.mine else [None] * len(district)
        texts = [_figure_html(label, value, note, mine=None if m is None else (m[1], m[2]))
                 for (label, value, note), m in zip(district, mine)]
        for card, text in zip(self.cards, texts):
            if card.object != text:
                card.object = text

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(*self.cards, sizing_mode="stretch_width")


GRID_TABLE_TITLES = {"grid_id": N_("Grid"), "name": N_("Name"), "buildings": N_("Buildings"),
                     "residents": N_("Residents"), "households": N_("Households"), "cameras": N_("Cameras"),
                     "camera_coverage": N_("Camera coverage %"), "open_cases": N_("Open cases"),
                     "overdue_cases": N_("Overdue"), "cases_per_1000": N_("Per 1,000")}
# What the leader reads first; the last give way when the table is narrow (scenes.table.SortableTable).
GRID_TABLE_IMPORTANCE = ("name", "open_cases", "overdue_cases", "residents", "cases_per_1000", "households",
                         "cameras", "camera_coverage", "buildings", "grid_id")


_ROWS: dict[int, tuple[pd.DataFrame, list]] = {}  # the last tables' rows as lists, by the table's id


def _rows(table: pd.DataFrame) -> list[list]:
    """The table's rows as lists of Python values, made once per table however many sessions show it (a city's
    grid level has 32,400 rows, 16 MB of Python objects). The tables are the shared, unchanging ones of
    :meth:`scenes.shared.SharedDistrict.grid_table`."""
    hit = _ROWS.get(id(table))
    if hit is None or hit[0] is not table:
        while len(_ROWS) >= 8:
            _ROWS.pop(next(iter(_ROWS)))
        hit = _ROWS[id(table)] = (table, table.to_numpy(dtype=object).tolist())
    return hit[1]


class GridTable(pn.viewable.Viewer):
    """A sortable table of figures per grid at the chosen level; a click on a row selects its grid.

    Parameters
    ----------
    figures : callable
        ``figures(level) -> DataFrame``, as :func:`twin.store.queries.grid_table` (or a memoised one).
    """

    level = param.Selector(default="grid", objects=list(GRID_LEVELS))
    selected_grid = param.String(default=None, allow_None=True, doc="grid_id of the clicked row")

    def __init__(self, figures: Callable[[str], pd.DataFrame], **params) -> None:
        super().__init__(**params)
        self._figures = figures
        self.value: pd.DataFrame | None = None
        self.table = SortableTable(rows_word=_("rows"), sizing_mode="stretch_width", min_height=300,
                                   css_classes=["twin-grid-table"])
        self.table.param.watch(self._clicked, "clicked")
        self.refresh()

    @param.depends("level", watch=True)
    def refresh(self, table: pd.DataFrame | None = None) -> None:
        """Show the table again (fetched when not given). When only figures moved, only the changed
        cells are sent, so a busy district does not resend the table every second."""
        table = self._figures(self.level) if table is None else table
        current, self.value = self.value, table
        if current is not None and table.equals(current):
            return
        if current is None or list(table.columns) != list(current.columns) or not table["grid_id"].equals(
                current["grid_id"]):
            self.table.param.update(
                columns=[[_(GRID_TABLE_TITLES[c]) if c in GRID_TABLE_TITLES else c,
                          bool(pd.api.types.is_numeric_dtype(table[c]))]
                         for c in table.columns],
                importance=[list(table.columns).index(c) for c in GRID_TABLE_IMPORTANCE if c in table.columns],
                rows=_rows(table))
            return
        cells = []
        for k, column in enumerate(table.columns):
            changed = np.flatnonzero(table[column].to_numpy() != current[column].to_numpy())
            cells += [[int(i), k, v] for i, v in zip(changed.tolist(), table[column].to_numpy()[changed].tolist())]
        self.table.cells = cells

    def _clicked(self, event: param.parameterized.Event) -> None:
        self.selected_grid = str(self.value["grid_id"].iloc[int(event.new["row"])])

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.table, sizing_mode="stretch_width")  # the level is chosen above the view
