"""Reassignment against a brute-force spatial join, and versioned saving, history and restore, on the small demo."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from tests.conftest import file_digest, store_fingerprint
from twin.access.access import verify_audit
from twin.cases.cases import OPEN_STATUSES
from twin.errors import GridEditError, GridRuleError
from twin.grids.gridedit import merge_grids, move_vertex, split_grid
from twin.grids.gridversions import (
    check_edit,
    check_store_partition,
    current_grids,
    grid_history,
    partition_at,
    restore_version,
    save_partition,
)
from twin.grids.gridrules import errors
from twin.grids.reassign import FIGURES, figures_by_sjoin, load_assets, reassign
from twin.store.store import Store, open_for_command

PARENT = "S01-C01-G1"


@pytest.fixture(scope="module")
def demo_state(small_demo):
    """Assets, micro-grids, residents and points of the small demo, read once."""
    with Store(small_demo, read_only=True) as store:
        con = store.con
        assets = load_assets(con)
        micro = current_grids(con, level="micro")
        residents = con.execute("SELECT building_id, household_id FROM residents").df()
    return assets, micro, residents


def brute_force(assets, micro: gpd.GeoDataFrame, residents: pd.DataFrame, changed: dict):
    grids = micro.geometry.copy()
    for g, geom in changed.items():
        if geom is None:
            grids = grids.drop(g)
        else:
            grids[g] = geom
    frame = gpd.GeoDataFrame({"grid_id": grids.index}, geometry=list(grids.values))

    def points(kind, key):
        f = assets.frame(kind)
        return gpd.GeoDataFrame({key: f[key]}, geometry=shapely.points(f[["x", "y"]].to_numpy()))
    return figures_by_sjoin(frame, points("buildings", "building_id"), residents,
                            points("cameras", "camera_id"), points("cases", "case_id"))


def edits(micro: gpd.GeoDataFrame) -> list[dict]:
    """Three edits of one grid's micro-grids: a big vertex move, a split, a merge plus a delete."""
    shapes = micro[micro["parent_id"] == PARENT].geometry
    xy = shapely.get_coordinates(shapes.iloc[2])[0]
    moved = move_vertex(shapes, at=xy, to=xy + [30.0, 25.0])
    g = shapes.index[3]
    x0, y0, x1, y1 = shapes[g].bounds
    split = split_grid(shapes, g, [((x0 + x1) / 2 + 3, y0 - 1), ((x0 + x1) / 2 - 3, y1 + 1)], new_ids=["NEW-1"])
    merged = merge_grids(shapes, [shapes.index[2], shapes.index[3]]).drop(shapes.index[5])
    merged[shapes.index[6]] = shapes[shapes.index[6]].union(shapes[shapes.index[5]])
    out = []
    for after in (moved, split, merged):
        change = {g: after[g] for g in after.index if g not in shapes.index or not after[g].equals(shapes[g])}
        change.update({g: None for g in shapes.index if g not in after.index})
        out.append(change)
    return out


def test_reassignment_matches_a_brute_force_spatial_join(demo_state):
    assets, micro, residents = demo_state
    _, before = brute_force(assets, micro, residents, {})
    for changed in edits(micro):
        result = reassign(assets, changed)
        where, after = brute_force(assets, micro, residents, changed)
        # every asset whose grid differs in the brute force is listed as moved, to the same grid
        for kind, key in (("buildings", "building_id"), ("cameras", "camera_id"), ("cases", "case_id")):
            now = assets.frame(kind).set_index(key)["grid_id"]
            expected = where[kind].reindex(now.index)
            differs = expected[expected.fillna("") != now.fillna("")]
            got = result.moves[kind].set_index(key)["to_grid"]
            assert sorted(got.index) == sorted(differs.index), kind
            assert (got.reindex(differs.index).fillna("") == differs.fillna("")).all(), kind
        table = result.figures.set_index("grid_id")
        for fig in FIGURES:
            assert (table[f"{fig}_before"] == before[fig].reindex(table.index).fillna(0)).all(), fig
            assert (table[f"{fig}_after"] == after[fig].reindex(table.index).fillna(0)).all(), fig
        assert result.summary()["buildings"] > 0
        assert set(changed) <= set(table.index)


def test_reassignment_at_a_higher_level(demo_state):
    assets, micro, _ = demo_state
    community = assets.tree.loc[assets.tree["grid_id"] == PARENT, "community"].iloc[0]
    before = assets.figures("community")
    assert before.loc[community, "buildings"] == (assets.membership("buildings", "community") == community).sum()
    shrunk = shapely.box(0, 0, 1, 1)
    result = reassign(assets, {community: shrunk}, level="community")
    row = result.figures.set_index("grid_id").loc[community]
    assert row["buildings_after"] == 0 and row["buildings_before"] == before.loc[community, "buildings"]


def _two_neighbours(con) -> tuple[gpd.GeoSeries, str, str]:
    """The parent's grids in force, and two of them that share an edge."""
    shapes = current_grids(con, parent_id=PARENT).geometry
    return shapes, shapes.index[2], shapes.index[3]


def test_save_merge_moves_everything_and_writes_history(demo_copy_db):
    with open_for_command(demo_copy_db, create=False) as store:
        con = store.con
        shapes, a, b = _two_neighbours(con)
        cases_before = con.execute("SELECT case_id, grid_id, reported_grid_id, status FROM cases").df()
        b_buildings = con.execute("SELECT count(*) FROM buildings WHERE grid_id = ?", [b]).fetchone()[0]
        saved = save_partition(con, PARENT, merge_grids(shapes, [a, b]), actor="planner1", reason="compound merged")
    assert saved.changed == [a] and saved.deleted == [b] and saved.versions == {a: 2}
    assert saved.summary()["moved"]["buildings"] == b_buildings > 0
    assert any(w.rule == "households" for w in saved.warnings)
    with Store(demo_copy_db, read_only=True) as store:
        con = store.con
        assert con.execute("SELECT count(*) FROM buildings WHERE grid_id = ?", [b]).fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM cameras WHERE grid_id = ?", [b]).fetchone()[0] == 0
        placeholders = ", ".join("?" for _ in OPEN_STATUSES)
        assert con.execute(f"SELECT count(*) FROM cases WHERE grid_id = ? AND status IN ({placeholders})",
                           [b, *OPEN_STATUSES]).fetchone()[0] == 0
        after = con.execute("SELECT case_id, grid_id, reported_grid_id FROM cases").df()
        assert (after.sort_values("case_id")["reported_grid_id"].to_numpy()
                == cases_before.sort_values("case_id")["reported_grid_id"].to_numpy()).all()
        hist = grid_history(con, a)
        assert list(hist["version"]) == [1, 2]
        assert hist["valid_to"].iloc[0] == hist["valid_from"].iloc[1] and pd.isna(hist["valid_to"].iloc[1])
        assert hist["actor"].iloc[1] == "planner1" and hist["reason"].iloc[1] == "compound merged"
        assert hist.geometry.iloc[1].area == pytest.approx(shapes[a].area + shapes[b].area, rel=1e-6)
        gone = grid_history(con, b)
        assert gone["valid_to"].notna().all()
        changes = con.execute("SELECT grid_id, version, change, action FROM grid_changes ORDER BY grid_id").fetchall()
        assert changes == [(a, 2, "changed", "edit"), (b, None, "deleted", "edit")]
        assert b not in current_grids(con, parent_id=PARENT).index
        assert check_store_partition(con, PARENT) == [] or all(
            v.severity == "warning" for v in check_store_partition(con, PARENT))


def test_an_invalid_edit_is_refused_and_nothing_is_saved(demo_copy_db):
    digest = store_fingerprint(demo_copy_db)
    with Store(demo_copy_db, read_only=True) as store:
        shapes = current_grids(store.con, parent_id=PARENT).geometry
    xy = shapely.get_coordinates(shapes.iloc[2])[0]
    cutting = move_vertex(shapes, at=xy, to=xy + [30.0, 25.0])  # its neighbours follow, but buildings are cut
    overlapping = shapes.copy()
    overlapping[shapes.index[3]] = shapes.iloc[3].buffer(4.0, join_style="mitre")
    for bad, rule in ((cutting, "building_cut"), (overlapping, "overlap")):
        with pytest.raises(GridRuleError, match=f"{rule}: grid") as info:
            with open_for_command(demo_copy_db, create=False) as store:
                assert any(v.rule == rule for v in check_edit(store.con, PARENT, bad))
                save_partition(store.con, PARENT, bad, actor="planner1", reason="oops")
        assert rule in {v.rule for v in info.value.violations}
        assert "nothing was saved" in str(info.value)
        assert store_fingerprint(demo_copy_db) == digest
    with pytest.raises(GridEditError, match="who saves and why"):
        with open_for_command(demo_copy_db, create=False) as store:
            save_partition(store.con, PARENT, shapes.drop(shapes.index[0]), actor="", reason="x")
    assert store_fingerprint(demo_copy_db) == digest


def test_restore_is_a_new_version(demo_copy_db):
    with open_for_command(demo_copy_db, create=False) as store:
        con = store.con
        shapes, a, b = _two_neighbours(con)
        owners = con.execute("SELECT building_id, grid_id FROM buildings ORDER BY 1").df()
        save_partition(con, PARENT, merge_grids(shapes, [a, b]), actor="p", reason="merge")
    with open_for_command(demo_copy_db, create=False) as store:
        con = store.con
        restored = restore_version(con, b, 1, actor="p", reason="merged by mistake")
        assert restored.versions == {a: 3, b: 2} and restored.added == [b]
        with pytest.raises(GridEditError, match="has no version 7; its versions are \\[1, 2\\]"):
            restore_version(con, b, 7, actor="p", reason="x")
    with Store(demo_copy_db, read_only=True) as store:
        con = store.con
        assert con.execute("SELECT building_id, grid_id FROM buildings ORDER BY 1").df().equals(owners)
        now = current_grids(con, parent_id=PARENT)
        assert now.geometry[a].equals(shapes[a]) and now.geometry[b].equals(shapes[b])
        assert now.loc[b, "kind"] == "residential"
        hist = grid_history(con, a)
        assert list(hist["version"]) == [1, 2, 3] and hist["action"].iloc[2] == "restore"
        first = partition_at(con, PARENT, hist["valid_from"].iloc[0])
        assert sorted(first.index) == sorted(shapes.index)


def test_higher_level_merge_reparents_children(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        con = store.con
        community = current_grids(con, grid_ids=[PARENT])["parent_id"].iloc[0]
        grids = current_grids(con, parent_id=community).geometry
        a, b = list(grids.index[:2])
        if not grids[a].touches(grids[b]):
            pytest.skip("the first two grids are not neighbours")
        kids_b = list(current_grids(con, parent_id=b).index)
        saved = save_partition(con, community, merge_grids(grids, [a, b]), actor="p", reason="merge grids")
        assert sorted(saved.reparented) == sorted(kids_b)
        assert saved.reassignment is None
        assert current_grids(con, parent_id=b).empty
        assert set(kids_b) <= set(current_grids(con, parent_id=a).index)


def test_split_without_cutting_buildings_is_saved(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        con = store.con
        shapes = current_grids(con, parent_id=PARENT).geometry
        assets = load_assets(con)
        g = shapes.index[2]
        inside = assets.footprints[np.isin(assets.buildings["grid_id"], [g])]
        ys = sorted({round(p.bounds[1], 2) for p in inside} | {round(p.bounds[3], 2) for p in inside})
        x0, y0, x1, y1 = shapes[g].bounds
        # a horizontal line through the widest gap between footprints
        spans = shapely.union_all(list(inside)).bounds
        cut = None
        for y in np.linspace(y0 + 1, y1 - 1, 200):
            line = shapely.LineString([(x0 - 1, y), (x1 + 1, y)])
            if not any(line.intersects(p) for p in inside) and spans[1] < y < spans[3]:
                cut = line
                break
        assert cut is not None, ys
        saved = save_partition(con, PARENT, split_grid(shapes, g, cut), actor="p", reason="split",
                               assets=assets)
        new = saved.added[0]
        assert saved.summary()["moved"]["buildings"] == (
            con.execute("SELECT count(*) FROM buildings WHERE grid_id = ?", [new]).fetchone()[0]) > 0
        assert current_grids(con, grid_ids=[new])["kind"].iloc[0] == "residential"
        assert current_grids(con, grid_ids=[new])["name"].iloc[0] == f"第{int(new[-3:])}微网格"


def test_old_store_gains_grid_changes(demo_copy):
    with Store(demo_copy) as store:
        store.con.execute("DROP TABLE grid_changes")
        store.con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    with Store(demo_copy) as store:
        assert store.count("grid_changes") == 0


def test_session_assets_follow_a_save(demo_copy):
    from twin.store.queries import micro_figures
    with open_for_command(demo_copy, create=False) as store:
        con = store.con
        assets = load_assets(con)
        shapes = current_grids(con, parent_id=PARENT).geometry
        a, b = shapes.index[2], shapes.index[3]
        saved = save_partition(con, PARENT, merge_grids(shapes, [a, b]), actor="p", reason="merge", assets=assets)
        assets.apply(saved.reassignment)
        again = reassign(assets, {a: current_grids(con, grid_ids=[a]).geometry.iloc[0]})
        assert all(len(m) == 0 for m in again.moves.values())
        ours = assets.figures("micro")
        theirs = micro_figures(con).set_index("micro_id")
        for fig in ("buildings", "households", "residents", "cameras"):
            assert ours[fig].reindex(theirs.index).fillna(0).astype(int).equals(theirs[fig].astype(int)), fig


def _shift_boundary(con, shift_m: float) -> tuple[str, gpd.GeoSeries]:
    """The grids of the first community with the edge between G1 and G2 moved ``shift_m`` metres towards G1
    (both its ends slide along the community's outline)."""
    community = current_grids(con, grid_ids=[PARENT])["parent_id"].iloc[0]
    grids = current_grids(con, parent_id=community).geometry
    outline = current_grids(con, grid_ids=[community]).geometry.iloc[0]
    a, b = grids[PARENT], grids["S01-C01-G2"]
    towards = shapely.get_coordinates(a.centroid)[0] - shapely.get_coordinates(b.centroid)[0]
    towards /= np.hypot(*towards)
    for xy in shapely.get_coordinates(a.boundary.intersection(b.boundary)):
        grids = move_vertex(grids, at=xy, to=xy + towards * shift_m, parent=outline, parent_id=community)
    return community, grids


def test_a_grid_boundary_move_redraws_the_micro_grids_under_it(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        con = store.con
        community, grids = _shift_boundary(con, 5.0)
        owners = dict(con.execute("SELECT building_id, grid_id FROM buildings").fetchall())
        saved = save_partition(con, community, grids, actor="p", reason="street widened", source="10.1.2.3")
        assert saved.changed == [PARENT, "S01-C01-G2"] and saved.redrawn
        assert {g.rsplit("-", 1)[0] for g in saved.redrawn} == {PARENT, "S01-C01-G2"}
        # the micro-grids still lie inside and cover their (new) parents, and no building moved or was cut
        for parent in saved.changed:
            assert errors(check_store_partition(con, parent)) == [], parent
        assert dict(con.execute("SELECT building_id, grid_id FROM buildings").fetchall()) == owners
        rows = con.execute("SELECT grid_id, change FROM grid_changes WHERE change_id = ?", [saved.change_id]).fetchall()
        assert {g for g, c in rows if c == "redrawn"} == set(saved.redrawn)
        assert all(saved.versions[g] == 2 for g in saved.redrawn)
        seq, action, target, source, detail = con.execute(
            "SELECT seq, action, target, source, detail FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        assert (seq, action, target, source) == (saved.audit_seq, "grid.save", community, "10.1.2.3")
        detail = json.loads(detail)
        assert detail["change_id"] == saved.change_id and detail["redrawn"] == saved.redrawn
        assert detail["reason"] == "street widened" and detail["changed"] == saved.changed
        assert verify_audit(con) is None


def test_a_grid_boundary_move_through_buildings_is_refused(demo_copy):
    digest = file_digest(demo_copy)
    with pytest.raises(GridRuleError, match="(?s)redraws the micro children of .*building_cut: grid S01-C01-G1-M0"):
        with open_for_command(demo_copy, create=False) as store:
            community, grids = _shift_boundary(store.con, 25.0)
            save_partition(store.con, community, grids, actor="p", reason="too far")
    assert file_digest(demo_copy) == digest


def test_restore_and_save_are_audited(demo_copy_db):
    with open_for_command(demo_copy_db, create=False) as store:
        con = store.con
        shapes, a, b = _two_neighbours(con)
        before = con.execute("SELECT count(*) FROM audit").fetchone()[0]
        saved = save_partition(con, PARENT, merge_grids(shapes, [a, b]), actor="p", reason="merge")
        restored = restore_version(con, b, 1, actor="q", reason="by mistake", source="192.0.2.7")
        assert save_partition(con, PARENT, current_grids(con, parent_id=PARENT).geometry, actor="p",
                              reason="nothing").change_id is None  # nothing written, nothing audited
        rows = con.execute("SELECT actor, action, target, source, detail FROM audit WHERE seq > ? ORDER BY seq",
                           [before]).fetchall()
        assert [r[:4] for r in rows] == [("p", "grid.save", PARENT, None), ("q", "grid.restore", b, "192.0.2.7")]
        assert json.loads(rows[0][4])["deleted"] == [b] and json.loads(rows[1][4])["added"] == [b]
        assert json.loads(rows[1][4])["change_id"] == restored.change_id != saved.change_id
        assert verify_audit(con) is None


def test_the_first_children_of_a_grid_take_its_id_as_parent_and_the_level_given(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        con = store.con
        parent, = con.execute("SELECT grid_id FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                              "ORDER BY grid_id LIMIT 1").fetchone()
        assert current_grids(con, parent_id=parent).empty
        whole = current_grids(con, grid_ids=[parent]).geometry.iloc[0]
        save_partition(con, parent, {f"{parent}-A": whole}, level="micro", actor="gis", reason="first child")
        child = current_grids(con, parent_id=parent)
    assert list(child.index) == [f"{parent}-A"] and child["level"].iloc[0] == "micro"
    assert child["parent_id"].iloc[0] == parent and child["version"].iloc[0] == 1


def test_new_grids_are_named_after_the_highest_sibling_in_the_scheme_of_their_level():
    from twin.grids.gridversions import new_names
    named = new_names("micro", ["第3微网格", "第12微网格", "广场", None], ["a", "b"])
    assert named == {"a": "第13微网格", "b": "第14微网格"}
    assert new_names("grid", ["第2网格", "第7微网格"], ["g"]) == {"g": "第3网格"}
    assert new_names("community", ["陆家社区"], ["S01-C09"]) == {"S01-C09": "S01-C09"}
