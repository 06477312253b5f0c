"""The app: header with screen tabs, key figures, the district, the per-grid table."""

from __future__ import annotations

import duckdb
import panel as pn
import param

from scenes.figures import GridTable, KeyFigures
from scenes.plan import PlanMap
from scenes.theme import CSS


class DistrictApp(pn.viewable.Viewer):
    """The one-screen overview of a district store.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        An open store connection (a cursor of the server's read-only connection).
    """

    district_name = param.String(default="District")

    def __init__(self, con: duckdb.DuckDBPyConnection, **params) -> None:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        params.setdefault("district_name", meta.get("district_name", "District"))
        super().__init__(**params)
        self.figures = KeyFigures(con)
        self.grid_table = GridTable(con)
        self.plan = PlanMap(con)
        self.grid_table.param.watch(lambda e: setattr(self.plan, "level", e.new), "level")

    def __panel__(self) -> pn.viewable.Viewable:
        header = pn.Row(pn.pane.HTML(f"<div class='twin-title'>{self.district_name}</div>", stylesheets=[CSS]),
                        pn.layout.HSpacer(),
                        sizing_mode="stretch_width", height=48)
        left = pn.Column(self.figures, self.grid_table, width=380, sizing_mode="stretch_height")
        body = pn.Row(left, self.plan, sizing_mode="stretch_both")
        return pn.Column(header, body, sizing_mode="stretch_both", stylesheets=[CSS])
