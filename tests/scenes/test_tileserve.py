"""The tileset as the app serves it: each tile's map to the view's frame (scenes.tileserve), on real exports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from scenes.layers import SortedIds, model_elements
from scenes.tileserve import TILED_ABOVE, annotated_tileset, tile_elements, tile_routes, tiled_view
from tests.conftest import ROOT
from tests.scenes.conftest import tornado_serving
from tests.twin.tiles.tileset_checks import content_enu, content_features, tiles, to_district
from twin.buildings import load_meshes
from twin.geo.crs import District
from twin.store.store import Store
from twin.tiles.export import export_tiles
from twin.tiles.frame import ecef_to_district, enu_frame, enu_to_district_maps, map_terms, relative_to_enu
from twin.tiles.glb import accessor_array, property_column, read_glb


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


def test_tiles_ids_and_the_tileset_go_out_gzipped_to_a_browser_that_accepts_it(small_demo, tmp_path):
    import gzip
    import urllib.request

    with Store(small_demo, read_only=True) as store:
        district = store.district
        export_tiles(store.con, district, tmp_path, max_vertices=3000, normals=False)
        order = SortedIds(store.con.execute("SELECT building_id FROM buildings ORDER BY building_id")
                          .arrow().read_all().column(0))
    routes = tile_routes(tmp_path, district=district, building_ids=lambda: order, signed_in=lambda name: True)
    with tornado_serving(routes) as base:

        def get(path: str, *, accept: str | None) -> tuple[bytes, str | None]:
            request = urllib.request.Request(f"{base}/tiles/{path}",
                                             headers={"Accept-Encoding": accept} if accept else {})
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.read(), answer.headers.get("Content-Encoding")

        uri = json.loads((tmp_path / "tileset.json").read_text())["root"]["content"]["uri"]
        on_disk = (tmp_path / uri).read_bytes()
        for path in (uri, f"ids/{uri}", "tileset.json"):
            plain, encoding = get(path, accept=None)
            assert encoding is None
            zipped, encoding = get(path, accept="gzip, deflate")
            assert encoding == "gzip" and gzip.decompress(zipped) == plain and len(zipped) < 0.7 * len(plain), path
        assert plain != b"" and get(uri, accept=None)[0] == on_disk
        assert len(get(uri, accept="gzip")[0]) < 0.6 * len(on_disk)


@pytest.mark.parametrize("normals", [True, False])
def test_a_bim_models_parts_are_picked_through_its_leaf_in_the_views_triangle_order(bim_demo, tmp_path, normals):
    """The element under each triangle (/tiles/elements/) is the model's element of that very triangle: the leaf's
    triangles, grouped by feature as the view keeps them, lie where the model's lie, in its order, whether the
    tile is written with normals (faces split) or without, and its positions in 16 bits."""
    db, building_id = bim_demo
    with Store(db, read_only=True) as store:
        district = store.district
        export_tiles(store.con, district, tmp_path, normals=normals)
        models = model_elements(store.con)
        _, batch = load_meshes(store.con, lod="bim", building_ids=[building_id])
    assert building_id in models
    leaves = [node["content"]["uri"] for node, _ in tiles(json.loads((tmp_path / "tileset.json").read_text())["root"])
              if "children" not in node and "content" in node]
    uri = next(u for u in leaves
               if building_id in property_column(*read_glb((tmp_path / u).read_bytes()), "building_id"))
    document, binary = read_glb((tmp_path / uri).read_bytes())
    elements = tile_elements(document, binary, models)
    assert elements is not None
    enu, feature, columns = content_features(tmp_path, uri)
    triangles = accessor_array(document, binary, document["meshes"][0]["primitives"][0]["indices"]).reshape(-1, 3)
    triangle_feature = feature[triangles[:, 0]]
    order = np.argsort(triangle_feature, kind="stable")  # the view's order: grouped by feature
    f = list(columns["building_id"]).index(building_id)
    mine = order[triangle_feature[order] == f]
    drawn = enu[triangles[mine]].mean(axis=1)
    model = relative_to_enu(batch.vertices.astype(np.float64), district, enu_frame(district))
    assert len(mine) == len(batch.triangles) == len(models[building_id])
    assert np.abs(drawn - model[batch.triangles].mean(axis=1)).max() < 0.01, "the model's triangles, in its order"
    assert np.array_equal(elements[triangle_feature[order] == f], models[building_id])
    assert (elements[triangle_feature[order] != f] == 0xFFFFFFFF).all()


def test_the_processes_of_one_store_bring_its_tiles_up_to_date_one_after_another(tmp_path):
    """``twin serve --workers``: each process updates the same folder at start and after grid saves; the folder's
    lock makes the second wait for the first (which here holds it in another process)."""
    import time

    from scenes.tileserve import folder_lock

    folder = tmp_path / "store.duckdb.tiles"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from scenes.tileserve import folder_lock\n"
        "with folder_lock(sys.argv[2]):\n    print('held', flush=True); time.sleep(1.5)"), str(ROOT), str(folder)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with folder_lock(folder):
            waited = time.monotonic() - started
    finally:
        holder.wait(10)
    assert waited > 0.8
