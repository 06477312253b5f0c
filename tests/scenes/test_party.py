"""The party layer on the leader's screen as Panel objects, without a browser: the toggle, the marks, a mark's grid
card and outline, and the table that compares grids."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.i18n import DEFAULT_LANG, use
from scenes.party import MARK_LIFT_M, OUTLINE_LIFT_M
from scenes.screens import DistrictApp
from scenes.shared import SharedDistrict
from tests.conftest import copy_of
from twin.access.access import Principal
from twin.party.figures import party_table
from twin.party.orgs import covered_buildings, org_places
from twin.store.schema import PARTY_ORG_KINDS
from twin.store.store import Store


@pytest.fixture(scope="module")
def store(small_demo, tmp_path_factory):
    with Store(copy_of(small_demo, tmp_path_factory.mktemp("party"))) as s:  # writable: looks are audited
        yield s


@pytest.fixture(scope="module")
def shared(store):
    return SharedDistrict(store.con.cursor())


@pytest.fixture
def app(store, shared):
    return DistrictApp(store.con.cursor(), shared, principal=Principal("lu.ming", "leader"))


def test_the_layer_reads_nothing_until_shown_then_marks_every_organisation_over_what_it_covers(app, store):
    assert not app.view.show_party and app.view.party == [] and not app.party._panel.visible
    assert app.party.toggle in app.toolbar.objects
    app.party.toggle.value = True
    assert app.view.show_party and app.party._panel.visible
    places = org_places(store.con)
    marks = app.view.party
    assert len(marks) == len(places) == 19
    ox, oy, _z = app.layer.origin
    for mark, org in zip(marks, places.itertuples()):
        text, x, y, z, kind = mark
        assert org.name in text and org.secretary in text and f"{org.members} members" in text
        assert (x, y, z) == pytest.approx((org.x - ox, org.y - oy, org.z + MARK_LIFT_M))
        assert PARTY_ORG_KINDS[kind] == org.kind
    assert max(abs(m[1]) for m in marks) < 20_000, "relative to the origin, never absolute"
    app.party.toggle.value = False
    assert not app.view.show_party and not app.party._panel.visible


def test_a_mark_opens_its_grid_card_with_the_organisation_first_and_outlines_the_roofs_it_covers(app, store):
    app.party.toggle.value = True
    places = org_places(store.con)
    k = int(np.flatnonzero((places["kind"] != "joint_branch").to_numpy())[-1])  # a compound's, not the first
    org = places.iloc[k]
    app.view.pick = {"kind": "party", "index": k, "seq": 1}
    card = app.inspector.card.object
    assert f"{org['grid_id']} · " in card, "its grid's card"
    first = card.index("twin-party-org")
    assert card.index(org["name"]) > first and f"data-org='{org['org_id']}'" in card[first - 30:first + 60]
    assert "twin-picked" in card[first:first + 40] and f"secretary {org['secretary']}" in card
    assert f"{org['buildings']} buildings covered" in card and "party members reported here:" in card
    segments = np.frombuffer(app.view.party_highlight, dtype="<f4").reshape(-1, 6)
    covered = covered_buildings(store.con, [org["org_id"]])["building_id"].tolist()
    tops = store.con.execute("SELECT base_z + height FROM buildings WHERE building_id IN (SELECT unnest(?))",
                             [covered]).fetchall()
    assert len(segments) >= 4 * len(covered), "every covered roof outlined"
    assert set(np.round(segments[:, 2].astype(float), 1).tolist()) == {round(t + OUTLINE_LIFT_M, 1) for t, in tops}
    ox, oy, _z = app.layer.origin
    x0, y0, x1, y1 = store.con.execute("SELECT min(ST_XMin(footprint)), min(ST_YMin(footprint)), "
                                       "max(ST_XMax(footprint)), max(ST_YMax(footprint)) FROM buildings WHERE "
                                       "building_id IN (SELECT unnest(?))", [covered]).fetchone()
    assert segments[:, 0].min() == pytest.approx(x0 - ox, abs=0.01) and segments[:, 3].max() == pytest.approx(
        x1 - ox, abs=0.01), "around those buildings and no others"
    focal = np.array(app.view.fly_to["fp"][:2]) + np.array([ox, oy])
    assert x0 <= focal[0] <= x1 and y0 <= focal[1] <= y1, "the view flies to frame them"


def test_the_leaders_table_compares_grids_at_the_screens_level_and_a_row_opens_the_grid(app, store):
    app.party.toggle.value = True
    app.level = "grid"
    shown = app.party.value
    assert shown.equals(party_table(store.con, level="grid"))
    rows = app.party.table.rows
    assert len(rows) == 16 and [r[0] for r in rows] == shown["grid_id"].tolist()
    titles = [c[0] for c in app.party.table.columns]
    assert {"Reporting", "Active", "Services"} <= set(titles)
    assert "205 reporting to grids" in app.party.title.object
    app.level = "community"
    assert app.party.level == "community" and len(app.party.table.rows) == 4
    assert app.party.value["reported"].sum() == 205
    app.level = "micro"  # members report to grids: the table stays there
    assert app.party.level == "grid" and len(app.party.table.rows) == 16
    busiest = int(shown["reported"].idxmax())
    app.party.table.clicked = {"row": busiest, "seq": 1}
    card = app.inspector.card.object
    assert f"{shown['grid_id'][busiest]} · " in card
    assert f"party members reported here: {shown['reported'][busiest]} · " in card


def test_the_layer_speaks_chinese(app):
    use("zh")
    try:
        zh = DistrictApp(app._con, app.shared, principal=app.principal)
        zh.party.toggle.value = True
        assert zh.party.toggle.label == "党组织"
        assert any("书记" in m[0] and "名党员" in m[0] for m in zh.view.party)
        assert {"报到", "活跃", "服务"} <= {c[0] for c in zh.party.table.columns}
        assert "网格党员报到" in zh.party.title.object and "本月活跃" in zh.party.title.object
    finally:
        use(DEFAULT_LANG)


def test_the_layer_reads_afresh_when_shown_again_and_after_a_grid_save(app, store):
    app.party.toggle.value = True
    app.view.pick = {"kind": "party", "index": 0, "seq": 1}
    assert app.view.party_highlight
    first = app.view.party[0][0]
    org_id = org_places(store.con)["org_id"].iloc[0]
    store.con.execute("UPDATE party_orgs SET name = '改名党委' WHERE org_id = ?", [org_id])
    try:
        app._grids_saved(None)  # what a planner's save does to every open screen
        assert app.view.party_highlight == b"", "the outline of the old coverage goes"
        assert app.view.party[0][0].startswith("改名党委 · ") and app.view.party[0][0] != first
        store.con.execute("UPDATE party_orgs SET name = '再改名党委' WHERE org_id = ?", [org_id])
        app.party.toggle.value = False
        app.party.toggle.value = True  # an import while the server runs changes them too
        assert app.view.party[0][0].startswith("再改名党委 · ")
    finally:
        store.con.execute("UPDATE party_orgs SET name = ? WHERE org_id = ?", [first.split(" · ")[0], org_id])
