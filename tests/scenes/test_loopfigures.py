"""The field loop on the leader's screen: the escalated cases' door and list, the figures per department and the
satisfaction per grid and grid worker, as the store's pure functions give them; in Chinese by default."""

from __future__ import annotations

import pytest

from scenes.i18n import use
from scenes.screens import DistrictApp
from scenes.shared import SharedDistrict
from twin.access.access import Principal
from twin.cases.duties import department_figures, escalated_cases
from twin.cases.evaluations import satisfaction
from twin.store.store import Store


@pytest.fixture(scope="module")
def store(small_demo):
    with Store(small_demo, read_only=True) as s:
        yield s


@pytest.fixture(scope="module")
def shared(store):
    return SharedDistrict(store.con.cursor())


def leader_app(store, shared) -> DistrictApp:
    app = DistrictApp(store.con.cursor(), shared, principal=Principal("street.leader", "leader"))
    app.show_panels()
    return app


def test_the_leaders_screen_shows_the_departments_figures(store, shared):
    app = leader_app(store, shared)
    assert app.loop.__panel__() in app._left.objects, "below the per-grid table"
    figures = department_figures(store.con)
    titles = [c[0] for c in app.loop.departments.columns]
    assert titles == ["Department", "Open", "Overdue", "Escalated", "Median hours to handle", "Reopened %",
                      "Satisfaction %"]
    rows = {r[0]: r for r in app.loop.departments.rows}
    assert set(rows) == set(figures["name"]) and len(rows) == 15
    city = figures.set_index("name").loc["城市管理局"]
    open_city, = store.con.execute("SELECT count(*) FROM cases WHERE department = 'cgj' AND status IN ('reported', "
                                   "'dispatched', 'in_progress', 'reopened', 'accepted', 'on_site', "
                                   "'handed_up')").fetchone()
    assert rows["城市管理局"][1] == open_city == city["open"]
    assert rows["城市管理局"][4] == city["median_handle_h"] > 0 and rows["城市管理局"][6] == city["satisfaction"]
    assert rows["党群服务中心"][4] is None, "no handled case: no median, an empty cell"


def test_the_escalated_door_opens_the_street_leaders_list(store, shared):
    app = leader_app(store, shared)
    escalated = escalated_cases(store.con)
    assert len(escalated) >= 1
    card = app.loop.escalated.object
    assert "Escalated by departments" in card and f">{len(escalated)}<" in card
    app.loop.escalated.clicks += 1
    assert app.drilldown.kind == "escalated"
    assert [r[0] for r in app.drilldown.table.rows] == escalated["case_id"].tolist()
    names = dict(store.con.execute("SELECT department_id, name FROM departments").fetchall())
    assert app.drilldown.table.rows[0][2] == names[escalated["department"].iloc[0]]
    assert app.drilldown.table.rows[0][5], "each says how long past the department's deadline"
    app.drilldown.table.clicked = {"row": 0, "seq": 1}
    assert f"Case {escalated['case_id'].iloc[0]}" in app.inspector.card.object


def test_satisfaction_per_grid_follows_the_level_and_per_worker_on_request(store, shared):
    app = leader_app(store, shared)
    per_grid = satisfaction(store.con, by="grid", level="grid")
    assert [r[0] for r in app.loop.satisfaction.rows] == per_grid["name"].tolist()
    assert [r[1] for r in app.loop.satisfaction.rows] == per_grid["satisfaction"].tolist()
    app.level = "community"
    per_community = satisfaction(store.con, by="grid", level="community")
    assert [r[0] for r in app.loop.satisfaction.rows] == per_community["name"].tolist()
    assert sum(r[2] for r in app.loop.satisfaction.rows) == per_grid["answered"].sum(), "the same answers, rolled up"
    app.loop.choose.value = "worker"
    assert [r[0] for r in app.loop.satisfaction.rows] == satisfaction(store.con, by="worker")["name"].tolist()


def test_the_loop_figures_speak_chinese_by_default(store, shared):
    use("zh")
    app = leader_app(store, shared)
    assert [c[0] for c in app.loop.departments.columns][-1] == "满意率 %"
    assert "部门超时升级" in app.loop.escalated.object
    assert list(app.loop.choose.options) == ["按网格", "按网格员"]
