"""The field on the leader's and operator's screens, as Panel objects: patrol coverage as a colouring and on the
grid card, the workers on patrol on the operator's map with their open load, and their cards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scenes.layers import COVERAGE_CLASSES, OUTSIDE_GRIDS, colours_rgb
from scenes.screens import DistrictApp
from scenes.shared import SharedDistrict
from tests.conftest import copy_of
from twin.access.access import Principal, add_user
from twin.access.policy import Gate
from twin.cases.cases import create_case, load_taxonomy
from twin.field.patrol import check_in, set_patrol
from twin.store.clock import store_now
from twin.store.queries import _now
from twin.store.store import Store


@pytest.fixture(scope="module")
def patrolled(small_demo, tmp_path_factory) -> dict:
    """A copy of the small demo where worker w1 walked past every building of one micro-grid today (the store's
    today: the demo's clock stands still), and is on patrol now there, with an open case of that micro-grid."""
    store = Store(copy_of(small_demo, tmp_path_factory.mktemp("field-screens")))
    con = store.con
    micro, parent = con.execute("SELECT g.grid_id, g.parent_id FROM grids g WHERE g.level = 'micro' AND g.valid_to "
                                "IS NULL AND (SELECT count(*) FROM buildings WHERE grid_id = g.grid_id) >= 3 "
                                "ORDER BY g.grid_id LIMIT 1").fetchone()
    spots = con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id = ? ORDER BY label_x",
                        [micro]).fetchall()
    add_user(con, "w1", "field-screens-pw-1", role="worker", grids=[micro], actor="test")
    gate = Gate(con, Principal("w1", "worker", (micro,)))
    walk = pd.Timestamp(_now(con).date()) + pd.Timedelta(hours=8)  # the store's today (a demo's fixed day)
    set_patrol(gate, key="screens-on-0", on=True, at=walk)
    for k, (x, y) in enumerate(spots):
        check_in(gate, key=f"screens-w-{k:02d}", x=x, y=y, at=walk + pd.Timedelta(seconds=30 * (k + 1)))
    set_patrol(gate, key="screens-off0", on=False, at=walk + pd.Timedelta(hours=1))
    now = store_now(con, unit="us")
    set_patrol(gate, key="screens-on-1", on=True, at=now - pd.Timedelta(minutes=5))
    check_in(gate, key="screens-now-0", x=spots[0][0] + 5, y=spots[0][1], at=now - pd.Timedelta(minutes=1))
    case = create_case(con, subcategory_code=load_taxonomy()["subcategories"][0]["code"], source="patrol",
                       x=spots[0][0], y=spots[0][1])["case_id"]
    yield {"store": store, "shared": SharedDistrict(con.cursor()), "micro": micro, "parent": parent,
           "spots": spots, "case": case}
    store.close()


def test_the_leader_colours_the_micro_grids_by_todays_patrol_coverage(patrolled):
    shared, micro = patrolled["shared"], patrolled["micro"]
    app = DistrictApp(patrolled["store"].con.cursor(), shared, principal=Principal("lu.ming", "leader"))
    app.colour_by = "coverage"
    legend = app.view.legend
    assert legend["title"] == "Patrol coverage today"
    assert [text for _, text in legend["items"]] == ["full (95 % and more)", "80-95 %", "50-80 %", "under 50 %",
                                                     "not patrolled", "outside any grid"]
    rgb = colours_rgb(app.view.colors)
    hexes = np.array([f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb])
    full, none = COVERAGE_CLASSES[-1][1], COVERAGE_CLASSES[0][1]
    grids = shared.layer.grid_id
    assert set(hexes[grids == micro]) == {full}, "every building of the walked micro-grid passed"
    walked_near = set(shared.coverage().query("passed > 0")["grid_id"])
    far = [g for g in set(grids) - walked_near if g is not None]
    assert far and set(hexes[np.isin(grids, far)]) <= {none}, "micro-grids nobody passed are 'not patrolled'"
    assert set(hexes[pd.isna(grids)]) <= {OUTSIDE_GRIDS}


def test_the_grid_card_says_todays_coverage(patrolled):
    app = DistrictApp(patrolled["store"].con.cursor(), patrolled["shared"], principal=Principal("lu.ming", "leader"))
    buildings = len(patrolled["spots"])
    app.inspector.show_grid(patrolled["micro"])
    assert (f"<th>patrol coverage today</th><td>100 % ({buildings} of {buildings} buildings passed) · full</td>"
            in app.inspector.card.object)
    app.inspector.show_grid(patrolled["parent"])
    under = patrolled["shared"].coverage()
    assert "patrol coverage today" in app.inspector.card.object and under["buildings"].sum() > buildings


def test_the_operator_sees_the_workers_on_patrol_with_their_load_and_their_cards(patrolled):
    store, shared, micro = patrolled["store"], patrolled["shared"], patrolled["micro"]
    op = DistrictApp(store.con.cursor(), shared, principal=Principal("op", "operator", (patrolled["parent"],)))
    op.show_workers(op._read_workers())
    records = np.frombuffer(op.view.workers, dtype="<f4").reshape(-1, 4)
    ox, oy, _ = shared.layer.origin
    x, y = patrolled["spots"][0]
    assert op.view.worker_names == ["w1"]
    assert records[0, :2] == pytest.approx([x + 5 - ox, y - oy], abs=0.01), "their last position, from the origin"
    load = store.con.execute("SELECT count(*) FROM cases WHERE grid_id = ? AND status IN ('reported', 'dispatched', "
                             "'in_progress', 'reopened', 'accepted', 'on_site')", [micro]).fetchone()[0]
    assert records[0, 3] == load >= 1
    op.view.pick = {"kind": "worker", "index": 0, "seq": 1}
    card = op.inspector.card.object
    assert "Grid worker w1" in card and patrolled["case"] in card and "last check-in" in card
    other, = store.con.execute("SELECT grid_id FROM grids WHERE level = 'grid' AND valid_to IS NULL AND grid_id <> ? "
                               "ORDER BY grid_id LIMIT 1", [patrolled["parent"]]).fetchone()
    stranger = DistrictApp(store.con.cursor(), shared, principal=Principal("op2", "operator", (other,)))
    assert stranger._read_workers().empty, "another grid's operator sees no one of this grid"
    stranger.inspector.show_worker("w1")
    assert "outside op2&#x27;s grids" in stranger.inspector.card.object
    leader = DistrictApp(store.con.cursor(), shared, principal=Principal("lu.ming", "leader"))
    assert not leader._sees_workers, "positions are for the operators of their grids"
