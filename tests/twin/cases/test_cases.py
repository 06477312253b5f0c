"""The case loop: every allowed and every forbidden transition, written to the history or refused."""

from __future__ import annotations

import itertools
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.cases.cases import (
    CASE_STATUSES,
    OPEN_STATUSES,
    check_transition,
    LocationMatcher,
    create_case,
    load_taxonomy,
    match_location,
    next_statuses,
    record_transition,
)
from twin.errors import InputError
from twin.store.store import Store, open_for_command

# The case loop of grid governance, written out here from the domain and not read from the code:
# 上报 reported -> 派遣 dispatched -> 处置 in_progress -> 反馈 resolved -> 核查评价 evaluated -> 结案 closed.
# A report that is no case for the grid (or that the department sends back) is 不予受理 rejected, which is final;
# a result that fails evaluation is 返工 reopened and dispatched again. A case is born reported.
# In the field the grid worker 接单 accepts a case (reported, dispatched to them, or reopened), goes 到场 on site and
# handles it (resolved), or 上报 hands it up (handed_up) from either step; a handed-up case is dispatched to a
# department. The reporter evaluates a resolved case: satisfied (evaluated), or not (reopened).
LOOP = {
    None: {"reported"},
    "reported": {"dispatched", "rejected", "accepted"},
    "dispatched": {"in_progress", "rejected", "accepted"},
    "in_progress": {"resolved"},
    "resolved": {"evaluated", "reopened"},
    "evaluated": {"closed", "reopened"},
    "reopened": {"dispatched", "accepted"},
    "accepted": {"on_site", "handed_up"},
    "on_site": {"resolved", "handed_up"},
    "handed_up": {"dispatched"},
    "closed": set(),
    "rejected": set(),
}
STATUSES = ["reported", "dispatched", "in_progress", "resolved", "evaluated", "closed", "rejected", "reopened",
            "accepted", "on_site", "handed_up"]
ALLOWED = sorted(((f, t) for f, targets in LOOP.items() for t in targets), key=str)
FORBIDDEN = sorted(set(itertools.product([None, *STATUSES], STATUSES)) - set(ALLOWED), key=str)


def test_the_statuses_are_the_loops():
    assert list(CASE_STATUSES) == STATUSES
    assert set(OPEN_STATUSES) == {"reported", "dispatched", "in_progress", "reopened", "accepted", "on_site",
                                  "handed_up"}, "a worker or a department owes work"


@pytest.mark.parametrize("from_status, to_status", ALLOWED)
def test_every_allowed_transition_is_accepted(from_status, to_status):
    check_transition(from_status, to_status)
    assert to_status in next_statuses(from_status)


@pytest.mark.parametrize("from_status, to_status", FORBIDDEN)
def test_every_forbidden_transition_names_both_statuses(from_status, to_status):
    with pytest.raises(InputError, match=f"from {from_status!r} to {to_status!r}"):
        check_transition(from_status, to_status)
    assert to_status not in next_statuses(from_status)


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
    with pytest.raises(InputError, match="from 'closed' to 'dispatched'; 'closed' is final"), open_for_command(db) as store:
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


def _building(db):
    with Store(db, read_only=True) as store:
        return store.con.execute("SELECT building_id, label_x, label_y, ST_XMin(footprint), ST_YMin(footprint), "
                                 "grid_id FROM buildings ORDER BY building_id LIMIT 1").fetchone()


def test_intake_matches_the_building_the_grid_and_its_worker_and_sets_the_deadline(demo_copy_db):
    building_id, x, y, xmin, ymin, grid_id = _building(demo_copy_db)
    code = load_taxonomy()["subcategories"][0]["code"]
    with open_for_command(demo_copy_db) as store:
        case = create_case(store.con, subcategory_code=code, source="citizen", x=x, y=y,
                           reported_at="2026-11-26 10:00")
        record = store.con.execute("SELECT building_id, grid_id, status, due_at FROM cases WHERE case_id = ?",
                                   [case["case_id"]]).fetchone()
        worker, = store.con.execute("SELECT worker FROM grids WHERE grid_id = ?", [grid_id]).fetchone()
    hours = load_taxonomy()["subcategories"][0]["deadline_hours"]
    assert case["building_id"] == building_id and case["grid_id"] == grid_id and case["worker"] == worker
    assert record[:3] == (building_id, grid_id, "reported")
    assert (record[3] - case["reported_at"]).total_seconds() == hours * 3600
    assert case["case_id"].startswith("C20261126-")


def test_a_point_beside_a_building_goes_to_it_within_30_m_and_no_further(demo_copy_db):
    building_id, _, _, xmin, ymin, _ = _building(demo_copy_db)
    with Store(demo_copy_db, read_only=True) as store:
        near = match_location(store.con, xmin - 3.0, ymin + 1.0)
        assert near["building_id"] is not None and near["distance_m"] <= 30
        lonely = store.con.execute("""
            SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(boundary) AS c FROM grids
            WHERE level = 'micro' AND kind = 'street') g
            WHERE NOT EXISTS (SELECT 1 FROM buildings b WHERE ST_DWithin(b.footprint, g.c, 30)) LIMIT 1""").fetchone()
        far = match_location(store.con, *lonely)
        assert far["building_id"] is None and far["grid_id"] is not None


def test_points_outside_the_district_and_unknown_kinds_are_refused(demo_copy_db):
    building_id, x, y, *_ = _building(demo_copy_db)
    code = load_taxonomy()["subcategories"][0]["code"]
    with pytest.raises(InputError, match="outside every grid"), open_for_command(demo_copy_db) as store:
        create_case(store.con, subcategory_code=code, source="citizen", x=x + 50_000, y=y)
    with pytest.raises(InputError, match="unknown case subcategory 'nope'"), open_for_command(demo_copy_db) as store:
        create_case(store.con, subcategory_code="nope", source="citizen", x=x, y=y)


@pytest.fixture(scope="module")
def demo_matcher(small_demo):
    from twin.cases.cases import LocationMatcher

    with Store(small_demo, read_only=True) as store:
        con = store.con.cursor()
        bounds = con.execute("SELECT min(ST_XMin(boundary)), min(ST_YMin(boundary)), max(ST_XMax(boundary)), "
                             "max(ST_YMax(boundary)) FROM grids WHERE level = 'micro'").fetchone()
        corners = con.execute("SELECT ST_XMin(footprint), ST_YMin(footprint) FROM buildings ORDER BY building_id "
                              "LIMIT 50").fetchall()
        yield LocationMatcher(con), con, bounds, corners


def _same_match(matcher, con, x, y):
    try:
        expected = match_location(con, x, y)
    except InputError:
        with pytest.raises(InputError, match="outside every grid"):
            matcher.match(x, y)
        return
    assert matcher.match(x, y) == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fx=st.floats(-0.05, 1.05), fy=st.floats(-0.05, 1.05))
def test_the_in_memory_matcher_agrees_with_the_store_anywhere(demo_matcher, fx, fy):
    matcher, con, (xmin, ymin, xmax, ymax), _ = demo_matcher
    _same_match(matcher, con, xmin + fx * (xmax - xmin), ymin + fy * (ymax - ymin))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(0, 49), dx=st.floats(-40, 40), dy=st.sampled_from([0.0, 0.5, -0.5, 29.99, 30.01]))
def test_the_in_memory_matcher_agrees_with_the_store_at_footprint_edges(demo_matcher, k, dx, dy):
    matcher, con, _, corners = demo_matcher
    x, y = corners[k]
    _same_match(matcher, con, x + dx, y - dy)


def test_case_numbers_continue_after_the_stores_last_and_restart_after_a_rollback(demo_copy_db, backend):
    import pandas as pd

    from twin.cases.cases import CaseNumbers

    numbers = CaseNumbers()
    at = pd.Timestamp("2026-11-26 10:00")
    with Store(demo_copy_db) as store:
        last, = store.con.execute("SELECT max(case_id) FROM cases WHERE case_id LIKE 'C20261126-%'").fetchone()
        first = numbers.next(store.con, at)
        assert first > (last or "") and numbers.next(store.con, at) > first
        numbers.reset()
        again = numbers.next(store.con, at)
    if backend == "duckdb":
        assert again == first, "after a rollback, numbering starts from the store again"
    else:  # PostgreSQL's sequence: what a rolled-back transaction took is never handed out again (a gap)
        assert again > first


class _OneSmallSquare(LocationMatcher):
    """A matcher holding one square of 300 m at a time: every few points it reads a square anew."""

    CELL_M = 300.0
    MAX_CELLS = 1


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fx=st.floats(-0.05, 1.05), fy=st.floats(-0.05, 1.05), k=st.integers(0, 49), dx=st.floats(-40, 40))
def test_a_matcher_that_holds_one_small_square_still_agrees_with_the_store(demo_matcher, fx, fy, k, dx):
    _, con, (xmin, ymin, xmax, ymax), corners = demo_matcher
    matcher = _OneSmallSquare(con)
    _same_match(matcher, con, xmin + fx * (xmax - xmin), ymin + fy * (ymax - ymin))
    x, y = corners[k]
    _same_match(matcher, con, x + dx, y)  # a footprint's edge, often across a square's edge from the last point
    assert len(matcher._cells) == 1
