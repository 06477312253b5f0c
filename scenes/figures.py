"""The leader's key figures and the per-grid table."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import panel as pn
import param

from scenes.theme import CSS, MUTED
from twin.schema import GRID_LEVELS

STATUS_LABELS = {"reported": "reported", "dispatched": "dispatched", "in_progress": "in progress",
                 "resolved": "resolved", "reopened": "reopened"}


def _figure(label: str, value: object, note: str = "") -> pn.pane.HTML:
    extra = f"<div style='color:{MUTED};font-size:12px'>{note}</div>" if note else ""
    return pn.pane.HTML(f"<div class='twin-figure twin-card'><div class='label'>{label}</div>"
                        f"<div class='value'>{value}</div>{extra}</div>", sizing_mode="stretch_width", margin=(4, 0),
                        stylesheets=[CSS])


class KeyFigures(pn.viewable.Viewer):
    """Buildings, residents, households, open cases by status, overdue cases, cameras online."""

    figures = param.Dict(default={}, doc="The latest figures from twin.queries.key_figures")

    def __init__(self, source: Callable[[], dict], **params) -> None:
        super().__init__(**params)
        self._source = source
        self.refresh()

    def refresh(self) -> None:
        """Fetch the figures again; the cards are redrawn only when they changed."""
        figures = self._source()
        if figures != self.figures:
            self.figures = figures

    @param.depends("figures")
    def _panel(self) -> pn.Column:
        f = self.figures
        open_total = sum(f["open_cases"].values())
        by_status = " · ".join(f"{STATUS_LABELS[s]} {n:,}" for s, n in f["open_cases"].items())
        return pn.Column(
            _figure("Buildings", f"{f['buildings']:,}"),
            _figure("Residents", f"{f['residents']:,}", f"{f['households']:,} households"),
            _figure("Open cases", f"{open_total:,}", by_status),
            _figure("Overdue cases", f"{f['overdue_cases']:,}"),
            _figure("Cameras online", f"{f['cameras_online']:,} / {f['cameras']:,}"),
            sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.panel(self._panel)


class GridTable(pn.viewable.Viewer):
    """A sortable table of figures per grid at the chosen level.

    Parameters
    ----------
    figures : callable
        ``figures(level) -> DataFrame``, as :func:`twin.queries.grid_table` (or a memoised one).
    """

    level = param.Selector(default="grid", objects=list(GRID_LEVELS))
    selected_grid = param.String(default=None, allow_None=True, doc="grid_id of the clicked row")

    def __init__(self, figures: Callable[[str], pd.DataFrame], **params) -> None:
        super().__init__(**params)
        self._figures = figures
        self.table = pn.widgets.Tabulator(
            figures(self.level), show_index=False, disabled=True, selectable=1,
            sizing_mode="stretch_both", min_height=300, theme="midnight", pagination="local", page_size=15,
            titles={"grid_id": "Grid", "name": "Name", "open_cases": "Open cases",
                    "camera_coverage": "Camera coverage %"})
        self.table.on_click(self._clicked)

    @param.depends("level", watch=True)
    def refresh(self) -> None:
        """Fetch the table again; it is resent only when its figures changed."""
        table = self._figures(self.level)
        if not table.equals(self.table.value):
            self.table.value = table

    def _clicked(self, event) -> None:
        self.selected_grid = str(self.table.value.iloc[event.row]["grid_id"])

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.widgets.RadioButtonGroup.from_param(self.param.level, color="primary"),
                         self.table, sizing_mode="stretch_both")
