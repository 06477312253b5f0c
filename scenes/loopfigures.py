"""The field loop on the leader's screen: the departments' figures, the escalated cases' door, and the 满意率.

Below the per-grid table: a card whose click opens the street leader's list of escalated cases (the
departments' cases long past their deadline, :mod:`scenes.drilldown`), a table of figures per department
(open, overdue, escalated, median hours to handle, share reopened, satisfaction) and the satisfaction per grid
(at the screen's level) or per grid worker. All are aggregates (:func:`twin.cases.duties.department_figures`,
:func:`twin.cases.evaluations.satisfaction`), shared by every session and refreshed with the key figures.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import panel as pn
import param

from scenes.figures import FigureDoor, _figure_html
from scenes.i18n import N_, _, format_number
from scenes.table import SortableTable
from scenes.theme import CSS

DEPARTMENT_TITLES = {"name": N_("Department"), "open": N_("Open"), "overdue": N_("Overdue"),
                     "escalated": N_("Escalated"), "median_handle_h": N_("Median hours to handle"),
                     "reopened_share": N_("Reopened %"), "satisfaction": N_("Satisfaction %")}
# What the leader reads first; the last give way when the panel is narrow. The escalated cases come last: the
# card above the table counts them, and the figures (open, overdue, time to handle, reopened, 满意率) stay.
DEPARTMENT_IMPORTANCE = ("name", "open", "overdue", "median_handle_h", "reopened_share", "satisfaction", "escalated")
SATISFACTION_TITLES = {"name": N_("Name"), "satisfaction": N_("Satisfaction %"), "answered": N_("Answers"),
                       "by_default": N_("By default")}
SATISFACTION_IMPORTANCE = ("name", "satisfaction", "answered", "by_default")
SATISFACTION_BY = {"grid": N_("per grid"), "worker": N_("per grid worker")}


def _cells(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[list]:
    """Rows for :class:`SortableTable`: numbers as they are (NaN, no figure yet, as an empty cell)."""
    return [[None if isinstance(v, float) and v != v else v for v in row]
            for row in frame[list(columns)].to_numpy(dtype=object).tolist()]


class LoopFigures(pn.viewable.Viewer):
    """The escalated door, the departments' table and the satisfaction table.

    Parameters
    ----------
    figures : callable
        ``figures(level) -> {'departments': DataFrame, 'grid': DataFrame, 'worker': DataFrame}``: the
        department figures and the satisfaction per grid at ``level`` and per worker (as
        :meth:`scenes.shared.SharedDistrict.loop_figures`).
    """

    level = param.String(default="grid")
    by = param.Selector(default="grid", objects=list(SATISFACTION_BY))
    door = param.Integer(default=0, doc="Clicks on the escalated cases' card")

    def __init__(self, figures: Callable[[str], dict], **params) -> None:
        super().__init__(**params)
        self._figures = figures
        self.value: dict | None = None
        self.escalated = FigureDoor(sizing_mode="stretch_width", margin=(4, 0), css_classes=["twin-escalated"])
        self.escalated.param.watch(lambda e: setattr(self, "door", self.door + 1), "clicks")
        self.departments = SortableTable(rows_word=_("rows"), sizing_mode="stretch_width", page_size=8,
                                         wrap_titles=True, css_classes=["twin-department-table"])
        self.choose = pn.widgets.RadioButtonGroup(options={_(label): k for k, label in SATISFACTION_BY.items()},
                                                  value=self.by, sizing_mode="stretch_width",
                                                  css_classes=["twin-satisfaction-by"])
        self.choose.link(self, value="by")
        self.satisfaction = SortableTable(rows_word=_("rows"), sizing_mode="stretch_width", page_size=8,
                                          css_classes=["twin-satisfaction-table"])
        label = "<div class='twin-title' style='font-size:15px;margin-top:8px'>{}</div>"
        self._panel = pn.Column(
            self.escalated, pn.pane.HTML(label.format(_("Departments")), stylesheets=[CSS]), self.departments,
            pn.pane.HTML(label.format(_("Satisfaction")), stylesheets=[CSS]),
            self.choose, self.satisfaction, sizing_mode="stretch_width", css_classes=["twin-loop"])
        self.refresh()

    @param.depends("level", "by", watch=True)
    def refresh(self, figures: dict | None = None) -> None:
        """Show new figures (read when not given); nothing is sent for a table that did not change."""
        figures = self._figures(self.level) if figures is None else figures
        self.value = figures
        departments = figures["departments"]
        total = int(departments["escalated"].sum()) if len(departments) else 0
        card = _figure_html(_("Escalated by departments"), format_number(total),
                            _("past their department's deadline and its escalation hours"))
        if self.escalated.object != card:
            self.escalated.object = card
        self._fill(self.departments, departments, DEPARTMENT_TITLES, DEPARTMENT_IMPORTANCE)
        self._fill(self.satisfaction, figures[self.by], SATISFACTION_TITLES, SATISFACTION_IMPORTANCE)

    @staticmethod
    def _fill(table: SortableTable, frame: pd.DataFrame, titles: dict, importance: tuple[str, ...]) -> None:
        columns = tuple(titles)
        rows = _cells(frame, columns)
        if rows != table.rows:
            table.param.update(columns=[[_(titles[c]), c != "name"] for c in columns],
                               importance=[columns.index(c) for c in importance], rows=rows)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._panel
