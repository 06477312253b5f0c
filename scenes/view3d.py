"""The 3D view: our own Panel component over the vtk.js that Panel bundles.

Unlike ``pn.pane.VTK``, which serialises a whole render window as a vtk.js
scene and sends no clicks back, this component sends the geometry once as a
binary buffer and then only small per-building arrays (colours, selection)
and overlay buffers, and reports picks and hovers to Python.
"""

from __future__ import annotations

import os
from pathlib import Path

import param
from panel.custom import JSComponent

from scenes.i18n import js_texts
from scenes.theme import FONT_STACK

PROBES_ENV = "TWIN_PROBES"  # set to 1 by the browser tests and benches (bench/browser.py ``served``)


class DistrictView(JSComponent):
    """Buildings, grid outlines, case markers and camera cones in 3D.

    Buffers are little-endian bytes with positions in metres relative to the
    district origin (see :mod:`scenes.layers`).
    """

    buildings = param.Bytes(default=b"", doc="Geometry buffer from scenes.layers.building_layer")
    tileset = param.String(default="", doc="URL of a 3D Tiles tileset (scenes.tileserve) to stream the buildings "
                                           "from instead of ``buildings``; its features are building indices")
    models = param.Bytes(default=b"", doc="BIM and mesh models that replace LOD1 blocks (scenes.layers.model_layer)")
    basemap = param.Bytes(default=b"", doc="Roads, water and green space, triangulated (scenes.layers.basemap_layer); "
                                           "sent after the first frame")
    colors = param.Bytes(default=b"", doc="Colour per building: a palette and a uint8 index each "
                                          "(scenes.layers.indexed_colours), or RGB uint8 per building")
    selected = param.Integer(default=-1, doc="Highlighted building index, -1 for none")
    grid_lines = param.Bytes(default=b"", doc="float32 segment end points of the grid outlines")
    grid_highlight = param.Bytes(default=b"", doc="float32 segment end points of the highlighted grid")
    labels = param.List(default=[], doc="[name, x, y] grid labels")
    legend = param.Dict(default={}, doc="{'title': str, 'items': [[colour, text], ...]}")
    cases = param.Bytes(default=b"", doc="float32 (x, y, z, status) per case")
    case_updates = param.Bytes(default=b"", doc="Live changes (scenes.layers.case_update_records): per changed "
                                                "case its slot, x, y, z, status (-1 hides) and fresh flag, then "
                                                "the case ids; a slot past the end adds a marker")
    cameras = param.Bytes(default=b"", doc="float32 (x, y, z, heading, pitch, fov, range, online) per camera")
    cameras_near = param.String(default="", doc="URL of the cameras near a point (scenes.cameraserve), for a city: "
                                                "the view then fetches those near where it looks instead of "
                                                "``cameras``, as it moves")
    workers = param.Bytes(default=b"", doc="float32 (x, y, z, open load) per grid worker on patrol "
                                           "(scenes.layers.worker_records); the operator's screen only")
    worker_names = param.List(default=[], doc="The workers of ``workers``, in order (their markers' tooltips)")
    show_cameras = param.Boolean(default=True)
    show_cases = param.Boolean(default=True)
    party = param.List(default=[], doc="[text, x, y, z, kind] per party organisation: its mark above what it covers "
                                       "(relative to the origin), the index of its kind in PARTY_ORG_KINDS, and what "
                                       "hovering it says (scenes.party.party_marks)")
    party_highlight = param.Bytes(default=b"", doc="float32 (x0, y0, z0, x1, y1, z1) per segment: the roof outlines "
                                                   "of the buildings the picked party organisation covers")
    show_party = param.Boolean(default=False, doc="Show the party layer: its marks, outlines and legend")
    fly_to = param.Dict(default={}, doc="{'fp', 'pos'} (focal point and eye, scenes.framing.frame_view) or "
                                        "{'x', 'y', 'z', 'r'} to fly to, or {'view': 'oblique'|'top'|'reset'}")
    tooltip = param.String(default="")
    texts = param.Dict(default={}, doc="The view's strings by English msgid, in the session's language "
                                       "(scenes.i18n.js_texts)")
    probes = param.Boolean(default=False, constant=True,
                           doc="Leave marks in the page for tests and benches (window.twinFirstFrame, twinMarks, "
                               "twinView, twinCaseDrawn, ...); on when the server runs with TWIN_PROBES=1")

    # Set by the browser.
    ready = param.Boolean(default=False, doc="The first frame is drawn")
    pick = param.Dict(default={}, doc="{'kind': 'building'|'case'|'camera'|'party'|'worker'|'ground'|'none', "
                                      "'index': int, "
                                      "'seq': int, 'element': int (a model's element, -1 for an LOD1 block), "
                                      "'x', 'y': where a 'ground' click meets z = 0 (relative to the origin)}")
    hovered = param.Integer(default=-1, doc="Building index under the pointer")

    _esm = Path(__file__).with_name("view3d.js")
    _stylesheets = [f":host {{ display: block; width: 100%; height: 100%; font-family: {FONT_STACK}; }}"]

    def __init__(self, **params) -> None:
        params.setdefault("probes", os.environ.get(PROBES_ENV) == "1")
        params.setdefault("texts", js_texts())
        super().__init__(**params)

    def fly_frame(self, focal_point, eye) -> None:
        """Fly the camera to look at ``focal_point`` from ``eye`` (metres, relative to the origin)."""
        self.fly_to = {"fp": [float(v) for v in focal_point], "pos": [float(v) for v in eye],
                       "seq": self.fly_to.get("seq", 0) + 1}

    def fly(self, *, x: float, y: float, z: float = 0.0, r: float = 50.0, mode: str = "oblique") -> None:
        """Fly the camera to look at a point (metres, relative to the origin) from ``2.6 r`` away."""
        self.fly_to = {"x": float(x), "y": float(y), "z": float(z), "r": float(r), "mode": mode,
                       "seq": self.fly_to.get("seq", 0) + 1}
