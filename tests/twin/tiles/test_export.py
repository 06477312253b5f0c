"""3D Tiles export on real stores: the schema, the 1 cm round trip, the coarse tiles' geometric errors,
metadata, detail levels, the compact encoding, incremental writes, Khronos' glTF-Validator, and the command
line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely import STRtree

from ingest.footprints import ingest_footprints, read_footprints
from ingest.ifc import ingest_ifc
from tests.conftest import IFC, LUJIAZUI, ROOT
from tests.twin.tiles.tileset_checks import (content_enu, content_features, from_district, schema_problems, tiles,
                                             to_district)
from twin.errors import InputError
from twin.grids.gridedit import merge_grids
from twin.grids.gridversions import current_grids, save_partition
from twin.store.store import Store, open_for_command
from twin.tiles.export import MANIFEST, export_tiles
from twin.tiles.glb import accessor_array, property_column, read_glb
from twin.tiles.sources import SOURCES

NODE_TOOLS = ROOT / "tests" / "node"
SMALL_BUDGET = 2000  # vertices: the small demo then makes a tree with LOD1 blocks above the BIM leaf


def export(db, out_dir, **options) -> dict:
    with Store(db, read_only=True) as store:
        return export_tiles(store.con, store.district, out_dir, **options)


@pytest.fixture(scope="module")
def bim_tiles(bim_demo, tmp_path_factory):
    """The small demo with a BIM model, exported with a small budget: (store, building with BIM, tileset)."""
    db, building_id = bim_demo
    out = tmp_path_factory.mktemp("tiles") / "bim"
    export(db, out, max_vertices=SMALL_BUDGET)
    return db, building_id, out


@pytest.fixture(scope="module")
def compact_tiles(bim_demo, tmp_path_factory):
    """The same store and budget as ``bim_tiles``, exported without normals: (store, tileset)."""
    db, _ = bim_demo
    out = tmp_path_factory.mktemp("tiles") / "compact"
    export(db, out, max_vertices=SMALL_BUDGET, normals=False)
    return db, out


@pytest.fixture(scope="module")
def lujiazui_gauss_kruger(tmp_path_factory):
    """Lujiazui in CGCS2000 3-degree Gauss-Kruger zone 40, whose eastings carry the zone: about 40,650,000 m."""
    db = tmp_path_factory.mktemp("gk") / "lujiazui.duckdb"
    with open_for_command(db) as store:
        ingest_footprints(store, read_footprints(LUJIAZUI), source="lujiazui", where=str(LUJIAZUI),
                          default_height=10.0, crs="EPSG:4528")
        assert store.district.origin[0] > 40_000_000
    return db


@pytest.fixture(scope="module")
def utm_ifc(tmp_path_factory):
    """The IFC 4.3 georeferencing example on its own, in ETRS89 / UTM 32N."""
    db = tmp_path_factory.mktemp("utm") / "utm.duckdb"
    with open_for_command(db) as store:
        ingest_ifc(store, IFC / "ifc4x3-geographic-referencing-utm" / "geographic-referencing-utm.ifc",
                   crs="EPSG:25832")
    return db


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each point of ``a``, the distance to the nearest point of ``b`` (metres)."""
    out = np.empty(len(a))
    for s in range(0, len(a), 256):
        out[s:s + 256] = np.sqrt(((a[s:s + 256, None, :] - b[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    return out


def round_trip_error(db, out_dir) -> float:
    """The farthest any vertex a leaf draws lies from the store's float64 position of the vertex it draws, and
    any store vertex from the drawn ones, in metres. Leaves must draw each building's BIM, else its mesh, else
    its LOD1 block (the tiles above them are checked by :func:`coarse_errors`)."""
    with Store(db, read_only=True) as store:
        district = store.district
        rows = store.con.execute("SELECT building_id, lod, vertices FROM meshes").fetchall()
    stored = {}
    for building_id, lod, blob in rows:
        stored[building_id, lod] = np.frombuffer(blob, "<f4").reshape(-1, 3).astype(np.float64) + district.origin
    root = json.loads((out_dir / "tileset.json").read_text())["root"]
    worst = 0.0
    for node, _ in tiles(root):
        if "children" in node:
            continue
        enu, ids = content_enu(out_dir, node["content"]["uri"])
        drawn = to_district(out_dir, enu, district.crs)
        ids = np.asarray(ids)
        for building_id in np.unique(ids):
            lod = next(lod for lod in ("bim", "mesh", "lod1") if (building_id, lod) in stored)
            mine = drawn[ids == building_id]
            worst = max(worst, _nearest(mine, stored[building_id, lod]).max(),
                        _nearest(stored[building_id, lod], mine).max())
    return worst


def _box_distance(points: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Distance from each point (p, 3) to the nearest of the boxes (b, 3); inf without boxes."""
    out = np.full(len(points), np.inf)
    for s in range(0, len(points), 512):
        chunk = points[s:s + 512, None, :]
        excess = np.maximum(np.maximum(low[None] - chunk, chunk - high[None]), 0.0)
        out[s:s + 512] = np.linalg.norm(excess, axis=2).min(axis=1, initial=np.inf)
    return out


def coarse_errors(db, out_dir, *, samples: int = 30) -> dict[str, tuple[float, float, float]]:
    """For each tile above the leaves: how far its content lies from the buildings under it at LOD1, both ways
    (metres, as solids), and its geometric error. Read independently of the exporter, from the store and the GLBs.

    - Buildings to content: every LOD1 vertex of every building under the tile (in the root frame, through the
      exact chain), to the nearest drawn block (a feature standing for several buildings: the box of its 8
      vertices, an exact distance) or drawn vertex of a building drawn as itself (at least the distance to it).
    - Content to buildings: each block's corners and ``samples`` random points inside it, to the nearest
      building's LOD1 prism (footprint and heights from the store, in the district's CRS).
    - A building drawn as itself: its drawn vertices to its LOD1 vertices, both ways.
    """
    rng = np.random.default_rng(0)
    with Store(db, read_only=True) as store:
        district = store.district
        rows = store.con.execute("SELECT building_id, vertices FROM meshes WHERE lod = 'lod1'").fetchall()
        prisms = store.con.execute("SELECT building_id, ST_AsWKB(footprint), base_z, base_z + height "
                                   "FROM buildings").fetchall()
    lod1 = {b: np.frombuffer(v, "<f4").reshape(-1, 3).astype(np.float64) + district.origin for b, v in rows}
    lod1_enu = {b: from_district(out_dir, v, district.crs) for b, v in lod1.items()}
    footprint = {b: (shapely.from_wkb(bytes(w)), z0, z1) for b, w, z0, z1 in prisms}
    root = json.loads((out_dir / "tileset.json").read_text())["root"]
    under: dict[int, set[str]] = {}
    for node, _ in reversed(list(tiles(root))):
        under[id(node)] = (set().union(*(under[id(c)] for c in node["children"])) if "children" in node
                           else set(content_features(out_dir, node["content"]["uri"])[2]["building_id"]))
    found = {}
    for node, _ in tiles(root):
        if "children" not in node:
            continue
        enu, feature, columns = content_features(out_dir, node["content"]["uri"])
        ids, counts = np.asarray(columns["building_id"]), np.asarray(columns["buildings"])
        block = counts[feature] > 1
        boxes = [(enu[feature == f].min(axis=0), enu[feature == f].max(axis=0)) for f in np.flatnonzero(counts > 1)]
        low = np.array([b[0] for b in boxes]).reshape(-1, 3)
        high = np.array([b[1] for b in boxes]).reshape(-1, 3)
        singles = enu[~block]
        mine = sorted(under[id(node)])
        stored = np.vstack([lod1_enu[b] for b in mine])
        to_content = np.minimum(_box_distance(stored, low, high), _nearest(stored, singles) if len(singles)
                                else np.inf)
        worst_single = 0.0
        for f in np.flatnonzero(counts == 1):
            drawn = enu[feature == f]
            worst_single = max(worst_single, _nearest(drawn, lod1_enu[ids[f]]).max(),
                               _nearest(lod1_enu[ids[f]], drawn).max())
        corners = np.array([[(c >> a) & 1 for a in range(3)] for c in range(8)], dtype=float)
        unit = np.vstack([corners, rng.random((samples, 3))])
        points = (low[:, None, :] + unit[None] * (high - low)[:, None, :]).reshape(-1, 3)
        in_crs = to_district(out_dir, points, district.crs)
        shapes = [footprint[b] for b in mine]
        tree = STRtree([s[0] for s in shapes])
        base, top = np.array([s[1] for s in shapes]), np.array([s[2] for s in shapes])
        to_buildings = np.full(len(points), np.inf)
        reach = node["geometricError"] * 2
        which, near = tree.query(shapely.points(in_crs[:, :2]), predicate="dwithin", distance=reach)
        flat = shapely.distance(shapely.points(in_crs[which, :2]), np.asarray(tree.geometries)[near])
        up = np.maximum(np.maximum(base[near] - in_crs[which, 2], in_crs[which, 2] - top[near]), 0.0)
        np.minimum.at(to_buildings, which, np.hypot(flat, up))
        found[node["content"]["uri"]] = (float(max(to_content.max(), worst_single)), float(to_buildings.max(initial=0)),
                                         node["geometricError"])
    return found


def merge_two_micro_grids(db) -> set[str]:
    """Merge two micro-grids of the demo; the ids of the buildings that changed grid."""
    with open_for_command(db, create=False) as store:
        parent = "S01-C01-G1"
        shapes = current_grids(store.con, parent_id=parent).geometry
        keep, gone = shapes.index[2], shapes.index[3]
        moved = {r[0] for r in store.con.execute("SELECT building_id FROM buildings WHERE grid_id = ?",
                                                 [gone]).fetchall()}
        save_partition(store.con, parent, merge_grids(shapes, [keep, gone]), actor="planner1", reason="merge")
    assert moved
    return moved


def test_the_tileset_passes_the_schema_checks(bim_tiles):
    _, _, out = bim_tiles
    assert schema_problems(out) == []
    tileset = json.loads((out / "tileset.json").read_text())
    assert tileset["asset"]["version"] == "1.1"
    leaves = [n for n, _ in tiles(tileset["root"]) if "children" not in n]
    assert len(leaves) > 1 and all(n["geometricError"] == 0 and "content" in n for n in leaves)
    above = [n for n, _ in tiles(tileset["root"]) if "children" in n]
    assert above and all("content" in n for n in above)  # the tiles above the leaves draw too


def test_what_a_tile_above_the_leaves_draws_lies_within_its_geometric_error_of_its_buildings(bim_tiles):
    db, _, out = bim_tiles
    errors = coarse_errors(db, out)
    assert len(errors) >= 2
    for uri, (to_content, to_buildings, geometric_error) in errors.items():
        assert to_content <= geometric_error and to_buildings <= geometric_error, (uri, to_content, to_buildings)
    # and the root merged buildings into blocks (it would not be small otherwise)
    root = json.loads((out / "tileset.json").read_text())["root"]
    _, _, columns = content_features(out, root["content"]["uri"])
    assert np.max(columns["buildings"]) > 1 and len(columns["building_id"]) < 0.75 * np.sum(columns["buildings"])


def test_the_schema_checks_catch_a_child_outside_its_parent(bim_tiles, tmp_path):
    _, _, out = bim_tiles
    broken = shutil.copytree(out, tmp_path / "broken")
    tileset = json.loads((broken / "tileset.json").read_text())
    tileset["root"]["children"][0]["boundingVolume"]["box"][0] += 10_000
    (broken / "tileset.json").write_text(json.dumps(tileset))
    assert any("parent" in p for p in schema_problems(broken))


@pytest.mark.parametrize("store", ["bim_tiles", "lujiazui_gauss_kruger", "utm_ifc"])
def test_every_vertex_lands_within_one_centimetre_of_the_store(store, request, tmp_path):
    if store == "bim_tiles":
        db, _, out = request.getfixturevalue(store)
    else:
        db, out = request.getfixturevalue(store), tmp_path / "tiles"
        export(db, out, max_vertices=SMALL_BUDGET)
    assert schema_problems(out) == []
    assert 0 < round_trip_error(db, out) <= 0.01


def test_bim_models_are_full_detail_in_the_leaves_with_lod1_blocks_above(bim_demo, tmp_path):
    db, building_id = bim_demo
    with Store(db, read_only=True) as store:
        counts = dict(store.con.execute("SELECT lod, n_vertices FROM meshes WHERE building_id = ?",
                                        [building_id]).fetchall())
        lod1_total, = store.con.execute("SELECT sum(n_vertices) FROM meshes WHERE lod = 'lod1'").fetchone()
    assert counts["bim"] > counts["lod1"]
    # Every LOD1 block fits in one tile, but not with the BIM model: the root is coarse, its leaves the model.
    export(db, tmp_path, max_vertices=lod1_total)
    root = json.loads((tmp_path / "tileset.json").read_text())["root"]
    assert "content" in root and "children" in root
    drawn = {}  # leaf or not -> how many vertices the building (or a block it is the main building of) has there
    for node, _ in tiles(root):
        _, ids = content_enu(tmp_path, node["content"]["uri"])
        if building_id in ids:
            drawn["children" not in node] = ids.count(building_id)
    assert set(drawn) == {True, False}
    assert drawn[True] >= counts["bim"] and drawn[False] < counts["bim"]
    assert 0 < round_trip_error(db, tmp_path) <= 0.01  # and each is the level it should be, vertex for vertex


def test_each_building_is_a_feature_with_the_stores_properties(bim_tiles):
    db, _, out = bim_tiles
    with Store(db, read_only=True) as store:
        expected = store.con.execute("""
            SELECT b.building_id, coalesce(b.name, ''), coalesce(b.use, ''), b.height, coalesce(b.floors, -1),
                   s.grid_id, c.grid_id, g.grid_id, m.grid_id
            FROM buildings b
            JOIN grids m ON m.grid_id = b.grid_id AND m.valid_to IS NULL
            JOIN grids g ON g.grid_id = m.parent_id AND g.valid_to IS NULL
            JOIN grids c ON c.grid_id = g.parent_id AND c.valid_to IS NULL
            JOIN grids s ON s.grid_id = c.parent_id AND s.valid_to IS NULL""").fetchall()
    expected = {row[0]: row for row in expected}
    seen = set()
    names = ("building_id", "name", "use", "height", "floors", "street_id", "community_id", "grid_id", "micro_id")
    coarse = 0
    for node, _ in tiles(json.loads((out / "tileset.json").read_text())["root"]):
        data = (out / node["content"]["uri"]).read_bytes()
        document, binary = read_glb(data)
        # EXT_structural_metadata's 8-byte alignment: the BIN data, and every property's buffer view in it
        assert data.index(binary) % 8 == 0 and len(binary) % 8 == 0
        table = document["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
        views = [v for prop in table["properties"].values() for k, v in prop.items() if k != "stringOffsetType"]
        assert all(document["bufferViews"][v]["byteOffset"] % 8 == 0 for v in views)
        ids = property_column(document, binary, "building_id")
        (features,) = document["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"]
        assert features["featureCount"] == len(ids) and features["attribute"] == 0
        if "children" in node:  # coarse: the id, the height, and how many buildings the feature stands for
            assert set(table["properties"]) == {"building_id", "height", "buildings"}
            height, stands_for = (property_column(document, binary, n) for n in ("height", "buildings"))
            assert set(ids) <= set(expected) and stands_for.min() >= 1
            assert all(h == expected[i][3] for i, h, n in zip(ids, height, stands_for) if n == 1)
            coarse += 1
            continue
        assert "buildings" not in table["properties"]  # one building a feature: the class's default
        columns = [property_column(document, binary, name) for name in names]
        for row in zip(*columns):
            row = tuple(v.item() if hasattr(v, "item") else v for v in row)
            assert row == expected[row[0]]
        seen.update(ids)
    assert seen == set(expected) and coarse > 0


def test_a_second_export_writes_nothing_and_an_ingest_or_grid_save_rewrites_only_their_tiles(demo_copy, tmp_path):
    out = tmp_path / "tiles"
    first = export(demo_copy, out, max_vertices=SMALL_BUDGET)
    assert len(first["written"]) == first["tiles"] > 4 and first["removed"] == []
    again = export(demo_copy, out, max_vertices=SMALL_BUDGET)
    assert again["written"] == [] and again["unchanged"] == first["tiles"]

    def leaves_holding(building_ids: set[str]) -> set[str]:
        return {node["content"]["uri"] for node, _ in tiles(json.loads((out / "tileset.json").read_text())["root"])
                if "children" not in node and building_ids & set(content_features(out, node["content"]["uri"])[2]
                                                                 ["building_id"])}

    def above(uris: set[str]) -> set[str]:
        """The tiles above these leaves (the coarse tiles that stand for their buildings)."""
        found = set()

        def walk(node: dict) -> bool:
            holds = node["content"]["uri"] in uris
            for child in node.get("children", []):
                holds = walk(child) or holds
            if holds and "children" in node:
                found.add(node["content"]["uri"])
            return holds
        walk(json.loads((out / "tileset.json").read_text())["root"])
        return found

    # An ingest: one footprint of the demo comes again, taller.
    with open_for_command(demo_copy, create=False) as store:
        row = store.con.execute("SELECT source_id, ST_AsWKB(footprint), height FROM buildings "
                                "ORDER BY building_id LIMIT 1 OFFSET 7").fetchone()
        features = gpd.GeoDataFrame({"id": [row[0]], "height": [row[2] + 9.0]},
                                    geometry=[shapely.from_wkb(bytes(row[1]))], crs=store.district.crs)
        ingest_footprints(store, features, source="demo", where="test", id_attr="id", height_attr="height")
    after_ingest = export(demo_copy, out, max_vertices=SMALL_BUDGET)
    leaf = leaves_holding({f"demo:{row[0]}"})
    assert len(leaf) == 1 and leaf <= set(after_ingest["written"]) <= leaf | above(leaf)  # its leaf, and the
    assert len(after_ingest["written"]) >= 2  # coarse tiles whose blocks it changed (the root's, at least)
    assert after_ingest["unchanged"] == first["tiles"] - len(after_ingest["written"])

    # A grid save: two micro-grids merge, so the buildings of the one that goes get the other's id.
    moved = merge_two_micro_grids(demo_copy)
    after_save = export(demo_copy, out, max_vertices=SMALL_BUDGET)
    assert set(after_save["written"]) == leaves_holding(moved) != set()  # coarse tiles hold no grids
    assert schema_problems(out) == []


def test_the_compact_tiles_share_vertices_without_normals_and_keep_the_centimetre(bim_tiles, compact_tiles):
    db, out = compact_tiles
    with Store(db, read_only=True) as store:
        stored = dict(store.con.execute("SELECT building_id, max_by(n_vertices, lod = 'bim') FROM meshes "
                                        "GROUP BY building_id").fetchall())  # full detail: the BIM, else LOD1
    positions = set()
    for node, _ in tiles(json.loads((out / "tileset.json").read_text())["root"]):
        document, binary = read_glb((out / node["content"]["uri"]).read_bytes())
        primitive = document["meshes"][0]["primitives"][0]
        assert set(primitive["attributes"]) == {"POSITION", "_FEATURE_ID_0"}  # no normals
        position = document["accessors"][primitive["attributes"]["POSITION"]]
        positions.add(position["componentType"])
        if position["componentType"] == 5122:  # 16-bit, normalized, as KHR_mesh_quantization has them
            assert position["normalized"] and document["extensionsRequired"] == ["KHR_mesh_quantization"]
        assert document["accessors"][primitive["attributes"]["_FEATURE_ID_0"]]["componentType"] == 5123
        if "children" not in node:  # vertices shared as the store has them, not one per face
            ids = property_column(document, binary, "building_id")
            assert position["count"] == sum(stored[b] for b in ids)
    assert positions == {5122, 5126}  # 16-bit where a leaf keeps 5 mm, float32 in the wider ones
    assert schema_problems(out) == []
    assert 0 < round_trip_error(db, out) <= 0.01
    size = {d: sum(p.stat().st_size for p in d.rglob("*.glb")) for d in (out, bim_tiles[2])}
    assert size[out] < 0.6 * size[bim_tiles[2]]


def test_export_refuses_a_folder_of_other_files(small_demo, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a tileset this program wrote"):
        export(small_demo, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("encoding", ["bim_tiles", "compact_tiles"])
def test_every_glb_passes_the_khronos_gltf_validator(encoding, request):
    out = request.getfixturevalue(encoding)[-1]
    if not (NODE_TOOLS / "node_modules" / "gltf-validator").exists():
        pytest.fail(f"gltf-validator is not installed in {NODE_TOOLS}: run `make test-setup`")
    result = subprocess.run(["node", str(NODE_TOOLS / "validate_gltf.js"), str(out)], capture_output=True,
                            text=True, check=True)
    report = json.loads(result.stdout)
    assert report["files"] == len(list(out.rglob("*.glb"))) > 1
    assert report["errors"] == 0, {k: v["messages"] for k, v in report["reports"].items() if v["errors"]}


def test_the_command_prints_a_json_summary(small_demo, tmp_path):
    out = tmp_path / "tiles"
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", "tiles", str(out), "--db",
                             str(small_demo), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["tiles"] == len(list(out.rglob("*.glb"))) and summary["features"] > 100
    assert summary["bytes"] == sum(p.stat().st_size for p in out.rglob("*")
                                   if p.is_file() and p.name not in (MANIFEST, SOURCES))
    assert summary["seconds"] > 0
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "x").write_text("x")
    refused = subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", "tiles", str(tmp_path / "stray"),
                              "--db", str(small_demo)], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "Give a new or empty folder" in refused.stderr
