"""The volunteer scheme on the leader's screen as Panel objects, without a browser: the colourings by volunteer
hours and points this month, the communities ranked, and the newest completed tasks in the ticker."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.layers import VOLUNTEER_MEASURES
from scenes.screens import DistrictApp
from scenes.shared import SharedDistrict
from tests.conftest import copy_of
from twin.access.access import Principal
from twin.store.store import Store
from twin.volunteers.figures import community_ranking, newest_completed, volunteer_table


@pytest.fixture(scope="module")
def store(small_demo, tmp_path_factory):
    with Store(copy_of(small_demo, tmp_path_factory.mktemp("volunteerboard"))) as s:
        yield s


@pytest.fixture
def app(store):
    return DistrictApp(store.con.cursor(), SharedDistrict(store.con.cursor()), principal=Principal("lu.ming", "leader"))


def test_grids_are_coloured_by_volunteer_hours_and_points_this_month(app, store):
    table = volunteer_table(store.con, level="community").set_index("grid_id")
    assert table["points"].nunique() > 2, "the demo's communities differ"
    for measure in VOLUNTEER_MEASURES:
        app.level = "community"
        app.colour_by = measure
        legend = app.view.legend
        assert legend["title"].startswith(("Volunteer hours this month", "Volunteer points this month"))
        colours = np.frombuffer(app.view.colors, dtype=np.uint8).reshape(-1, 3)
        assert len(legend["items"]) > 2 and len({tuple(c) for c in colours}) > 2
    # the community with the most points and the one with the fewest are drawn in different colours
    best, worst = table["points"].idxmax(), table["points"].idxmin()
    tree = app.shared._tree.set_index("grid_id")
    micro = tree[tree["level"] == "micro"]["community"]
    grids = np.asarray(app.layer.grid_id)
    at = {c: np.flatnonzero(np.isin(grids, micro[micro == c].index))[0] for c in (best, worst)}
    assert tuple(colours[at[best]]) != tuple(colours[at[worst]])


def test_the_communities_are_ranked_and_the_ticker_leads_with_the_newest_tasks_done(app, store):
    app.show_panels()
    ranking = community_ranking(store.con)
    rows = app.volunteers.table.rows
    assert [r[1] for r in rows] == ranking["name"].tolist() and rows[0][0] == 1 and rows[0][2] == ranking["points"].max()
    assert app.volunteers._panel in app._left.objects
    app.volunteers.table.clicked = {"row": 0, "seq": 1}
    assert ranking["grid_id"].iloc[0] in app.inspector.card.object or ranking["name"].iloc[0] in app.inspector.card.object
    done = newest_completed(store.con, limit=3)
    assert [i[0] for i in app.ticker.items[:3]] == [f"task|{t['task_id']}" for t in done]
    assert app.ticker.items[3][0].startswith(("C", "ZD"))  # then the cases
    app.ticker.clicked = {"case_id": app.ticker.items[0][0], "seq": 1}  # flies to the task's place
    assert app.view.fly_frame is not None
