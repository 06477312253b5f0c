"""The screens as Panel objects, without a browser: picks, colours, grids and search drive the state."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.layers import BUILDING_MAGIC
from scenes.screens import DistrictApp
from scenes.shared import SharedDistrict
from tests.conftest import copy_of
from twin.access.access import Principal
from twin.buildings import load_meshes
from twin.store.store import Store

LEADER = Principal("lu.ming", "leader")


@pytest.fixture(scope="module")
def store(small_demo, tmp_path_factory):
    # Writable: what the screens show is audited.
    with Store(copy_of(small_demo, tmp_path_factory.mktemp("screens"))) as s:
        yield s


@pytest.fixture(scope="module")
def shared(store):
    return SharedDistrict(store.con.cursor())


@pytest.fixture(scope="module")
def layer(shared):
    return shared.layer


@pytest.fixture
def app(store, shared):
    return DistrictApp(store.con.cursor(), shared, principal=LEADER)


def app_for(store, shared, role: str, grids: tuple[str, ...] = ()) -> DistrictApp:
    return DistrictApp(store.con.cursor(), shared, principal=Principal(f"a.{role}", role, grids))


def test_the_building_buffer_holds_every_footprint_relative_to_the_origin(store, layer):
    head = np.frombuffer(layer.payload[:32], dtype="<u4")
    ids, meshes = load_meshes(store.con)
    assert head[0] == BUILDING_MAGIC and head[1] == len(ids) == 500
    assert head[3] == len(meshes.vertices) // 2  # one ring point per floor/roof vertex pair
    assert np.abs(layer.centre[:, :2]).max() < 20_000  # offsets, not absolute coordinates
    assert len(layer.payload) < 60 * len(meshes.vertices)


def test_a_picked_building_fills_the_inspector_and_is_highlighted(app, layer):
    i = int(np.argmax(layer.height))
    app.view.pick = {"kind": "building", "index": i, "seq": 1}
    assert app.view.selected == i
    assert app.inspector.building_id == layer.building_id[i]
    assert layer.building_id[i] in app.inspector.card.object
    app.view.pick = {"kind": "none", "index": -1, "seq": 2}
    assert app.view.selected == -1 and app.inspector.building_id is None


def test_the_operator_of_its_grid_sees_residents_masked_and_the_leader_does_not(app, store, shared, layer):
    building_id, grid_id, parent = store.con.execute("""
        SELECT r.building_id, b.grid_id, g.parent_id FROM residents r JOIN buildings b USING (building_id)
        JOIN grids g ON g.grid_id = b.grid_id AND g.valid_to IS NULL
        GROUP BY ALL ORDER BY count(*) DESC LIMIT 1""").fetchone()
    assert app.param.screen.objects == ["Overview"]
    app.select_building(layer.index_of(building_id))
    assert not app.inspector.residents.visible and "residents" in app.inspector.card.object
    operator = app_for(store, shared, "operator", (parent,))  # bound to the grid above: its micro-grids are in
    assert operator.screen == "Operator"
    operator.select_building(layer.index_of(building_id))
    assert operator.inspector.residents.visible and len(operator.inspector.resident_rows) == 50
    first = operator.inspector.resident_rows.iloc[0]
    shown = operator.inspector.residents.object
    assert first["name"] in shown and "people" in shown and "****" in first["phone"] and "****" in shown
    phone, = store.con.execute("SELECT phone FROM residents WHERE resident_id = ?", [first["resident_id"]]).fetchone()
    assert phone not in shown
    assert store.con.execute("SELECT count(*) FROM audit WHERE action = 'residents.view' AND target = ? "
                             "AND actor = 'a.operator'", [building_id]).fetchone()[0] == 1
    elsewhere, = store.con.execute("SELECT grid_id FROM grids WHERE level = 'grid' AND grid_id <> ? AND "
                                   "valid_to IS NULL LIMIT 1", [parent]).fetchone()
    stranger = app_for(store, shared, "operator", (elsewhere,))
    stranger.select_building(layer.index_of(building_id))
    withheld = stranger.inspector.residents.object  # in their place, why they are not listed
    assert "No residents listed" in withheld and "outside your grids" in withheld and first["name"] not in withheld
    assert not stranger.inspector.unmasking.visible and first["name"] not in stranger.inspector.card.object


def test_unmasking_needs_a_reason_and_is_audited(store, shared, layer):
    building_id, grid_id = store.con.execute("SELECT r.building_id, b.grid_id FROM residents r JOIN buildings b "
                                             "USING (building_id) LIMIT 1").fetchone()
    operator = app_for(store, shared, "operator", (grid_id,))
    operator.select_building(layer.index_of(building_id))
    inspector = operator.inspector
    who = inspector.unmask_who.value
    phone, = store.con.execute("SELECT phone FROM residents WHERE resident_id = ?", [who]).fetchone()
    inspector.unmask()
    assert "reason" in inspector.unmasked.object and phone not in inspector.unmasked.object
    inspector.unmask_reason.value = "calling about a burst pipe"
    inspector.unmask()
    assert phone in inspector.unmasked.object
    detail, = store.con.execute("SELECT detail FROM audit WHERE action = 'resident.unmask' AND target = ?",
                                [who]).fetchone()
    assert "burst pipe" in detail


def test_recolouring_sends_colours_not_geometry(app):
    geometry = app.view.buildings
    grid_colours = app.view.colors
    app.colour_by = "height"
    assert app.view.colors != grid_colours and len(app.view.colors) == 3 * 500
    assert app.view.buildings is geometry
    assert app.view.legend["title"] == "Height (m)"


def test_the_grid_level_changes_outlines_and_table(app):
    app.level = "street"
    streets = app.view.grid_lines
    assert len(app.view.labels) == len(app.grid_table.value) == 2  # labels up to 150 grids
    app.level = "micro"
    assert len(app.view.grid_lines) > len(streets)


def test_a_grid_row_highlights_and_flies(app):
    app.grid_table.selected_grid = app.grid_table.value["grid_id"].iloc[0]
    assert app.view.grid_highlight and "x" in app.view.fly_to


def test_cases_and_cameras_have_their_own_cards(app):
    app.view.pick = {"kind": "case", "index": 0, "seq": 3}
    assert app.inspector.case_id is not None and "history" in app.inspector.card.object
    app.view.ready = True
    assert len(app.view.cameras) == 32 * 700
    app.view.pick = {"kind": "camera", "index": 3, "seq": 4}
    assert app.inspector.camera_id is not None


def test_hover_names_the_building_and_its_grid(app, layer):
    app.view.hovered = 0
    assert layer.grid_id[0] in app.view.tooltip


@pytest.fixture(scope="module")
def store_with_bim(bim_demo):
    path, building_id = bim_demo
    with Store(path, read_only=True) as s:
        yield s, building_id


def test_a_building_with_a_bim_model_sends_the_model_and_its_elements_are_clickable(store_with_bim):
    store, building_id = store_with_bim
    shared = SharedDistrict(store.con.cursor())
    head = np.frombuffer(shared.models[:16], dtype="<u4")
    assert head[1] == 1  # one model, standing in for its building's LOD1 block
    assert np.frombuffer(shared.models[16:20], dtype="<u4")[0] == shared.layer.index_of(building_id)
    app = DistrictApp(store.con.cursor(), shared, principal=Principal("p", "planner"))
    wall, = store.con.execute("SELECT min(element_index) FROM elements WHERE ifc_class = 'IfcWallStandardCase' "
                              "LIMIT 1").fetchone()
    app.view.pick = {"kind": "building", "index": shared.layer.index_of(building_id), "element": wall, "seq": 1}
    card = app.inspector.card.object
    assert building_id in card and "IfcWallStandardCase" in card and "twin-element" in card


def test_the_admin_screen_filters_the_trail_and_finds_a_tampered_row(store, shared, layer):
    building_id, grid_id = store.con.execute("SELECT r.building_id, b.grid_id FROM residents r JOIN buildings b "
                                             "USING (building_id) LIMIT 1").fetchone()
    looker = app_for(store, shared, "operator", (grid_id,))
    looker.select_building(layer.index_of(building_id))
    admin = app_for(store, shared, "admin")
    assert admin.screen == "Admin" and admin.param.screen.objects == ["Admin", "Overview"]
    screen = admin._admin
    screen.param.update(actor="a.operator", action="residents.view")
    assert len(screen.rows) and set(screen.rows["actor"]) == {"a.operator"} and building_id in screen.table.object
    screen.target = "no such record"
    assert screen.rows.empty and "No rows match" in screen.table.object
    assert screen.check_chain() is None and "whole" in screen.chain.object
    last, detail = store.con.execute("SELECT seq, detail FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    store.con.execute("UPDATE audit SET detail = '{}' WHERE seq = ?", [last])
    try:
        assert screen.check_chain() == last and f"breaks at row {last}" in screen.chain.object
    finally:
        store.con.execute("UPDATE audit SET detail = ? WHERE seq = ?", [detail, last])


def test_a_planner_gets_no_case_records_but_a_reason(store, shared):
    planner = app_for(store, shared, "planner")
    case_id, = store.con.execute("SELECT case_id FROM cases LIMIT 1").fetchone()
    planner._go_to(f"case|{case_id}")
    assert planner.inspector.case_id is None and "may not see case records" in planner.inspector.card.object
