"""Tyler's rule on made-up buildings: leaves within the vertex budget, geometric errors, coarse content above,
and addresses that stay put when the district grows."""

from __future__ import annotations

import numpy as np
import pytest

from twin.errors import InputError
from twin.tiles.quadtree import CELL_M, ERROR_PER_METRE, MAX_LEAF_CELLS, build_quadtree


def _district(n: int, *, seed: int = 0, spread_m: float = 3000.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread_m / 2, spread_m / 2, size=(n, 2))
    full = rng.integers(8, 40, size=n)
    full[rng.choice(n, size=n // 50, replace=False)] = 5000  # a few BIM models
    return centres, full


def test_leaves_hold_at_most_the_budget_unless_one_cell_and_parents_more():
    centres, full = _district(4000)
    root = build_quadtree(centres, full_vertices=full, max_vertices=3000)
    members = []
    for tile in root.walk():
        if tile.children:
            assert full[tile.buildings].sum() > 3000 or tile.width > MAX_LEAF_CELLS * CELL_M
            assert tile.geometric_error == pytest.approx(tile.width * ERROR_PER_METRE)
            assert all(child.width == tile.width / 2 for child in tile.children)
            assert tile.content == "coarse"
            assert sorted(np.concatenate([c.buildings for c in tile.children])) == sorted(tile.buildings)
        else:
            assert tile.content == "full" and tile.geometric_error == 0
            assert full[tile.buildings].sum() <= 3000 or tile.width == CELL_M
            assert tile.width <= MAX_LEAF_CELLS * CELL_M
            members.append(tile.buildings)
    assert sorted(np.concatenate(members)) == list(range(len(centres)))  # every building in exactly one leaf


def test_leaves_of_sparse_buildings_are_at_most_two_kilometres_wide():
    centres, full = _district(300, spread_m=12_000.0)  # 300 buildings over 12 km: within any vertex budget
    root = build_quadtree(centres, full_vertices=full // 100 + 8)
    leaves = [t for t in root.walk() if not t.children]
    assert root.width > 8000 and len(leaves) > 4
    assert max(t.width for t in leaves) == MAX_LEAF_CELLS * CELL_M == 2000


def test_a_small_district_is_one_leaf_the_size_of_its_square():
    centres, full = _district(50, spread_m=400.0)
    root = build_quadtree(centres, full_vertices=full)
    assert root.children == [] and root.content == "full" and root.width <= 4 * 400.0


def test_buildings_far_away_leave_the_other_tiles_where_they_were():
    centres, full = _district(3000)
    before = build_quadtree(centres, full_vertices=full, max_vertices=3000)
    far = np.array([[9000.0, -7000.0]])
    after = build_quadtree(np.vstack([centres, far]), full_vertices=np.append(full, 20), max_vertices=3000)
    leaves_before = {(t.level, t.x, t.y): tuple(t.buildings) for t in before.walk() if not t.children}
    leaves_after = {(t.level, t.x, t.y): tuple(t.buildings) for t in after.walk() if not t.children}
    assert after.width > before.width
    assert {k: v for k, v in leaves_after.items() if len(centres) not in v} == leaves_before


def test_buildings_beyond_the_grid_are_refused_with_the_fix():
    with pytest.raises(InputError, match="store of their own"):
        build_quadtree(np.array([[0.0, 0.0], [500_000.0, 0.0]]), full_vertices=np.array([10, 10]))
    assert build_quadtree(np.zeros((0, 2)), full_vertices=np.zeros(0)) is None
