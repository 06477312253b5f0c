"""The coarse content of the tiles above the leaves, on made-up buildings that are boxes (so the distance to a
building is exact): every building drawn once, each block within its error bound, checked by sampling."""

from __future__ import annotations

import numpy as np
import pytest

from twin.tiles.lod import box_meshes, coarse_content
from twin.tiles.quadtree import CELL_M, build_quadtree


def _boxes(n: int, *, seed: int = 0, spread_m: float = 3000.0) -> dict[str, np.ndarray]:
    """Box buildings, east-north-up: footprints 8-40 m, mostly low, a few towers; ground at 0."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-spread_m / 2, spread_m / 2, size=(n, 2))
    size = rng.uniform(8, 40, size=(n, 2))
    height = np.where(rng.random(n) < 0.05, rng.uniform(80, 200, n), rng.uniform(3, 30, n))
    low = np.column_stack([centre - size / 2, np.zeros(n)])
    high = np.column_stack([centre + size / 2, height])
    spine_bottom = np.column_stack([centre, np.zeros(n)])
    return {"centres": centre, "low": low, "high": high, "area": size.prod(axis=1), "spine_bottom": spine_bottom,
            "spine_top": spine_bottom + np.column_stack([np.zeros((n, 2)), height])}


def _box_distance(points: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Distance from points (p, 3) to each box (b, 3): (p, b); 0 inside."""
    outside = np.maximum(np.maximum(low[None] - points[:, None], points[:, None] - high[None]), 0.0)
    return np.linalg.norm(outside, axis=2)


def _samples(low: np.ndarray, high: np.ndarray, rng, k: int = 40) -> np.ndarray:
    """Points of boxes (b, 3): their corners and ``k`` random points inside each, (b * (8 + k), 3)."""
    corners = np.array([[(c >> a) & 1 for a in range(3)] for c in range(8)], dtype=float)
    unit = np.vstack([corners, rng.random((k, 3))])
    return (low[:, None, :] + unit[None] * (high - low)[:, None, :]).reshape(-1, 3)


def _root_level(buildings: dict) -> int:
    return build_quadtree(buildings["centres"], full_vertices=np.full(len(buildings["area"]), 8),
                          max_vertices=8).level


@pytest.mark.parametrize("target_m", [24.0, 96.0, 384.0])
def test_each_building_is_drawn_once_and_each_block_stays_within_its_bound(target_m):
    buildings = _boxes(2000, spread_m=1500.0)
    content = coarse_content(np.arange(2000), level=_root_level(buildings), cell_m=CELL_M, target_m=target_m,
                             **buildings)
    drawn = np.concatenate([content.singles, content.block_members])
    assert sorted(drawn) == list(range(2000))
    assert content.blocks > 0 and (np.diff(content.block_offsets) >= 2).all()
    assert (content.error <= target_m).all()
    rng = np.random.default_rng(1)
    for b in range(content.blocks):
        members = content.block_members[content.block_offsets[b]:content.block_offsets[b + 1]]
        assert content.main[b] in members
        low, high = buildings["low"][members], buildings["high"][members]
        # every point of its buildings near the block, and every point of the block near one of its buildings
        to_block = _box_distance(_samples(low, high, rng), content.low[b:b + 1], content.high[b:b + 1]).max()
        to_buildings = _box_distance(_samples(content.low[b:b + 1], content.high[b:b + 1], rng, k=400),
                                     low, high).min(axis=1).max()
        assert max(to_block, to_buildings) <= content.error[b] + 1e-9, b


def test_coarser_errors_draw_fewer_and_larger_blocks():
    buildings = _boxes(2000)
    level = _root_level(buildings)
    pieces = []
    for target_m in (12.0, 48.0, 192.0, 768.0):
        content = coarse_content(np.arange(2000), level=level, cell_m=CELL_M, target_m=target_m, **buildings)
        pieces.append(len(content.singles) + content.blocks)
    assert pieces == sorted(pieces, reverse=True) and pieces[0] > 4 * pieces[-1]


def test_a_tower_among_low_buildings_stays_itself_until_the_error_allows_it_to_merge():
    rng = np.random.default_rng(2)
    n = 21
    centre = np.vstack([rng.uniform(-60, 60, size=(n - 1, 2)), [[0.0, 0.0]]])
    height = np.append(np.full(n - 1, 10.0), 150.0)
    low = np.column_stack([centre - 5, np.zeros(n)])
    high = np.column_stack([centre + 5, height])
    spine = np.column_stack([centre, np.zeros(n)])
    buildings = {"centres": centre, "low": low, "high": high, "area": np.full(n, 100.0), "spine_bottom": spine,
                 "spine_top": spine + np.column_stack([np.zeros((n, 2)), height])}
    fine = coarse_content(np.arange(n), level=8, cell_m=CELL_M, target_m=60.0, **buildings)
    assert n - 1 in fine.singles and fine.blocks >= 1
    coarse = coarse_content(np.arange(n), level=8, cell_m=CELL_M, target_m=300.0, **buildings)
    assert coarse.blocks == 1 and len(coarse.singles) == 0 and coarse.main[0] == n - 1


def test_box_meshes_face_outward_without_floors():
    low = np.array([[0.0, 0.0, 0.0], [10.0, -5.0, 2.0]])
    high = np.array([[4.0, 3.0, 12.0], [11.0, -1.0, 5.0]])
    vertices, triangles = box_meshes(low, high)
    assert vertices.shape == (16, 3) and triangles.shape == (20, 3)
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    box_centre = ((low + high) / 2)[np.repeat([0, 1], 10)]
    assert ((normal * ((a + b + c) / 3 - box_centre)).sum(axis=1) > 0).all()  # outward
    assert not (normal[:, 2] < 0).any()  # no floor faces down
