"""Coarse content for the tiles above the leaves: buildings kept as their LOD1 blocks or merged into blocks,
within the tile's geometric error.

A tile above the leaves has geometric error ε = its width x 0.024 m (:mod:`twin.tiles.quadtree`): drawing it
instead of its children may put things up to ε metres from where the full detail has them. Its content is
made to stay within ``CONTENT_ERROR_SHARE`` x ε of its buildings at full detail:

1. The tile's square is one group of buildings. A group of one building is drawn as that building's LOD1 block
   (a feature with its ``building_id``).
2. A group of several may be drawn as one **block**: an axis-aligned box (east, north, up) as wide as the
   footprints it stands for add up to (a square, narrowed to the group's extent where the group is thinner),
   at their area-weighted centre, from their lowest base to their area-weighted mean roof (so the block keeps
   the buildings' built area and, on flat ground, their volume). A city seen from afar then still looks like
   many buildings, in the right places and heights, instead of one slab or nothing.
3. The block is taken when its error bound (below) is at most the share of ε; otherwise the group is split
   by the fixed grid's squares one level down (the tile's quarters, theirs, and on below the 250 m cells) and
   each part goes back to 1.

**The error bound** of a block B standing for buildings S is their Hausdorff distance as solids, bounded from
above with what the store has, all in the tileset's east-north-up frame (exact, so the earth's curvature at a
city's edge counts too):

- every point of building k lies inside its full-detail bounding box K, and the distance to a box is convex,
  so no point of k is farther from B than the farthest corner of K;
- every building k holds its *spine*, the vertical segment at its label point (a point inside its footprint)
  from its lowest to its highest vertex, and the distance to a segment is convex, so no point of B is farther
  from S than ``min over k of (max over B's corners of the distance to k's spine)``.

A tall building among low ones thus stays a block of its own until the error allows it to be merged, and a
gap of open ground inside a group makes its block split. A building drawn as its LOD1 block counts as exact
(for a building with a BIM or mesh model the block stands in for the model, as the LOD1 levels of CityGML do).

Pure: arrays in, arrays out. A block's feature row is its *main* building's (the largest by footprint area x
height), so a viewer that picks the block gets that building's id and how many buildings the block stands for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.tiles.quadtree import LEVELS, square_keys

CONTENT_ERROR_SHARE = 0.95  # of the tile's geometric error, for blocks; the rest (quantizing takes < 0.01 %) is margin
MIN_SQUARE_M = 1.0  # buildings whose centres no square wider than this separates are drawn each as its LOD1 block
MIN_AREA_M2 = 1.0  # a footprint counts at least this much (a mesh seen edge-on from above has none)
MIN_SIZE_M = 0.1  # a block is at least this wide, long and tall


@dataclass(frozen=True)
class CoarseContent:
    """What a tile above the leaves draws.

    Attributes
    ----------
    singles : ndarray of int, shape (s,)
        Buildings drawn as their LOD1 blocks.
    block_members : ndarray of int, shape (m,)
        The buildings each block stands for, block after block: block ``b`` has
        ``block_members[block_offsets[b]:block_offsets[b + 1]]`` (two or more).
    block_offsets : ndarray of int, shape (b + 1,)
    low, high : ndarray, shape (b, 3), float64
        Each block's corners, east-north-up metres.
    main : ndarray of int, shape (b,)
        Each block's main building, the largest by footprint area x height.
    error : ndarray, shape (b,)
        Each block's error bound, metres (see the module's docstring).
    """

    singles: np.ndarray
    block_members: np.ndarray
    block_offsets: np.ndarray
    low: np.ndarray
    high: np.ndarray
    main: np.ndarray
    error: np.ndarray

    @property
    def blocks(self) -> int:
        return len(self.main)


def _segment_distance(points: np.ndarray, start: np.ndarray, along: np.ndarray, length2: np.ndarray) -> np.ndarray:
    """Distance from each point (n, 3) to the segment from its row of ``start`` (n, 3) along ``along`` (n, 3),
    whose squared lengths are ``length2`` (n,)."""
    t = np.clip(np.einsum("ij,ij->i", points - start, along) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    gap = points - start - t[:, None] * along
    return np.sqrt(np.einsum("ij,ij->i", gap, gap))


def _block_size(total: np.ndarray, group_low: np.ndarray, group_high: np.ndarray) -> np.ndarray:
    """The block's width and length (g, 2): a square of the footprints' ``total`` area, narrowed (and lengthened)
    where the group's extent (its buildings' lowest and highest corners) is thinner."""
    extent = np.maximum(group_high[:, :2] - group_low[:, :2], MIN_SIZE_M)
    size_x = np.minimum(np.sqrt(total), extent[:, 0])
    size_y = np.minimum(total / size_x, extent[:, 1])
    size_x = np.minimum(total / size_y, extent[:, 0])
    return np.maximum(np.column_stack([size_x, size_y]), MIN_SIZE_M)


def _error_at_least(total: np.ndarray, group_low: np.ndarray, group_high: np.ndarray) -> np.ndarray:
    """A lower bound of each block's error, from its group's extent alone: the block lies inside the extent, so
    of the buildings at its two ends along an axis, one is at least half the extent less the block away."""
    size = _block_size(total, group_low, group_high)
    return ((group_high[:, :2] - group_low[:, :2] - size) / 2).max(axis=1)


def _blocks(rows: np.ndarray, starts: np.ndarray, counts: np.ndarray, *, low: np.ndarray, high: np.ndarray,
            area: np.ndarray, spine_bottom: np.ndarray, spine_top: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One block per group of ``rows`` (groups are ``starts``/``counts`` runs): low and high corners (g, 3),
    error bounds (g,) and main buildings (g,)."""
    group = np.repeat(np.arange(len(starts)), counts)
    a = np.maximum(area[rows], MIN_AREA_M2)
    lo, hi = low[rows], high[rows]
    group_low, group_high = np.minimum.reduceat(lo, starts), np.maximum.reduceat(hi, starts)
    total = np.add.reduceat(a, starts)
    centre = np.add.reduceat(a[:, None] * (lo[:, :2] + hi[:, :2]) / 2, starts) / total[:, None]
    size = _block_size(total, group_low, group_high)
    centre = np.clip(centre, group_low[:, :2] + size / 2, np.maximum(group_high[:, :2] - size / 2,
                                                                       group_low[:, :2] + size / 2))
    base = group_low[:, 2]
    top = np.maximum(np.add.reduceat(a * hi[:, 2], starts) / total, base + MIN_SIZE_M)
    block_low = np.column_stack([centre - size / 2, base])
    block_high = np.column_stack([centre + size / 2, top])
    # buildings to the block: each bounding box's farthest corner
    excess = np.maximum(np.maximum(block_low[group] - lo, hi - block_high[group]), 0.0)
    buildings_to_block = np.maximum.reduceat(np.linalg.norm(excess, axis=1), starts)
    # the block to the buildings: its farthest corner from the nearest spine
    farthest = np.zeros(len(rows))
    start = spine_bottom[rows]
    along = spine_top[rows] - start
    length2 = np.einsum("ij,ij->i", along, along)
    corner_low, corner_high = block_low[group], block_high[group]
    for corner in range(8):
        pick = np.array([(corner >> axis) & 1 for axis in range(3)], dtype=bool)
        point = np.where(pick, corner_high, corner_low)
        farthest = np.maximum(farthest, _segment_distance(point, start, along, length2))
    block_to_buildings = np.minimum.reduceat(farthest, starts)
    volume = a * (hi[:, 2] - lo[:, 2])
    first_best = np.flatnonzero(volume == np.maximum.reduceat(volume, starts)[group])
    _, first_of_group = np.unique(group[first_best], return_index=True)
    return block_low, block_high, np.maximum(buildings_to_block, block_to_buildings), rows[first_best[first_of_group]]


def coarse_content(members: np.ndarray, *, level: int, cell_m: float, target_m: float, centres: np.ndarray,
                   low: np.ndarray, high: np.ndarray, area: np.ndarray, spine_bottom: np.ndarray,
                   spine_top: np.ndarray) -> CoarseContent:
    """A tile's coarse content, each part within ``target_m`` of the buildings it stands for.

    Parameters
    ----------
    members : ndarray of int
        The tile's buildings (indices into the per-building arrays).
    level : int
        The tile's level in the fixed grid (:mod:`twin.tiles.quadtree`).
    cell_m : float
        The fixed grid's cell, metres.
    target_m : float
        The largest error a block may have, metres.
    centres : ndarray, shape (n, 2)
        Each building's centre (east, north), as the quadtree places it.
    low, high : ndarray, shape (n, 3)
        Each building's bounding box at full detail, east-north-up metres.
    area : ndarray, shape (n,)
        Footprint areas, square metres.
    spine_bottom, spine_top : ndarray, shape (n, 3)
        The ends of each building's spine (see the module's docstring), east-north-up metres.

    Returns
    -------
    CoarseContent
    """
    arrays = {"low": low, "high": high, "area": area, "spine_bottom": spine_bottom, "spine_top": spine_top}
    deepest = LEVELS + max(0, int(np.ceil(np.log2(cell_m / MIN_SQUARE_M))))
    singles, members_out, sizes, lows, highs, mains, errors = [], [], [], [], [], [], []
    pending = np.asarray(members, dtype=np.int64)
    depth = level
    while len(pending):
        keys = square_keys(centres[pending], depth, cell_m)
        order = np.argsort(keys, kind="stable")
        pending, keys = pending[order], keys[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        counts = np.diff(np.r_[starts, len(keys)])
        alone = counts == 1
        singles.append(pending[starts[alone]])
        grouped = np.repeat(~alone, counts)
        if depth >= deepest:  # the same place: each is drawn as itself
            singles.append(pending[grouped])
            break
        rows, counts = pending[grouped], counts[~alone]
        if not len(rows):
            break
        starts = np.cumsum(counts) - counts
        # most groups of the first, wide squares are too spread to be one block: told apart cheaply
        hopeful = _error_at_least(np.add.reduceat(np.maximum(area[rows], MIN_AREA_M2), starts),
                                  np.minimum.reduceat(low[rows], starts),
                                  np.maximum.reduceat(high[rows], starts)) <= target_m
        error = np.full(len(counts), np.inf)
        block_low, block_high = np.zeros((len(counts), 3)), np.zeros((len(counts), 3))
        main = np.zeros(len(counts), np.int64)
        if hopeful.any():
            mine = np.repeat(hopeful, counts)
            some = counts[hopeful]
            (block_low[hopeful], block_high[hopeful], error[hopeful],
             main[hopeful]) = _blocks(rows[mine], np.cumsum(some) - some, some, **arrays)
        taken = error <= target_m
        members_out.append(rows[np.repeat(taken, counts)])
        sizes.append(counts[taken])
        lows.append(block_low[taken])
        highs.append(block_high[taken])
        mains.append(main[taken])
        errors.append(error[taken])
        pending = rows[np.repeat(~taken, counts)]
        depth += 1
    def joined(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
        return np.concatenate(parts) if parts else empty

    none = np.zeros(0, np.int64)
    return CoarseContent(singles=joined(singles, none), block_members=joined(members_out, none),
                         block_offsets=np.concatenate([[0], np.cumsum(joined(sizes, none))]).astype(np.int64),
                         low=joined(lows, np.zeros((0, 3))), high=joined(highs, np.zeros((0, 3))),
                         main=joined(mains, none), error=joined(errors, np.zeros(0)))


def box_meshes(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes as triangle meshes without floors: vertices (8b, 3), triangles (10b, 3) indexing them, b after b.

    Walls and roof face outward (counter-clockwise seen from outside), east-north-up.
    """
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    ring = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])  # counter-clockwise seen from above
    corners = np.array([[*r, z] for z in (0, 1) for r in ring], dtype=bool)  # (8, 3): floor ring, then roof ring
    vertices = np.where(corners[None, :, :], high[:, None, :], low[:, None, :]).reshape(-1, 3)
    faces = [[k, (k + 1) % 4, (k + 1) % 4 + 4] for k in range(4)] + [[k, (k + 1) % 4 + 4, k + 4] for k in range(4)]
    faces += [[4, 5, 6], [4, 6, 7]]
    triangles = (np.array(faces)[None, :, :] + 8 * np.arange(len(low))[:, None, None]).reshape(-1, 3)
    return vertices, triangles
