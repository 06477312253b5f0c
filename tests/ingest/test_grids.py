"""Grids in and out as GeoJSON and GeoPackage: round trip, rules on import, store unchanged on error."""

from __future__ import annotations

import pandas as pd
import pytest
import shapely

from ingest.grids import export_grids, import_grids, read_grids
from tests.conftest import file_digest
from twin.errors import GridRuleError, InputError
from twin.grids.gridedit import merge_grids
from twin.grids.gridversions import current_grids, grid_history
from twin.store.store import Store, open_for_command

PARENT = "S01-C01-G1"


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg"])
def test_round_trip_changes_nothing(small_demo, demo_copy, tmp_path, suffix):
    path = tmp_path / f"grids{suffix}"
    with Store(small_demo, read_only=True) as store:
        summary = export_grids(store.con, path)
        crs = store.district.crs
        levels = dict(store.con.execute("SELECT level, count(*) FROM grids GROUP BY level").fetchall())
    assert summary["levels"] == levels and summary["grids"] == sum(levels.values()) and summary["crs"] == crs
    frame = read_grids(path, crs=crs)
    assert set(frame.columns) >= {"grid_id", "parent_id", "level", "version", "valid_from", "geometry"}
    assert (frame["version"] == 1).all()
    with open_for_command(demo_copy, create=False) as store:
        out = import_grids(store.con, frame, actor="gis", reason="round trip", where=str(path))
    assert out["changed"] == out["added"] == out["deleted"] == []


def test_import_saves_an_edit_as_new_versions(small_demo, demo_copy, tmp_path):
    path = tmp_path / "micro.gpkg"
    with Store(small_demo, read_only=True) as store:
        export_grids(store.con, path, level="micro")
        crs = store.district.crs
    frame = read_grids(path, crs=crs)
    mine = frame[frame["parent_id"] == PARENT].set_index("grid_id")
    a, b = mine.index[2], mine.index[3]
    merged = merge_grids(mine.geometry, [a, b])
    edited = mine.drop(b)
    edited.loc[a, "geometry"] = merged[a]
    edited = edited.reset_index()
    edited.to_file(tmp_path / "edited.gpkg")
    frame = read_grids(tmp_path / "edited.gpkg", crs=crs)
    with open_for_command(demo_copy, create=False) as store:
        out = import_grids(store.con, frame, actor="gis", reason="merge in QGIS", where="edited.gpkg", mode="replace")
    assert out["changed"] == [a] and out["deleted"] == [b] and out["versions"] == {a: 2}
    assert out["moved"]["buildings"] > 0
    with Store(demo_copy, read_only=True) as store:
        hist = grid_history(store.con, a)
        assert list(hist["action"].fillna("")) == ["", "import"]
        assert b not in current_grids(store.con, parent_id=PARENT).index
    # the old export is now stale for grid a
    with pytest.raises(InputError, match=f"grid {a} is version 1 in the file but version 2"):
        with open_for_command(demo_copy, create=False) as store:
            import_grids(store.con, read_grids(path, crs=crs), actor="gis", reason="stale", where="micro.gpkg")


def test_import_refuses_a_broken_rule_and_leaves_the_store(small_demo, demo_copy, tmp_path):
    with Store(small_demo, read_only=True) as store:
        crs = store.district.crs
        export_grids(store.con, tmp_path / "all.geojson", level="micro")
    frame = read_grids(tmp_path / "all.geojson", crs=crs)
    k = frame.index[(frame["parent_id"] == PARENT)][3]
    frame.loc[k, "geometry"] = frame.loc[k, "geometry"].buffer(6.0, join_style="mitre")
    bad = frame.loc[[k]]
    digest = file_digest(demo_copy)
    with pytest.raises(GridRuleError, match=f"bad.geojson: grid .* breaks the rule") as info:
        with open_for_command(demo_copy, create=False) as store:
            import_grids(store.con, bad, actor="gis", reason="bad", where="bad.geojson")
    assert {v.rule for v in info.value.violations} & {"overlap", "building_cut", "inside_parent"}
    assert file_digest(demo_copy) == digest


def test_read_errors_name_the_file_and_grid(tmp_path):
    import geopandas as gpd
    gpd.GeoDataFrame({"grid_id": ["X"]}, geometry=[shapely.box(0, 0, 1, 1)]).to_file(tmp_path / "a.geojson")
    with pytest.raises(InputError, match="a.geojson: the grids need the column"):
        read_grids(tmp_path / "a.geojson")
    gpd.GeoDataFrame({"grid_id": ["X"], "level": ["block"]}, geometry=[shapely.box(0, 0, 1, 1)]).to_file(
        tmp_path / "b.geojson")
    with pytest.raises(InputError, match="grid X: level 'block'"):
        read_grids(tmp_path / "b.geojson")
    gpd.GeoDataFrame({"grid_id": ["X"], "level": ["micro"]}, geometry=[shapely.Point(0, 0)]).to_file(
        tmp_path / "c.geojson")
    with pytest.raises(InputError, match="grid X: valid: expected a polygon, found Point"):
        read_grids(tmp_path / "c.geojson")
    with pytest.raises(InputError, match="GeoJSON .* or GeoPackage"):
        read_grids(tmp_path / "grids.shp")
    with pytest.raises(InputError, match="parent 'NOPE'"):
        frame = gpd.GeoDataFrame({"grid_id": ["X"], "level": ["micro"], "parent_id": ["NOPE"], "version": [None]},
                                 geometry=[shapely.box(0, 0, 1, 1)])
        with Store(tmp_path / "empty.duckdb", create=True) as store:
            import_grids(store.con, frame, actor="a", reason="r")


def test_import_is_audited_with_its_source(small_demo, demo_copy, tmp_path):
    path = tmp_path / "micro.geojson"
    with Store(small_demo, read_only=True) as store:
        export_grids(store.con, path, level="micro")
        crs = store.district.crs
    frame = read_grids(path, crs=crs)
    mine = frame[frame["parent_id"] == PARENT].set_index("grid_id")
    a, b = list(mine.index[2:4])
    merged = merge_grids(mine.geometry, [a, b])
    frame = frame[frame["grid_id"] != b].copy()
    frame.loc[frame["grid_id"] == a, "geometry"] = merged[a]
    with open_for_command(demo_copy, create=False) as store:
        out = import_grids(store.con, frame, actor="gis", reason="compound merged", where=str(path),
                           mode="replace", source="cli")
        rows = store.con.execute("SELECT actor, action, target, source, detail FROM audit "
                                 "WHERE action = 'grid.import'").fetchall()
    assert [r[:4] for r in rows] == [("gis", "grid.import", PARENT, "cli")]
    assert out["saves"][0]["change_id"] in rows[0][4] and b in rows[0][4]
