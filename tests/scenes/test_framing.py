"""Flying to a building, a case, a camera or a grid frames it from outside every building."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.framing import VIEW_ANGLE_DEG, frame_view, inside_any
from scenes.shared import SharedDistrict
from twin.store.store import Store


@pytest.fixture(scope="module")
def layer(small_demo):
    with Store(small_demo, read_only=True) as store:
        yield SharedDistrict(store.con.cursor()).layer


def _corners(box: np.ndarray) -> np.ndarray:
    lo, hi = box[:3], box[3:]
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def _assert_framed(box: np.ndarray, boxes: np.ndarray) -> None:
    fp, eye = frame_view(box, boxes)
    assert not inside_any(eye, boxes), f"the eye {eye} is inside a building"
    look = (fp - eye) / np.linalg.norm(fp - eye)
    to_corners = _corners(box) - eye
    angles = np.degrees(np.arccos(to_corners @ look / np.linalg.norm(to_corners, axis=1)))
    assert angles.max() <= VIEW_ANGLE_DEG / 2, "the whole target is in view"
    # No roof between the eye and the target's centre: the sight line passes above every building it crosses.
    for t in np.linspace(0.05, 0.95, 40):
        assert not inside_any(eye + t * (fp - eye) + np.array([0, 0, 0.5]), np.delete(boxes, np.flatnonzero(
            (boxes == box).all(axis=1)), axis=0)), "a building stands between the eye and the target"


def test_every_building_is_framed_from_outside_every_building(layer):
    order = np.argsort(-layer.box[:, 5])  # the tallest first, and some low ones among tall neighbours
    for i in np.r_[order[:60], order[-60:]]:
        _assert_framed(layer.box[i], layer.box)


def test_a_point_beside_the_tallest_building_is_framed_from_above_it(layer):
    tallest = layer.box[np.argmax(layer.box[:, 5])]
    x, y = tallest[0] - 3.0, 0.5 * (tallest[1] + tallest[4])  # a case on the pavement at its west wall
    box = np.array([x - 10, y - 10, 0, x + 10, y + 10, 0])
    fp, eye = frame_view(box, layer.box)
    assert eye[2] >= tallest[5], "the eye is above the tallest building near the target"
    _assert_framed(box, layer.box)
