"""The volunteer scheme on the leader's screen: the communities ranked by their volunteers' points and hours this
month (a table under the party table), and the newest completed tasks for the ticker.

The colouring of grids by volunteer hours or points this month is one of the screen's colour options
(:data:`scenes.layers.VOLUNTEER_MEASURES`, read through :meth:`scenes.shared.SharedDistrict.colours`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import panel as pn
import param

from scenes.i18n import N_, _, format_number, format_time
from scenes.table import SortableTable
from scenes.theme import CSS

if TYPE_CHECKING:
    from scenes.screens import DistrictApp

RANKING_TITLES = {"rank": N_("rank"), "name": N_("community"), "points": N_("points"), "hours": N_("hours"),
                  "volunteers": N_("volunteers"), "tasks": N_("tasks done")}
TICKER_TASKS = 3  # the newest completed tasks shown in the ticker, before the cases


def ticker_items(done: list[dict]) -> list[list[str]]:
    """The ticker's items for completed tasks: ``[task|<id>, label]``, newest first."""
    return [[f"task|{t['task_id']}", "✓ " + _("{title} · {place} · {points} points · {at}").format(
        title=t["title"], place=t["place"], points=t["points"], at=format_time(t["confirmed_at"], short=True))]
        for t in done[:TICKER_TASKS]]


class VolunteerRanking(pn.viewable.Viewer):
    """The communities ranked by volunteer points (then hours) this month; a row opens the community's card."""

    def __init__(self, app: DistrictApp, **params) -> None:
        super().__init__(**params)
        self.app = app
        self.value: pd.DataFrame | None = None
        self.title = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                  css_classes=["twin-volunteer-title"])
        self.table = SortableTable(rows_word=_("rows"), sizing_mode="stretch_width", min_height=160,
                                   css_classes=["twin-volunteer-table"])
        self.table.param.watch(self._clicked, "clicked")
        self._panel = pn.Column(self.title, self.table, sizing_mode="stretch_width")

    def refresh(self) -> None:
        self.app._read_then(lambda _con: self.app.shared.volunteer_ranking(), self._show)

    def _show(self, table: pd.DataFrame) -> None:
        self.value = table
        self.title.object = ("<div class='label'>" + _("Volunteers this month (文明小杜)") + "</div><div class='twin-muted'>"
                             + _("{points} points and {hours} hours in {tasks} tasks done; communities ranked").format(
                                 points=format_number(table["points"].sum()),
                                 hours=format_number(table["hours"].sum(), digits=1),
                                 tasks=format_number(table["tasks"].sum())) + "</div>")
        shown = table[list(RANKING_TITLES)]
        self.table.param.update(
            columns=[[_(RANKING_TITLES[c]), c != "name"] for c in shown.columns],
            importance=[0, 1, 2, 3, 4, 5],
            rows=shown.round({"hours": 1}).to_numpy(dtype=object).tolist())

    def _clicked(self, event: param.parameterized.Event) -> None:
        self.app.inspector.show_grid(str(self.value["grid_id"].iloc[int(event.new["row"])]))

    def __panel__(self) -> pn.viewable.Viewable:
        return self._panel
