"""The screens as Panel objects, without a browser: picks, colours, grids and search drive the state."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import panel as pn
import param
import pytest
import shapely

from scenes.i18n import case_kind_name, level_name
from scenes.layers import BUILDING_MAGIC, colours_rgb
from scenes.screens import DistrictApp, session_poll
from scenes.shared import SharedDistrict
from tests.conftest import copy_of
from twin.access.access import Principal
from twin.access.policy import Gate
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


def test_the_highlight_waits_for_the_buildings_card(app, layer):
    """Served, a card's look runs off the loop; a highlight sent before it would draw a software-GL frame first and
    hold the card behind it in the browser. Here the look is held back by discarding the inspector's events."""
    i = int(np.argmax(layer.height))
    app.select_building(-1)
    with param.discard_events(app.inspector):
        app.select_building(i)
    assert app.view.selected == -1, "no highlight before the card"
    app.inspector.shown_building_id = str(layer.building_id[i])
    assert app.view.selected == i, "the highlight follows the card"


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
    assert app.view.colors != grid_colours and colours_rgb(app.view.colors).shape == (500, 3)
    assert len(app.view.colors) < 600, "a palette and a byte per building"
    assert app.view.buildings is geometry
    assert app.view.legend["title"] == "Height (m)"


def test_the_grid_level_changes_outlines_and_table(app):
    app.level = "street"
    streets = app.view.grid_lines
    assert len(app.view.labels) == len(app.grid_table.value) == 2
    app.level = "micro"
    assert len(app.view.grid_lines) > len(streets)


def test_a_grid_row_highlights_and_flies(app):
    app.grid_table.selected_grid = app.grid_table.value["grid_id"].iloc[0]
    assert app.view.grid_highlight and "pos" in app.view.fly_to


def test_cases_and_cameras_have_their_own_cards(app):
    app.view.pick = {"kind": "case", "index": 0, "seq": 3}
    assert app.inspector.case_id is not None and "history" in app.inspector.card.object
    app.view.ready = True
    assert len(app.view.cameras) == 32 * 700
    app.view.pick = {"kind": "camera", "index": 3, "seq": 4}
    assert app.inspector.camera_id is not None


def test_a_citys_view_is_told_where_to_ask_for_cameras_and_a_picked_one_opens_its_card(store, shared):
    shared.cameras_url = "/cameras/near"  # as twin serve sets it above CAMERAS_BY_VIEW_ABOVE
    try:
        app = DistrictApp(store.con.cursor(), shared, principal=LEADER)
        app.view.ready = True
        assert app.view.cameras == b"" and app.view.cameras_near == "/cameras/near"
        app.view.pick = {"kind": "camera", "index": 5, "seq": 1}  # its index in the server's layer
        assert app.inspector.camera_id == shared.cameras.camera_id[5]
    finally:
        shared.cameras_url = ""


def test_a_buildings_very_id_flies_there_at_once_without_searching(app, layer, monkeypatch):
    searched = []
    real = Gate.search
    monkeypatch.setattr(Gate, "search", lambda gate, text, **kw: searched.append(text) or real(gate, text, **kw))
    building_id = str(layer.building_id[7])
    seq = app.view.fly_to.get("seq", 0)
    app.search_box.value = building_id
    app._search(None)
    assert app.view.fly_to["seq"] == seq + 1 and app.inspector.building_id == building_id
    assert searched == [], "nothing but that building can match its id: no scan"
    app.search_box.value = building_id[:-1]  # not an id: searched
    app._search(None)
    assert searched == [building_id[:-1]]


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
    screen = admin._admin.trail
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


def _hex(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[k:k + 2], 16) for k in (1, 3, 5))


def _assert_each_grid_in_its_class(app, layer, measure):
    """Every grid at the app's level is one colour, the legend's class that holds its value of ``measure``."""
    items = app.view.legend["items"][:-1]  # the last item is 'outside any grid'
    texts = [text for _, text in items]
    assert len(texts) >= 2 and len(set(texts)) == len(texts), f"classes with the same bounds: {texts}"
    rgb = colours_rgb(app.view.colors)
    grid_of = dict(zip(app.shared._tree["grid_id"], app.shared._tree[app.level]))  # micro-grid → its grid at level
    per_grid = {}
    for i, micro in enumerate(layer.grid_id):
        per_grid.setdefault(grid_of.get(micro), set()).add(tuple(rgb[i]))
    assert all(len(colours) == 1 for colours in per_grid.values()), "each grid is one colour"
    table = app.grid_table.value
    top, bottom = table.loc[table[measure].idxmax(), "grid_id"], table.loc[table[measure].idxmin(), "grid_id"]
    assert per_grid[top] != per_grid[bottom], "the busiest and the quietest grid differ"
    assert per_grid[top] == {_hex(items[-1][0])}, "the busiest grid is in the top class"
    class_of = {_hex(colour): text for colour, text in items}
    slack = 0.05 if measure == "cases_per_1000" else 0  # the legend's bounds are rounded to 0.1
    for grid_id, value in zip(table["grid_id"], table[measure]):
        colour, = per_grid.get(grid_id, {None})
        if colour is None:
            continue  # a grid without buildings has nothing to colour
        assert colour in class_of, f"{grid_id} ({measure} {value}) is not in a class's colour: {colour}"
        low, *high = (float(t.replace(",", "")) for t in class_of[colour].split("–"))
        assert low - slack <= value <= (high or [low])[0] + slack, \
            f"{grid_id} ({measure} {value}) is coloured as {class_of[colour]}"


@pytest.mark.parametrize("measure", ["open_cases", "overdue_cases", "cases_per_1000"])
def test_cases_colour_the_grids_at_the_chosen_level_in_distinct_classes(app, layer, measure):
    app.level = "grid"
    app.colour_by = measure
    _assert_each_grid_in_its_class(app, layer, measure)
    app.level = "community"
    assert app.view.legend["title"].endswith(f" · {level_name('community')}")
    _assert_each_grid_in_its_class(app, layer, measure)


def test_a_grid_row_opens_the_grid_card_with_its_worker_figures_cases_and_party(app, store):
    app.level = "grid"
    grid_id, = store.con.execute(
        "SELECT g.grid_id FROM grids g JOIN party_orgs p ON p.grid_id LIKE g.grid_id || '%' JOIN cases c "
        "ON c.grid_id LIKE g.grid_id || '%' WHERE g.level = 'grid' AND g.valid_to IS NULL AND c.status = 'reported' "
        "ORDER BY g.grid_id LIMIT 1").fetchone()
    name, worker, phone = store.con.execute(
        "SELECT name, worker, worker_phone FROM grids WHERE grid_id = ? AND valid_to IS NULL", [grid_id]).fetchone()
    row = app.grid_table.value.set_index("grid_id").loc[grid_id]
    app.grid_table.selected_grid = grid_id
    card = app.inspector.card.object
    assert name in card and grid_id in card and worker in card and re.fullmatch(r"1\d{10}", phone)
    assert phone in card, "a leader coordinates with the grid's worker: the phone is in clear"
    assert f"{row['residents']:,} in {row['households']:,} households" in card
    assert f"<th>buildings</th><td>{row['buildings']:,}</td>" in card
    assert f"<th>cameras</th><td>{row['cameras']:,}</td>" in card
    org, = store.con.execute("SELECT name FROM party_orgs WHERE grid_id IN (SELECT grid_id FROM grids WHERE "
                             "grid_id = ? OR parent_id = ?) ORDER BY members DESC LIMIT 1",
                             [grid_id, grid_id]).fetchone()
    assert org in card
    counted = sum(int(n.replace(",", "")) for n in re.findall(r"<td class='num'>([\d,]+)</td><td class='num", card))
    assert counted == row["open_cases"], "open cases by category add up to the grid's open cases"
    assert app.view.grid_highlight and app.view.selected == -1


def test_clicking_open_ground_opens_the_grid_there_and_a_planner_sees_no_cases(store, shared, app):
    app.level = "grid"
    ox, oy, _z = shared.layer.origin
    for seq, (grid_id, shape) in enumerate(zip(app._grid_frame["grid_id"], app._grid_shapes)):  # each, not the first
        p = shape.representative_point()
        app.view.pick = {"kind": "ground", "index": -1, "x": p.x - ox, "y": p.y - oy, "seq": seq}
        assert f"{grid_id} · " in app.inspector.card.object, f"a click in {grid_id} opens its card"
        assert "open cases by category" in app.inspector.card.object or "No open cases" in app.inspector.card.object
    table = app.grid_table.value
    grid_id = str(table.loc[table["open_cases"].idxmax(), "grid_id"])  # a grid with cases to withhold
    planner = app_for(store, shared, "planner")
    planner.select_grid(grid_id)
    assert "grid worker" in planner.inspector.card.object and "open cases" not in planner.inspector.card.object
    assert planner.gate.grid_card(grid_id)["cases"].empty, "the planner's session is given no cases of the grid"
    phone, = store.con.execute("SELECT worker_phone FROM grids WHERE grid_id = ? AND valid_to IS NULL",
                               [grid_id]).fetchone()
    assert phone not in planner.inspector.card.object, "a planner has no need of the worker's number"
    assert f"{phone[:3]}****{phone[-4:]}" in planner.inspector.card.object


def test_the_key_figures_open_lists_whose_rows_fly_to_their_case_or_camera(app, store):
    app.show_panels()
    app.figures.cards[3].clicks += 1  # overdue cases
    overdue = store.con.execute("SELECT case_id FROM cases WHERE status IN ('reported', 'dispatched', 'in_progress', "
                                "'reopened') AND due_at < (SELECT value FROM meta WHERE key = 'now')::TIMESTAMP "
                                "ORDER BY due_at, case_id").df()["case_id"].tolist()
    assert [r[0] for r in app.drilldown.table.rows] == overdue[:500], "the overdue list, oldest first"
    assert all(r[4] for r in app.drilldown.table.rows), "each says how long it is overdue"
    fly = app.view.fly_to.get("seq", 0)
    last = len(app.drilldown.table.rows) - 1  # not the first row: a click opens the row's own case
    assert last > 0
    app.drilldown.table.clicked = {"row": last, "seq": 1}
    assert f"Case {overdue[last]}" in app.inspector.card.object and "Overdue by" in app.inspector.card.object
    assert app.view.fly_to["seq"] == fly + 1
    ox, oy, _z = app.layer.origin
    x, y = store.con.execute("SELECT ST_X(location), ST_Y(location) FROM cases WHERE case_id = ?",
                             [overdue[last]]).fetchone()
    assert np.allclose(app.view.fly_to["fp"][:2], [x - ox, y - oy], atol=0.5), "the view looks at the case"
    app.figures.cards[2].clicks += 1  # open cases, then by category
    app.drilldown.category.value = category = store.con.execute(
        "SELECT category FROM cases WHERE status = 'reported' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    in_category, open_cases = store.con.execute(
        "SELECT count(*) FILTER (WHERE category = ?), count(*) FROM cases "
        "WHERE status IN ('reported', 'dispatched', 'in_progress', 'reopened')", [category]).fetchone()
    assert len(app.drilldown.table.rows) == min(in_category, 500) < open_cases, "only the category's open cases"
    assert {r[1] for r in app.drilldown.table.rows} == {case_kind_name(category)}
    app.drilldown.status.value = "reported"
    expected, = store.con.execute("SELECT count(*) FROM cases WHERE status = 'reported' AND category = ?",
                                  [category]).fetchone()
    assert len(app.drilldown.table.rows) == min(expected, 500) > 0
    app.figures.cards[4].clicks += 1  # cameras online → the offline ones
    offline = store.con.execute("SELECT camera_id FROM cameras WHERE status <> 'online' ORDER BY 1").df()["camera_id"]
    assert [r[0] for r in app.drilldown.table.rows] == offline.tolist() and len(offline) > 1
    app.drilldown.table.clicked = {"row": 1, "seq": 2}
    assert f"Camera {offline.iloc[1]}" in app.inspector.card.object and app.view.fly_to["seq"] == fly + 2
    x, y = store.con.execute("SELECT ST_X(position), ST_Y(position) FROM cameras WHERE camera_id = ?",
                             [offline.iloc[1]]).fetchone()
    assert np.allclose(app.view.fly_to["fp"][:2], [x - ox, y - oy], atol=0.5), "the view looks at the camera"


def test_micro_grids_are_labelled_too_the_largest_first(app):
    app.level = "micro"
    labels = app.view.labels
    assert len(labels) == len(app._grid_frame) > 150
    ox, oy, _z = app.layer.origin
    points = shapely.points([[x + ox, y + oy] for _name, x, y in labels])
    tree = shapely.STRtree(app._grid_shapes)
    label_at, grid = tree.query(points, predicate="within")
    assert len(set(label_at)) == len(labels), "each label lies inside a grid"
    names = app._grid_frame["name"].to_numpy()
    assert [labels[k][0] for k in label_at] == list(names[grid]), "each label names the grid it lies in"
    areas = shapely.area(app._grid_shapes[grid[np.argsort(label_at, kind="stable")]])
    assert np.all(np.diff(areas) <= 1e-6), "the largest grids come first"


def test_a_sessions_poll_runs_every_period_without_panels_busy_bookkeeping():
    # Panel counts every run of a periodic callback in one list shared by all sessions (its busy state): at 25
    # operators polling four times a second that took a fifth of a process's core, and held the clicks.
    async def poll() -> list[bool]:
        busy: list[bool] = []
        running = session_poll(lambda: busy.append(pn.state.busy), period_ms=20)
        await asyncio.sleep(0.3)
        running.stop()
        await asyncio.sleep(0.1)
        return busy
    busy = asyncio.run(poll())
    assert 5 <= len(busy) <= 16 and not any(busy)


def test_the_sessions_of_operators_of_the_same_grids_share_one_scope_read_afresh_after_a_grid_save(store):
    """An operator of a city's streets has hundreds of thousands of grids in scope (80 MB as a set of ids for every
    street): the server keeps one set per binding for every session of it, and reads it again once grids are
    saved; an operator of every street has the whole district in scope, and no set is held for it."""
    from twin.grids.grids import grids_under

    shared = SharedDistrict(store.con.cursor())
    streets = tuple(r[0] for r in store.con.execute(
        "SELECT grid_id FROM grids WHERE level = 'street' AND valid_to IS NULL ORDER BY grid_id").fetchall())
    communities = tuple(r[0] for r in store.con.execute(
        "SELECT grid_id FROM grids WHERE parent_id = ? AND valid_to IS NULL ORDER BY grid_id", [streets[0]]).fetchall())
    assert len(communities) >= 2
    first = app_for(store, shared, "operator", communities)
    second = app_for(store, shared, "operator", communities[::-1])
    assert first.gate.scope == grids_under(store.con, communities) and len(first.gate.scope) > len(communities)
    assert second.gate.scope is first.gate.scope
    assert app_for(store, shared, "operator", communities[:1]).gate.scope < first.gate.scope
    every = app_for(store, shared, "operator", streets).gate
    assert every.scope is None and all(every.in_scope(g) for g in grids_under(store.con, streets))
    shared.forget_grids()
    assert app_for(store, shared, "operator", communities).gate.scope is not first.gate.scope
