"""``twin export tiles`` while ``twin serve`` holds the store: the server runs the export on a cursor of its own,
and after a grid import through the same server only the leaves holding the buildings that moved are rewritten
(the coarse tiles above them carry no grids)."""

from __future__ import annotations

import json
import shutil
import time

from bench.browser import served
from tests.scenes.test_server import twin
from tests.twin.cases.test_live import _merge_a_micro_grid_into_its_neighbour
from tests.twin.tiles.tileset_checks import tiles
from twin.store.store import Store
from twin.tiles.export import MANIFEST
from twin.tiles.glb import property_column, read_glb


def test_the_running_server_exports_and_a_grid_import_rewrites_only_its_tiles(small_demo, tmp_path):
    from pyogrio import write_dataframe

    db = shutil.copy(small_demo, tmp_path / "s.duckdb")
    with Store(db, read_only=True) as store:
        merged, _, _, _ = _merge_a_micro_grid_into_its_neighbour(store.con)
        gone = set(store.con.execute("SELECT grid_id FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                                     "AND parent_id = ?", [merged["parent_id"].iloc[0]]).df()["grid_id"])
        gone -= set(merged["grid_id"])
        moved = {r[0] for r in store.con.execute("SELECT building_id FROM buildings WHERE grid_id IN "
                                                 "(SELECT unnest(?))", [sorted(gone)]).fetchall()}
    grids_file = tmp_path / "merged.geojson"
    write_dataframe(merged, grids_file, driver="GeoJSON")
    out = tmp_path / "tiles"
    budget = ("--max-vertices", "2000")
    with served(db):
        code, first, stderr = twin("export", "tiles", str(out), *budget, db=db)
        assert code == 0, stderr
        assert len(first["written"]) == first["tiles"] > 1
        code, _, stderr = twin("grids", "import", str(grids_file), "--mode", "replace", "--actor", "planner.li",
                               "--reason", "two micro-grids merged", db=db)
        assert code == 0, stderr
        code, second, stderr = twin("export", "tiles", str(out), *budget, db=db)
        assert code == 0, stderr
    leaves = {node["content"]["uri"] for node, _ in tiles(json.loads((out / "tileset.json").read_text())["root"])
              if "children" not in node}
    holding = {uri for uri in json.loads((out / MANIFEST).read_text())["tiles"]
               if uri in leaves and moved & set(property_column(*read_glb((out / uri).read_bytes()), "building_id"))}
    assert moved and set(second["written"]) == holding != set()
    assert second["unchanged"] == first["tiles"] - len(holding)


def test_the_servers_own_tiles_follow_a_grid_import_while_it_serves(small_demo, tmp_path):
    from pyogrio import write_dataframe

    db = shutil.copy(small_demo, tmp_path / "s.duckdb")
    with Store(db, read_only=True) as store:
        merged, _, kept, _ = _merge_a_micro_grid_into_its_neighbour(store.con)
        parent = merged["parent_id"].iloc[0]
        gone = {r[0] for r in store.con.execute("SELECT grid_id FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                                                "AND parent_id = ?", [parent]).fetchall()} - set(merged["grid_id"])
        moved = {r[0] for r in store.con.execute("SELECT building_id FROM buildings WHERE grid_id IN "
                                                 "(SELECT unnest(?))", [sorted(gone)]).fetchall()}
    assert moved
    grids_file = tmp_path / "merged.geojson"
    write_dataframe(merged, grids_file, driver="GeoJSON")
    folder = tmp_path / "s.duckdb.tiles"

    def micro_of_moved() -> set[str]:  # as the leaves say (the coarse tiles above them carry no grids)
        found = set()
        root = json.loads((folder / "tileset.json").read_text())["root"]
        leaves = {node["content"]["uri"] for node, _ in tiles(root) if "children" not in node}
        for uri in json.loads((folder / MANIFEST).read_text())["tiles"]:
            if uri not in leaves:
                continue
            document, binary = read_glb((folder / uri).read_bytes())
            found |= {m for b, m in zip(property_column(document, binary, "building_id"),
                                        property_column(document, binary, "micro_id")) if b in moved}
        return found

    with served(db, args=("--view", "tiles")):
        assert micro_of_moved() == gone  # the server exported its tiles at start
        code, _, stderr = twin("grids", "import", str(grids_file), "--mode", "replace", "--actor", "planner.li",
                               "--reason", "two micro-grids merged", db=db)
        assert code == 0, stderr
        deadline = time.monotonic() + 90
        while micro_of_moved() != {kept} and time.monotonic() < deadline:
            time.sleep(0.5)
    assert micro_of_moved() == {kept}
