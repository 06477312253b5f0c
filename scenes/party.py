"""The party layer of the leader's screen: every party organisation's mark in the 3D view, the roofs of the buildings
a picked one covers outlined, and the street leader's table that compares the grids' party figures.

The layer is a toggle beside the cases and cameras; nothing of it is read or sent until it is first shown, so the
district's first frame is as it was. A mark opens its grid's card with the organisation first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import panel as pn
import param
import shapely

from scenes.i18n import N_, _, format_number, party_kind_name
from scenes.table import SortableTable
from scenes.theme import CSS
from twin.party.figures import PARTY_LEVELS, party_table
from twin.party.orgs import covered_buildings, org_places
from twin.store.schema import PARTY_ORG_KINDS

if TYPE_CHECKING:
    from scenes.screens import DistrictApp

MARK_LIFT_M = 8.0  # a mark stands this far above the highest roof it covers
OUTLINE_LIFT_M = 0.3  # the outline lies just above each roof, clear of its faces
# Short: the left panel is narrow, and the title above the table says what they count.
PARTY_TABLE_TITLES = {"grid_id": N_("Grid"), "name": N_("Name"), "orgs": N_("Orgs"), "members": N_("Members"),
                      "living": N_("Living"), "reported": N_("Reporting"), "active": N_("Active"),
                      "services": N_("Services"), "hours": N_("Hours")}
# What the leader compares first; the last give way when the table is narrow (scenes.table.SortableTable).
PARTY_TABLE_IMPORTANCE = ("name", "reported", "active", "services", "hours", "orgs", "members", "living", "grid_id")


def party_marks(places: pd.DataFrame, origin: tuple[float, float, float]) -> list[list]:
    """``[text, x, y, z, kind]`` per organisation for the view (``DistrictView.party``), in ``places``' order.

    Parameters
    ----------
    places : DataFrame
        :func:`twin.party.orgs.org_places`: ``x``, ``y``, ``z`` in the district CRS (m).
    origin : (float, float, float)
        The district origin; marks go relative to it, ``MARK_LIFT_M`` above ``z``.
    """
    kinds = {k: i for i, k in enumerate(PARTY_ORG_KINDS)}
    says = _("{name} · {kind} · secretary {secretary} · {members} members · {buildings} buildings")
    marks = []
    for r in places.itertuples():
        if pd.isna(r.x):
            continue  # on no grid in force: nowhere to stand
        text = says.format(name=r.name, kind=party_kind_name(r.kind), secretary=r.secretary or "—",
                           members=format_number(r.members if pd.notna(r.members) else 0),
                           buildings=format_number(r.buildings))
        marks.append([text, float(r.x - origin[0]), float(r.y - origin[1]), float(r.z + MARK_LIFT_M),
                      kinds.get(r.kind, kinds["branch"])])
    return marks


def roof_outlines(con: duckdb.DuckDBPyConnection, building_ids: list[str], origin: tuple[float, float, float]) -> bytes:
    """The roof outlines of some buildings as float32 segments (x0, y0, z0, x1, y1, z1), relative to the origin."""
    rows = con.execute("SELECT ST_AsWKB(footprint) AS wkb, base_z + height AS top FROM buildings WHERE building_id IN "
                       "(SELECT unnest(?))", [sorted(building_ids)]).df()
    if rows.empty:
        return b""
    rings, owner = shapely.get_rings(shapely.from_wkb(rows["wkb"].map(bytes).to_numpy()), return_index=True)
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    z = rows["top"].to_numpy()[owner[ring]] + OUTLINE_LIFT_M
    points = np.column_stack([coords - np.asarray(origin[:2]), z])
    same = ring[1:] == ring[:-1]
    return np.concatenate([points[:-1][same], points[1:][same]], axis=1).astype("<f4").tobytes()


class PartyLayer(pn.viewable.Viewer):
    """The party toggle, its marks and outlines in the app's 3D view, and the table comparing grids.

    Parameters
    ----------
    app : DistrictApp
        The screen it belongs to: its view, inspector, level and reads off the event loop.
    """

    shown = param.Boolean(default=False, doc="The layer is on: marks, legend and the table")
    level = param.Selector(default="grid", objects=list(PARTY_LEVELS), doc="The table's level: the screen's, down "
                                                                           "to the grid (members report to grids)")

    def __init__(self, app: DistrictApp, **params) -> None:
        super().__init__(**params)
        self.app = app
        self.places: pd.DataFrame | None = None
        self.value: pd.DataFrame | None = None
        self.toggle = pn.widgets.Checkbox(label=_("party"), value=False, width=70, css_classes=["twin-party-toggle"])
        self.toggle.link(self, value="shown")
        self.title = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["twin-party-title"])
        self.table = SortableTable(rows_word=_("rows"), sizing_mode="stretch_width", min_height=200,
                                   css_classes=["twin-party-table"])
        self.table.param.watch(self._clicked, "clicked")
        app.param.watch(lambda e: self._follow(e.new), "level")
        self._follow(app.level)
        self._panel = pn.Column(self.title, self.table, sizing_mode="stretch_width", visible=False)

    # -- the layer ---------------------------------------------------------------------------------------------
    @param.depends("shown", watch=True)
    def _shown(self) -> None:
        self.app.view.show_party = self._panel.visible = self.shown
        if self.shown:  # read afresh each time: an import may have changed them meanwhile
            self._read(org_places, self._show_places)
            self.refresh()

    def _show_places(self, places: pd.DataFrame) -> None:
        self.places = places
        self.app.view.party = party_marks(places, self.app.layer.origin)

    def forget(self) -> None:
        """Grids changed (a planner's save): coverage follows the buildings; read the marks and table again."""
        self.app.view.party_highlight = b""
        self._shown()

    def picked(self, index: int) -> None:
        """A mark was clicked: its grid's card with the organisation first, and the roofs it covers outlined and
        framed in the view."""
        marked = self.places[self.places["x"].notna()] if self.places is not None else None
        if marked is None or not 0 <= index < len(marked):
            return
        org = marked.iloc[index]
        self.app.view.selected = -1
        self.app.inspector.show_grid(str(org["grid_id"]), party_org=str(org["org_id"]))
        origin = self.app.layer.origin

        def outline(con: duckdb.DuckDBPyConnection) -> bytes:
            covered = covered_buildings(con, [str(org["org_id"])])
            return roof_outlines(con, list(covered["building_id"]), origin)
        self._read(outline, self._show_outline)

    def _show_outline(self, segments: bytes) -> None:
        self.app.view.party_highlight = segments
        points = np.frombuffer(segments, dtype="<f4").reshape(-1, 3)
        if len(points):
            (x0, y0, _z0), (x1, y1, top) = points.min(axis=0), points.max(axis=0)
            self.app.frame(np.array([x0, y0, 0.0, x1, y1, top], dtype=float))

    # -- the table -----------------------------------------------------------------------------------------------
    def _follow(self, level: str) -> None:
        self.level = level if level in PARTY_LEVELS else PARTY_LEVELS[-1]

    @param.depends("level", watch=True)
    def refresh(self) -> None:
        """Read the table again at its level (only while the layer is on)."""
        if not self.shown:
            return
        level = self.level
        self._read(lambda con: party_table(con, level=level),
                   lambda table: self._show_table(table) if level == self.level else None)

    def _show_table(self, table: pd.DataFrame) -> None:
        if (table["living"] < 0).all():  # residents counted, not listed: no one's tag to count
            table = table.drop(columns="living")
        self.value = table
        totals = table[["reported", "active", "services"]].sum()
        self.title.object = ("<div class='label'>" + _("Party members in the grids") + "</div><div class='twin-muted'>"
                             + _("{reported} reporting to grids · {active} active this month · {services} services "
                                 "this month (orgs: organisations; members: theirs; living: tagged residents living "
                                 "there)").format(reported=format_number(totals["reported"]),
                                          active=format_number(totals["active"]),
                                          services=format_number(totals["services"])) + "</div>")
        self.table.param.update(
            columns=[[_(PARTY_TABLE_TITLES[c]), bool(pd.api.types.is_numeric_dtype(table[c]))] for c in table.columns],
            importance=[list(table.columns).index(c) for c in PARTY_TABLE_IMPORTANCE if c in table.columns],
            rows=table.round({"hours": 1}).to_numpy(dtype=object).tolist())

    def _clicked(self, event: param.parameterized.Event) -> None:
        grid_id = str(self.value["grid_id"].iloc[int(event.new["row"])])
        if self.level == self.app.level:
            self.app.select_grid(grid_id, fly=True)
        else:
            self.app.inspector.show_grid(grid_id)

    def _read(self, read: Callable[[duckdb.DuckDBPyConnection], object], show: Callable[[object], None]) -> None:
        self.app._read_then(read, show)  # off the event loop when served

    def __panel__(self) -> pn.viewable.Viewable:
        return self._panel
