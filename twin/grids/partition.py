"""Automatic micro-grid proposal: residential areas cut into micro-grids of 70–80 households.

For a chosen community or grid, the residential micro-grids in force under each
grid-level parent are dissolved into residential areas (their outlines follow
the streets and the non-residential micro-grids, which stay as they are).
In each area:

1. a building of more than 80 households (a high-rise unit building) stands alone;
2. the other residential buildings are cut in groups of 70–80 households by
   recursive bisection of their label points (weighted by households), along
   the longer side each time, at the cut closest to the ideal share that leaves
   both halves able to reach 70–80 per micro-grid;
3. the area is shared between the groups by the Voronoi cells of points along
   the footprints' outlines, so boundaries run between buildings and never
   through one; each footprint is then put wholly in its group.

Compactness is reported as Polsby–Popper (4πA/P²: 1 for a disc, about 0.785
for a square, near 0 for a sliver).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from twin.errors import GridEditError
from twin.grids.gridedit import GRID_SIZE_M, fresh_ids
from twin.grids.gridrules import HOUSEHOLDS_RANGE
from twin.grids.gridversions import current_grids
from twin.grids.reassign import Assets, load_assets

log = logging.getLogger(__name__)


def polsby_popper(geoms: Sequence | np.ndarray) -> np.ndarray:
    """4πA/P² per polygon, shape (n,): 1 for a disc, about 0.785 for a square, near 0 for a sliver."""
    geoms = np.asarray(geoms, dtype=object)
    perimeter = shapely.length(geoms)
    return np.where(perimeter > 0, 4 * math.pi * shapely.area(geoms) / np.maximum(perimeter, 1e-12) ** 2, 0.0)


def _groups(count: float, low: int, high: int) -> int:
    """How many micro-grids of ``low``–``high`` households ``count`` households make (at least 1)."""
    k_min, k_max = math.ceil(count / high), math.floor(count / low)
    k = round(count / ((low + high) / 2))  # the middle of the range leaves the most room for whole buildings
    return max(1, min(max(k, k_min), k_max) if k_min <= k_max else k)


def bisect_households(xy: np.ndarray, households: np.ndarray, *, low: int = 70, high: int = 80,
                      compactness: float = 0.0) -> np.ndarray:
    """Group points into clusters of ``low``–``high`` households by recursive bisection.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Label points of the residential buildings, metres.
    households : ndarray, shape (n,)
        Households per building (each at most ``high``).
    compactness : float in [0, 1]
        The weight of compact groups against balanced households. 0: each cut is the first side (longer side
        first, then the diagonals) that cuts within the range, at the cut nearest the ideal share; above 0 both
        sides are tried (not the diagonals, whose halves are triangles) and a cut scores
        ``(1 - compactness) * balance + compactness * elongation``, where balance is the miss from the ideal share
        in groups (plus 1 for a cut that leaves a half unable to reach the range) and elongation is
        that of the more stretched half's label points (:func:`_elongation`).

    Returns
    -------
    ndarray of int, shape (n,)
        The cluster of each point, 0..k-1.
    """
    labels = np.zeros(len(xy), dtype=np.int64)
    if len(xy) == 0:
        return labels
    next_label = [0]

    def cut(idx: np.ndarray, k: int) -> None:
        if k <= 1 or len(idx) <= 1:
            labels[idx] = next_label[0]
            next_label[0] += 1
            return
        total = households[idx].sum()
        best = None
        extent = np.ptp(xy[idx], axis=0)
        p = xy[idx]
        # the longer side first, then the other, then the diagonals; an even cut first, then uneven ones
        axes = [p[:, a] for a in np.argsort(-extent)] + [p[:, 0] + p[:, 1], p[:, 0] - p[:, 1]]
        orders = [idx[np.argsort(along, kind="stable")] for along in axes]
        splits = sorted(range(1, k), key=lambda m: (abs(m - k / 2), m))
        if compactness > 0:
            _, j, order, k1 = min((_weighted_cut(xy, households, order, k, k1, low=low, high=high,
                                                 compactness=compactness) + (order, k1)
                                   for order in orders[:2] for k1 in splits), key=lambda c: c[0])
            cut(order[:j + 1], k1)
            cut(order[j + 1:], k - k1)
            return
        for k1 in splits:
            for order in orders:
                left = np.cumsum(households[order])[:-1]
                right = total - left
                feasible = ((left >= low * k1) & (left <= high * k1)
                            & (right >= low * (k - k1)) & (right <= high * (k - k1)))
                miss = np.abs(left - total * k1 / k)
                score = miss + np.where(feasible, 0.0, 1e6)
                j = int(np.argmin(score))
                if best is None or score[j] < best[0] - 1e-9:
                    best = (score[j], order, j, k1)
                if feasible.any():
                    break  # this side cuts well: keep its (more compact) halves
            if best[0] < 1e6:
                break
        _, order, j, k1 = best
        cut(order[:j + 1], k1)
        cut(order[j + 1:], k - k1)

    cut(np.arange(len(xy)), _groups(households.sum(), low, high))
    return _repair(xy, households, labels, low=low, high=high)


def _weighted_cut(xy: np.ndarray, households: np.ndarray, order: np.ndarray, k: int, k1: int, *, low: int,
                  high: int, compactness: float) -> tuple[float, int]:
    """The best cut of ``order`` into ``k1`` and ``k - k1`` groups by the weighted score (see
    :func:`bisect_households`): ``(score, index of the last point of the first half)``."""
    hh = households[order]
    total = hh.sum()
    left = np.cumsum(hh)[:-1]
    right = total - left
    feasible = (left >= low * k1) & (left <= high * k1) & (right >= low * (k - k1)) & (right <= high * (k - k1))
    balance = np.abs(left - total * k1 / k) / max(total / k, 1.0) + np.where(feasible, 0.0, 1.0)
    p = xy[order] - xy[order].mean(axis=0)
    stretched = np.maximum(_elongation(p)[:-1], _elongation(p[::-1])[::-1][1:])
    score = (1 - compactness) * balance + compactness * stretched
    j = int(np.argmin(score))
    return float(score[j]), j


def _elongation(points: np.ndarray) -> np.ndarray:
    """How stretched each prefix of ``points`` (n, 2) is, shape (n,): 1 - sqrt(minor/major principal variance),
    0 for a round or square group, near 1 for a line (rotation-invariant, from running sums)."""
    n = np.arange(1, len(points) + 1, dtype=float)
    x, y = points[:, 0], points[:, 1]
    mx, my = np.cumsum(x) / n, np.cumsum(y) / n
    sxx = np.cumsum(x * x) / n - mx ** 2 + 1.0  # +1 m²: a single point is no sliver
    syy = np.cumsum(y * y) / n - my ** 2 + 1.0
    sxy = np.cumsum(x * y) / n - mx * my
    half, root = (sxx + syy) / 2, np.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)
    return 1.0 - np.sqrt(np.maximum(half - root, 0.0) / (half + root))


def _repair(xy: np.ndarray, households: np.ndarray, labels: np.ndarray, *, low: int, high: int,
            passes: int = 3, near: int = 3) -> np.ndarray:
    """Move single buildings between neighbouring groups (by centroid) to bring groups outside
    ``low``–``high`` households inside, where the other group stays inside too."""
    labels = labels.copy()
    for _ in range(passes):
        sums = np.bincount(labels, weights=households)
        bad = np.flatnonzero((sums < low) | (sums > high))
        if not len(bad):
            break
        centre = np.array([xy[labels == g].mean(axis=0) for g in range(len(sums))])
        for g in bad:
            sums = np.bincount(labels, weights=households, minlength=len(sums))
            others = np.argsort(np.hypot(*(centre - centre[g]).T))[1:near + 1]
            best = None
            for o in others:
                give, take = (g, o) if sums[g] > high else (o, g)  # move one building from give to take
                members = np.flatnonzero(labels == give)
                if len(members) < 2:
                    continue
                hh = households[members]
                ok = ((sums[give] - hh >= low) & (sums[take] + hh <= high)
                      & ((sums[give] - hh <= high) if give == g else True)
                      & ((sums[take] + hh >= low) if take == g else True))
                if not ok.any():
                    continue
                d = np.hypot(*(xy[members] - centre[take]).T) + np.where(ok, 0.0, np.inf)
                k = int(np.argmin(d))
                if best is None or d[k] < best[0]:
                    best = (d[k], members[k], take)
            if best is not None:
                labels[best[1]] = best[2]
    return labels


def _outline_points(footprints: np.ndarray, step: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Points along each footprint's outline (every ``step`` m) and the footprint each belongs to."""
    rings = shapely.segmentize(shapely.boundary(footprints), step)
    xy, which = shapely.get_coordinates(rings, return_index=True)
    return xy, which


def share_area(area: shapely.Geometry, footprints: np.ndarray, labels: np.ndarray) -> dict[int, shapely.Geometry]:
    """Share ``area`` between the labels of the footprints in it: Voronoi cells of outline points,
    dissolved per label, with every footprint then wholly in its own label's part."""
    xy, which = _outline_points(footprints)
    if len(np.unique(labels)) == 1 or len(xy) < 3:
        return {int(labels[0]): area}
    xy, first = np.unique(np.round(xy, 3), axis=0, return_index=True)
    which = which[first]
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(xy), extend_to=area, ordered=True))
    point_label = labels[which]
    out = {}
    for lab in np.unique(labels):
        part = shapely.union_all(cells[point_label == lab], grid_size=GRID_SIZE_M)
        out[int(lab)] = shapely.intersection(part, area, grid_size=GRID_SIZE_M)
    for fp, lab in zip(footprints, labels):  # footprints wholly in their own part
        fp = shapely.intersection(fp, area, grid_size=GRID_SIZE_M)
        for other in out:
            out[other] = (shapely.union(out[other], fp, grid_size=GRID_SIZE_M) if other == lab
                          else shapely.difference(out[other], fp, grid_size=GRID_SIZE_M))
    return _absorb_stray_parts(out, footprints, labels)


def _absorb_stray_parts(parts: dict[int, shapely.Geometry], footprints: np.ndarray,
                        labels: np.ndarray) -> dict[int, shapely.Geometry]:
    """Give each stray piece of a group (one holding none of its buildings) to the neighbouring
    group it shares the longest edge with, so groups come in one piece where they can."""
    for lab in list(parts):
        pieces = shapely.get_parts(parts[lab])
        if len(pieces) < 2:
            continue
        own = footprints[labels == lab]
        holds = np.array([shapely.intersects(p, own).any() if len(own) else False for p in pieces])
        if holds.all() or not holds.any():
            continue
        keep = [p for p, h in zip(pieces, holds) if h]
        for stray in (p for p, h in zip(pieces, holds) if not h):
            shared = {o: shapely.intersection(g.boundary, stray.boundary, grid_size=GRID_SIZE_M).length
                      for o, g in parts.items() if o != lab}
            best = max(shared, key=shared.get, default=None)
            if best is None or shared[best] <= 0:
                keep.append(stray)
                continue
            parts[best] = shapely.union(parts[best], stray, grid_size=GRID_SIZE_M)
        parts[lab] = shapely.union_all(keep, grid_size=GRID_SIZE_M)
    return parts


@dataclass
class Proposal:
    """A proposed partition of the micro-grids under one community or grid.

    Attributes
    ----------
    scope : str
        The community or grid asked for.
    partitions : dict of GeoSeries
        Per grid-level parent: its micro-grids after the proposal (the
        non-residential ones unchanged), ready for
        :func:`twin.grids.gridversions.save_partition`.
    proposed : DataFrame
        One row per proposed micro-grid: ``grid_id``, ``parent_id``, ``buildings``,
        ``households``, ``high_rise`` (one building of more than 80 households),
        ``polsby_popper``, ``parts`` (1: in one piece).
    current : DataFrame
        The same figures for the residential micro-grids in force, for comparison.
    """

    scope: str
    partitions: dict[str, gpd.GeoSeries]
    proposed: pd.DataFrame
    current: pd.DataFrame

    def summary(self) -> dict:
        """JSON-ready: counts, share within 70–80 households, and compactness, proposed vs current."""
        return {"scope": self.scope, "proposed": _stats(self.proposed), "current": _stats(self.current)}

    def judged(self) -> dict:
        """The proposal against the current grids (JSON-ready), and whether it earns an offer.

        Returns
        -------
        dict
            ``micro_grids``, ``in_70_80``, ``share_in_70_80``, ``polsby_popper_median`` for ``proposed`` and
            ``current``; ``households`` and ``compactness``: ``'better'``, ``'same'`` or ``'worse'`` (the
            share within the range; the median Polsby–Popper, the same within :data:`SAME_COMPACTNESS`);
            ``offered``: whether it is better on at least one of the two (a proposal no better than the grids
            now is not offered).
        """
        now, new = _stats(self.current), _stats(self.proposed)
        keys = ("micro_grids", "in_70_80", "share_in_70_80", "polsby_popper_median")
        households = _compare(new.get("share_in_70_80", 0.0) - now.get("share_in_70_80", 0.0), 0.0)
        compact = _compare(new.get("polsby_popper_median", 0.0) - now.get("polsby_popper_median", 0.0),
                           SAME_COMPACTNESS)
        offered = "better" in (households, compact)
        return {"scope": self.scope, "proposed": {k: new.get(k) for k in keys},
                "current": {k: now.get(k) for k in keys}, "households": households, "compactness": compact,
                "offered": offered}


SAME_COMPACTNESS = 0.02  # medians of Polsby–Popper closer than this count as equally compact


def _compare(difference: float, same: float) -> str:
    return "better" if difference > same else "worse" if difference < -same else "same"


def _stats(frame: pd.DataFrame) -> dict:
    if not len(frame):
        return {"micro_grids": 0}
    lo, hi = HOUSEHOLDS_RANGE
    inside = frame["households"].between(lo, hi)
    ok = inside | frame["high_rise"]
    return {"micro_grids": len(frame), "in_70_80": int(inside.sum()), "high_rise_alone": int(frame["high_rise"].sum()),
            "share_in_70_80": round(float(inside.sum() / max(1, (~frame["high_rise"]).sum())), 3),
            "share_ok": round(float(ok.mean()), 3),
            "polsby_popper_median": round(float(frame["polsby_popper"].median()), 3),
            "polsby_popper_min": round(float(frame["polsby_popper"].min()), 3),
            "in_one_piece": round(float((frame["parts"] == 1).mean()), 3),
            "households_min": int(frame["households"].min()), "households_max": int(frame["households"].max())}


def _figures(ids, parents, geoms, labels_of: list[np.ndarray], households: np.ndarray) -> pd.DataFrame:
    hi = HOUSEHOLDS_RANGE[1]
    rows = []
    for g, p, geom, members in zip(ids, parents, geoms, labels_of):
        hh = households[members]
        res = hh[hh > 0]
        rows.append({"grid_id": g, "parent_id": p, "buildings": len(members), "households": int(hh.sum()),
                     "high_rise": bool(len(res) == 1 and res[0] > hi),
                     "polsby_popper": float(polsby_popper([geom])[0]), "parts": len(shapely.get_parts(geom))})
    return pd.DataFrame(rows, columns=["grid_id", "parent_id", "buildings", "households", "high_rise",
                                       "polsby_popper", "parts"])


def propose_micro_grids(con: duckdb.DuckDBPyConnection, grid_id: str, *, assets: Assets | None = None,
                        low: int = HOUSEHOLDS_RANGE[0], high: int = HOUSEHOLDS_RANGE[1],
                        compactness: float = 0.0) -> Proposal:
    """Propose micro-grids of ``low``–``high`` households for the residential area under a community or grid.

    Parameters
    ----------
    grid_id : str
        A community or grid in force.
    assets : Assets, optional
        The session's :func:`twin.grids.reassign.load_assets` (read when not given).
    compactness : float in [0, 1]
        The weight of compact micro-grids against households within the range (see :func:`bisect_households`).

    Returns
    -------
    Proposal
    """
    if not 0.0 <= compactness <= 1.0:
        raise GridEditError(f"the compactness weight of a proposal is between 0 (households only) and 1 (shape "
                            f"only); got {compactness}.")
    scope = current_grids(con, grid_ids=[grid_id])
    if not len(scope) or scope["level"].iloc[0] not in ("community", "grid"):
        found = scope["level"].iloc[0] if len(scope) else "no such grid in force"
        raise GridEditError(f"a micro-grid proposal needs a community or grid; {grid_id!r} is {found}.")
    parents = [grid_id] if scope["level"].iloc[0] == "grid" else list(current_grids(con, parent_id=grid_id).index)
    assets = assets if assets is not None else load_assets(con)
    b = assets.buildings
    hh_all = b["households"].to_numpy(dtype=np.int64)
    partitions, proposed, current = {}, [], []
    for parent in parents:
        micro = current_grids(con, parent_id=parent)
        residential = micro[micro["kind"] == "residential"]
        if not len(residential):
            continue
        inside_idx = [np.flatnonzero(b["grid_id"].to_numpy(dtype=object) == g) for g in residential.index]
        current.append(_figures(residential.index, [parent] * len(residential), residential.geometry.values,
                                inside_idx, hh_all))
        areas = shapely.get_parts(shapely.union_all(residential.geometry.values, grid_size=GRID_SIZE_M))
        rows = np.concatenate(inside_idx)
        pts = shapely.points(b[["x", "y"]].to_numpy()[rows])
        new_geoms, members = [], []
        for area in areas:
            here = rows[shapely.contains(area, pts)]
            if not len(here):
                new_geoms.append(area)
                members.append(here)
                continue
            hh = hh_all[here]
            labels = np.full(len(here), -1, dtype=np.int64)
            tall = np.flatnonzero(hh > high)
            labels[tall] = np.arange(len(tall))
            flat = np.flatnonzero((hh > 0) & (hh <= high))
            if len(flat):
                labels[flat] = len(tall) + bisect_households(b[["x", "y"]].to_numpy()[here[flat]], hh[flat],
                                                             low=low, high=high, compactness=compactness)
            rest = np.flatnonzero(labels < 0)  # no households: with the nearest residential building
            if len(rest) and (labels >= 0).any():
                placed = np.flatnonzero(labels >= 0)
                tree = shapely.STRtree(shapely.points(b[["x", "y"]].to_numpy()[here[placed]]))
                nearest = tree.nearest(shapely.points(b[["x", "y"]].to_numpy()[here[rest]]))
                labels[rest] = labels[placed[nearest]]
            elif len(rest):
                labels[rest] = 0
            parts = share_area(area, assets.footprints[here], labels)
            for lab, geom in sorted(parts.items()):
                new_geoms.append(geom)
                members.append(here[labels == lab])
        keep = micro[micro["kind"] != "residential"].geometry
        ids = fresh_ids(micro.index, micro.index[-1], len(new_geoms))
        partitions[parent] = pd.concat([keep, gpd.GeoSeries(new_geoms, index=pd.Index(ids, name="grid_id"))])
        proposed.append(_figures(ids, [parent] * len(ids), new_geoms, members, hh_all))
    if not partitions:
        raise GridEditError(f"{grid_id} holds no residential micro-grid to re-partition.")
    log.info("proposal for %s: %d micro-grids", grid_id, sum(len(p) for p in proposed))
    return Proposal(grid_id, partitions, pd.concat(proposed, ignore_index=True), pd.concat(current, ignore_index=True))
