"""The departments and their list of duties: import and export, refusals of bad files, dispatch by the list or by
hand, escalation to the street leader, reassignment, and the figures per department, on both backends."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pandas as pd
import pytest

from data.loop import DEMO_DUTIES
from tests.conftest import ROOT, store_fingerprint
from twin.access.access import Principal, add_user
from twin.access.policy import Gate
from twin.cases.cases import assign_worker, create_case, duty_for, load_taxonomy, record_transition
from twin.cases.duties import (DUTY_FIELDS, department_figures, duties_frame, escalated_cases, export_duties,
                               import_duties)
from twin.errors import InputError
from twin.store.store import Store, open_for_command

T0 = pd.Timestamp("2026-11-20 08:00")  # the scenarios' dispatches; the demo's clock (meta.now) is 2026-11-26 09:00


def read_rows(path) -> list[dict]:
    if str(path).endswith(".json"):
        return json.loads(path.read_text(encoding="utf-8"))
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path, rows: list[dict], fields=DUTY_FIELDS) -> None:
    if str(path).endswith(".json"):
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        return
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_the_demo_ships_a_duties_list_for_its_24_categories(small_demo):
    categories = {c["code"] for c in load_taxonomy()["categories"]}
    rows = read_rows(DEMO_DUTIES)
    assert len(categories) == 24 and {r["kind"] for r in rows} == categories
    with Store(small_demo, read_only=True) as store:
        listed = duties_frame(store.con)
        names = set(store.con.execute("SELECT name FROM departments").df()["name"])
        users = dict(store.con.execute("SELECT username, department FROM users WHERE role = 'department'").fetchall())
        dispatched, = store.con.execute("SELECT count(*) FROM cases WHERE department IS NULL AND case_id IN "
                                        "(SELECT case_id FROM case_events WHERE to_status = 'dispatched')").fetchone()
    assert set(listed["kind"]) == categories and listed["deadline_hours"].gt(0).all()
    assert {"城市管理局", "生态环境局", "住建局", "消防救援", "公安", "市场监管"} <= names
    assert users["dept-cgj"] == "cgj" and len(users) >= 6
    assert dispatched == 0, "every dispatched demo case went to its category's department"


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_the_list_goes_out_and_back_in_and_an_edit_takes_effect(demo_copy_db, tmp_path, suffix):
    out = tmp_path / f"duties{suffix}"
    with Store(demo_copy_db) as store:
        summary = export_duties(store.con, out)
        before = duties_frame(store.con)
    assert summary["duties"] == 24 and summary["format"] == suffix[1:]
    rows = read_rows(out)
    assert [r["kind"] for r in rows] == sorted(r["kind"] for r in rows) and set(rows[0]) == set(DUTY_FIELDS)
    # Fire safety's corridor clutter goes to the housing bureau within 6 hours: a subcategory overrides its category.
    rows.append({"kind": "fire_safety.corridor_clutter", "department_id": "zjj", "department": "住建局",
                 "deadline_hours": 6, "escalation_hours": 1, "department_phone": ""})
    write_rows(out, rows)
    with open_for_command(demo_copy_db) as store:
        done = import_duties(store.con, out, actor="tester", source="test")
    assert done["added"] == ["fire_safety.corridor_clutter"] and done["removed"] == [] and done["uncovered"] == []
    with Store(demo_copy_db, read_only=True) as store:
        con = store.con
        assert duty_for(con, "fire_safety.corridor_clutter")["department_id"] == "zjj"
        assert duty_for(con, "fire_safety.extinguisher")["department_id"] == "xfjy"  # its category's
        after = duties_frame(con).query("kind != 'fire_safety.corridor_clutter'").reset_index(drop=True)
        pd.testing.assert_frame_equal(after, before)
        trail = con.execute("SELECT actor, detail FROM audit WHERE action = 'duties.import' ORDER BY seq DESC "
                            "LIMIT 1").fetchone()
    assert trail[0] == "tester" and json.loads(trail[1])["added"] == ["fire_safety.corridor_clutter"]


GOOD = {"kind": "city_appearance", "department_id": "cgj", "department": "城市管理局", "deadline_hours": "24",
        "escalation_hours": "12"}
BAD_ROWS = [
    ({"kind": "street_vendors"}, "row 3: kind 'street_vendors' is no category or subcategory"),
    ({"kind": "city_appearance"}, "row 3: kind 'city_appearance' is given again (first in row 2)"),
    ({"kind": "water", "department_id": "Water Bureau"}, "row 3: department_id 'Water Bureau': use 1-32 lower-case"),
    ({"kind": "water", "department": ""}, "row 3: department is empty; give the department's name"),
    ({"kind": "water", "department": "城管局"}, "row 3: department 'cgj' is named '城管局' here and '城市管理局' in row 2"),
    ({"kind": "water", "deadline_hours": "0"}, "row 3: deadline_hours '0': give the hours the department has"),
    ({"kind": "water", "deadline_hours": "soon"}, "row 3: deadline_hours 'soon'"),
    ({"kind": "water", "escalation_hours": "-2"}, "row 3: escalation_hours '-2': give the hours past the deadline"),
]


@pytest.mark.parametrize("change, words", BAD_ROWS, ids=[f"{k}-{w.split(':')[1].split()[0]}"
                                                         for k, (_, w) in enumerate(BAD_ROWS)])
def test_a_bad_row_is_named_with_its_fix_and_the_store_is_unchanged(demo_copy_db, tmp_path, change, words):
    path = tmp_path / "duties.csv"
    write_rows(path, [GOOD, {**GOOD, **change}])
    before = store_fingerprint(demo_copy_db)
    with pytest.raises(InputError, match="nothing was imported") as refused, open_for_command(demo_copy_db) as store:
        import_duties(store.con, path, actor="tester")
    assert words in str(refused.value) and str(path) in str(refused.value)
    assert store_fingerprint(demo_copy_db) == before


@pytest.mark.parametrize("name, text, words", [
    ("duties.csv", "kind,department_id,department,deadline_hours\ncity_appearance,cgj,城管,24\n",
     "no column escalation_hours"),
    ("duties.csv", "kind,department_id,department,deadline_hours,escalation_hours,colour\n", "unknown column colour"),
    ("duties.json", "{\"kind\": 1}", "a list of objects"),
    ("duties.json", "[{\"kind\": ", "not JSON"),
    ("duties.xlsx", "", "a duties file is .csv or .json"),
    ("missing.csv", None, "no such file"),
])
def test_a_bad_file_is_refused_with_its_fix(demo_copy, tmp_path, name, text, words):
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    before = store_fingerprint(demo_copy)
    with pytest.raises(InputError, match=words), open_for_command(demo_copy) as store:
        import_duties(store.con, path, actor="tester")
    assert store_fingerprint(demo_copy) == before


def test_the_command_line_moves_the_list_and_refuses_a_bad_one(demo_copy, tmp_path):
    def twin(*args):
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), "duties", *args, "--db", str(demo_copy),
                               "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)

    out = tmp_path / "list.json"
    exported = twin("export", str(out))
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["duties"] == 24 and len(json.loads(out.read_text())) == 24
    imported = twin("import", str(out))
    assert imported.returncode == 0 and json.loads(imported.stdout)["departments"] == 15
    bad = tmp_path / "bad.csv"
    write_rows(bad, [{**GOOD, "kind": "nope"}])
    refused = twin("import", str(bad))
    assert refused.returncode == 2 and "row 2: kind 'nope'" in refused.stderr


# ---------------------------------------------------------------- dispatching, escalating, reassigning

def a_case(con, *, kind: str = "sanitation.garbage_overflow", grid: str | None = None, at=T0) -> dict:
    """A new case at a building (of ``grid`` when given), reported at ``at``."""
    where = "WHERE grid_id = ?" if grid else ""
    x, y = con.execute(f"SELECT label_x, label_y FROM buildings {where} ORDER BY building_id LIMIT 1",
                       [grid] if grid else []).fetchone()
    return create_case(con, subcategory_code=kind, source="patrol", x=x, y=y, reported_at=at)


def hand_up(con, case_id: str, *, worker: str = "worker1", at=T0) -> None:
    for step in ("accepted", "on_site", "handed_up"):
        record_transition(con, case_id, step, actor=worker, at=at, note="needs the bureau" if step == "handed_up"
                          else None)


def test_a_handed_up_case_goes_by_the_list_with_its_deadline(demo_copy_db):
    with open_for_command(demo_copy_db) as store:
        con = store.con
        case = a_case(con)
        hand_up(con, case["case_id"])
        assert con.execute("SELECT assigned_worker FROM cases WHERE case_id = ?", [case["case_id"]]).fetchone() == (
            "worker1",), "accepting makes the worker the case's"
        event = record_transition(con, case["case_id"], "dispatched", actor="operator", at=T0)
        row = con.execute("SELECT status, department, deadline FROM cases WHERE case_id = ?",
                          [case["case_id"]]).fetchone()
    assert event["department"] == "cgj" and event["note"] == "城市管理局", "sanitation is the city bureau's (24 h)"
    assert row == ("dispatched", "cgj", (T0 + pd.Timedelta(hours=24)).to_pydatetime())


def test_dispatching_by_hand_needs_a_known_department_and_a_reason(demo_copy_db):
    with open_for_command(demo_copy_db) as store:
        case_id = a_case(store.con)["case_id"]
        hand_up(store.con, case_id)
    before = store_fingerprint(demo_copy_db)
    for department, note, words in [("sthjj", None, "needs a reason of at least 5 characters"),
                                    ("sthjj", "odd", "needs a reason"), ("nobody", "it is theirs", "no department")]:
        with pytest.raises(InputError, match=words), open_for_command(demo_copy_db) as store:
            record_transition(store.con, case_id, "dispatched", actor="operator", department=department, note=note)
    assert store_fingerprint(demo_copy_db) == before
    with open_for_command(demo_copy_db) as store:
        event = record_transition(store.con, case_id, "dispatched", actor="operator", department="sthjj",
                                  note="the bins leak into the river", at=T0)
        department, deadline = store.con.execute("SELECT department, deadline FROM cases WHERE case_id = ?",
                                                 [case_id]).fetchone()
    assert department == "sthjj" and event["note"] == "生态环境局: the bins leak into the river"
    assert deadline == (T0 + pd.Timedelta(hours=24)).to_pydatetime(), "the kind's hours, whoever takes it"


def test_a_kind_off_the_list_is_dispatched_by_hand_only(demo_copy_db):
    with open_for_command(demo_copy_db) as store:
        store.con.execute("DELETE FROM duties WHERE kind = 'sanitation'")
        case_id = a_case(store.con)["case_id"]
        hand_up(store.con, case_id)
    with pytest.raises(InputError, match="names no department for 'sanitation.garbage_overflow'.*by hand"), \
            open_for_command(demo_copy_db) as store:
        record_transition(store.con, case_id, "dispatched", actor="operator")
    with open_for_command(demo_copy_db) as store:
        event = record_transition(store.con, case_id, "dispatched", actor="operator", department="cgj",
                                  note="no duty: the city bureau", at=T0)
        deadline, = store.con.execute("SELECT deadline FROM cases WHERE case_id = ?", [case_id]).fetchone()
    hours = next(s["deadline_hours"] for s in load_taxonomy()["subcategories"]
                 if s["code"] == "sanitation.garbage_overflow")
    assert event["department"] == "cgj" and deadline == (T0 + pd.Timedelta(hours=hours)).to_pydatetime()


def test_overdue_cases_past_their_escalation_go_to_the_street_leader(demo_copy_db):
    with open_for_command(demo_copy_db) as store:
        con = store.con
        con.execute("UPDATE cases SET department = NULL, deadline = NULL")  # only this test's cases are departments'
        now = pd.Timestamp(con.execute("SELECT value FROM meta WHERE key = 'now'").fetchone()[0])
        cases = {}
        # sanitation: 24 h to handle, 12 h more before escalation
        for name, dispatched in [("escalated", now - pd.Timedelta(hours=37)), ("overdue", now - pd.Timedelta(hours=30)),
                                 ("in_time", now - pd.Timedelta(hours=2))]:
            cases[name] = a_case(con, at=dispatched)["case_id"]
            hand_up(con, cases[name], at=dispatched)
            record_transition(con, cases[name], "dispatched", actor="operator", at=dispatched)
    with Store(demo_copy_db, read_only=True) as store:
        listed = escalated_cases(store.con)
        leader = Gate(store.con, Principal("street.leader", "leader")).case_list(escalated=True)
        figures = department_figures(store.con).set_index("department_id")
    assert list(listed["case_id"]) == [cases["escalated"]] == list(leader["case_id"])
    assert listed["overdue_h"].iloc[0] == pytest.approx(13.0) and leader["department"].iloc[0] == "cgj"
    assert figures.loc["cgj", ["open", "overdue", "escalated"]].tolist() == [3, 2, 1]


def test_a_case_is_reassigned_to_another_worker_with_a_reason_and_audited(demo_copy_db):
    with open_for_command(demo_copy_db) as store:
        con = store.con
        case_id = a_case(con)["case_id"]
        record_transition(con, case_id, "accepted", actor="worker1")
        for wrong, reason, words in [("worker2", "", "needs a reason"), ("operator", "busy elsewhere",
                                                                         "not an enabled grid worker"),
                                     ("nobody", "busy elsewhere", "not an enabled grid worker")]:
            with pytest.raises(InputError, match=words):
                assign_worker(con, case_id, wrong, actor="operator", reason=reason)
        done = assign_worker(con, case_id, "worker2", actor="operator", reason="worker1 is on leave", source="10.0.0.9")
        row = con.execute("SELECT assigned_worker, status FROM cases WHERE case_id = ?", [case_id]).fetchone()
        last = con.execute("SELECT from_status, to_status, note FROM case_events WHERE case_id = ? AND "
                           "from_status = to_status", [case_id]).fetchall()
        trail = con.execute("SELECT actor, target, detail, source FROM audit WHERE action = 'case.assign'").fetchall()
    assert done["previous"] == "worker1" and row == ("worker2", "accepted")
    assert last == [("accepted", "accepted", "reassigned from worker1 to worker2: worker1 is on leave")]
    assert [(a, t, json.loads(d)["reason"], s) for a, t, d, s in trail] == [
        ("operator", case_id, "worker1 is on leave", "10.0.0.9")]


def test_the_figures_per_department_by_hand(demo_copy_db):
    """A scenario small enough to count by hand: the city bureau handles A in 2 h, and B in 6 h and, reopened,
    in 1 h more (median 2 h, mean 3 h; one of two reopened); C waits past its deadline; the reporter of A is
    satisfied and of B not."""
    hours = pd.Timedelta(hours=1)
    with open_for_command(demo_copy_db) as store:
        con = store.con
        for table in ("cases", "case_events", "evaluations"):
            con.execute(f"DELETE FROM {table}")
        a, b, c = (a_case(con, at=T0)["case_id"] for _ in range(3))
        for case_id in (a, b, c):
            hand_up(con, case_id)
            record_transition(con, case_id, "dispatched", actor="operator", at=T0)
        record_transition(con, a, "in_progress", actor="dept-cgj", at=T0 + hours)
        record_transition(con, a, "resolved", actor="dept-cgj", at=T0 + 2 * hours)
        record_transition(con, b, "in_progress", actor="dept-cgj", at=T0 + hours)
        record_transition(con, b, "resolved", actor="dept-cgj", at=T0 + 6 * hours)
        record_transition(con, b, "reopened", actor="reporter", at=T0 + 7 * hours, note="still overflowing")
        record_transition(con, b, "dispatched", actor="operator", at=T0 + 8 * hours)
        record_transition(con, b, "in_progress", actor="dept-cgj", at=T0 + 8.5 * hours)
        record_transition(con, b, "resolved", actor="dept-cgj", at=T0 + 9 * hours)
        for case_id, result in ((a, "satisfied"), (b, "not_satisfied"), (b, "default")):
            con.execute("INSERT INTO evaluations (case_id, \"at\", result, via, department) VALUES (?, ?, ?, 'test', "
                        "'cgj')", [case_id, T0, result])
    with Store(demo_copy_db, read_only=True) as store:
        figures = department_figures(store.con, now=T0 + 30 * hours).set_index("department_id")
    cgj = figures.loc["cgj"]
    assert (cgj["open"], cgj["overdue"], cgj["escalated"], cgj["handled"]) == (1, 1, 0, 3)
    assert cgj["median_handle_h"] == 2.0 and cgj["reopened_share"] == 50.0
    assert cgj["evaluated"] == 2 and cgj["satisfaction"] == 50.0, "the evaluation by default counts in neither"
    assert figures.drop(index="cgj")[["open", "handled", "evaluated"]].eq(0).all().all()
    assert figures.drop(index="cgj")["median_handle_h"].isna().all()
