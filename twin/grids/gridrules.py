"""The rules grids must keep, checked on a partition (the siblings under one parent).

Errors (an edit breaking one is refused):

- ``valid``: each grid is a valid, non-empty polygon;
- ``inside_parent``: each grid lies inside its parent;
- ``overlap``: siblings do not overlap;
- ``gap``: siblings cover their parent, with no gap larger than 0.05 m²;
- ``building_cut``: no building footprint is cut by a micro-grid boundary.

Warnings (shown, not refused):

- ``households``: a residential micro-grid holds 70–80 households, or one
  high-rise unit building (a building of more than 80 households).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from twin.errors import GridRuleError
from twin.grids.gridedit import GRID_SIZE_M, as_partition

TOLERANCE_M2 = 0.05
HOUSEHOLDS_RANGE = (70, 80)
RULES = ("valid", "inside_parent", "overlap", "gap", "building_cut", "households")
FIXES = {
    "valid": "redraw the grid so its outline does not cross itself",
    "inside_parent": "move the grid's vertices inside the parent's outline",
    "overlap": "move the shared vertices so the two grids meet along one edge",
    "gap": "move a neighbour's vertices over the gap, or draw a grid there",
    "building_cut": "move the boundary off the footprint (snap to the building's corners), so the building "
                    "lies in one micro-grid",
    "households": "split or merge micro-grids to 70–80 households",
}


@dataclass(frozen=True)
class Violation:
    """One broken rule.

    Attributes
    ----------
    rule : str
        One of :data:`RULES`.
    grid_id : str
        The grid breaking it (for a gap: the parent).
    geometry : shapely geometry
        The offending place (the part outside the parent, the overlap, the gap,
        the cut part of a footprint, or the grid), district CRS.
    area_m2 : float
        Its area in m².
    severity : {'error', 'warning'}
    message : str
        What, where, and how to fix it.
    other_id : str or None
        The other grid (overlap) or the building (building_cut).
    under : str or None
        For a child that a save would redraw to fit its edited parent: that parent (the edited grid).
    """

    rule: str
    grid_id: str
    geometry: BaseGeometry
    area_m2: float
    severity: Literal["error", "warning"]
    message: str
    other_id: str | None = None
    under: str | None = None

    def as_dict(self) -> dict:
        return {"rule": self.rule, "grid_id": self.grid_id, "other_id": self.other_id, "under": self.under,
                "severity": self.severity,
                "area_m2": round(self.area_m2, 3), "message": self.message, "wkt": self.geometry.wkt}


def _err(rule: str, grid_id: str, geom: BaseGeometry, what: str, other: str | None = None,
         severity: Literal["error", "warning"] = "error") -> Violation:
    area = float(geom.area)
    return Violation(rule, grid_id, geom, area, severity, f"{rule}: grid {grid_id}: {what}; {FIXES[rule]}.", other)


def check_partition(shapes: gpd.GeoSeries | Mapping[str, BaseGeometry], *, parent: BaseGeometry | None,
                    parent_id: str | None = None, level: str = "micro", buildings: gpd.GeoDataFrame | None = None,
                    kinds: Mapping[str, str] | None = None, only: Sequence[str] | None = None,
                    tolerance_m2: float = TOLERANCE_M2) -> list[Violation]:
    """Every rule the siblings under one parent break.

    Parameters
    ----------
    shapes : GeoSeries of Polygon indexed by grid_id
        The siblings, district CRS (metres).
    parent : Polygon or None
        The parent's boundary (None for the top level: no inside/cover rules).
    parent_id : str, optional
        Named in gap messages.
    level : {'street', 'community', 'grid', 'micro'}
        The siblings' level; the building rules apply to micro-grids only.
    buildings : GeoDataFrame, optional
        Footprints (``geometry``) with ``building_id``, ``households`` and
        ``label_x``, ``label_y`` (a point inside each footprint), for the
        building rules; only those near the grids need be given.
    kinds : mapping grid_id -> kind, optional
        Which micro-grids are residential (``'residential'``); without it a
        micro-grid holding households counts as residential.
    only : sequence of str, optional
        Check the building rules of these grids only (the changed ones).
    tolerance_m2 : float
        Overlaps, gaps and cuts up to this area (m²) are ignored.

    Returns
    -------
    list of Violation
        Errors first, then warnings.
    """
    shapes = as_partition(shapes)
    out: list[Violation] = []
    ids = shapes.index.to_numpy(dtype=object)
    geoms = shapes.to_numpy(dtype=object)
    ok = np.ones(len(geoms), dtype=bool)
    for k, (g, geom) in enumerate(zip(ids, geoms)):
        if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon") or not geom.is_valid:
            reason = "empty" if geom is None or geom.is_empty else (
                geom.geom_type if geom.geom_type not in ("Polygon", "MultiPolygon") else shapely.is_valid_reason(geom))
            out.append(_err("valid", g, geom if geom is not None else shapely.Polygon(),
                            f"expected a valid polygon, found {reason}"))
            ok[k] = False
    ids, geoms = ids[ok], geoms[ok]
    if parent is not None and len(geoms):
        outside = shapely.difference(geoms, parent, grid_size=GRID_SIZE_M)
        for g, part in zip(ids, outside):
            if part.area > tolerance_m2:
                out.append(_err("inside_parent", g, part, f"{part.area:.2f} m² lie outside parent {parent_id}"))
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    pairs = left < right
    if pairs.any():
        inter = shapely.intersection(geoms[left[pairs]], geoms[right[pairs]], grid_size=GRID_SIZE_M)
        for a, b, part in zip(left[pairs], right[pairs], inter):
            if part.area > tolerance_m2:
                out.append(_err("overlap", ids[a], part, f"overlaps grid {ids[b]} by {part.area:.2f} m²", ids[b]))
    if parent is not None:
        covered = shapely.union_all(geoms, grid_size=GRID_SIZE_M) if len(geoms) else shapely.Polygon()
        rest = shapely.difference(parent, covered, grid_size=GRID_SIZE_M)
        for part in shapely.get_parts(rest):
            if part.area > tolerance_m2:
                c = part.representative_point()
                out.append(_err("gap", str(parent_id), part,
                                f"a gap of {part.area:.2f} m² at ({c.x:.2f}, {c.y:.2f}) belongs to no child of "
                                f"{parent_id}"))
    if level == "micro" and buildings is not None and len(buildings):
        out.extend(_building_rules(ids, geoms, buildings, kinds=kinds, only=only, tolerance_m2=tolerance_m2))
    return sorted(out, key=lambda v: v.severity != "error")


def _building_rules(ids: np.ndarray, geoms: np.ndarray, buildings: gpd.GeoDataFrame, *,
                    kinds: Mapping[str, str] | None, only: Sequence[str] | None,
                    tolerance_m2: float) -> list[Violation]:
    out: list[Violation] = []
    check = np.ones(len(ids), dtype=bool) if only is None else np.isin(ids, list(only))
    footprints = buildings.geometry.to_numpy(dtype=object)
    bids = buildings["building_id"].to_numpy(dtype=object)
    tree = shapely.STRtree(geoms)
    fi, gi = tree.query(footprints, predicate="overlaps")
    keep = check[gi]
    fi, gi = fi[keep], gi[keep]
    if len(fi):
        inside = shapely.intersection(footprints[fi], geoms[gi], grid_size=GRID_SIZE_M)
        for f, g, part in zip(fi, gi, inside):
            cut_off = footprints[f].area - part.area
            if part.area > tolerance_m2 and cut_off > tolerance_m2:
                out.append(_err("building_cut", ids[g], part,
                                f"its boundary cuts building {bids[f]}: {part.area:.2f} m² of the footprint's "
                                f"{footprints[f].area:.2f} m² lie in it", str(bids[f])))
    # households per micro-grid, by each building's label point
    points = shapely.points(buildings[["label_x", "label_y"]].to_numpy(dtype=float))
    pi, gi = tree.query(points, predicate="intersects")
    first = pd.DataFrame({"p": pi, "g": gi}).drop_duplicates("p")
    hh = buildings["households"].fillna(0).to_numpy(dtype=float)[first["p"].to_numpy()]
    per = pd.DataFrame({"g": first["g"].to_numpy(), "hh": hh}).groupby("g")["hh"].agg(["sum", "max", "count"])
    per_res = pd.DataFrame({"g": first["g"].to_numpy(), "res": hh > 0}).groupby("g")["res"].sum()
    lo, hi = HOUSEHOLDS_RANGE
    for g in np.flatnonzero(check):
        gid = ids[g]
        if kinds is not None:
            residential = kinds.get(gid) == "residential"
        else:
            residential = g in per.index and per.at[g, "sum"] > 0
        if not residential:
            continue
        total = float(per.at[g, "sum"]) if g in per.index else 0.0
        n_res = int(per_res.get(g, 0))
        if lo <= total <= hi or (n_res == 1 and total > hi):
            continue
        out.append(_err("households", gid, geoms[g],
                        f"holds {total:.0f} households in {n_res} residential building(s), expected {lo}–{hi} or "
                        f"one high-rise unit building", severity="warning"))
    return out


def errors(violations: Sequence[Violation]) -> list[Violation]:
    return [v for v in violations if v.severity == "error"]


def raise_on_errors(violations: Sequence[Violation], *, where: str = "the edit") -> None:
    """Raise :class:`GridRuleError` naming each broken rule and grid, when any violation is an error."""
    bad = errors(violations)
    if not bad:
        return
    listed = "\n".join(f"  - {v.message}" for v in bad[:10])
    more = f"\n  … and {len(bad) - 10} more" if len(bad) > 10 else ""
    raise GridRuleError(f"{where} breaks {len(bad)} grid rule(s); nothing was saved:\n{listed}{more}", bad)
