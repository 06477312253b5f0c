"""Party organisations, members' reporting and their figures, on the small demo in either backend; the files that
move them in and out (``twin party import|export``), refused row by row with the store unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from ingest.party import export_party, import_party_file, read_party_file
from tests.conftest import ROOT, store_fingerprint
from twin.errors import InputError, OptionError
from twin.party.figures import grid_party_figures, party_table
from twin.party.orgs import covered_buildings, grid_ancestors, grid_orgs, org_places
from twin.store.store import Store, open_for_command

PARTY_TABLES = ("party_orgs", "party_reports", "party_services")


def _party(db: str) -> dict[str, tuple]:
    return {t: v for t, v in store_fingerprint(db).items() if t in PARTY_TABLES}


# ---------------------------------------------------------------------------------------------- organisations
def test_every_grid_has_an_organisation_that_covers_its_compounds_or_the_rest_of_its_grid(demo_copy_db):
    with open_for_command(demo_copy_db) as store:
        con = store.con
        places = org_places(con)
        grids = {g for g, in con.execute("SELECT grid_id FROM grids WHERE level = 'grid' AND valid_to IS NULL")
                 .fetchall()}
        assert grids <= set(places["grid_id"]), "every grid has an organisation"
        assert places["secretary"].notna().all() and (places["members"] > 0).all()
        covered = covered_buildings(con)
        compound_org = places[places["compound_id"].notna()].iloc[0]
        in_compound = {b for b, in con.execute("SELECT building_id FROM buildings WHERE compound_id = ?",
                                               [compound_org["compound_id"]]).fetchall()}
        assert set(covered.loc[covered["org_id"] == compound_org["org_id"], "building_id"]) == in_compound
        assert compound_org["buildings"] == len(in_compound) > 0
        # A branch on a grid that holds that compound covers the grid's other buildings, and a party group on one
        # of its micro-grids every building there, the compound's too.
        grid_id = compound_org["grid_id"]
        micro, = con.execute("SELECT grid_id FROM buildings WHERE compound_id = ? LIMIT 1",
                             [compound_org["compound_id"]]).fetchone()
        con.execute("INSERT INTO party_orgs (org_id, name, kind, grid_id, members) VALUES "
                    "('T1', '网格党支部', 'branch', ?, 9), ('T2', '楼栋党小组', 'group', ?, 4)", [grid_id, micro])
        con.execute("UPDATE party_orgs SET parent_id = 'T1' WHERE org_id = 'T2'")
        covered = covered_buildings(con)
        org_compounds = {c for c, in con.execute("SELECT compound_id FROM party_orgs WHERE compound_id IS NOT NULL")
                         .fetchall()}
        rest = {b for b, c in con.execute("SELECT building_id, compound_id FROM buildings WHERE grid_id LIKE ? || '-%'",
                                          [grid_id]).fetchall() if c not in org_compounds}
        assert set(covered.loc[covered["org_id"] == "T1", "building_id"]) == rest and rest
        in_micro = {b for b, in con.execute("SELECT building_id FROM buildings WHERE grid_id = ?", [micro]).fetchall()}
        assert set(covered.loc[covered["org_id"] == "T2", "building_id"]) == in_micro
        # The micro-grid's card shows its group and the compound's organisation; the grid's, all three.
        assert {"T2", compound_org["org_id"]} <= set(grid_orgs(con, [micro])["org_id"])
        on_grid = grid_orgs(con, [grid_id, *{m for m, in con.execute(
            "SELECT grid_id FROM grids WHERE parent_id = ? AND valid_to IS NULL", [grid_id]).fetchall()}])
        assert {"T1", "T2", compound_org["org_id"]} <= set(on_grid["org_id"])
        kinds = list(on_grid["kind"])
        assert kinds.index("branch") < kinds.index("group"), "the largest kinds first"
        mark = org_places(con).set_index("org_id").loc["T2"]
        x, y, top = con.execute("SELECT avg(label_x), avg(label_y), max(base_z + height) FROM buildings "
                                "WHERE grid_id = ?", [micro]).fetchone()
        assert (mark["x"], mark["y"], mark["z"]) == pytest.approx((x, y, top)), "its mark stands over what it covers"


# ---------------------------------------------------------------------------------------------- figures
def test_the_leaders_table_counts_members_where_they_report_not_where_they_live(demo_copy_db):
    with open_for_command(demo_copy_db) as store:
        con = store.con
        before = party_table(con, level="grid").set_index("grid_id")
        by_sql = dict(con.execute("SELECT g.grid_id, count(r.resident_id) FROM grids g LEFT JOIN party_reports r "
                                  "ON r.grid_id = g.grid_id WHERE g.level = 'grid' AND g.valid_to IS NULL "
                                  "GROUP BY 1").fetchall())
        assert before["reported"].to_dict() == by_sql
        active = dict(con.execute("SELECT grid_id, count(DISTINCT resident_id) FROM party_services WHERE "
                                  "day >= DATE '2026-11-01' AND day <= DATE '2026-11-30' GROUP BY 1").fetchall())
        assert {g: v for g, v in before["active"].items() if v} == active
        assert (before["active"] <= before["reported"]).all() and (before["services"] >= before["active"]).all()
        # A member living in one grid reports to another and serves there this month (and once last month).
        resident, home = con.execute("""
            SELECT r.resident_id, g.parent_id FROM residents r JOIN buildings b USING (building_id)
            JOIN grids g ON g.grid_id = b.grid_id AND g.valid_to IS NULL
            WHERE list_contains(r.tags, '党员') AND r.resident_id NOT IN (SELECT resident_id FROM party_reports)
            ORDER BY r.resident_id LIMIT 1""").fetchone()
        away = next(g for g in before.index if g != home)
        con.execute("INSERT INTO party_reports VALUES (?, ?, DATE '2026-11-02')", [resident, away])
        con.execute("INSERT INTO party_services VALUES ('T1', ?, ?, DATE '2026-11-20', 2.5, '楼栋巡查'), "
                    "('T2', ?, ?, DATE '2026-10-20', 1, '楼栋巡查')", [resident, away, resident, away])
        after = party_table(con, level="grid").set_index("grid_id")
        change = (after[["reported", "active", "services", "living"]] - before[["reported", "active", "services",
                                                                              "living"]])
        assert change.loc[away].to_dict() == {"reported": 1, "active": 1, "services": 1, "living": 0}
        assert after.loc[away, "hours"] == pytest.approx(before.loc[away, "hours"] + 2.5)
        assert change.drop(index=away).abs().to_numpy().sum() == 0, "its home grid's figures stay as they were"
        october = party_table(con, level="grid", month="2026-10").set_index("grid_id")
        assert october.loc[away, "services"] >= 1 and october.loc[away, "active"] >= 1
        card = grid_party_figures(con, [away])
        assert {k: card[k] for k in ("reported", "active", "services")} == after.loc[
            away, ["reported", "active", "services"]].to_dict() and card["month"] == "2026-11"
        # Every level adds up to the district.
        for level in ("street", "community"):
            rolled = party_table(con, level=level)
            assert rolled[["orgs", "reported", "active", "services", "living"]].sum().to_dict() == after[
                ["orgs", "reported", "active", "services", "living"]].sum().to_dict()
        with pytest.raises(OptionError, match="'street', 'community', 'grid'"):
            party_table(con, level="micro")


# ---------------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", [".csv", ".geojson"])
def test_organisations_and_reports_go_out_and_come_back_unchanged(demo_copy_db, tmp_path, suffix):
    before = _party(demo_copy_db)
    orgs, members = tmp_path / f"orgs{suffix}", tmp_path / "members.csv"
    with open_for_command(demo_copy_db) as store:
        out = export_party(store.con, orgs, what="orgs")
        assert out["rows"] == 19 and out["kinds"]["joint_branch"] >= 1
        assert export_party(store.con, members, what="members")["rows"] == 205
    with open_for_command(demo_copy_db) as store:
        store.con.execute("DELETE FROM party_orgs WHERE org_id IN (SELECT org_id FROM party_orgs ORDER BY org_id "
                          "LIMIT 3)")
        store.con.execute("UPDATE party_reports SET grid_id = 'S01-C01-G1'")
        got = import_party_file(store.con, orgs, what="orgs", mode="update")
        assert len(got["added"]) == 3 and len(got["replaced"]) == 16 and got["removed"] == []
        import_party_file(store.con, members, what="members", mode="replace")
    assert _party(demo_copy_db) == before, "the store's party tables are as they were exported"


BAD_ORGS = [  # a change to one row of the exported organisations, and what the refusal says
    ("grid_id", "S09-C09-G9", "grid 'S09-C09-G9' is not a grid in force"),
    ("compound_id", "CMP9999", "compound 'CMP9999' is not in the store"),
    ("parent_id", "DZ9999", "parent 'DZ9999' is neither another organisation"),
    ("kind", "党组", "kind '党组' is none of committee"),
    ("members", "-4", "members '-4' is not a whole number"),
]


@pytest.mark.parametrize("column, value, says", BAD_ORGS)
def test_an_organisation_the_store_cannot_take_is_refused_with_its_row_and_nothing_changes(
        demo_copy_db, tmp_path, column, value, says):
    path = tmp_path / "orgs.csv"
    with open_for_command(demo_copy_db) as store:
        export_party(store.con, path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    table.loc[4, "name"] = "新的名字党支部"  # a row before the bad one changes: it must not be saved either
    table.loc[6, column] = value
    table.to_csv(path, index=False)
    before = store_fingerprint(demo_copy_db)
    with pytest.raises(InputError, match=f"orgs.csv, line 8 \\({table.loc[6, 'org_id']}\\): {says}"):
        with open_for_command(demo_copy_db) as store:
            import_party_file(store.con, path, what="orgs")
    assert store_fingerprint(demo_copy_db) == before


def test_a_report_of_an_unknown_resident_or_one_who_is_no_party_member_is_refused_with_its_row(demo_copy_db, tmp_path):
    path = tmp_path / "members.csv"
    with Store(demo_copy_db, read_only=True) as store:
        member, = store.con.execute("SELECT resident_id FROM residents WHERE list_contains(tags, '党员') AND "
                                    "resident_id NOT IN (SELECT resident_id FROM party_reports) LIMIT 1").fetchone()
        other, = store.con.execute("SELECT resident_id FROM residents WHERE NOT list_contains(tags, '党员') "
                                   "LIMIT 1").fetchone()
    before = store_fingerprint(demo_copy_db)
    cases = [([(member, "S01-C01-G1", ""), ("R99999999", "S01-C01-G2", "")], "line 3 \\(R99999999\\): no resident"),
             ([(other, "S01-C01-G1", "2026-11-01")], f"line 2 \\({other}\\): resident '{other}' is not tagged 党员"),
             ([(member, "S77", "")], f"line 2 \\({member}\\): grid 'S77' is not a grid in force"),
             ([(member, "S01-C01-G1", "1 Nov")], "reported_on '1 Nov' is not a date"),
             ([(member, "S01-C01-G1", ""), (member, "S01-C01-G2", "")], "resident_id .* is given twice")]
    for rows, says in cases:
        path.write_text("resident_id,grid_id,reported_on\n" + "".join(f"{r},{g},{d}\n" for r, g, d in rows))
        with pytest.raises(InputError, match=says), open_for_command(demo_copy_db) as store:
            import_party_file(store.con, path, what="members")
        assert store_fingerprint(demo_copy_db) == before
    path.write_text(f"resident_id,grid_id,reported_on\n{member},S01-C01-G1,\n")
    with open_for_command(demo_copy_db) as store:
        assert import_party_file(store.con, path, what="members")["added"] == [member]
        day, = store.con.execute("SELECT reported_on FROM party_reports WHERE resident_id = ?", [member]).fetchone()
    assert str(day) == "2026-11-26", "an empty date is the store's day"


def test_files_of_the_wrong_kind_or_columns_are_explained(tmp_path):
    members = tmp_path / "members.geojson"
    members.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputError, match="party members go in and out as .csv; found the suffix '.geojson'"):
        read_party_file(members, what="members")
    wrong = tmp_path / "orgs.csv"
    wrong.write_text("resident_id,grid_id\nR1,S01\n")
    with pytest.raises(InputError, match=r"party orgs need the column\(s\) \['org_id', 'name'\]"):
        read_party_file(wrong, what="orgs")
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("org_id,name,grid_id\nX1,如意家园党支部,S01-C01-G1\n".encode("gb18030"))
    assert read_party_file(gbk)["name"].tolist() == ["如意家园党支部"], "a CSV saved by Excel in GB 18030 reads"


def test_twin_party_exits_2_naming_the_row_and_audits_what_it_did(demo_copy_db, tmp_path):
    def twin(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), "party", *args, "--db", demo_copy_db, "--json"],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)
    out = tmp_path / "orgs.geojson"
    done = twin("export", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 19
    features = json.loads(out.read_text())["features"]
    features[2]["properties"]["grid_id"] = "NOWHERE"
    out.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False))
    before = _party(demo_copy_db)
    refused = twin("import", str(out))
    assert refused.returncode == 2
    assert f"orgs.geojson, feature 3 ({features[2]['properties']['org_id']}): grid 'NOWHERE'" in refused.stderr
    assert json.loads(refused.stdout)["error_type"] == "InputError"
    assert _party(demo_copy_db) == before
    features[2]["properties"]["grid_id"] = features[3]["properties"]["grid_id"]
    out.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False))
    done = twin("import", str(out), "--mode", "replace")
    assert done.returncode == 0, done.stderr
    with Store(demo_copy_db, read_only=True) as store:
        rows = store.con.execute("SELECT action, detail FROM audit WHERE action LIKE 'party.%' ORDER BY seq").fetchall()
    assert [(a, json.loads(d)["what"]) for a, d in rows] == [("party.export", "orgs"), ("party.import", "orgs")]


def test_the_ancestors_of_some_grids_at_one_level_are_those_of_every_grid_filtered(demo_copy_db):
    """Figures read the ancestors of the grids they count only, at the level they roll up to (a city's 700,000 grids
    with all their ancestors are 2.8 million rows): the same rows as all of them filtered, and nothing else."""
    with open_for_command(demo_copy_db) as store:
        con = store.con
        every = grid_ancestors(con)
        micro = sorted(every.loc[every["level"] == "micro", "grid_id"])[::50]
        some = grid_ancestors(con, level="community", grid_ids=[*micro, "no-such-grid"])
        expected = every[(every["level"] == "community") & every["grid_id"].isin(micro)]
        assert len(some) == len(micro) > 1
        assert (some.sort_values("grid_id").reset_index(drop=True)
                .equals(expected.sort_values("grid_id").reset_index(drop=True)))
        assert set(grid_ancestors(con, level="street")["level"]) == {"street"}
        assert grid_ancestors(con, grid_ids=[]).empty
        assert len(grid_ancestors(con, grid_ids=micro[:1])) == 4  # itself, its grid, community and street
        with pytest.raises(OptionError, match="'street', 'community', 'grid', 'micro'"):
            grid_ancestors(con, level="district")
