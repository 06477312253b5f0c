"""Interoperability: CesiumJS (npm ``cesium``, served from this machine, no ion) loads an exported tileset in
Debian's Chromium (with normals, and the compact one without), and picking a building on screen gives its
``building_id`` from the tile's metadata: close up from a leaf, and from afar from the coarse root, where a
block gives its main building's id and how many buildings it stands for."""

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
from tests.twin.tiles.tileset_checks import content_features
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

# Load the tileset (once a page), look at a point obliquely, wait for every tile in view, and pick there.
LOAD_AND_PICK = """async ([ecef, range]) => {
  if (!window.viewer) {
    window.viewer = new Cesium.Viewer("view", {baseLayer: false, baseLayerPicker: false, geocoder: false,
      homeButton: false, sceneModePicker: false, navigationHelpButton: false, animation: false, timeline: false,
      fullscreenButton: false, infoBox: false, selectionIndicator: false});
    window.tileset = await Cesium.Cesium3DTileset.fromUrl("/tiles/tileset.json");
    window.tileset.tileFailed.addEventListener((e) => console.error(`tile ${e.url}: ${e.message}`));
    window.viewer.scene.primitives.add(window.tileset);
  }
  const viewer = window.viewer, tileset = window.tileset;
  const target = new Cesium.Cartesian3(...ecef);
  viewer.camera.lookAt(target, new Cesium.HeadingPitchRange(0.5, -0.5, range));
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  await frame(); await frame();  // the traversal for the new view has run: tilesLoaded speaks of it
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
          buildings: picked && picked.getProperty ? picked.getProperty("buildings") : null,
          tile: picked && picked.content ? picked.content.url : null,
          empty: empty ? String(empty) : null, tiles: tileset.statistics.numberOfTilesWithContentReady};
}"""


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("normals", [True, False])
def test_cesium_loads_the_tileset_and_picking_a_building_gives_its_id(small_demo, tmp_path, normals):
    if not (CESIUM / "Cesium.js").exists():
        pytest.fail(f"CesiumJS is not installed in {CESIUM.parents[2]}: run `make test-setup`")
    site = tmp_path / "site"
    site.mkdir()
    (site / "cesium").symlink_to(CESIUM)
    with Store(small_demo, read_only=True) as store:
        export_tiles(store.con, store.district, site / "tiles", max_vertices=2000, normals=normals)
        crs = store.district.crs
        # the tallest building: nothing stands between its roof and a camera above it
        building_id, name, height, micro_id, x, y, top = store.con.execute(
            "SELECT building_id, name, height, grid_id, label_x, label_y, base_z + height FROM buildings "
            "ORDER BY height DESC, building_id LIMIT 1").fetchone()
    (site / "index.html").write_text(PAGE)
    root = json.loads((site / "tiles" / "tileset.json").read_text())["root"]
    transform = np.array(root["transform"], dtype=np.float64).reshape(4, 4).T
    to_ecef = pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
    to_lonlat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def roof(x: float, y: float, z: float) -> list[float]:
        return list(np.asarray(to_ecef.transform(*to_lonlat.transform(x, y), z), dtype=float))

    # in the coarse root: its tallest building drawn as itself, and its largest block (the top of its middle)
    enu, feature, columns = content_features(site / "tiles", root["content"]["uri"])
    stands = np.asarray(columns["buildings"])
    single = max((f for f in np.flatnonzero(stands == 1)), key=lambda f: columns["height"][f])
    single_id = columns["building_id"][single]
    with Store(small_demo, read_only=True) as store:
        single_roof = roof(*store.con.execute("SELECT label_x, label_y, base_z + height FROM buildings "
                                              "WHERE building_id = ?", [single_id]).fetchone())
    block = max(np.flatnonzero(stands > 1), key=lambda f: np.ptp(enu[feature == f][:, :2], axis=0).prod())
    main, stands_for = columns["building_id"][block], int(stands[block])
    low, high = enu[feature == block].min(axis=0), enu[feature == block].max(axis=0)
    block_top = list(transform[:3, :3] @ [(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, high[2]] + transform[:3, 3])
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
            # from 8 km the root's error (its width x 0.024) is under Cesium's 16 pixels: it is drawn alone
            afar = page.evaluate(LOAD_AND_PICK, [single_roof, 8000.0])
            on_block = page.evaluate(LOAD_AND_PICK, [block_top, 8000.0])
            result = page.evaluate(LOAD_AND_PICK, [roof(x, y, top), 250.0])
    finally:
        server.shutdown()
    assert elsewhere == []  # no ion, no CDN: nothing left this machine
    assert afar["tile"].endswith(root["content"]["uri"])
    assert afar["picked"] == single_id and afar["buildings"] == 1
    assert on_block["tile"].endswith(root["content"]["uri"])
    assert on_block["picked"] == main and on_block["buildings"] == stands_for > 1
    assert result["tiles"] >= 1
    assert result["picked"] == building_id and result["name"] == name
    assert result["height"] == height and result["micro"] == micro_id  # a FLOAT64 and a string, read in place
    assert result["buildings"] == 1  # the class's default: leaves leave the column out
    assert result["empty"] is None
