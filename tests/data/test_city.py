"""Tests of the city demo (data/city.py, data/build_city.py): a 2 x 2 city of small districts."""

from __future__ import annotations

import pandas as pd
import pytest

from data.build_city import build_city_store
from data.city import CityPlan, city_district, relabel
from data.demo import OPEN_STATUSES, generate_district
from scenes.i18n import use
from scenes.inspector import why_not_listed
from twin.access.access import Principal
from twin.access.policy import Gate
from twin.errors import InputError
from twin.inspector import building_card, grid_card
from twin.store.queries import district_totals, grid_table, residents_counted
from twin.store.store import Store

PLAN = CityPlan(copies=4, base="small", seed=5)
ID_COLUMNS = {"buildings": "building_id", "grids": "grid_id", "compounds": "compound_id", "cameras": "camera_id",
              "cases": "case_id", "party_orgs": "org_id"}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    path = tmp_path_factory.mktemp("city") / "city.duckdb"
    summary = build_city_store(path, copies=PLAN.copies, base=PLAN.base, seed=PLAN.seed)
    return path, summary


@pytest.fixture(scope="module")
def districts():
    return [city_district(PLAN, k) for k in range(PLAN.copies)]


def _read(path, sql, params=()):
    with Store(path, read_only=True) as store:
        return store.con.execute(sql, list(params)).df()


def test_the_city_holds_every_district_once_with_unique_ids(city, districts):
    path, summary = city
    assert summary["buildings"] == sum(len(d.buildings) for d in districts) == 4 * 500
    for table, column in ID_COLUMNS.items():
        ids = _read(path, f"SELECT {column} FROM {table}")[column]
        assert ids.notna().all() and ids.is_unique, table
    counts = _read(path, "SELECT split_part(building_id, '-', 1) AS d, count(*) AS n FROM buildings GROUP BY d")
    assert dict(zip(counts["d"], counts["n"])) == {f"demo:D0{k}": 500 for k in range(1, 5)}


def test_every_building_lies_in_exactly_one_micro_grid_the_one_it_names(city):
    path, _ = city
    found = _read(path, """
        SELECT b.building_id, b.grid_id, count(g.grid_id) AS holders, any_value(g.grid_id) AS holder
        FROM buildings b LEFT JOIN grids g
          ON g.level = 'micro' AND g.valid_to IS NULL AND ST_Intersects(g.boundary, ST_Point(b.label_x, b.label_y))
         AND ST_Contains(g.boundary, b.footprint)
        GROUP BY b.building_id, b.grid_id""")
    assert len(found) == 2000
    assert (found["holders"] == 1).all(), found[found["holders"] != 1].head()
    assert (found["holder"] == found["grid_id"]).all()


def test_the_grid_hierarchy_is_complete_and_districts_do_not_overlap(city):
    path, _ = city
    grids = _read(path, "SELECT grid_id, parent_id, level, ST_Area(boundary) AS area FROM grids")
    parent_level = {"street": None, "community": "street", "grid": "community", "micro": "grid"}
    level = dict(zip(grids["grid_id"], grids["level"]))
    for lvl, up in parent_level.items():
        rows = grids[grids["level"] == lvl]
        assert len(rows), lvl
        assert [level.get(p) for p in rows["parent_id"]] == [up] * len(rows), lvl
    # Children tile their parent: areas add up, and each child lies inside its parent.
    area = grids.set_index("grid_id")["area"]
    sums = grids.dropna(subset=["parent_id"]).groupby("parent_id")["area"].sum()
    assert set(sums.index) == set(grids.loc[grids["level"] != "micro", "grid_id"])
    assert (sums - area[sums.index]).abs().max() < 1.0
    outside, = _read(path, """SELECT count(*) AS n FROM grids c JOIN grids p ON c.parent_id = p.grid_id
                               WHERE NOT ST_Within(ST_PointOnSurface(c.boundary), p.boundary)""")["n"]
    assert outside == 0
    # The districts' streets abut and do not overlap: the city's area is their sum, a square of 4 districts.
    union, total = _read(path, "SELECT ST_Area(ST_Union_Agg(boundary)) AS u, sum(ST_Area(boundary)) AS t "
                               "FROM grids WHERE level = 'street'").iloc[0]
    assert union == pytest.approx(total, rel=1e-6) == pytest.approx(4 * PLAN.pitch ** 2, rel=1e-6)


def _expected_by_street(districts) -> pd.DataFrame:
    """Each figure per street, summed from the generated districts themselves (not from the store)."""
    rows = []
    for d in districts:
        parent = dict(zip(d.grids["grid_id"], d.grids["parent_id"]))

        def street(micro):
            return parent[parent[parent[micro]]]
        b = d.buildings.assign(street=d.buildings["grid_id"].map(street))
        figures = b.groupby("street")[["residents", "households"]].sum()
        figures["buildings"] = b.groupby("street").size()
        figures["cameras"] = d.cameras["grid_id"].map(street).value_counts()
        open_ = d.cases[d.cases["status"].isin(OPEN_STATUSES)]
        figures["open_cases"] = open_["grid_id"].map(street).value_counts()
        rows.append(figures)
    return pd.concat(rows).fillna(0).astype(int).sort_index()


def test_per_grid_figures_are_the_sums_over_the_districts(city, districts):
    path, _ = city
    expected = _expected_by_street(districts)
    with Store(path, read_only=True) as store:
        assert residents_counted(store.con)
        table = grid_table(store.con, level="street").set_index("grid_id").sort_index()
        totals = district_totals(store.con)
        one = districts[2].buildings.iloc[7]
        card = building_card(store.con, f"demo:{one['source_id']}")
        street = table.index[0]
        street_card = grid_card(store.con, street)
    columns = ["buildings", "residents", "households", "cameras", "open_cases"]
    pd.testing.assert_frame_equal(table[columns], expected[columns], check_names=False)
    assert totals["residents"] == sum(int(d.buildings["residents"].sum()) for d in districts) > 0
    assert totals["households"] == sum(int(d.buildings["households"].sum()) for d in districts)
    assert (card["residents"], card["households"]) == (one["residents"], one["households"])
    assert (street_card["residents"], street_card["households"]) == tuple(expected.loc[street, ["residents",
                                                                                             "households"]])


def test_an_operator_is_told_the_residents_are_counted_not_offered_an_empty_list(city, districts):
    path, _ = city
    one = districts[1].buildings.iloc[3]
    with Store(path, read_only=True) as store:
        gate = Gate(store.con, Principal("op", "operator", (one["grid_id"],)))
        card = gate.building_card(f"demo:{one['source_id']}")
        assert card["residents"] == one["residents"] > 0
        assert card["residents_counted"] and not card["may_see_residents"]
        use("en")  # (the UI's language is a session's, or else global: set it here)
        assert "counted per building" in why_not_listed(card, gate)
        use("zh")
        assert "按楼栋统计" in why_not_listed(card, gate)


def test_a_stopped_build_resumes_where_it_stopped(tmp_path, city):
    path = tmp_path / "city.duckdb"

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_city_store(path, copies=PLAN.copies, base=PLAN.base, seed=PLAN.seed, progress=stop_after_two)
    assert not path.exists() and (tmp_path / ".city.duckdb.building").exists()
    summary = build_city_store(path, copies=PLAN.copies, base=PLAN.base, seed=PLAN.seed)
    assert summary["resumed_from"] == 2 and not (tmp_path / ".city.duckdb.building").exists()
    same = ("buildings", "grids", "cameras", "cases", "residents", "households")
    assert {k: summary[k] for k in same} == {k: city[1][k] for k in same}


def test_another_plan_starts_afresh(tmp_path):
    path = tmp_path / "city.duckdb"
    with pytest.raises(KeyboardInterrupt):
        build_city_store(path, copies=2, base="small", seed=1,
                         progress=lambda done, _: (_ for _ in ()).throw(KeyboardInterrupt) if done == 1 else None)
    summary = build_city_store(path, copies=1, base="small", seed=1)
    assert summary["resumed_from"] == 0 and summary["buildings"] == 500


def test_the_city_counts_residents_and_refuses_listed_ones():
    with pytest.raises(InputError, match="residents='counted'"):
        relabel(generate_district(scale="small", seed=0), prefix="D01-", name="1区", offset=(0.0, 0.0))
    with pytest.raises(InputError, match="copies=0"):
        CityPlan(copies=0)
