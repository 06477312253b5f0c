"""Tests of the demo district generator (data/demo.py)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from data import names
from data.demo import (
    CASE_STATUSES,
    CASE_TRANSITIONS,
    DEMO_NOW,
    OPEN_STATUSES,
    generate_district,
    id_check_digit,
    level_counts,
    load_taxonomy,
)
from twin.errors import OptionError

AREA_TOL = 0.05  # m²


@pytest.fixture(scope="module")
def small():
    return generate_district(scale="small", seed=0)


def _frames(d):
    return {f: getattr(d, f) for f in ("buildings", "grids", "compounds", "residents", "cameras", "cases",
                                       "case_events", "party_orgs", "basemap")}


# --------------------------------------------------------------------------- options, determinism, counts

def test_scale_must_be_one_of_the_choices():
    with pytest.raises(OptionError, match="scale='medium'"):
        generate_district(scale="medium")


def test_same_seed_gives_the_same_district(small):
    again = generate_district(scale="small", seed=0)
    for name, frame in _frames(small).items():
        pd.testing.assert_frame_equal(frame, _frames(again)[name], obj=name)


def test_another_seed_gives_another_district(small):
    other = generate_district(scale="small", seed=1)
    assert not small.buildings.geometry.geom_equals(other.buildings.geometry).all()
    assert not small.residents["name"].equals(other.residents["name"])


def test_small_scale_counts(small):
    assert len(small.buildings) == 500
    counts = level_counts(small)
    assert counts["street"] >= 1 and counts["community"] >= 2 and counts["grid"] == 16
    assert counts["micro"] > counts["grid"] * 10
    hh = small.buildings["households"].sum()
    assert abs(hh - 15_600) <= .03 * 15_600
    assert len(small.residents) == 43_980
    assert small.residents["household_id"].nunique() == hh
    assert len(small.cameras) == 700
    assert len(small.cases) == 100
    assert len(small.party_orgs) == 19


def test_everything_is_in_the_district_crs_near_zhengdong(small):
    for name in ("buildings", "grids", "compounds", "cameras", "cases"):
        assert getattr(small, name).crs.to_epsg() == 4547, name
    x0, y0, x1, y1 = small.grids.total_bounds
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform((x0 + x1) / 2, (y0 + y1) / 2)
    assert abs(lon - 113.72) < .01 and abs(lat - 34.76) < .01
    assert 470_000 < x0 < x1 < 480_000 and 3.84e6 < y0 < y1 < 3.86e6
    assert x1 - x0 <= 8000 and y1 - y0 <= 8000


# --------------------------------------------------------------------------- grids

def test_grid_levels_ids_and_names(small):
    g = small.grids
    assert g["grid_id"].is_unique
    assert set(g["level"]) == {"street", "community", "grid", "micro"}
    assert g.loc[g.level == "street", "parent_id"].isna().all()
    parents = g.set_index("grid_id")["level"]
    expected = {"community": "street", "grid": "community", "micro": "grid"}
    for level, parent_level in expected.items():
        rows = g[g.level == level]
        assert (parents.reindex(rows["parent_id"]).to_numpy() == parent_level).all(), level
        assert rows.apply(lambda r: r.grid_id.startswith(r.parent_id + "-"), axis=1).all()
    micro = g[g.level == "micro"]
    assert micro["grid_id"].str.fullmatch(r"S\d\d-C\d\d-G\d+-M\d{3}").all()
    assert micro["name"].str.fullmatch(r"第\d+微网格").all()
    assert set(micro["kind"]) <= {"residential", "office", "street", "mixed", "public"}
    assert micro["worker"].notna().all()
    assert g.loc[g.level == "street", "name"].str.endswith("街道").all()
    assert g.loc[g.level == "community", "name"].str.endswith("社区").all()


def test_children_tile_their_parent_exactly(small):
    g = small.grids
    assert shapely.is_valid(g.geometry.values).all()
    geom = g.set_index("grid_id").geometry
    for parent, kids in g[g.parent_id.notna()].groupby("parent_id"):
        p = geom[parent]
        k = kids.geometry.values
        union = shapely.union_all(k)
        assert abs(union.area - p.area) <= AREA_TOL, parent
        assert shapely.symmetric_difference(union, p).area <= AREA_TOL, parent
        assert abs(shapely.area(k).sum() - p.area) <= AREA_TOL, parent  # no overlaps
        assert (shapely.area(shapely.difference(k, p)) <= AREA_TOL).all(), parent
    tree = shapely.STRtree(g[g.level == "micro"].geometry.values)
    a, b = tree.query(g[g.level == "micro"].geometry.values, predicate="intersects")
    pairs = a < b
    overlap = shapely.area(shapely.intersection(tree.geometries[a[pairs]], tree.geometries[b[pairs]]))
    assert overlap.max() <= AREA_TOL


def test_every_building_lies_within_exactly_one_micro_grid(small):
    micro = small.grids[small.grids.level == "micro"]
    tree = shapely.STRtree(micro.geometry.values)
    bi, mi = tree.query(small.buildings.geometry.values, predicate="within")
    assert np.array_equal(np.sort(bi), np.arange(len(small.buildings)))
    assert (micro["grid_id"].to_numpy()[mi] == small.buildings["grid_id"].to_numpy()[bi]).all()
    # No micro-grid boundary crosses a footprint.
    crossing = tree.query(small.buildings.geometry.values, predicate="overlaps")
    assert crossing.shape[1] == 0


def test_buildings_keep_four_metres_apart(small):
    geoms = small.buildings.geometry.values
    a, b = shapely.STRtree(geoms).query(geoms, predicate="dwithin", distance=4.0)
    assert (a == b).all()


def test_footprints_are_valid_oriented_and_some_have_holes(small):
    geoms = small.buildings.geometry.values
    assert (shapely.get_type_id(geoms) == 3).all()
    assert shapely.is_valid(geoms).all()
    assert shapely.is_ccw(shapely.get_exterior_ring(geoms)).all()
    holes = shapely.get_num_interior_rings(geoms)
    assert (holes > 0).sum() >= 5
    for poly in geoms[holes > 0]:
        assert not any(ring.is_ccw for ring in poly.interiors)
    areas = shapely.area(geoms)
    assert areas.min() > 50 and areas.max() < 12_000


def test_buildings_columns_and_values(small):
    b = small.buildings
    assert b["source_id"].is_unique and b["source_id"].str.fullmatch(r"B\d{6}").all()
    assert set(b["use"]) == {"residential", "office", "school", "market", "hospital", "public", "commercial"}
    assert (b["height"] > 2.5 * b["floors"]).all() and (b["height"] < 6.5 * b["floors"] + 10).all()
    res = b[b.use == "residential"]
    assert (res["households"] > 0).all() and (res["units"] >= 1).all()
    assert (b.loc[b.use != "residential", ["households", "units"]] == 0).all().all()
    towers = res[res.compound_id.notna() & (res.floors >= 18)]
    assert towers["floors"].between(18, 33).all() and len(towers) > 20
    village = res[res.compound_id.isna() & (res.floors <= 6)]
    assert len(village) > 50 and village["floors"].between(3, 6).all()
    assert b["address"].str.contains(r"(?:路|街|大道) \d+号").all()
    assert b.loc[b.compound_id.notna(), "name"].str.fullmatch(r"\S+ \d+号楼").all()


def test_micro_grid_contents_follow_the_rules(small):
    micro = small.grids[small.grids.level == "micro"].set_index("grid_id")
    per = small.buildings.groupby("grid_id").agg(n=("source_id", "size"), hh=("households", "sum"),
                                                  uses=("use", lambda u: set(u)))
    per = per.join(micro["kind"])
    assert set(micro.index[micro.kind != "street"]) == set(per.index)  # only street segments are empty
    res = per[per.kind == "residential"]
    assert (res["uses"] == {"residential"}).all()
    single_high = (res["n"] == 1) & (res["hh"] > 80)
    assert (single_high | res["hh"].between(70, 80)).all()
    assert single_high.any() and (~single_high).any()
    other = per[per.kind != "residential"]
    assert (other["n"] == 1).all() and (other["hh"] == 0).all()


def test_compounds_hold_their_buildings(small):
    comp = small.compounds.set_index("compound_id")
    assert comp.index.is_unique and comp["name"].is_unique
    b = small.buildings[small.buildings.compound_id.notna()]
    assert b.geometry.within(comp.geometry.reindex(b["compound_id"]).set_axis(b.index)).all()
    grids = small.grids.set_index("grid_id").geometry
    assert comp.geometry.within(grids.reindex(comp["grid_id"]).set_axis(comp.index)).all()
    assert set(comp.index) == set(b["compound_id"])


# --------------------------------------------------------------------------- residents

def test_residents_fill_the_households_of_their_building(small):
    r, b = small.residents, small.buildings.set_index("source_id")
    assert r["resident_id"].is_unique
    hh = r.groupby("building_source_id")["household_id"].nunique()
    assert hh.to_dict() == b.loc[b.households > 0, "households"].to_dict()
    size = r.groupby("household_id").size()
    assert size.between(1, 6).all() and 2.5 < size.mean() < 3.1
    assert r.groupby("household_id")["building_source_id"].nunique().max() == 1
    assert r.groupby("household_id")["room"].nunique().max() == 1
    unit = r["unit"].str.extract(r"^(\d+)单元$")[0].astype(int)
    floor = r["room"].str.slice(stop=-2).astype(int)
    assert (unit >= 1).all() and (unit <= b["units"].reindex(r["building_source_id"]).to_numpy()).all()
    assert (floor >= 1).all() and (floor <= b["floors"].reindex(r["building_source_id"]).to_numpy()).all()
    rooms = r.drop_duplicates("household_id")[["building_source_id", "unit", "room"]]
    assert not rooms.duplicated().any()
    in_comp = b["compound_id"].reindex(r["building_source_id"]).notna().mean()
    assert .78 <= in_comp <= .82


def test_id_check_digit_known_numbers():
    assert id_check_digit("11010519491231002") == "X"  # the GB 11643 example
    assert id_check_digit("44052418800101001") == "4"
    with pytest.raises(ValueError):
        id_check_digit("1234")


def test_id_numbers_are_valid_and_match_birth_date_and_gender(small):
    r = small.residents
    ids = r["id_number"]
    assert ids.str.fullmatch(r"\d{17}[\dX]").all() and ids.is_unique
    sample = r.sample(2000, random_state=1)
    for idn in sample["id_number"]:
        assert id_check_digit(idn[:17]) == idn[17]
    codes = {c for c, _ in names.REGION_CODES}
    assert set(ids.str.slice(0, 6)) <= codes and all(c.startswith("4101") for c in codes)
    assert (ids.str.slice(6, 14) == r["birth_date"].dt.strftime("%Y%m%d")).all()
    odd = ids.str.slice(16, 17).astype(int) % 2 == 1
    assert (odd == (r["gender"] == "男")).all()
    assert set(r["gender"]) == {"男", "女"}


def test_names_phones_and_birth_dates_look_real(small):
    r = small.residents
    assert r["name"].str.len().between(2, 4).all()
    surnames = r["name"].str.slice(0, 1).value_counts(normalize=True)
    assert surnames.index[:3].isin(["王", "李", "张", "刘"]).all() and surnames.iloc[0] < .1
    assert r["phone"].str.fullmatch(r"1\d{10}").all()
    assert r["phone"].str.slice(0, 3).isin(names.PHONE_PREFIXES).all()
    assert r["birth_date"].dtype == "datetime64[s]"
    assert (r["birth_date"] < DEMO_NOW).all() and (r["birth_date"] > pd.Timestamp("1925-01-01")).all()
    assert (r["birth_date"] == r["birth_date"].dt.normalize()).all()


def test_tags_follow_their_rules(small):
    r = small.residents
    tags = r["tags"].tolist()
    assert all(isinstance(t, list) for t in tags)
    assert {t for ts in tags for t in ts} <= set(names.TAGS)
    assert sum(not t for t in tags) > .5 * len(tags)
    age = (DEMO_NOW.year - r["birth_date"].dt.year
           - ((r["birth_date"].dt.month > DEMO_NOW.month)
              | ((r["birth_date"].dt.month == DEMO_NOW.month) & (r["birth_date"].dt.day > DEMO_NOW.day))))
    size = r.groupby("household_id")["resident_id"].transform("size")
    alone_old = np.array(["独居老人" in t for t in tags])
    assert alone_old.any()
    assert np.array_equal(alone_old, ((age >= 70) & (size == 1)).to_numpy())
    left_behind = np.array(["留守儿童" in t for t in tags])
    assert left_behind.any() and (age[left_behind] < 16).all()
    for tag in ("党员", "租户", "残疾人", "低保", "退役军人"):
        assert any(tag in t for t in tags), tag


# --------------------------------------------------------------------------- cameras, cases, party

def test_cameras_are_plausible(small):
    c = small.cameras
    assert c["camera_id"].is_unique and c["camera_id"].str.fullmatch(r"CAM\d{5}").all()
    assert (c["stream_url"] == "rtsp://video.zd.local/live/" + c["camera_id"]).all()
    assert c["z"].between(3, 12).all() and c["heading_deg"].between(0, 360).all()
    assert c["pitch_deg"].between(-45, -10).all() and c["fov_deg"].between(30, 100).all()
    assert c["range_m"].between(20, 150).all()
    assert .9 < (c["status"] == "online").mean() < .98 and set(c["status"]) <= {"online", "offline", "fault"}
    on_bld = c["building_source_id"].notna()
    assert on_bld.any() and c.loc[on_bld, "building_source_id"].isin(small.buildings["source_id"]).all()
    assert c["name"].str.contains("交叉口").any() and c["name"].str.contains("门").any()
    assert not shapely.STRtree(small.buildings.geometry.values).query(c.geometry.values, predicate="within").size
    micro = small.grids.set_index("grid_id").geometry
    assert c.geometry.within(micro.reindex(c["grid_id"]).set_axis(c.index).buffer(1e-6)).all()
    kinds = small.grids.set_index("grid_id")["kind"].reindex(c["grid_id"])
    assert (kinds == "street").mean() > .4


def test_taxonomy_is_complete():
    tax = load_taxonomy()
    cats = {c["code"] for c in tax["categories"]}
    subs = tax["subcategories"]
    assert 20 <= len(cats) <= 30 and 45 <= len(subs) <= 60
    assert {s["category"] for s in subs} == cats
    assert len({s["code"] for s in subs}) == len(subs)
    ai = {s["name"] for s in subs if s["ai"]}
    assert {"高空抛物", "消防通道占用", "违章停车", "垃圾满溢", "电动车入户充电", "人脸布控预警"} <= ai
    assert all(s["deadline_hours"] > 0 and s["name_en"] and s["name"] for s in subs)


def test_case_histories_are_consistent(small):
    cases, ev = small.cases, small.case_events
    assert cases["case_id"].is_unique and cases["case_id"].str.fullmatch(r"ZD\d{8}-\d{4}").all()
    assert (cases["case_id"].str.slice(2, 10) == cases["reported_at"].dt.strftime("%Y%m%d")).all()
    assert set(cases["status"]) <= set(CASE_STATUSES)
    assert set(cases["source"]) <= {"ai", "citizen", "patrol", "open311", "hotline"}
    assert set(ev["case_id"]) == set(cases["case_id"])
    last = {}
    for cid, h in ev.groupby("case_id", sort=False):
        assert h["at"].is_monotonic_increasing and h["at"].is_unique, cid
        prev = [None, *h["to_status"].iloc[:-1]]
        assert list(h["from_status"]) == prev, cid
        assert all((f, t) in CASE_TRANSITIONS for f, t in zip(prev, h["to_status"])), cid
        assert h["actor"].str.len().gt(0).all()
        last[cid] = (h["to_status"].iloc[-1], h["at"].iloc[0], h["at"].iloc[-1])
    c = cases.set_index("case_id")
    for cid, (status, first, final) in last.items():
        assert c.at[cid, "status"] == status and c.at[cid, "reported_at"] == first and c.at[cid, "updated_at"] == final
    assert (ev["at"] <= DEMO_NOW).all()


def test_cases_refer_to_the_district(small):
    cases = small.cases
    deadline = {s["code"]: s["deadline_hours"] for s in load_taxonomy()["subcategories"]}
    assert (cases["due_at"] - cases["reported_at"] == pd.to_timedelta(cases["subcategory"].map(deadline), unit="h")).all()
    ai = cases["source"] == "ai"
    assert cases.loc[ai, "camera_id"].isin(small.cameras["camera_id"]).all()
    assert cases.loc[~ai, "camera_id"].isna().all()
    with_b = cases["building_source_id"].notna()
    assert with_b.any() and cases.loc[with_b, "building_source_id"].isin(small.buildings["source_id"]).all()
    b = small.buildings.set_index("source_id").geometry
    dist = cases.loc[with_b].geometry.distance(b.reindex(cases.loc[with_b, "building_source_id"]).set_axis(cases.index[with_b]))
    assert (dist <= 2.0).all()
    district = shapely.union_all(small.grids[small.grids.level == "street"].geometry.values)
    assert cases.geometry.within(district).all()
    assert cases["description"].str.len().gt(5).all() and cases["address"].notna().all()


def test_some_open_cases_are_overdue():
    d = generate_district(scale="small", seed=0)
    open_ = d.cases["status"].isin(OPEN_STATUSES)
    assert open_.any() and (open_ & (d.cases["due_at"] < DEMO_NOW)).any()
    assert (d.cases["status"] == "closed").mean() > .5


def test_party_orgs(small):
    p = small.party_orgs
    in_compound = p["compound_id"].notna()
    assert p["org_id"].is_unique and p.loc[in_compound, "compound_id"].isin(small.compounds["compound_id"]).all()
    grid_of = small.compounds.set_index("compound_id")["grid_id"]
    assert (p.loc[in_compound, "grid_id"].to_numpy() == grid_of.reindex(p.loc[in_compound, "compound_id"]).to_numpy()
            ).all()
    grids = small.grids[small.grids["level"] == "grid"]["grid_id"]
    assert set(grids) == set(p["grid_id"]), "a party organisation on every grid"
    bare = ~grids.isin(small.compounds["grid_id"])
    assert set(p.loc[~in_compound, "grid_id"]) == set(grids[bare]) and (p.loc[~in_compound, "kind"] == "joint_branch"
                                                                        ).all(), "a joint branch where no compound is"
    assert (p["members"] >= 3).all() and p["name"].str.contains("党").all() and p["secretary"].notna().all()
    sized = p[in_compound]
    assert (sized["kind"] == np.select([sized["members"] > 100, sized["members"] >= 50], ["committee",
                                                                                           "general_branch"], "branch")
            ).all(), "a compound's organisation is a committee, general branch or branch by its members"
    members = set(small.residents.loc[small.residents["tags"].map(lambda t: "党员" in list(t)), "name"])
    assert sized["secretary"].isin(members).all(), "a compound's secretary is a party member living there"


def test_party_members_report_to_grids_and_serve(small):
    r, s = small.party_reports, small.party_services
    assert len(r) == 205 and r["resident_id"].is_unique
    tags = small.residents.set_index("resident_id")["tags"]
    assert r["resident_id"].map(lambda i: "党员" in list(tags[i])).all(), "every one reporting is a party member"
    grids = small.grids.set_index("grid_id")
    assert (grids.loc[r["grid_id"], "level"] == "grid").all()
    home = small.buildings.set_index("source_id")["grid_id"].reindex(
        small.residents.set_index("resident_id").loc[r["resident_id"], "building_source_id"]).map(grids["parent_id"])
    elsewhere = (home.to_numpy() != r["grid_id"].to_numpy()).mean()
    assert 0.1 < elsewhere < 0.4, "a quarter serve in another grid of their community than their home's"
    assert (r["reported_on"] < DEMO_NOW).all()
    assert set(s["resident_id"]) <= set(r["resident_id"]) and s["service_id"].is_unique
    assert (s["day"] >= pd.Timestamp("2026-10-01")).all() and (s["day"] <= DEMO_NOW).all()
    this_month = s[s["day"] >= pd.Timestamp("2026-11-01")]
    active = this_month.groupby("grid_id")["resident_id"].nunique() / r.groupby("grid_id").size()
    assert 0.4 < this_month["resident_id"].nunique() / len(r) < 0.9 and active.max() - active.min() > 0.2, \
        "most members served this month, more in some grids than in others"


# --------------------------------------------------------------------------- full scale

@pytest.mark.slow
# --------------------------------------------------------------------------- the ground

def test_demo_ground_has_streets_a_river_and_parks_beside_the_buildings(small_demo):
    from twin.store.store import Store

    with Store(small_demo, read_only=True) as store:
        kinds = dict(store.con.execute("SELECT kind, count(*) FROM basemap GROUP BY kind").fetchall())
        overlaps = store.con.execute("""
            SELECT r.feature_id, sum(ST_Area(ST_Intersection(r.geometry, b.footprint))) AS area
            FROM basemap r JOIN buildings b ON ST_Intersects(r.geometry, b.footprint)
            GROUP BY 1 HAVING area > 0.05""").fetchall()
        cover = store.con.execute("""SELECT sum(ST_Area(geometry)) FILTER (kind = 'road'),
                                            (SELECT ST_Area(ST_Union_Agg(boundary)) FROM grids WHERE level = 'street')
                                     FROM basemap""").fetchone()
        roads = {n for n, in store.con.execute("SELECT name FROM basemap WHERE kind = 'road'").fetchall()}
    assert kinds["road"] == 10 and kinds["water"] >= 1 and kinds["green"] >= 2  # 5 + 5 streets of the 4 x 4 lattice
    assert overlaps == [], "no ground polygon lies under a building"
    assert 0.1 < cover[0] / cover[1] < 0.3, "the carriageways take a street's share of the district"
    assert len(roads) == 10 and roads <= set(names.ROADS_NS) | set(names.ROADS_EW), "each street by its name"


def test_full_scale_counts():
    t0 = time.perf_counter()
    d = generate_district(scale="full", seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, f"full scale took {elapsed:.0f} s"
    b, r = d.buildings, d.residents
    assert len(b) == 12_813
    counts = level_counts(d)
    assert 8 <= counts["street"] <= 12 and 90 <= counts["community"] <= 110 and counts["grid"] == 400
    assert abs(len(r) - 1_127_000) <= 11_270
    assert abs(r["household_id"].nunique() - 400_000) <= 8_000
    in_comp = b.set_index("source_id")["compound_id"].reindex(r["building_source_id"]).notna().mean()
    assert .78 <= in_comp <= .82
    assert len(d.cameras) == 18_000 and len(d.party_orgs) == 483
    assert abs(len(d.cases) - 2_400) <= 240
    assert d.party_orgs["compound_id"].dropna().is_unique and d.party_orgs["grid_id"].nunique() == 400
    assert len(d.party_reports) == 5_246
    x0, y0, x1, y1 = d.grids.total_bounds
    assert x1 - x0 <= 8000 and y1 - y0 <= 8000
