"""The view's per-building arrays at city scale: ids found by binary search, grids as codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from scenes.helper import in_helper
from scenes.layers import SortedIds, cameras_as_layer, grid_codes

IDS = st.lists(st.text(alphabet="abcXYZ:-_0189微网格", min_size=1, max_size=12), unique=True, max_size=60)


@given(ids=IDS, asked=st.lists(st.text(alphabet="abcXYZ:-_0189微网格", max_size=14), max_size=20),
       ordered=st.booleans())
def test_ids_are_found_where_they_stand_and_others_nowhere(ids, asked, ordered):
    given_order = sorted(ids, key=lambda s: s.encode()) if ordered else ids
    found = SortedIds(pa.array(given_order, type=pa.string()) if ordered else given_order)
    assert len(found) == len(given_order) and found.to_list() == given_order
    for i, value in enumerate(given_order):
        assert found.index_of(value) == i and found[i] == value
    expected = [given_order.index(a) if a in given_order else -1 for a in asked]
    assert found.indices_of(asked).tolist() == expected
    assert found.indices_of(pa.array(asked, type=pa.string())).tolist() == expected


def test_grid_codes_number_the_distinct_grids_in_order_and_leave_nulls_out():
    codes, grids = grid_codes(pa.chunked_array([["M2", None, "M1"], ["M2", "M3"]]))
    assert grids.to_list() == ["M1", "M2", "M3"]
    assert codes.tolist() == [1, -1, 0, 1, 2]


def test_the_helper_process_answers_and_raises_as_the_function_does():
    assert in_helper(np.add, 2, 3) == 5
    try:
        in_helper(int, "not a number")
    except ValueError as exc:
        assert "not a number" in str(exc)
    else:
        raise AssertionError("the helper's error was not raised here")


_coordinate = st.floats(min_value=-3000, max_value=3000, allow_nan=False, width=32)


@given(points=st.lists(st.tuples(_coordinate, _coordinate), min_size=0, max_size=60),
       corner=st.tuples(_coordinate, _coordinate), size=st.tuples(st.floats(0, 4000), st.floats(0, 4000)))
def test_the_camera_layer_finds_in_a_box_exactly_the_cameras_standing_there(points, corner, size):
    origin = (500_000.0, 3_850_000.0, 0.0)
    frame = pd.DataFrame({"camera_id": [f"CAM-{i:04d}" for i in range(len(points))],
                          "x": [origin[0] + p[0] for p in points], "y": [origin[1] + p[1] for p in points],
                          "z": 4.0, "heading_deg": 0.0, "pitch_deg": -20.0, "fov_deg": 60.0, "range_m": 40.0,
                          "status": "online"})
    layer = cameras_as_layer(frame, origin)
    xmin, ymin = corner
    xmax, ymax = xmin + size[0], ymin + size[1]
    xy = layer.records[:, :2]  # float32, as the layer holds them
    expected = np.flatnonzero((xy[:, 0] >= xmin) & (xy[:, 0] <= xmax) & (xy[:, 1] >= ymin) & (xy[:, 1] <= ymax))
    assert layer.in_box(xmin, ymin, xmax, ymax).tolist() == expected.tolist()
    # a camera on the box's edge is in it (its cell may be the box's neighbour's)
    if len(points):
        x, y = xy[0]
        assert 0 in layer.in_box(float(x), float(y), float(x), float(y)).tolist()
