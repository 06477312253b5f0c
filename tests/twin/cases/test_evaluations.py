"""Residents evaluate: the one-use token of an Open311 receipt, its answers and their effects on the case, the
evaluation by default, what Open311 says of it, and the satisfaction per grid, worker and department."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest

from tests.conftest import store_fingerprint
from twin.access.access import Principal
from twin.access.policy import Gate
from twin.cases.cases import record_transition
from twin.cases.evaluations import (EvaluationError, answer_evaluation, satisfaction, sweep_evaluations, token_case,
                                    token_hash)
from twin.cases.open311 import find_requests, submit_request, to_xml
from twin.errors import InputError
from twin.geo.crs import transform_xy
from twin.store.clock import store_now
from twin.store.store import Store, open_for_command

T0 = pd.Timestamp("2026-11-20 08:00")
DAY = pd.Timedelta(days=1)


def report(db, *, grid: str = "S01-C01-G1-M001") -> tuple[str, str]:
    """A resident's Open311 report at a building of ``grid``: (case id, the receipt's token)."""
    with open_for_command(db) as store:
        x, y = store.con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id = ? ORDER BY building_id "
                                 "LIMIT 1", [grid]).fetchone()
        lon, lat = transform_xy(np.array([[x, y]]), "EPSG:4547", "EPSG:4326")[0]
        reply = submit_request(store.con, {"service_code": "sanitation.garbage_overflow", "lat": f"{lat:.7f}",
                                           "long": f"{lon:.7f}", "description": "垃圾桶满了"}, district_crs="EPSG:4547",
                               reported_at=T0 - DAY)
    return reply["service_request_id"], reply["evaluation_token"]


def handle(db, case_id: str, *, at=T0, worker: str = "worker1") -> None:
    """The grid worker takes the case on and handles it (resolved at ``at``)."""
    with open_for_command(db) as store:
        for hours_before, step in ((2, "accepted"), (1, "on_site"), (0, "resolved")):
            record_transition(store.con, case_id, step, actor=worker, at=at - pd.Timedelta(hours=hours_before))


def answer(db, token: str, **kw) -> dict:
    with open_for_command(db) as store:
        return answer_evaluation(store.con, token, source="10.9.9.9", now=kw.pop("now", T0 + DAY), **kw)


def history(db, case_id: str) -> list[tuple]:
    with Store(db, read_only=True) as store:
        return store.con.execute('SELECT to_status, actor, note FROM case_events WHERE case_id = ? ORDER BY "at", '
                                 "to_status = 'closed'", [case_id]).fetchall()


def test_the_receipt_carries_a_token_the_store_keeps_only_hashed(demo_copy_db):
    case_id, token = report(demo_copy_db)
    with Store(demo_copy_db, read_only=True) as store:
        rows = store.con.execute("SELECT token_hash, expires_at, used_at FROM evaluation_tokens WHERE case_id = ?",
                                 [case_id]).fetchall()
        kept = " ".join(str(v) for t in store.con.execute("SELECT * FROM evaluation_tokens").fetchall() for v in t)
        shown = token_case(store.con, token)
    assert len(token) >= 20 and rows == [(token_hash(token), None, None)] and token not in kept
    assert shown["case_id"] == case_id and not shown["can_answer"] and shown["reason"] == "not_yet"


def test_a_token_answers_only_once_the_case_is_handled(demo_copy_db):
    case_id, token = report(demo_copy_db)
    before = store_fingerprint(demo_copy_db)
    with pytest.raises(EvaluationError, match="not handled yet") as refused:
        answer(demo_copy_db, token, satisfied=True)
    assert refused.value.reason == "not_yet" and store_fingerprint(demo_copy_db) == before
    with pytest.raises(EvaluationError, match="not known") as unknown:
        answer(demo_copy_db, token[:-1] + ("A" if token[-1] != "A" else "B"), satisfied=True)
    assert unknown.value.reason == "unknown" and store_fingerprint(demo_copy_db) == before


def test_not_satisfied_reopens_with_the_note_and_satisfied_next_time_closes(demo_copy_db):
    case_id, token = report(demo_copy_db)
    handle(demo_copy_db, case_id)
    with Store(demo_copy_db, read_only=True) as store:
        (record,) = find_requests(Gate(store.con, Principal("app", "leader")), {"service_request_id": case_id},
                                  district_crs="EPSG:4547")
    assert record["evaluation"]["asked"] and record["evaluation"]["choices"] == ["satisfied", "not_satisfied"]
    assert record["evaluation"]["question"] == "您反映的问题解决了吗？"
    assert record["evaluation"]["answer_by"] == "2026-11-23T08:00:00+08:00", "3 days after it was handled"
    xml = ElementTree.fromstring(to_xml([record], root="service_requests", item="request").split("?>", 1)[1])
    assert [c.text for c in xml.findall("request/evaluation/choices/choice")] == ["satisfied", "not_satisfied"]

    before = store_fingerprint(demo_copy_db)
    for note in (None, "   "):
        with pytest.raises(InputError, match="say what is still wrong"):
            answer(demo_copy_db, token, satisfied=False, note=note)
    with pytest.raises(InputError, match="at most 1000"):
        answer(demo_copy_db, token, satisfied=False, note="x" * 1001)
    assert store_fingerprint(demo_copy_db) == before, "a refused answer leaves no trace, and the token unused"

    first = answer(demo_copy_db, token, satisfied=False, note="还是满的，没人来")
    assert first["status"] == "reopened" and first["next_token"] and first["next_token"] != token
    with pytest.raises(EvaluationError, match="used already") as used:
        answer(demo_copy_db, token, satisfied=True)
    assert used.value.reason == "used"
    with pytest.raises(EvaluationError, match="not handled yet"):
        answer(demo_copy_db, first["next_token"], satisfied=True)

    handle(demo_copy_db, case_id, at=T0 + 2 * DAY, worker="worker2")
    second = answer(demo_copy_db, first["next_token"], satisfied=True, now=T0 + 2 * DAY)
    assert second == {"case_id": case_id, "result": "satisfied", "status": "closed", "next_token": None}
    steps = history(demo_copy_db, case_id)
    assert [s for s, _, _ in steps] == ["reported", "accepted", "on_site", "resolved", "reopened", "accepted",
                                        "on_site", "resolved", "evaluated", "closed"]
    assert steps[4] == ("reopened", "reporter", "not satisfied: 还是满的，没人来") and steps[8][:2] == (
        "evaluated", "reporter")
    with Store(demo_copy_db, read_only=True) as store:
        con = store.con
        kept = con.execute("SELECT result, note, via, grid_id, worker FROM evaluations WHERE case_id = ? "
                           'ORDER BY "at", result', [case_id]).fetchall()
        trail = [(a, t, json.loads(d)["result"], s) for a, t, d, s in con.execute(
            "SELECT actor, target, detail, source FROM audit WHERE action = 'case.evaluate' ORDER BY seq").fetchall()]
    assert kept == [("not_satisfied", "还是满的，没人来", "token", "S01-C01-G1-M001", "worker1"),
                    ("satisfied", None, "token", "S01-C01-G1-M001", "worker2")], "who handled it, as it stood"
    assert trail == [("reporter", case_id, "not_satisfied", "10.9.9.9"), ("reporter", case_id, "satisfied",
                                                                          "10.9.9.9")]


def test_a_token_expires_seven_days_after_the_case_is_handled(demo_copy_db):
    case_id, token = report(demo_copy_db)
    handle(demo_copy_db, case_id)
    with Store(demo_copy_db, read_only=True) as store:
        assert token_case(store.con, token, now=T0 + 7 * DAY - pd.Timedelta(seconds=1))["can_answer"]
        late = token_case(store.con, token, now=T0 + 7 * DAY)
    assert late["reason"] == "expired" and not late["can_answer"]
    before = store_fingerprint(demo_copy_db)
    with pytest.raises(EvaluationError, match="expired: it answers for 7 days") as expired:
        answer(demo_copy_db, token, satisfied=True, now=T0 + 8 * DAY)
    assert expired.value.reason == "expired" and store_fingerprint(demo_copy_db) == before


def test_no_answer_in_three_days_closes_the_case_as_evaluated_by_default(demo_copy_db):
    case_id, token = report(demo_copy_db)
    handle(demo_copy_db, case_id)
    with open_for_command(demo_copy_db) as store:
        early = sweep_evaluations(store.con, now=T0 + 3 * DAY - pd.Timedelta(seconds=1))
        due = sweep_evaluations(store.con, now=T0 + 3 * DAY, source="sweep")
        again = sweep_evaluations(store.con, now=T0 + 4 * DAY)
    assert case_id not in early and case_id in due and again == []
    assert history(demo_copy_db, case_id)[-2:] == [
        ("evaluated", "evaluation", "evaluated by default: no answer in 3 days"),
        ("closed", "evaluation", "closed as evaluated by default")]
    with Store(demo_copy_db, read_only=True) as store:
        kept = store.con.execute("SELECT result, via FROM evaluations WHERE case_id = ?", [case_id]).fetchall()
        detail, = store.con.execute("SELECT detail FROM audit WHERE action = 'case.evaluate' ORDER BY seq DESC "
                                    "LIMIT 1").fetchone()
        closed = token_case(store.con, token, now=T0 + 3 * DAY)
        (record,) = find_requests(Gate(store.con, Principal("app", "leader")), {"service_request_id": case_id},
                                  district_crs="EPSG:4547")
    assert kept == [("default", "sweep")] and case_id in json.loads(detail)["cases"]
    assert closed["reason"] == "closed" and record["evaluation"] == {"asked": False, "result": "default"}


def test_satisfaction_per_grid_worker_and_department_by_hand(demo_copy_db):
    """Two micro-grids of one grid: worker1's grid has 2 satisfied and 1 not, worker2's 1 not and 1 by default."""
    with open_for_command(demo_copy_db) as store:
        con = store.con
        con.execute("DELETE FROM evaluations")
        grids = [r[0] for r in con.execute("SELECT grid_id FROM grids WHERE parent_id = 'S01-C01-G1' AND valid_to "
                                           "IS NULL ORDER BY grid_id LIMIT 2").fetchall()]
        rows = [(grids[0], "worker1", "cgj", "satisfied"), (grids[0], "worker1", "cgj", "satisfied"),
                (grids[0], "worker1", "ga", "not_satisfied"), (grids[1], "worker2", "ga", "not_satisfied"),
                (grids[1], "worker2", "ga", "default")]
        for k, (grid, worker, department, result) in enumerate(rows):
            con.execute('INSERT INTO evaluations (case_id, "at", result, via, grid_id, worker, department) '
                        "VALUES (?, ?, ?, 'test', ?, ?, ?)", [f"X{k}", T0, result, grid, worker, department])
    with Store(demo_copy_db, read_only=True) as store:
        per_micro = satisfaction(store.con, by="grid").set_index("key")
        per_grid = satisfaction(store.con, by="grid", level="grid").set_index("key")
        per_worker = satisfaction(store.con, by="worker").set_index("key")
        per_department = satisfaction(store.con, by="department").set_index("key")
    assert per_micro.loc[grids[0], ["answered", "satisfied", "satisfaction"]].tolist() == [3, 2, 66.7]
    assert per_micro.loc[grids[1], ["answered", "by_default"]].tolist() == [1, 1]
    assert per_micro.loc[grids[1], "satisfaction"] == 0.0
    assert per_grid.loc["S01-C01-G1", ["answered", "satisfied", "satisfaction"]].tolist() == [4, 2, 50.0]
    assert per_grid.loc["S01-C01-G1", "name"] == "第1网格"
    assert per_worker.loc["worker1", "satisfaction"] == 66.7 and per_worker.loc["worker2", "satisfaction"] == 0.0
    assert per_department.loc["cgj", "satisfaction"] == 100.0 and per_department.loc["ga", "satisfaction"] == 0.0
    assert per_department.loc["ga", "name"] == "公安" and per_department.loc["ga", "answered"] == 2


def test_the_servers_writer_sweeps_and_takes_answers_and_publishes_the_cases(demo_copy):
    from scenes.server import EvaluationSweeper
    from twin.cases.live import CaseFeed, IntakeWriter

    swept, token = report(demo_copy)
    handle(demo_copy, swept)
    answered, other = report(demo_copy)
    handle(demo_copy, answered, at=T0 + 2 * DAY)
    with open_for_command(demo_copy) as store:  # the district's clock: 3 days after the first was handled
        store.set_meta(now=(T0 + 3 * DAY).isoformat())
    store = Store(demo_copy)
    feed = CaseFeed()
    writer = IntakeWriter(store.con, feed, dedupe_window_s=600)
    try:
        sweeper = EvaluationSweeper(writer, period_s=3600)  # sweeps at start
        sweeper.close()
        done = writer.evaluate(other, satisfied=True, source="10.1.1.1").result(timeout=30)
        published = {r["case_id"]: r["status"] for r in feed.since(0)[1]}
    finally:
        writer.close()
        store.close()
    assert done["status"] == "closed" and published == {swept: "closed", answered: "closed"}
    assert history(demo_copy, swept)[-2][2] == "evaluated by default: no answer in 3 days"
    assert history(demo_copy, answered)[-2][:2] == ("evaluated", "reporter")


def test_an_answer_in_the_second_the_case_was_handled_comes_after_it_in_the_history(demo_copy):
    """A worker's step is stamped to the microsecond (the phone's time), an answer now to the second: an answer in the
    same second is still stamped after the step, and the history keeps the loop's order."""
    case_id, token = report(demo_copy)
    with open_for_command(demo_copy) as store:
        handled = store_now(store.con, unit="us").floor("s") + pd.Timedelta(milliseconds=999)
        for hours_before, step in ((2, "accepted"), (1, "on_site"), (0, "resolved")):
            record_transition(store.con, case_id, step, actor="worker1", at=handled - pd.Timedelta(hours=hours_before))
        answer_evaluation(store.con, token, satisfied=True)
        stamps = store.con.execute('SELECT to_status, "at" FROM case_events WHERE case_id = ? ORDER BY rowid',
                                   [case_id]).fetchall()
    assert [s for s, _ in stamps][-3:] == ["resolved", "evaluated", "closed"]
    assert [at for _, at in stamps] == sorted(at for _, at in stamps), "stamped in the loop's order"
