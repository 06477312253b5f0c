"""Read-side queries on the small demo, in either backend: figures agree with each other and with the tables."""

from __future__ import annotations

import pandas as pd
import pytest

from twin.cases.cameras import SIGHT_KEY, camera_sight_kept, cameras_per_building, keep_camera_sight
from twin.cases.cases import OPEN_STATUSES
from twin.errors import InputError, OptionError
from twin.inspector import building_card, grid_path, open_cases, residents_page, search
from twin.store.queries import grid_table, grid_tree, key_figures, micro_figures
from tests.conftest import BACKENDS, copy_of, small_demo_in
from twin.store.schema import GRID_LEVELS
from twin.store.store import Store


@pytest.fixture(scope="module", params=BACKENDS)
def con(request):
    with Store(small_demo_in(request.param, request), read_only=True) as store:
        yield store.con.cursor()


def test_key_figures_match_the_tables(con):
    f = key_figures(con)
    assert f["buildings"] == con.execute("SELECT count(*) FROM buildings").fetchone()[0] == 500
    assert f["residents"] == con.execute("SELECT count(*) FROM residents").fetchone()[0]
    assert sum(f["open_cases"].values()) == con.execute(
        f"SELECT count(*) FROM cases WHERE status IN {tuple(OPEN_STATUSES)}").fetchone()[0]
    assert 0 <= f["overdue_cases"] <= sum(f["open_cases"].values())
    assert f["cameras_online"] <= f["cameras"]


@pytest.mark.parametrize("level", ["street", "community", "grid", "micro"])
def test_every_level_of_the_grid_table_adds_up_to_the_district(con, level):
    table = grid_table(con, level=level)
    f = key_figures(con)
    assert table["buildings"].sum() == f["buildings"]
    assert table["residents"].sum() == f["residents"]
    assert table["households"].sum() == f["households"]
    assert table["cameras"].sum() == f["cameras"]


def test_a_wrong_level_names_the_valid_ones(con):
    with pytest.raises(OptionError, match="'street', 'community', 'grid', 'micro'"):
        grid_table(con, level="district")


def test_the_building_card_and_its_residents(con):
    building_id, people = con.execute("SELECT building_id, count(*) FROM residents GROUP BY 1 "
                                      "ORDER BY 2 DESC LIMIT 1").fetchone()
    card = building_card(con, building_id)
    assert card["residents"] == people
    assert [g["level"] for g in card["grid_path"]] == ["street", "community", "grid", "micro"]
    assert card["grid_path"][-1]["grid_id"] == card["grid_id"]
    pages = [residents_page(con, building_id, page=p, page_size=50) for p in range(-(-people // 50))]
    assert sum(len(p) for p in pages) == people
    rows = [r for p in pages for r in p.itertuples()]
    assert [(r.unit, r.household_id) for r in rows] == sorted((r.unit, r.household_id) for r in rows)
    assert residents_page(con, building_id, page=len(pages)).empty
    phones = {r.phone for r in rows}  # the raw read is in clear: twin.access.policy.Gate masks (tests/twin/access/test_policy.py)
    full = {r[0] for r in con.execute("SELECT phone FROM residents WHERE building_id = ?", [building_id]).fetchall()}
    assert phones == full
    with pytest.raises(InputError, match="no building"):
        building_card(con, "nope")


def test_open_cases_of_a_building_are_open(con):
    building_id, = con.execute(f"SELECT building_id FROM cases WHERE status IN {tuple(OPEN_STATUSES)} "
                               "AND building_id IS NOT NULL LIMIT 1").fetchone()
    cases = open_cases(con, building_id=building_id)
    assert len(cases) >= 1 and set(cases["status"]) <= set(OPEN_STATUSES)


def test_search_finds_names_addresses_and_case_ids_and_treats_wildcards_as_text(con):
    name, address, building_id = con.execute("SELECT name, address, building_id FROM buildings "
                                             "WHERE name IS NOT NULL LIMIT 1").fetchone()
    case_id, = con.execute("SELECT case_id FROM cases LIMIT 1").fetchone()
    assert any(r["id"] == building_id for r in search(con, address))
    assert any(r["id"] == building_id for r in search(con, name, limit=50))
    category, status = con.execute("SELECT category, status FROM cases WHERE case_id = ?", [case_id]).fetchone()
    assert search(con, case_id)[0] == {"kind": "case", "id": case_id, "label": f"{case_id} · {category} · {status}"}
    assert search(con, address, buildings=False) == [], "cases only"
    assert search(con, case_id, buildings=False)[0]["id"] == case_id
    assert search(con, "%") == [] and search(con, "_") == []
    assert search(con, "'; DROP TABLE buildings; --") == []
    assert con.execute("SELECT count(*) FROM buildings").fetchone()[0] == 500


def test_grid_path_of_nothing_is_empty(con):
    assert grid_path(con, None) == []


def _tree_walked_in_python(con) -> pd.DataFrame:
    """The grid tree by the rule, one dictionary lookup at a time: each grid in force, walked up its parents (in
    force) once per level, takes each ancestor at that ancestor's level (the farthest up last)."""
    grids = con.execute("SELECT grid_id, name, level, parent_id FROM grids WHERE valid_to IS NULL").df()
    parent, level = dict(zip(grids["grid_id"], grids["parent_id"])), dict(zip(grids["grid_id"], grids["level"]))
    rows = []
    for grid_id in grids["grid_id"]:
        found, ancestor = dict.fromkeys(GRID_LEVELS), grid_id
        for _ in GRID_LEVELS:
            if level.get(ancestor) in found:
                found[level[ancestor]] = ancestor
            ancestor = parent.get(ancestor)
        rows.append(found)
    return pd.concat([grids, pd.DataFrame(rows)], axis=1).sort_values("grid_id").reset_index(drop=True)


def test_the_grid_tree_gives_each_grid_its_ancestors_even_under_a_broken_chain(small_demo, tmp_path):
    with Store(copy_of(small_demo, tmp_path)) as store:
        con = store.con
        micro, grid = con.execute("SELECT grid_id, parent_id FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                                  "ORDER BY grid_id LIMIT 1").fetchone()
        other = con.execute("SELECT grid_id FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                            "ORDER BY grid_id DESC LIMIT 2").fetchall()
        # one micro-grid under a grid no longer in force, another under a micro-grid (a level twice in a chain)
        con.execute("UPDATE grids SET valid_to = now() WHERE grid_id = ? AND valid_to IS NULL", [grid])
        con.execute("UPDATE grids SET parent_id = ? WHERE grid_id = ?", [other[1][0], other[0][0]])
        tree = grid_tree(con)
        expected = _tree_walked_in_python(con)
    assert len(tree) == len(expected) > 300
    for column in tree.columns:
        assert tree[column].astype(object).where(tree[column].notna(), None).tolist() == \
            expected[column].astype(object).where(expected[column].notna(), None).tolist(), column
    row = tree.set_index("grid_id")
    assert row.loc[micro, "micro"] == micro and pd.isna(row.loc[micro, "grid"]) and pd.isna(row.loc[micro, "street"])


def test_the_kept_camera_coverage_gives_the_figures_computed_afresh_and_follows_the_cameras(small_demo, tmp_path):
    with Store(copy_of(small_demo, tmp_path)) as store:
        con = store.con
        assert camera_sight_kept(con), "the demo keeps its coverage"
        kept = micro_figures(con)
        con.execute("DELETE FROM meta WHERE key = ?", [SIGHT_KEY])
        afresh = micro_figures(con)
        pd.testing.assert_frame_equal(kept.sort_values("micro_id", ignore_index=True),
                                      afresh.sort_values("micro_id", ignore_index=True))
        with store.transaction():
            assert keep_camera_sight(con) and not keep_camera_sight(con)  # computed once, then kept
        # The cameras turn round: what they see changes, and the kept coverage is no longer used.
        con.execute("UPDATE cameras SET heading_deg = (coalesce(heading_deg, 0) + 180) % 360")
        assert not camera_sight_kept(con)
        seen = cameras_per_building(con)
        moved = micro_figures(con).set_index("micro_id")["seen"]
        by_grid = pd.Series((seen > 0).to_numpy(), index=seen.index).groupby(
            con.execute("SELECT building_id, grid_id FROM buildings").df().set_index("building_id")["grid_id"]).sum()
        assert (moved.reindex(by_grid.index) == by_grid).all()
        assert not moved.equals(kept.set_index("micro_id")["seen"])
        with store.transaction():
            keep_camera_sight(con)
        assert camera_sight_kept(con)
        assert micro_figures(con).set_index("micro_id")["seen"].sort_index().equals(moved.sort_index())
        con.execute("DELETE FROM camera_sight")  # while the fingerprint still holds: the figures read the table
        assert micro_figures(con)["seen"].sum() == 0


def test_grids_under_a_street_reach_down_to_its_micro_grids(con):
    """Every level under a grid, walked in Python over the grid tree as the reference (on PostgreSQL a recursive
    query found only the first two levels)."""
    from twin.grids.grids import grids_under

    tree = con.execute("SELECT grid_id, parent_id, level FROM grids WHERE valid_to IS NULL").fetchall()
    children: dict[str, list[str]] = {}
    for grid_id, parent_id, _ in tree:
        children.setdefault(parent_id, []).append(grid_id)
    street = next(g for g, _, level in tree if level == "street")
    expected, todo = set(), [street]
    while todo:
        expected.add(todo[-1])
        todo.extend(children.get(todo.pop(), []))
    found = grids_under(con, [street])
    assert found == expected
    assert {level for g, _, level in tree if g in found} == {"street", "community", "grid", "micro"}
    micro = next(g for g, _, level in tree if level == "micro" and g in found)
    assert grids_under(con, [micro]) == {micro}
    assert grids_under(con, []) == frozenset()
