"""The second baseline for ``bench/view.py``: the same buildings in Panel's stock ``pn.pane.DeckGL``.

An extruded deck.gl ``GeoJsonLayer`` of every footprint (longitude, latitude; elevation from the
building's height), as a user of ``pn.pane.DeckGL`` would write it: the data travels as JSON. The
GeoJSON is built once per server process (``pn.state.as_cached``); each session gets its own pane.

Served by ``panel serve bench/deckgl_baseline_app.py --args --db STORE``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import panel as pn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scenes.theme import BACKGROUND  # noqa: E402

BUILDING_RGB = [143, 179, 217]


def build_spec(db: str) -> dict:
    """The deck.gl JSON spec: an extruded GeoJsonLayer of every footprint, seen obliquely over the district."""
    import numpy as np
    import pyproj
    import shapely

    from twin.store.store import Store

    with Store(db, read_only=True) as store:
        crs = store.district.crs
        rows = store.con.execute("SELECT ST_AsWKB(footprint), height FROM buildings ORDER BY building_id").fetchall()
    to_wgs84 = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    shapes = shapely.transform(shapely.from_wkb([bytes(r[0]) for r in rows]),
                               lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])))
    features = [{"type": "Feature", "geometry": json.loads(shapely.to_geojson(shape)),
                 "properties": {"height": float(height)}}
                for shape, (_, height) in zip(shapes, rows)]
    west, south, east, north = shapely.total_bounds(shapes)
    return {
        "initialViewState": {"longitude": float(west + east) / 2, "latitude": float(south + north) / 2, "zoom": 14.3,
                             "pitch": 45, "bearing": 0},
        "layers": [{"@@type": "GeoJsonLayer", "data": {"type": "FeatureCollection", "features": features},
                    "extruded": True, "filled": True, "stroked": False, "pickable": True,
                    "getElevation": "@@=properties.height", "getFillColor": BUILDING_RGB}],
        "mapStyle": "",
        "views": [{"@@type": "MapView", "controller": True}],
    }


pn.extension("deckgl")
parser = argparse.ArgumentParser()
parser.add_argument("--db", required=True)
db = parser.parse_known_args(sys.argv[1:])[0].db
spec = pn.state.as_cached(f"deckgl-baseline:{db}", build_spec, db=db)
pn.pane.DeckGL(spec, sizing_mode="stretch_both", min_height=700,
               styles={"background": BACKGROUND}).servable()
