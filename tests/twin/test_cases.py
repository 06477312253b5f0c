"""The case loop: every allowed and every forbidden transition, written to the history or refused."""

from __future__ import annotations

import itertools
import shutil

import pytest

from twin.cases import (CASE_STATUSES, CASE_TRANSITIONS, OPEN_STATUSES, check_transition, load_taxonomy,
                        record_transition)
from twin.errors import InputError
from twin.store import Store, open_for_command

ALLOWED = sorted((f, t) for f, t in CASE_TRANSITIONS if f is not None)
FORBIDDEN = sorted(set(itertools.product(CASE_STATUSES, CASE_STATUSES)) - set(ALLOWED))


@pytest.mark.parametrize("from_status, to_status", ALLOWED)
def test_every_allowed_transition_is_accepted(from_status, to_status):
    check_transition(from_status, to_status)


@pytest.mark.parametrize("from_status, to_status", FORBIDDEN)
def test_every_forbidden_transition_names_both_statuses(from_status, to_status):
    with pytest.raises(InputError, match=f"from '{from_status}' to '{to_status}'"):
        check_transition(from_status, to_status)


def test_the_loop_runs_from_report_to_closure_with_its_history(small_demo, tmp_path):
    db = tmp_path / "s.duckdb"
    shutil.copy(small_demo, db)
    with Store(db, read_only=True) as store:
        case_id, = store.con.execute("SELECT case_id FROM cases WHERE status = 'reported' LIMIT 1").fetchone()
    steps = ["dispatched", "in_progress", "resolved", "evaluated", "reopened", "dispatched", "in_progress",
             "resolved", "evaluated", "closed"]
    for step in steps:
        with open_for_command(db) as store:
            event = record_transition(store.con, case_id, step, actor="网格员 王芳", note=f"to {step}")
        assert event["to_status"] == step
    with pytest.raises(InputError, match="from 'closed' to 'dispatched'.*nowhere"), open_for_command(db) as store:
        record_transition(store.con, case_id, "dispatched", actor="x")
    with Store(db, read_only=True) as store:
        status, = store.con.execute("SELECT status FROM cases WHERE case_id = ?", [case_id]).fetchone()
        history = [r[0] for r in store.con.execute('SELECT to_status FROM case_events WHERE case_id = ? ORDER BY "at", '
                                                   "rowid", [case_id]).fetchall()]
    assert status == "closed" and history[-len(steps):] == steps


def test_the_taxonomy_has_deadlines_and_the_ai_scenes():
    tax = load_taxonomy()
    assert 20 <= len(tax["categories"]) <= 30 and 45 <= len(tax["subcategories"]) <= 60
    assert all(s["deadline_hours"] > 0 for s in tax["subcategories"])
    ai = {s["name"] for s in tax["subcategories"] if s["ai"]}
    assert {"高空抛物", "消防通道占用", "违章停车", "垃圾满溢", "电动车入户充电", "人脸布控预警"} <= ai
    assert set(OPEN_STATUSES) < set(CASE_STATUSES)
