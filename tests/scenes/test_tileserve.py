"""The tileset as the app serves it: each tile's map to the view's frame (scenes.tileserve), on real exports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from scenes.tileserve import TILED_ABOVE, annotated_tileset, tiled_view
from tests.conftest import ROOT
from tests.twin.tiles.tileset_checks import content_enu, tiles, to_district
from twin.geo.crs import District
from twin.store.store import Store
from twin.tiles.export import export_tiles
from twin.tiles.frame import ecef_to_district, enu_frame, enu_to_district_maps, map_terms


def test_each_tiles_map_puts_its_vertices_where_the_store_has_them_within_a_millimetre(small_demo, tmp_path):
    with Store(small_demo, read_only=True) as store:
        district = store.district
        export_tiles(store.con, district, tmp_path, max_vertices=3000)
    served = annotated_tileset(json.loads((tmp_path / "tileset.json").read_text()), district)
    checked = 0
    for node, _ in tiles(served["root"]):
        if "content" not in node:
            continue
        enu, _ = content_enu(tmp_path, node["content"]["uri"])
        exact = to_district(tmp_path, enu, district.crs) - np.asarray(district.origin)
        mapping = node["extras"]["district_map"]
        coefficients = np.array(mapping["coefficients"]).reshape(3, 9)
        drawn = map_terms(enu - np.array(mapping["centre"])) @ coefficients.T
        assert np.abs(drawn - exact).max() < 1e-3, node["content"]["uri"]
        checked += len(enu)
    assert checked > 10_000


@pytest.mark.parametrize("crs, origin", [("EPSG:4547", (474365.0, 3848003.0, 110.0)),  # Zhengzhou, CM 114E
                                         ("EPSG:32651", (812000.0, 3450000.0, 5.0))])  # far from UTM 51N's meridian
@pytest.mark.parametrize("width_m", [250.0, 1000.0, 4000.0])
def test_the_map_of_a_box_up_to_four_kilometres_is_exact_to_a_millimetre(crs, origin, width_m):
    district = District(crs, origin)
    frame = enu_frame(district)
    low = np.array([[6000.0, -5000.0, -10.0]])
    high = low + [width_m, width_m, 300.0]
    centre, coefficients = enu_to_district_maps(low, high, district, frame)
    points = low + np.random.default_rng(1).random((2000, 3)) * (high - low)
    exact = ecef_to_district(frame.to_ecef(points), crs) - np.asarray(origin)
    assert np.abs(map_terms(points - centre[0]) @ coefficients[0].T - exact).max() < 1e-3


def test_the_view_streams_tiles_above_the_measured_size_or_when_told():
    assert not tiled_view("auto", 12_813) and tiled_view("auto", TILED_ABOVE + 1)
    assert tiled_view("tiles", 10) and not tiled_view("buffer", 10_000_000)


def test_serving_a_folder_that_holds_no_tileset_is_refused_before_anything_starts(small_demo, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "serve", "--db", str(small_demo), "--view", "tiles",
                           "--tiles", str(tmp_path), "--port", "1"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 2
    assert f"--tiles {tmp_path}: no tileset.json there" in done.stderr and "twin export tiles" in done.stderr
