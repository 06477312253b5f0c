"""The planner's edit session: one parent's children as loaded, the assets around them, and the edits on them.

Every edit is one call of the grid engine (:mod:`twin.grids.gridedit`) through an
:class:`~twin.grids.gridedit.EditSession`, so undo and redo work. After each edit
the rules are checked (:func:`twin.grids.gridversions.check_edit`) and what the edit
moves is worked out (:func:`twin.grids.reassign.reassign`). Nothing here draws;
a refused edit raises :class:`~twin.errors.TwinError` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import geopandas as gpd
import numpy as np
import shapely

from scenes.planshapes import snap_point_near
from twin.errors import GridEditError
from twin.geo.basemap import load_basemap
from twin.grids.gridedit import EditSession, changed_grids
from twin.grids.gridrules import Violation
from twin.grids.gridversions import check_edit, current_grids, new_names
from twin.grids.reassign import Assets, Reassignment, load_assets, reassign

VERTEX_MATCH_M = 0.05  # a dragged vertex is every grid vertex this close to where it was (1:500 map precision)
NO_MOVE_M = 0.001  # a drag shorter than this moves nothing
ASSET_PAD_M = 50.0  # buildings, cameras and cases read around the parent's bounds


class ParentEdit:
    """The edits of one planner on the children of one parent, as read from the store when it was loaded.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A cursor on the store; read here only, in the calling thread.
    parent_id : str
        The community or grid whose children are edited.

    Attributes
    ----------
    parent_shape : Polygon
        The parent's boundary (district CRS, m).
    saved_grids : GeoDataFrame
        Its children in force when loaded (see :func:`~twin.grids.gridversions.current_grids`).
    level : str
        The children's level.
    assets : Assets
        Buildings, cameras and cases around the parent (:data:`ASSET_PAD_M` beyond its bounds).
    around : Polygon
        The box the assets are read in.
    basemap : GeoDataFrame
        The ground (roads, water, green space) that meets ``around`` (:func:`twin.geo.basemap.load_basemap`).
    session : EditSession
        The edits so far, with undo and redo.
    violations : list of Violation
        The rules the current shapes break (errors first); empty when nothing changed.
    reassignment : Reassignment or None
        What the current shapes move, before → after per grid; None when nothing changed.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, parent_id: str) -> None:
        parent = current_grids(con, grid_ids=[parent_id])
        if not len(parent):
            raise GridEditError(f"grid {parent_id!r} is not in force; pick another parent.")
        self.parent_id = parent_id
        self.parent_shape = parent.geometry.iloc[0]
        self.saved_grids: gpd.GeoDataFrame = current_grids(con, parent_id=parent_id)
        self.level = str(self.saved_grids["level"].iloc[0])
        xmin, ymin, xmax, ymax = self.parent_shape.bounds
        self.around = shapely.box(xmin - ASSET_PAD_M, ymin - ASSET_PAD_M, xmax + ASSET_PAD_M, ymax + ASSET_PAD_M)
        self.assets: Assets = load_assets(con, bbox=self.around.bounds)
        self._footprint_tree = shapely.STRtree(self.assets.footprints)  # building corners to snap to
        self.basemap = load_basemap(con, bbox=self.around.bounds)
        self.session = self.restart(self.saved_grids.geometry)
        self.violations: list[Violation] = []
        self.reassignment: Reassignment | None = None
        self.renamed: dict[str, str] = {}  # grid id -> its new name, saved with the edit

    @property
    def shapes(self) -> gpd.GeoSeries:
        """The children after the edits so far (district CRS, m), indexed by grid id."""
        return self.session.shapes

    def restart(self, shapes: gpd.GeoSeries) -> EditSession:
        """A new edit session on ``shapes`` that knows the parent, so a move of its outline is refused."""
        self.session = EditSession(shapes, parent=self.parent_shape, parent_id=self.parent_id)
        return self.session

    def names(self) -> dict[str, str]:
        """The name of each grid as it is now: renamed, as saved, or (a new grid) the district's scheme."""
        saved = {str(g): n for g, n in self.saved_grids["name"].items() if isinstance(n, str)}
        new = [str(g) for g in self.shapes.index if g not in self.saved_grids.index]
        fresh = new_names(self.level, [*saved.values(), *self.renamed.values()], new)
        return {g: self.renamed.get(g) or saved.get(g) or fresh.get(g, g) for g in map(str, self.shapes.index)}

    def changed_names(self) -> dict[str, str]:
        """The names to save: of the new grids, and of the grids renamed (those still there)."""
        names = self.names()
        return {g: n for g, n in names.items() if g not in self.saved_grids.index or g in self.renamed}

    @property
    def unsaved(self) -> bool:
        """Whether the grids or their names differ from those loaded."""
        changed, added, removed = changed_grids(self.saved_grids.geometry, self.shapes)
        return bool(changed or added or removed or self.changed_names())

    def versions(self) -> dict[str, int]:
        """The version of each child of the parent that this session started from."""
        return {str(g): int(v) for g, v in self.saved_grids["version"].items()}

    # -- edits: each raises TwinError and changes nothing when refused ----------------
    def snapped(self, to: np.ndarray, tolerance_m: float) -> np.ndarray:
        """``to`` moved to a grid vertex, building corner or grid edge within ``tolerance_m`` (if any)."""
        near = self.assets.footprints[self._footprint_tree.query(shapely.Point(to).buffer(tolerance_m))]
        shapes = list(self.shapes.values) + [self.parent_shape]
        (x, y), _kind = snap_point_near(to, shapes=shapes, footprints=near, tolerance_m=tolerance_m)
        return np.array([x, y])

    def move_vertex(self, at: np.ndarray, to: np.ndarray) -> None:
        self.session.apply("move_vertex", at=at, to=to, tolerance_m=VERTEX_MATCH_M)

    def split(self, line: shapely.LineString, grid_id: str | None) -> None:
        """Split ``grid_id`` (default: the grid ``line`` crosses most) along ``line``."""
        if grid_id is None:
            inside = shapely.length(shapely.intersection(self.shapes.values, line))
            grid_id = str(self.shapes.index[int(np.argmax(inside))])
        self.session.apply("split", grid_id, line)

    def merge(self, grid_ids: Sequence[str]) -> None:
        self.session.apply("merge", list(grid_ids))

    def draw(self, polygon: shapely.Polygon) -> None:
        self.session.apply("draw", polygon, parent=self.parent_shape)

    def delete(self, grid_id: str, *, to: str | None) -> None:
        # the footprints around the grid: its area is shared so that no building is cut
        shapes = self.shapes
        near = (self.assets.footprints[self._footprint_tree.query(shapes[grid_id])] if grid_id in shapes.index
                else np.array([], dtype=object))
        self.session.apply("delete", grid_id, to=to, footprints=near)

    def rename(self, grid_id: str, name: str) -> None:
        """Give ``grid_id`` a new name (saved with the edit, as a new version of the grid)."""
        name = str(name).strip()
        if grid_id not in self.shapes.index:
            raise GridEditError(f"grid {grid_id!r} is not one of the grids of {self.parent_id}; select one on the "
                                "plan first.")
        if not name:
            raise GridEditError(f"a grid needs a name; type the new name of {grid_id}.")
        taken = {g for g, n in self.names().items() if n == name and g != grid_id}
        if taken:
            raise GridEditError(f"the name {name!r} is already that of {', '.join(sorted(taken))} under "
                                f"{self.parent_id}; choose another.")
        saved = self.saved_grids["name"].get(grid_id)
        if name == saved:
            self.renamed.pop(grid_id, None)
        else:
            self.renamed[grid_id] = name

    def step(self, what: str) -> None:
        """``undo`` or ``redo``."""
        getattr(self.session, what)()

    def recheck(self, con: duckdb.DuckDBPyConnection) -> None:
        """Check the rules and work out what moves, for the shapes as they are now."""
        shapes = self.shapes
        changed, added, removed = changed_grids(self.saved_grids.geometry, shapes)
        if changed or added or removed:
            self.violations = check_edit(con, self.parent_id, shapes, level=self.level, assets=self.assets)
            self.reassignment = reassign(self.assets, {**{g: shapes[g] for g in changed + added},
                                                       **{g: None for g in removed}}, level=self.level)
        else:
            self.violations, self.reassignment = [], None
