"""Interoperability: CesiumJS (npm ``cesium``, served from this machine, no ion) loads an exported tileset in
Debian's Chromium, and picking a building on screen gives its ``building_id`` from the tile's metadata."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pyproj
import pytest

from bench.browser import chromium, free_port
from tests.conftest import ROOT
from twin.store.store import Store
from twin.tiles.export import export_tiles

pytestmark = pytest.mark.browser

CESIUM = ROOT / "tests" / "node" / "node_modules" / "cesium" / "Build" / "Cesium"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8">
<script>window.CESIUM_BASE_URL = "/cesium/";</script>
<script src="/cesium/Cesium.js"></script>
<link href="/cesium/Widgets/widgets.css" rel="stylesheet">
<style>html, body, #view { margin: 0; width: 100%; height: 100%; overflow: hidden; }</style>
</head><body><div id="view"></div></body></html>"""

# Load the tileset, look at a point obliquely, wait for every tile in view, and pick there.
LOAD_AND_PICK = """async ([ecef, range]) => {
  const viewer = new Cesium.Viewer("view", {baseLayer: false, baseLayerPicker: false, geocoder: false,
    homeButton: false, sceneModePicker: false, navigationHelpButton: false, animation: false, timeline: false,
    fullscreenButton: false, infoBox: false, selectionIndicator: false});
  const tileset = await Cesium.Cesium3DTileset.fromUrl("/tiles/tileset.json");
  viewer.scene.primitives.add(tileset);
  const target = new Cesium.Cartesian3(...ecef);
  viewer.camera.lookAt(target, new Cesium.HeadingPitchRange(0.5, -0.5, range));
  await new Promise((resolve) => {
    const check = () => (tileset.tilesLoaded ? resolve() : setTimeout(check, 100));
    check();
  });
  for (let i = 0; i < 3; i++) await new Promise((r) => requestAnimationFrame(r));  // drawn, not only loaded
  const onScreen = Cesium.SceneTransforms.worldToWindowCoordinates(viewer.scene, target);
  const picked = viewer.scene.pick(onScreen);
  const empty = viewer.scene.pick(new Cesium.Cartesian2(2, 2));  // a corner of sky
  return {picked: picked && picked.getProperty ? picked.getProperty("building_id") : null,
          name: picked && picked.getProperty ? picked.getProperty("name") : null,
          height: picked && picked.getProperty ? picked.getProperty("height") : null,
          micro: picked && picked.getProperty ? picked.getProperty("micro_id") : null,
          empty: empty ? String(empty) : null, tiles: tileset.statistics.numberOfTilesWithContentReady};
}"""


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_cesium_loads_the_tileset_and_picking_a_building_gives_its_id(small_demo, tmp_path):
    if not (CESIUM / "Cesium.js").exists():
        pytest.fail(f"CesiumJS is not installed in {CESIUM.parents[2]}: run `make test-setup`")
    site = tmp_path / "site"
    site.mkdir()
    (site / "cesium").symlink_to(CESIUM)
    with Store(small_demo, read_only=True) as store:
        export_tiles(store.con, store.district, site / "tiles", max_vertices=2000)
        crs = store.district.crs
        # the tallest building: nothing stands between its roof and a camera above it
        building_id, name, height, micro_id, x, y, top = store.con.execute(
            "SELECT building_id, name, height, grid_id, label_x, label_y, base_z + height FROM buildings "
            "ORDER BY height DESC, building_id LIMIT 1").fetchone()
    (site / "index.html").write_text(PAGE)
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    ecef = pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, top)
    server, url = _serve(site)
    elsewhere = []
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 800, "height": 600})

            def only_here(route):
                if route.request.url.startswith(url):
                    return route.continue_()
                elsewhere.append(route.request.url)
                return route.abort()

            page.route("**/*", only_here)
            page.goto(f"{url}/index.html")
            result = page.evaluate(LOAD_AND_PICK, [list(np.asarray(ecef, dtype=float)), 250.0])
    finally:
        server.shutdown()
    assert elsewhere == []  # no ion, no CDN: nothing left this machine
    assert result["tiles"] >= 1
    assert result["picked"] == building_id and result["name"] == name
    assert result["height"] == height and result["micro"] == micro_id  # a FLOAT64 and a string, read in place
    assert result["empty"] is None
