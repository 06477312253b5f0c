"""The cameras near where a 3D view looks, for a city's view: ``/cameras/near?x=…&y=…&r=…``.

A district's view is sent every camera once (18,000 are 0.6 MB). A city's 1.5 million are 47 MB a page, which
neither the server nor the browser should hold per session, and which nobody sees at once: above
``CAMERAS_BY_VIEW_ABOVE`` cameras (``twin serve --cameras auto``), the view asks this route for the cameras in a
square of half-side ``r`` (m, at most ``MAX_HALF_SIDE_M``) around ``x``, ``y`` (relative to the district origin,
the frame the view draws in) whenever it has moved on, and draws those.

The answer is little-endian binary: a uint32 count n, n float32 records of 8 (:func:`scenes.layers.camera_records`)
and n uint32 indices of the cameras in the server's camera layer (the index a pick sends back), ascending;
gzipped for a browser that accepts it. It answers 403 without a signed-in, enabled user, as the tiles do.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from tornado.web import HTTPError, RequestHandler

from scenes.layers import CameraLayer
from scenes.tileserve import SignedIn, finish_binary

CAMERAS_BY_VIEW_ABOVE = 50_000  # cameras: above, "auto" sends each view only those near where it looks
CAMERA_MODES = ("auto", "near", "all")
MAX_HALF_SIDE_M = 5000.0
CAMERAS_NEAR_URL = "/cameras/near"


def cameras_by_view(mode: str, cameras: int) -> bool:
    """Whether the view fetches only the cameras near where it looks: ``mode`` "near" or "all" says so, "auto"
    by how many cameras there are."""
    return mode == "near" or (mode == "auto" and cameras > CAMERAS_BY_VIEW_ABOVE)


def cameras_near_answer(layer: CameraLayer, x: float, y: float, half_side_m: float) -> bytes:
    """The route's answer (see the module's docstring) for the square of half-side ``half_side_m`` (m) around
    ``x``, ``y`` (m, relative to the origin)."""
    index = layer.in_box(x - half_side_m, y - half_side_m, x + half_side_m, y + half_side_m)
    return (np.uint32(len(index)).astype("<u4").tobytes() + layer.records[index].astype("<f4").tobytes()
            + index.astype("<u4").tobytes())


class CamerasNearHandler(SignedIn, RequestHandler):
    """``/cameras/near``: the cameras in a square around a point (see the module's docstring)."""

    def initialize(self, cameras: Callable[[], CameraLayer], signed_in: Callable[[str | None], bool]) -> None:
        self.cameras, self.signed_in = cameras, signed_in

    def get(self) -> None:
        x, y, r = (self._number(name) for name in ("x", "y", "r"))
        if not 0 <= r <= MAX_HALF_SIDE_M:
            raise HTTPError(400, f"r={r}: the half-side is at most {MAX_HALF_SIDE_M:.0f} m; ask for a smaller square")
        self.set_header("Cache-Control", "no-store")  # a camera's status changes
        finish_binary(self, cameras_near_answer(self.cameras(), x, y, r))

    def _number(self, name: str) -> float:
        text = self.get_query_argument(name, None)
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise HTTPError(400, f"{name}={text!r}: expected a number of metres, as in "
                                 f"{CAMERAS_NEAR_URL}?x=120.5&y=-40&r=1500")
        return value


def camera_routes(*, cameras: Callable[[], CameraLayer], signed_in: Callable[[str | None], bool]) -> list[tuple]:
    """The Tornado route of ``/cameras/near``: ``cameras`` gives the server's camera layer, ``signed_in(username)``
    whether that user may read the district."""
    return [(CAMERAS_NEAR_URL, CamerasNearHandler, {"cameras": cameras, "signed_in": signed_in})]
