"""Cutting the district into a quadtree of tiles, by tyler's rule (3D BAG's tiler).

The ground is a fixed grid of ``cell_m`` squares (250 m) anchored at the district origin, so a tile keeps
its address from one export to the next. A building belongs to the cell holding the centre of its bounding
box. From the smallest square holding every building down, a square becomes a leaf once its buildings have
at most ``max_vertices`` vertices at full detail (42,000) and it is at most ``max_leaf_cells`` cells wide (8:
2 km), or once it is one cell; otherwise it is split in four. The width cap is ours, not tyler's: a leaf is
drawn at full detail from wherever its parent's error is too large, which for a leaf of sparse buildings 16 km
wide is 80 km away; 2 km leaves leave a whole city's view to the coarse tiles. Leaves show every building at full detail (BIM and mesh models as they are, LOD1 blocks for the rest)
and have geometric error 0. A square above them has geometric error = its width x 0.024 (tyler's factor), in
metres, and shows its buildings coarsely, within that error (:mod:`twin.tiles.lod`: each building's LOD1
block, or blocks that stand for several). Refinement is REPLACE: the children's buildings take the place of
the parent's content.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin.errors import InputError

CELL_M = 250.0
MAX_VERTICES = 42_000
MAX_LEAF_CELLS = 8  # a leaf is at most this many cells wide (2 km)
ERROR_PER_METRE = 0.024  # geometric error of a tile above the leaves, per metre of its width
LEVELS = 10  # the fixed grid's root is CELL_M * 2**LEVELS wide (256 km)
# The origin lies a third of the root's width from its corner: 1/3 is 0.010101... in binary, so the origin is
# never near a square's edge at any level (at least a third of a square's width away), and a district around
# it starts at a square a few times its size instead of straddling the middle of the root.
ORIGIN_IN_ROOT = 1 / 3


@dataclass
class Tile:
    """One square of the quadtree.

    Attributes
    ----------
    level, x, y : int
        Its address: level 0 is the fixed grid's root, level ``LEVELS`` a single cell.
    width : float
        Metres.
    buildings : ndarray of int
        Indices of the buildings inside it (its subtree's, for a square above the leaves).
    content : str
        ``"full"`` (a leaf) or ``"coarse"`` (above the leaves, :mod:`twin.tiles.lod`).
    children : list of Tile
    """

    level: int
    x: int
    y: int
    width: float
    buildings: np.ndarray
    content: str
    children: list[Tile] = field(default_factory=list)

    @property
    def geometric_error(self) -> float:
        """Metres: 0 for a leaf, width x ``ERROR_PER_METRE`` above."""
        return 0.0 if not self.children else self.width * ERROR_PER_METRE

    @property
    def uri(self) -> str:
        return f"tiles/{self.level}/{self.x}/{self.y}.glb"

    def walk(self):
        """This tile and every tile under it, parents first."""
        yield self
        for child in self.children:
            yield from child.walk()


def grid_origin(cell_m: float) -> float:
    """Metres from the fixed grid's south-west corner to the district origin, along each axis."""
    return cell_m * 2 ** LEVELS * ORIGIN_IN_ROOT


def square_keys(centres: np.ndarray, level: int, cell_m: float) -> np.ndarray:
    """The fixed grid's square at ``level`` holding each point, as one int64 key (x << 32 | y).

    ``level`` may pass ``LEVELS``: squares finer than a cell, halving on (for :mod:`twin.tiles.lod`).
    """
    width = cell_m * 2.0 ** (LEVELS - level)
    xy = np.floor((np.asarray(centres, dtype=np.float64) + grid_origin(cell_m)) / width).astype(np.int64)
    return (xy[:, 0] << 32) | xy[:, 1]


def build_quadtree(centres: np.ndarray, *, full_vertices: np.ndarray, cell_m: float = CELL_M,
                   max_vertices: int = MAX_VERTICES, max_leaf_cells: int = MAX_LEAF_CELLS) -> Tile | None:
    """The quadtree over buildings.

    Parameters
    ----------
    centres : ndarray, shape (n, 2), float64
        Each building's centre, metres east and north of the district origin.
    full_vertices : ndarray, shape (n,), int
        Vertices of each building at full detail.
    cell_m : float
        The leaves' smallest width, metres.
    max_vertices : int
        The most vertices a tile above one cell may hold.
    max_leaf_cells : int
        The widest a leaf may be, in cells.

    Returns
    -------
    Tile or None
        The root, or None without buildings.
    """
    if len(centres) == 0:
        return None
    corner = grid_origin(cell_m)
    cell = np.floor((np.asarray(centres, dtype=np.float64) + corner) / cell_m).astype(np.int64)
    outside = ((cell < 0) | (cell >= 2 ** LEVELS)).any(axis=1)
    if outside.any():
        worst = float(np.abs(centres[outside]).max())
        raise InputError(f"{int(outside.sum())} buildings lie up to {worst / 1000:.0f} km from the district origin; "
                         f"tiles cover {corner / 1000:.0f} km around it. Export them from a store of their own.")
    full_vertices = np.asarray(full_vertices, dtype=np.int64)

    def square(level: int, members: np.ndarray) -> Tile:
        shift = LEVELS - level
        x, y = (int(v) for v in cell[members[0]] >> shift)
        width = cell_m * 2 ** shift
        if level == LEVELS or (full_vertices[members].sum() <= max_vertices and 2 ** shift <= max_leaf_cells):
            return Tile(level, x, y, width, members, "full")
        child_cell = cell[members] >> (shift - 1)
        keys, which = np.unique((child_cell[:, 0] << 32) | child_cell[:, 1], return_inverse=True)
        children = [square(level + 1, members[which == k]) for k in range(len(keys))]
        return Tile(level, x, y, width, members, "coarse", children)

    # Start at the smallest square of the fixed grid that holds every building.
    spread = cell.max(axis=0) ^ cell.min(axis=0)
    level = LEVELS - int(spread.max()).bit_length()
    return square(level, np.arange(len(cell)))
