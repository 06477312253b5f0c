"""The field loop's roles: a department sees and acts on its own cases only and never on residents; a grid worker
sees its micro-grids' cases and those given to it, and takes only its own steps."""

from __future__ import annotations

import pytest

from twin.access.access import Principal, add_user, find_user, set_grants
from twin.access.policy import Gate
from twin.cases.cases import assign_worker, create_case, record_transition
from twin.cases.open311 import find_requests
from twin.errors import AccessError, InputError
from twin.store.store import Store, open_for_command

CITY = Principal("dept-cgj", "department", (), "10.2.2.2", department="cgj")


@pytest.fixture
def store(demo_copy):
    with Store(demo_copy) as s:
        yield s


def cases_of(con, department: str, *, status: str | None = None) -> list[str]:
    where = "" if status is None else f" AND status = '{status}'"
    return [r[0] for r in con.execute(f"SELECT case_id FROM cases WHERE department = ?{where} ORDER BY case_id",
                                      [department]).fetchall()]


def refusals(con, actor: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT target FROM audit WHERE action = 'access.refused' AND actor = ? "
                                      "ORDER BY seq", [actor]).fetchall()]


def test_a_department_sees_its_cases_and_not_another_departments(store):
    con = store.con
    gate = Gate(con, CITY)
    mine, theirs = cases_of(con, "cgj"), cases_of(con, "ga")
    assert mine and theirs
    card = gate.case_card(mine[0])
    assert card["department"] == "cgj" and card["department_name"] == "城市管理局" and card["description"]
    with pytest.raises(AccessError, match="not dispatched to dept-cgj's department \\(cgj\\)"):
        gate.case_card(theirs[0])
    assert refusals(con, "dept-cgj") == [theirs[0]], "the refusal is audited"
    listed = set(gate.case_list(statuses=("closed", "evaluated", "in_progress", "dispatched"))["case_id"])
    assert listed and listed <= set(mine)
    assert {r["id"] for r in gate.search(mine[0]) if r["kind"] == "case"} == {mine[0]}
    assert not [r for r in gate.search(theirs[0]) if r["kind"] == "case"]
    api = find_requests(gate, {}, district_crs="EPSG:4547")
    assert api and {r["service_request_id"] for r in api} <= set(mine), "a department's API key reads its cases"
    undepartmented, = con.execute("SELECT case_id FROM cases WHERE department IS NULL LIMIT 1").fetchone()
    with pytest.raises(AccessError):
        gate.case_card(undepartmented)


def test_a_department_sees_no_residents(store):
    con = store.con
    gate = Gate(con, CITY)
    building, resident = con.execute("SELECT building_id, resident_id FROM residents LIMIT 1").fetchone()
    for read in (lambda: gate.residents_page(building), lambda: gate.export_residents(building),
                 lambda: gate.unmask(resident, reason="calling about a case")):
        with pytest.raises(AccessError, match="may not see resident records"):
            read()
    card = gate.building_card(building)
    assert not card["may_see_residents"]
    grid, = con.execute("SELECT grid_id FROM cases WHERE status IN ('reported', 'dispatched', 'in_progress') "
                        "ORDER BY case_id LIMIT 1").fetchone()
    assert not Gate(con, Principal("op", "operator", (grid,))).grid_card(grid)["cases"].empty
    assert gate.grid_card(grid)["cases"].empty, "a grid's cases are not a department's to see"


def dispatched_case(con, kind: str) -> str:
    """A case of ``kind`` handed up by a worker and dispatched by the duties list."""
    x, y = con.execute("SELECT label_x, label_y FROM buildings ORDER BY building_id LIMIT 1").fetchone()
    case_id = create_case(con, subcategory_code=kind, source="patrol", x=x, y=y)["case_id"]
    for step in ("accepted", "on_site", "handed_up", "dispatched"):
        record_transition(con, case_id, step, actor="worker1")
    return case_id


def test_a_department_takes_its_own_steps_only(store):
    con = store.con
    gate = Gate(con, CITY)
    ours, theirs = dispatched_case(con, "sanitation.garbage_overflow"), dispatched_case(con, "traffic.illegal_parking")
    assert gate.case_card(ours)["next_statuses"] == ["in_progress"]
    gate.check_act(ours, "in_progress")
    with pytest.raises(AccessError, match="may not move case .* from dispatched to rejected"):
        gate.check_act(ours, "rejected")
    with pytest.raises(AccessError, match="not dispatched to dept-cgj's department"):
        gate.check_act(theirs, "in_progress")
    record_transition(con, ours, "in_progress", actor="dept-cgj")
    assert gate.case_card(ours)["next_statuses"] == ["resolved"]
    operator = Gate(con, Principal("op", "operator", ("S01",)))
    assert "rejected" in operator.case_card(theirs)["next_statuses"], "the operator's desk keeps every step"


def test_a_worker_sees_its_grid_and_its_assigned_cases_and_takes_its_own_steps(store):
    con = store.con
    grid = "S01-C01-G1-M001"
    x, y = con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id = ? LIMIT 1", [grid]).fetchone()
    here = create_case(con, subcategory_code="sanitation.garbage_overflow", source="patrol", x=x, y=y)["case_id"]
    fx, fy = con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id LIKE 'S02%' LIMIT 1").fetchone()
    far = create_case(con, subcategory_code="sanitation.garbage_overflow", source="patrol", x=fx, y=fy)["case_id"]
    worker = Gate(con, find_user(con, "worker1"))
    assert worker.case_card(here)["next_statuses"] == ["accepted"]
    with pytest.raises(AccessError, match="outside worker1's grids"):
        worker.case_card(far)
    record_transition(con, far, "accepted", actor="worker2")
    assign_worker(con, far, "worker1", actor="operator", reason="worker2 is ill today")
    assert worker.case_card(far)["next_statuses"] == ["on_site", "handed_up"], "given to it: its to see and act on"
    assert far in set(worker.case_list()["case_id"]) and here in set(worker.case_list()["case_id"])
    with pytest.raises(AccessError, match="from reported to dispatched; that step is another role's"):
        worker.check_act(here, "dispatched")
    held, = con.execute("SELECT case_id FROM cases WHERE status = 'dispatched' AND department IS NOT NULL "
                        "LIMIT 1").fetchone()
    held_grid, = con.execute("SELECT grid_id FROM cases WHERE case_id = ?", [held]).fetchone()
    holder = Gate(con, Principal("w", "worker", (held_grid,)))
    assert holder.case_card(held)["next_statuses"] == [], "a case a department holds is not a worker's to accept"


def test_department_and_worker_users_are_bound_as_their_roles_need(store):
    con = store.con
    with pytest.raises(InputError, match="bound to one department: give --department"):
        add_user(con, "dept-x", "a long password 1", role="department")
    with pytest.raises(InputError, match="no department 'nowhere'"):
        add_user(con, "dept-x", "a long password 1", role="department", department="nowhere")
    with pytest.raises(InputError, match="role worker is bound to grids"):
        add_user(con, "w-x", "a long password 1", role="worker")
    with pytest.raises(InputError, match="binds only a user of role department"):
        add_user(con, "l-x", "a long password 1", role="leader", department="cgj")
    add_user(con, "dept-x", "a long password 1", role="department", department="sthjj")
    assert find_user(con, "dept-x") == Principal("dept-x", "department", (), department="sthjj")
    set_grants(con, "dept-x", role="department", grids=[], department="ga")
    assert find_user(con, "dept-x").department == "ga"
    set_grants(con, "dept-x", role="leader", grids=[])
    assert find_user(con, "dept-x").department is None


def test_an_open311_key_of_a_department_user_reads_its_cases(demo_copy):
    from twin.access.policy import client_principal

    with open_for_command(demo_copy) as store:
        principal = client_principal(store.con, "dept-ga", source="10.0.0.1")
        found = find_requests(Gate(store.con, principal), {}, district_crs="EPSG:4547")
        mine = set(cases_of(store.con, "ga"))
    assert principal.department == "ga" and found and {r["service_request_id"] for r in found} <= mine


def test_a_cases_photos_are_seen_by_who_sees_the_case_only(store):
    """``Gate.check_case`` (the photos' door) follows the case's own rule: a department its own cases, not every
    case because it is bound to no grid."""
    con = store.con
    gate = Gate(con, CITY)
    mine, theirs = cases_of(con, "cgj"), cases_of(con, "ga")
    gate.check_case(mine[0])
    with pytest.raises(AccessError, match="not dispatched to dept-cgj's department"):
        gate.check_case(theirs[0])
    undepartmented, = con.execute("SELECT case_id FROM cases WHERE department IS NULL LIMIT 1").fetchone()
    with pytest.raises(AccessError):
        gate.check_case(undepartmented)
    assert refusals(con, "dept-cgj") == [theirs[0], undepartmented]
    grid, = con.execute("SELECT grid_id FROM cases WHERE case_id = ?", [undepartmented]).fetchone()
    Gate(con, Principal("op", "operator", (grid,))).check_case(undepartmented)


def test_a_worker_sees_the_residents_of_its_micro_grids_only_masked_and_audited(store):
    con = store.con
    mine, here = con.execute("SELECT grid_id, building_id FROM residents JOIN buildings USING (building_id) "
                             "GROUP BY ALL ORDER BY count(*) DESC LIMIT 1").fetchone()
    add_user(con, "w-res", "a long password 1", role="worker", grids=[mine])
    gate = Gate(con, find_user(con, "w-res"))
    there, = con.execute("SELECT building_id FROM residents JOIN buildings USING (building_id) WHERE grid_id <> ? "
                         "LIMIT 1", [mine]).fetchone()
    shown = gate.residents_page(here, page_size=1000)
    clear = dict(con.execute("SELECT resident_id, phone FROM residents WHERE building_id = ?", [here]).fetchall())
    assert len(shown) == len(clear) > 0
    assert all("****" in p and p != clear[r] for r, p in zip(shown["resident_id"], shown["phone"]) if clear[r])
    assert shown["id_number"].str.contains(r"\*{8}").all(), "ID numbers masked as the operators see them"
    assert gate.building_card(here)["may_see_residents"] and not gate.building_card(there)["may_see_residents"]
    with pytest.raises(AccessError, match="outside w-res's grids"):
        gate.residents_page(there)
    audited = con.execute("SELECT action, target FROM audit WHERE actor = 'w-res' ORDER BY seq").fetchall()
    assert audited == [("residents.view", here), ("access.refused", there)]
