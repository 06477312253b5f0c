"""The grid worker's field loop on a real store: steps, photos, idempotency keys, conflicts, patrol, retention."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import store_fingerprint
from twin.access.access import Principal, add_user, verify_audit
from twin.access.policy import Gate
from twin.cases.cases import assign_worker, create_case, load_taxonomy, record_transition
from twin.errors import AccessError, InputError
from twin.field.actions import FieldConflict, add_photo, take_step
from twin.field.patrol import (FULL_COVERAGE, MAX_GAP_S, PASS_DISTANCE_M, check_in, field_workers, of_grids,
                               patrol_coverage, purge_positions, set_patrol)
from twin.field.photos import check_photo
from twin.field.worklist import worker_case, worker_cases
from twin.store.clock import store_now
from twin.store.store import Store, open_for_command

PASSWORD = "field-test-password-1"


def run(db, work):
    """``work(con)`` as one command: committed, or rolled back when it raises."""
    with open_for_command(db, create=False) as store:
        return work(store.con)


def worker(name: str, grids: list[str]) -> Principal:
    return Principal(name, "worker", tuple(grids), source="10.0.0.7")


def jpeg(colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def field(demo_copy) -> dict:
    """:func:`make_field` on a DuckDB file."""
    return make_field(str(demo_copy))


@pytest.fixture
def field_any(demo_copy_db) -> dict:
    """:func:`make_field` in each backend (a DuckDB file, PostgreSQL)."""
    return make_field(demo_copy_db)


def make_field(db: str) -> dict:
    """Two fresh cases in a micro-grid with buildings, its two workers, a worker of another micro-grid, and an
    operator of the grid above."""
    with open_for_command(db, create=False) as store:
        con = store.con
        micro, other, parent = con.execute(
            "SELECT a.grid_id, b.grid_id, a.parent_id FROM grids a JOIN grids b ON b.parent_id = a.parent_id "
            "AND b.grid_id > a.grid_id AND b.level = 'micro' AND b.valid_to IS NULL WHERE a.level = 'micro' AND "
            "a.valid_to IS NULL AND (SELECT count(*) FROM buildings WHERE grid_id = a.grid_id) >= 2 "
            "ORDER BY a.grid_id LIMIT 1").fetchone()
        spots = con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id = ? ORDER BY building_id LIMIT 2",
                            [micro]).fetchall()
        code = load_taxonomy()["subcategories"][0]["code"]
        cases = [create_case(con, subcategory_code=code, source="patrol", x=x, y=y, description=f"case {k}")["case_id"]
                 for k, (x, y) in enumerate(spots)]
        for name, grids, role in (("w1", [micro], "worker"), ("w2", [micro], "worker"), ("w3", [other], "worker"),
                                  ("op", [parent], "operator")):
            add_user(con, name, PASSWORD, role=role, grids=grids, actor="test")
    return {"db": db, "micro": micro, "other": other, "cases": cases, "spots": spots,
            "w1": worker("w1", [micro]), "w2": worker("w2", [micro]), "w3": worker("w3", [other]),
            "op": Principal("op", "operator", (parent,), source="10.0.0.8")}


def step(db, who: Principal, case_id: str, name: str, seen: str, *, key: str, note: str | None = None) -> dict:
    return run(db, lambda con: take_step(Gate(con, who), key=key, case_id=case_id, step=name, seen_status=seen,
                                         note=note))


def photo(db, who: Principal, case_id: str, kind: str, *, key: str, data: bytes | None = None) -> dict:
    checked = check_photo(data or jpeg())
    return run(db, lambda con: add_photo(Gate(con, who), key=key, case_id=case_id, kind=kind, photo=checked))


def unchanged(db, attempt, error, match: str):
    """``attempt()`` raises ``error`` and leaves the whole store as it was."""
    before = store_fingerprint(db)
    with pytest.raises(error, match=match):
        attempt()
    assert store_fingerprint(db) == before


def test_a_worker_takes_a_case_from_accepted_to_handled_with_photos_and_every_step_audited(field_any):
    field = field_any
    db, w1, case = field["db"], field["w1"], field["cases"][0]
    listed = run(db, lambda con: worker_cases(Gate(con, w1)))
    assert case in [c["case_id"] for c in listed] and listed[0]["steps"] == ["accept"]
    step(db, w1, case, "accept", "reported", key="accept-0001")
    step(db, w1, case, "on_site", "accepted", key="onsite-0001")
    photo(db, w1, case, "before", key="before-0001")
    unchanged(db, lambda: step(db, w1, case, "handled", "on_site", key="handled-0001"), InputError,
              "only with a photo taken after the work")
    after = photo(db, w1, case, "after", key="after-00001", data=jpeg("green"))
    done = step(db, w1, case, "handled", "on_site", key="handled-0001", note="摊位已清理")
    assert done["status"] == "resolved" and not done["replayed"]
    with Store(db, read_only=True) as store:
        con = store.con
        status, assigned = con.execute("SELECT status, assigned_worker FROM cases WHERE case_id = ?",
                                       [case]).fetchone()
        history = con.execute('SELECT to_status, actor, note FROM case_events WHERE case_id = ? ORDER BY "at"',
                              [case]).fetchall()
        photos = con.execute("SELECT kind, sha256, taken_by FROM case_photos WHERE case_id = ? ORDER BY \"at\"",
                             [case]).fetchall()
        audited = con.execute("SELECT action, actor, source, detail FROM audit WHERE target = ? ORDER BY seq",
                              [case]).fetchall()
        card = worker_case(Gate(con, w1), case)
        assert verify_audit(con) is None
    assert (status, assigned) == ("resolved", "w1")
    assert [h[0] for h in history] == ["reported", "accepted", "on_site", "resolved"]
    assert history[-1][2] == "摊位已清理"
    assert [p[0] for p in photos] == ["before", "after"] and photos[1][1] == after["sha256"]
    assert [a[0] for a in audited] == ["case.intake", "case.transition", "case.transition", "case.photo",
                                       "case.photo", "case.transition"][-len(audited):]
    assert {a[1] for a in audited[-5:]} == {"w1"} and {a[2] for a in audited[-5:]} == {"10.0.0.7"}
    assert json.loads(audited[-2][3])["sha256"] == after["sha256"]
    assert card["steps"] == [] and [p["kind"] for p in card["photos"]] == ["before", "after"]
    assert card["map"]["case"][0] >= 0 and card["map"]["grid"], "the case's place on its micro-grid's map"


def test_an_action_sent_again_is_applied_once_and_a_reused_key_is_refused(field):
    db, w1, case = field["db"], field["w1"], field["cases"][0]
    first = step(db, w1, case, "accept", "reported", key="same-key-01")
    before = store_fingerprint(db)
    again = step(db, w1, case, "accept", "reported", key="same-key-01")
    assert again == {**first, "replayed": True} and store_fingerprint(db) == before
    unchanged(db, lambda: step(db, w1, case, "on_site", "accepted", key="same-key-01"), InputError,
              "was used for another action")
    unchanged(db, lambda: step(db, field["w2"], case, "accept", "reported", key="same-key-01"), InputError,
              "was used for another action")
    step(db, w1, case, "on_site", "accepted", key="onsite-02")
    shot = photo(db, w1, case, "after", key="photo-key-1")
    before = store_fingerprint(db)
    assert photo(db, w1, case, "after", key="photo-key-1") == {**shot, "replayed": True}
    assert store_fingerprint(db) == before
    unchanged(db, lambda: step(db, w1, case, "accept", "reported", key="bad key!"), InputError,
              "not an idempotency key")


def test_a_step_on_a_case_that_moved_on_is_a_conflict_that_changes_nothing(field):
    db, w1, w2, case = field["db"], field["w1"], field["w2"], field["cases"][0]
    step(db, w2, case, "accept", "reported", key="w2-accept-1")  # w2 was quicker
    unchanged(db, lambda: step(db, w1, case, "accept", "reported", key="w1-accept-1"), FieldConflict,
              f"case {case} moved on while the phone waited: it is accepted now .w2 at")
    with pytest.raises(FieldConflict) as conflict:
        step(db, w1, case, "accept", "reported", key="w1-accept-1")
    assert conflict.value.current["status"] == "accepted" and conflict.value.current["assigned_worker"] == "w2"
    # w2's step on a status the case has left (an old screen) is a conflict too, and a photo out of its time
    unchanged(db, lambda: step(db, w2, case, "on_site", "reported", key="w2-onsite-1"), FieldConflict, "moved on")
    unchanged(db, lambda: photo(db, w2, case, "after", key="w2-after-01"), FieldConflict, "it is accepted now")


def test_a_worker_acts_only_on_their_own_cases(field):
    db, case = field["db"], field["cases"][0]
    unchanged(db, lambda: step(db, field["w3"], case, "accept", "reported", key="w3-accept-1"), AccessError,
              f"outside w3's micro-grids")
    unchanged(db, lambda: step(db, field["op"], case, "accept", "reported", key="op-accept-1"), AccessError,
              "may not see the grid worker's page")
    # A photo for a case that is not theirs (w1's, in another micro-grid): refused, and nothing changes.
    other = field["cases"][1]
    step(db, field["w1"], other, "accept", "reported", key="w1-takes-it")
    unchanged(db, lambda: photo(db, field["w3"], other, "before", key="w3-photo-01"), AccessError,
              f"case {other} is given to w1, not to w3")
    with Store(db, read_only=True) as store:
        listed = {c["case_id"] for c in worker_cases(Gate(store.con, field["w3"]))}
    assert case not in listed
    # Given to w3 by the operator, with a reason: now on w3's list, and a conflict for w1's old screen.
    unchanged(db, lambda: run(db, lambda con: assign_worker(con, case, "w3", actor="op", reason="ok")), InputError,
              "needs a reason")
    unchanged(db, lambda: run(db, lambda con: assign_worker(con, case, "op", actor="op", reason="他在附近巡查")),
              InputError, "not an enabled grid worker")
    run(db, lambda con: assign_worker(con, case, "w3", actor="op", reason="w3 在附近巡查"))
    unchanged(db, lambda: step(db, field["w1"], case, "accept", "reported", key="w1-accept-2"), FieldConflict,
              "was given to w3")
    with Store(db, read_only=True) as store:
        mine = {c["case_id"]: c for c in worker_cases(Gate(store.con, field["w3"]))}
        note, = store.con.execute('SELECT note FROM case_events WHERE case_id = ? ORDER BY "at" DESC LIMIT 1',
                                  [case]).fetchone()
    assert mine[case]["mine"] and mine[case]["steps"] == ["accept"] and note == "reassigned from - to w3: w3 在附近巡查"
    step(db, field["w3"], case, "accept", "reported", key="w3-accept-2")


def test_handing_up_needs_a_reason(field):
    db, w1, case = field["db"], field["w1"], field["cases"][1]
    step(db, w1, case, "accept", "reported", key="up-accept-1")
    unchanged(db, lambda: step(db, w1, case, "hand_up", "accepted", key="up-hand-001", note="no"), InputError,
              "needs a reason")
    handed = step(db, w1, case, "hand_up", "accepted", key="up-hand-002", note="需要住建局处理")
    assert handed["status"] == "handed_up"
    with Store(db, read_only=True) as store:
        assert case not in {c["case_id"] for c in worker_cases(Gate(store.con, w1))}, "a department's now"
    # Dispatched by the list, the department holds it: not on the worker's list, and not the worker's to accept.
    run(db, lambda con: record_transition(con, case, "dispatched", actor="op"))
    with Store(db, read_only=True) as store:
        assert case not in {c["case_id"] for c in worker_cases(Gate(store.con, w1))}, "the department holds it"
    unchanged(db, lambda: step(db, w1, case, "accept", "dispatched", key="up-take-0001"), InputError,
              f"case {case} is with the department")


def test_my_cases_come_soonest_deadline_first(field):
    db, w1 = field["db"], field["w1"]
    first, second = field["cases"]
    run(db, lambda con: con.execute("UPDATE cases SET deadline = due_at - INTERVAL 1 YEAR WHERE case_id = ?",
                                    [second]))
    with Store(db, read_only=True) as store:
        listed = worker_cases(Gate(store.con, w1))
    order = [c["case_id"] for c in listed]
    assert order.index(second) < order.index(first) and listed[order.index(second)]["overdue"]
    deadlines = [c["deadline"] for c in listed if c["deadline"] is not None]
    assert deadlines == sorted(deadlines)


def test_positions_are_kept_only_on_patrol_inside_the_district_and_audited_without_the_place(field_any):
    field = field_any
    db, w1 = field["db"], field["w1"]
    x, y = field["spots"][0]
    unchanged(db, lambda: run(db, lambda con: check_in(Gate(con, w1), key="pos-00001", x=x, y=y)), InputError,
              "patrol was off")
    with Store(db, read_only=True) as store:
        now = store_now(store.con)
    minutes = lambda m: now - pd.Timedelta(minutes=m)  # noqa: E731
    run(db, lambda con: set_patrol(Gate(con, w1), key="patrol-on-1", on=True, at=minutes(10)))
    unchanged(db, lambda: run(db, lambda con: check_in(Gate(con, w1), key="pos-00002", x=x + 50_000, y=y,
                                                                 at=minutes(5))),
              InputError, "outside every grid of the district")
    kept = run(db, lambda con: check_in(Gate(con, w1), key="pos-00003", x=x, y=y, accuracy_m=8.0, at=minutes(5)))
    assert kept["grid_id"] == field["micro"] and not kept["replayed"]
    assert run(db, lambda con: check_in(Gate(con, w1), key="pos-00003", x=x, y=y, at=minutes(5)))["replayed"]
    with Store(db, read_only=True) as store:
        rows = store.con.execute("SELECT worker, x, y, grid_id FROM patrol_checkins WHERE worker = 'w1'").fetchall()
        trail = store.con.execute("SELECT action, target, detail FROM audit WHERE actor = 'w1' ORDER BY seq").fetchall()
        on_map = field_workers(store.con)
    assert rows == [("w1", x, y, field["micro"])]
    assert [t[0] for t in trail] == ["patrol.start", "patrol.position"] and trail[1][1] == field["micro"]
    assert f"{x:.1f}"[:6] not in trail[1][2] and f"{y:.1f}"[:6] not in trail[1][2], "no position in the trail"
    assert on_map[["worker", "x", "y", "open_load"]].values.tolist() == [["w1", x, y, 2]]
    run(db, lambda con: set_patrol(Gate(con, w1), key="patrol-off1", on=False, at=minutes(2)))
    with Store(db, read_only=True) as store:
        off = field_workers(store.con)
        assert off.empty, "off patrol, a worker is not on the operators' map"
        assert "worker" in of_grids(off, frozenset({field["micro"]})), "an operator's empty map keeps its columns"
    unchanged(db, lambda: run(db, lambda con: check_in(Gate(con, w1), key="pos-00004", x=x, y=y)), InputError,
              "patrol was off")


def _expected_coverage(db, day) -> pd.DataFrame:
    """Buildings within 30 m of the day's check-ins, the way the spatial extension measures it (points only)."""
    with Store(db, read_only=True) as store:
        return store.con.execute(f"""
            SELECT b.grid_id, count(*) AS buildings,
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM patrol_checkins p WHERE p."at"::DATE = ?
                       AND ST_DWithin(b.footprint, ST_Point(p.x, p.y), {PASS_DISTANCE_M}))) AS passed
            FROM buildings b JOIN grids g ON g.grid_id = b.grid_id AND g.valid_to IS NULL AND g.level = 'micro'
            GROUP BY 1 ORDER BY 1""", [day]).df()


def test_coverage_is_the_share_of_buildings_passed_within_30_m_and_lines_join_close_check_ins(field):
    db, w1, micro = field["db"], field["w1"], field["micro"]
    with Store(db, read_only=True) as store:
        now = store_now(store.con)
        buildings = store.con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id = ? ORDER BY label_x",
                                      [micro]).fetchall()
    # A morning wholly past (today's from noon, else yesterday's): check-ins later than now are taken as now.
    day = (now - pd.Timedelta(hours=12)).date()
    start = pd.Timestamp(day) + pd.Timedelta(hours=8)
    run(db, lambda con: set_patrol(Gate(con, w1), key="cover-on-1", on=True, at=start))
    # A check-in at each end of the micro-grid, further apart in time than a walk is assumed: two points, not a line.
    (x0, y0), (x1, y1) = buildings[0], buildings[-1]
    gap = start + pd.Timedelta(seconds=MAX_GAP_S + 60)
    run(db, lambda con: check_in(Gate(con, w1), key="cover-p-01", x=x0, y=y0, at=start + pd.Timedelta(seconds=1)))
    run(db, lambda con: check_in(Gate(con, w1), key="cover-p-02", x=x1, y=y1, at=gap))
    table = patrol_coverage(Store(db, read_only=True).con, day=day)
    expected = _expected_coverage(db, day)
    merged = table.merge(expected, on="grid_id", suffixes=("", "_sql"))
    assert (merged["buildings"] == merged["buildings_sql"]).all() and (merged["passed"] == merged["passed_sql"]).all()
    row = table.set_index("grid_id").loc[micro]
    assert 0 < row["passed"] and row["share"] == pytest.approx(row["passed"] / row["buildings"])
    # Walking back to the first end, checked in 30 s later: the line between passes what lies near it.
    run(db, lambda con: check_in(Gate(con, w1), key="cover-l-01", x=x0, y=y0, at=gap + pd.Timedelta(seconds=30)))
    later = gap + pd.Timedelta(seconds=30)
    with Store(db, read_only=True) as store:
        walked = patrol_coverage(store.con, day=day).set_index("grid_id").loc[micro]
        near_line, = store.con.execute(
            f"SELECT count(*) FROM buildings WHERE grid_id = ? AND ST_DWithin(footprint, "
            f"ST_MakeLine(ST_Point(?, ?), ST_Point(?, ?)), {PASS_DISTANCE_M})", [micro, x0, y0, x1, y1]).fetchone()
    assert walked["passed"] == near_line > row["passed"], "the line passes more than its ends did alone"
    assert walked["full"] == (walked["passed"] / walked["buildings"] >= FULL_COVERAGE == 0.95)
    # Past every building of the micro-grid: all passed, full coverage.
    for k, (bx, by) in enumerate(buildings):
        at = later + pd.Timedelta(seconds=MAX_GAP_S * 2 + 30 * k)
        run(db, lambda con, k=k, at=at, bx=bx, by=by: check_in(Gate(con, w1), key=f"cover-a-{k:02d}", x=bx, y=by,
                                                               at=at))
    with Store(db, read_only=True) as store:
        every = patrol_coverage(store.con, day=day).set_index("grid_id").loc[micro]
    assert every["passed"] == every["buildings"] and every["share"] == 1.0 and every["full"]
    other = patrol_coverage(Store(db, read_only=True).con, day=day - pd.Timedelta(days=1))
    assert other["passed"].sum() == 0, "yesterday had no patrol"


def test_positions_are_deleted_after_30_days_and_the_deletion_is_audited(field):
    db, w1 = field["db"], field["w1"]
    x, y = field["spots"][0]
    with Store(db, read_only=True) as store:
        now = store_now(store.con)
    run(db, lambda con: set_patrol(Gate(con, w1), key="old-on-001", on=True, at=now - pd.Timedelta(days=29)))
    run(db, lambda con: check_in(Gate(con, w1), key="old-pos-01", x=x, y=y, at=now - pd.Timedelta(days=29)))
    run(db, lambda con: check_in(Gate(con, w1), key="new-pos-01", x=x, y=y, at=now - pd.Timedelta(hours=1)))
    unchanged(db, lambda: run(db, lambda con: check_in(Gate(con, w1), key="ancient-01", x=x, y=y,
                                                       at=now - pd.Timedelta(days=31))), InputError,
              "older than the 30 days")
    old = "SELECT count(*) FROM patrol_checkins WHERE \"at\" < ?"  # the demo's own patrols are of its fixed day
    with Store(db, read_only=True) as store:
        due_now, = store.con.execute(old, [now - pd.Timedelta(days=30)]).fetchone()
    assert run(db, lambda con: purge_positions(con, now=now))["positions"] == due_now
    with Store(db, read_only=True) as store:
        due_later, = store.con.execute(old, [now - pd.Timedelta(days=28)]).fetchone()
    summary = run(db, lambda con: purge_positions(con, now=now + pd.Timedelta(days=2)))
    assert summary["positions"] == due_later >= 1
    with Store(db, read_only=True) as store:
        keys = [k for k, in store.con.execute("SELECT key FROM patrol_checkins WHERE worker = 'w1'").fetchall()]
        purges = store.con.execute("SELECT actor, detail FROM audit WHERE action = 'patrol.purge'").fetchall()
        assert verify_audit(store.con) is None
    assert keys == ["new-pos-01"]
    assert len(purges) == 1 + bool(due_now) and json.loads(purges[-1][1])["positions"] == due_later
    assert purges[-1][0] == "retention"
