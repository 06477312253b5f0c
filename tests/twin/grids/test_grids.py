"""Point -> grid assignment, the one rule every matcher uses: checked against a plain reading of the rule."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.grids.grids import locate

cuts = st.lists(st.integers(-50, 50), min_size=2, max_size=5, unique=True).map(sorted)


@st.composite
def districts(draw) -> tuple[list[str], list[tuple[float, float, float, float]], np.ndarray]:
    """Rectangular grids that tile a box (a few cut away: gaps), ids in a shuffled order, and points on
    their corners and edges, inside them and outside the box."""
    xs, ys = draw(cuts), draw(cuts)
    boxes = [(x0, y0, x1, y1) for x0, x1 in zip(xs, xs[1:]) for y0, y1 in zip(ys, ys[1:])]
    names = draw(st.lists(st.text("abcdef", min_size=1, max_size=3), min_size=len(boxes), max_size=len(boxes),
                          unique=True))
    kept = [k for k in range(len(boxes)) if draw(st.integers(0, 4))]  # one in five is a gap
    order = draw(st.permutations(kept))
    on_lines = st.tuples(st.sampled_from(xs), st.integers(ys[0] - 3, ys[-1] + 3))
    anywhere = st.tuples(st.floats(-60, 60, allow_nan=False), st.floats(-60, 60, allow_nan=False))
    corners = st.tuples(st.sampled_from(xs), st.sampled_from(ys))
    points = draw(st.lists(st.one_of(on_lines, anywhere, corners), max_size=40))
    return [names[k] for k in order], [boxes[k] for k in order], np.array(points, dtype=np.float64).reshape(-1, 2)


def by_hand(ids: list[str], boxes: list[tuple], x: float, y: float) -> str | None:
    """The rule read plainly: the grids whose closed rectangle holds the point; the smallest id of them."""
    holding = [g for g, (x0, y0, x1, y1) in zip(ids, boxes) if x0 <= x <= x1 and y0 <= y <= y1]
    return min(holding) if holding else None


@settings(max_examples=300, deadline=None)
@given(districts())
def test_each_point_goes_to_the_smallest_grid_holding_it_or_to_none(district):
    ids, boxes, points = district
    boundaries = shapely.box(*np.array(boxes, dtype=np.float64).reshape(-1, 4).T) if boxes else np.array([])
    found = locate(points, np.array(ids, dtype=object), boundaries)
    assert found.shape == (len(points),) and found.dtype == object
    assert list(found) == [by_hand(ids, boxes, x, y) for x, y in points]
    if boxes:  # a tree built once gives the same answers
        tree = shapely.STRtree(boundaries)
        assert list(locate(points, ids, boundaries, tree=tree)) == list(found)

