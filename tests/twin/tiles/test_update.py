"""Bringing an export up to date (twin.tiles.update): nothing when nothing changed, only the tiles of the buildings
whose properties changed after a grid save, a whole export otherwise; the folder always as a new export leaves it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import copy_of
from tests.twin.tiles.test_export import SMALL_BUDGET, export, merge_two_micro_grids
from tests.twin.tiles.tileset_checks import tiles
from twin.store.store import Store, open_for_command
from twin.tiles.export import MANIFEST
from twin.tiles.glb import property_column, read_glb
from twin.tiles.update import update_tiles

LOD1_ABOVE_BUDGET = 5000  # vertices: the BIM demo's leaves split under a tile of LOD1 blocks


def update(db, out_dir, *, max_vertices: int = SMALL_BUDGET) -> dict:
    with Store(db, read_only=True) as store:
        return update_tiles(store.con, store.district, out_dir, max_vertices=max_vertices)


def files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def exported(small_demo, tmp_path):
    db = copy_of(small_demo, tmp_path)
    out = tmp_path / "tiles"
    first = export(db, out, max_vertices=SMALL_BUDGET)
    assert first["tiles"] > 4
    return db, out


def test_nothing_changed_builds_and_writes_nothing(exported):
    db, out = exported
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    summary = update(db, out)
    assert summary["how"] == "unchanged" and summary["written"] == [] and summary["unchanged"] == summary["tiles"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_a_grid_save_rewrites_only_the_tiles_of_the_moved_buildings_as_a_new_export_would(exported, tmp_path):
    db, out = exported
    moved = merge_two_micro_grids(db)
    summary = update(db, out)
    leaves = {node["content"]["uri"] for node, _ in tiles(json.loads((out / "tileset.json").read_text())["root"])
              if "children" not in node}  # the coarse tiles above show no grids: they stay
    holding = {uri for uri in json.loads((out / MANIFEST).read_text())["tiles"]
               if uri in leaves and moved & set(property_column(*read_glb((out / uri).read_bytes()), "building_id"))}
    assert summary["how"] == "properties"
    assert set(summary["written"]) == holding != set() and len(holding) < summary["tiles"]
    fresh = tmp_path / "fresh"
    export(db, fresh, max_vertices=SMALL_BUDGET)
    assert files(out) == files(fresh)  # tiles, tileset, manifest and sources, byte for byte
    assert update(db, out)["how"] == "unchanged"


def test_a_changed_mesh_or_other_exporter_options_make_a_whole_export(exported):
    db, out = exported
    with open_for_command(db, create=False) as store:
        vertices, building_id = store.con.execute("SELECT vertices, building_id FROM meshes ORDER BY building_id "
                                                  "LIMIT 1").fetchone()
        raised = np.frombuffer(vertices, dtype="<f4").copy()
        raised[2::3] += 3.0
        store.con.execute("UPDATE meshes SET vertices = ? WHERE building_id = ?", [raised.tobytes(), building_id])
    summary = update(db, out)
    assert summary["how"] == "export" and summary["why"] == "meshes changed" and summary["written"]
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["source"]["exporter"] = "older code"
    (out / MANIFEST).write_text(json.dumps(manifest))
    summary = update(db, out)
    assert summary["how"] == "export" and summary["why"] == "made by other code, options or district"


def test_a_folder_without_a_sources_file_or_with_a_tile_missing_is_exported_whole(exported):
    db, out = exported
    shutil.move(out / "tiles.sources.parquet", out.parent / "elsewhere.parquet")
    assert update(db, out)["why"] == "no sources file"
    some_tile = next(iter(json.loads((out / MANIFEST).read_text())["tiles"]))
    (out / some_tile).unlink()
    summary = update(db, out)
    assert summary["why"] == f"{some_tile} is missing or changed" and some_tile in summary["written"]


def test_a_reparented_grid_rewrites_its_buildings_leaf_and_not_the_coarse_tiles_above(bim_demo, tmp_path):
    source, building_id = bim_demo
    db = copy_of(source, tmp_path)
    out = tmp_path / "tiles"
    export(db, out, max_vertices=LOD1_ABOVE_BUDGET)

    def holding(building: str) -> dict[str, str]:
        tileset = json.loads((out / "tileset.json").read_text())
        found, stack = {}, [tileset["root"]]
        while stack:
            node = stack.pop()
            stack.extend(node.get("children", []))
            uri = node.get("content", {}).get("uri")
            if uri and building in property_column(*read_glb((out / uri).read_bytes()), "building_id"):
                found[uri] = "leaf" if not node.get("children") else "above"
        return found

    found = holding(building_id)
    assert sorted(set(found.values())) == ["above", "leaf"], "the BIM leaf and coarse tiles above it"
    # The building's micro-grid goes under another grid: no buildings row changes, its grid ids do.
    with open_for_command(db, create=False) as store:
        micro, grid = store.con.execute("SELECT b.grid_id, g.parent_id FROM buildings b JOIN grids g "
                                        "ON g.grid_id = b.grid_id AND g.valid_to IS NULL WHERE b.building_id = ?",
                                        [building_id]).fetchone()
        other, = store.con.execute("SELECT grid_id FROM grids WHERE level = 'grid' AND valid_to IS NULL "
                                   "AND grid_id <> ? ORDER BY grid_id LIMIT 1", [grid]).fetchone()
        store.con.execute("UPDATE grids SET parent_id = ? WHERE grid_id = ? AND valid_to IS NULL", [other, micro])
    summary = update(db, out, max_vertices=LOD1_ABOVE_BUDGET)
    leaf = [uri for uri, kind in found.items() if kind == "leaf"]
    above = [uri for uri, kind in found.items() if kind == "above"]
    # the coarse tiles carry ids, heights and counts, no grids (twin.tiles.lod): they stay as they are
    assert summary["how"] == "properties" and set(leaf) <= set(summary["written"])
    assert not set(above) & set(summary["written"])
    fresh = tmp_path / "fresh"
    export(db, fresh, max_vertices=LOD1_ABOVE_BUDGET)
    assert files(out) == files(fresh)


def test_a_changed_height_rebuilds_the_coarse_tiles_that_draw_it(exported, tmp_path):
    db, out = exported
    with open_for_command(db, create=False) as store:  # the row alone: the coarse tiles take heights from it
        store.con.execute("UPDATE buildings SET height = height + 7 WHERE building_id = "
                          "(SELECT min(building_id) FROM buildings)")
    summary = update(db, out)
    assert summary["how"] == "export" and summary["why"] == "heights or label points changed"
    fresh = tmp_path / "fresh"
    export(db, fresh, max_vertices=SMALL_BUDGET)
    assert files(out) == files(fresh)
