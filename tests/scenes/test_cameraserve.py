"""The cameras near where a city's view looks (scenes.cameraserve), served as the app serves them."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request

import numpy as np
import pytest
import tornado.web

from scenes.cameraserve import (CAMERAS_BY_VIEW_ABOVE, MAX_HALF_SIDE_M, camera_routes, cameras_by_view)
from scenes.layers import camera_layer
from tests.scenes.conftest import tornado_serving
from twin.store.store import Store

SECRET = "test"


@pytest.fixture(scope="module")
def cameras_served(small_demo):
    with Store(small_demo, read_only=True) as store:
        layer = camera_layer(store.con, store.district.origin)
        ox, oy, _ = store.district.origin
        stored = store.con.execute("SELECT camera_id, ST_X(position) - ?, ST_Y(position) - ?, status FROM cameras",
                                   [ox, oy]).fetchall()
    with tornado_serving(camera_routes(cameras=lambda: layer, signed_in=lambda name: name == "op"),
                         cookie_secret=SECRET) as base:
        yield base, layer, stored


def _get(base: str, query: str, *, user: str | None = "op", accept: str | None = None):
    headers = {"Accept-Encoding": accept} if accept else {}
    if user:
        headers["Cookie"] = f"user={tornado.web.create_signed_value(SECRET, 'user', user).decode()}"
    return urllib.request.urlopen(urllib.request.Request(f"{base}/cameras/near?{query}", headers=headers),
                                  timeout=30)


def _parse(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    n = int(np.frombuffer(body, "<u4", count=1)[0])
    assert len(body) == 4 + 36 * n
    return np.frombuffer(body, "<f4", count=8 * n, offset=4).reshape(n, 8), np.frombuffer(body, "<u4", offset=4 + 32 * n)


def test_the_cameras_in_a_square_are_those_the_store_has_there_with_their_indices_for_picking(cameras_served):
    base, layer, stored = cameras_served
    xs = np.array([s[1] for s in stored])
    x, y, r = float(np.median(xs)), float(np.median([s[2] for s in stored])), 300.0
    with _get(base, f"x={x}&y={y}&r={r}") as answer:
        records, index = _parse(answer.read())
    expected = {camera_id for camera_id, cx, cy, _ in stored if abs(cx - x) <= r - 0.01 and abs(cy - y) <= r - 0.01}
    found = {layer.camera_id[i] for i in index}
    assert expected <= found and len(found) <= len(expected) + 2  # float32 places within a centimetre of the edge
    assert 10 < len(found) < len(stored), "a part of the district, not all of it"
    by_id = {camera_id: (cx, cy, status) for camera_id, cx, cy, status in stored}
    for (rx, ry, *_rest, online), i in zip(records, index):
        cx, cy, status = by_id[layer.camera_id[i]]
        assert abs(rx - cx) < 0.01 and abs(ry - cy) < 0.01 and (online > 0) == (status == "online")
    with _get(base, f"x={x}&y={y}&r={r}", accept="gzip") as answer:
        assert answer.headers["Content-Encoding"] == "gzip"
        assert np.array_equal(_parse(gzip.decompress(answer.read()))[1], index)
    with _get(base, "x=1e7&y=0&r=100") as answer:
        assert _parse(answer.read())[0].shape == (0, 8), "nothing far away"


@pytest.mark.parametrize("query, user, status", [("x=0&y=0&r=100", None, 403), ("x=0&y=0&r=100", "stranger", 403),
                                                 ("x=0&y=0", "op", 400), ("x=nan&y=0&r=100", "op", 400),
                                                 ("x=a&y=0&r=100", "op", 400),
                                                 (f"x=0&y=0&r={MAX_HALF_SIDE_M + 1}", "op", 400)])
def test_a_stranger_or_a_bad_square_is_refused(cameras_served, query, user, status):
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(cameras_served[0], query, user=user)
    assert refused.value.code == status


def test_a_city_fetches_its_cameras_by_view_unless_told():
    assert not cameras_by_view("auto", 18_000) and cameras_by_view("auto", CAMERAS_BY_VIEW_ABOVE + 1)
    assert cameras_by_view("near", 10) and not cameras_by_view("all", 2_000_000)
