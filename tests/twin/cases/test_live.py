"""The intake writer commits in batches before it answers, and the case feed tells sessions what changed."""

from __future__ import annotations

import threading
from concurrent.futures import wait

import numpy as np
import pandas as pd
import pytest

from twin.access.access import verify_audit
from twin.cases.cases import load_taxonomy
from twin.geo.crs import transform_xy
from twin.cases.detections import DetectionError, parse_detection
from twin.errors import InputError
from twin.cases.live import CaseFeed, IntakeWriter, Written, follow_other_processes
from twin.cases.open311 import Open311Error
from twin.store.store import Store


def test_the_feed_hands_out_changes_after_a_version_and_says_when_one_fell_behind():
    feed = CaseFeed(keep=3)
    assert feed.version == 0 and feed.since(0) == (0, [])
    feed.publish([{"case_id": "a", "status": "reported"}, {"case_id": "b", "status": "reported"}])
    version, rows = feed.since(0)
    assert version == 2 and [r["case_id"] for r in rows] == ["a", "b"]
    feed.publish([{"case_id": "a", "status": "dispatched"}, {"case_id": "c", "status": "reported"}])
    assert feed.since(2)[1] == [{**dict.fromkeys(rows[0]), "case_id": "a", "status": "dispatched"},
                                {**dict.fromkeys(rows[0]), "case_id": "c", "status": "reported"}]
    assert feed.since(0) == (4, None), "the first change is gone: reload"


@pytest.fixture
def writer(demo_copy_db):
    store = Store(demo_copy_db)
    feed = CaseFeed()
    writer = IntakeWriter(store.con, feed, dedupe_window_s=600)
    yield writer, store, feed
    writer.close()
    store.close()


def _forms(store, n: int) -> list[dict]:
    points = store.con.execute("SELECT label_x, label_y FROM buildings ORDER BY building_id LIMIT ?", [n]).df()
    lonlat = transform_xy(points.to_numpy(), "EPSG:4547", "EPSG:4326")
    code = load_taxonomy()["subcategories"][3]["code"]
    return [{"service_code": code, "lat": f"{lat:.7f}", "long": f"{lon:.7f}"} for lon, lat in lonlat]


def test_a_burst_of_requests_is_committed_and_published_once_each(writer):
    w, store, feed = writer
    forms = _forms(store, 60)
    forms[7] = {**forms[7], "lat": "10.0"}  # outside the district: refused, costs the others nothing
    futures = [w.take_request(f, district_crs="EPSG:4547") for f in forms]
    wait(futures, timeout=60)
    with pytest.raises(Open311Error, match="outside every grid"):
        futures[7].result()
    ids = [f.result()["service_request_id"] for i, f in enumerate(futures) if i != 7]
    assert len(set(ids)) == 59
    stored, = store.con.execute("SELECT count(*) FROM cases WHERE case_id IN (SELECT unnest(?))", [ids]).fetchone()
    assert stored == 59
    events, = store.con.execute("SELECT count(*) FROM case_events WHERE case_id IN (SELECT unnest(?))",
                                [ids]).fetchone()
    assert events == 59
    assert sorted(r["case_id"] for r in feed.since(0)[1]) == sorted(ids)


def test_transitions_go_through_the_writer_and_a_wrong_one_is_refused(writer):
    w, store, feed = writer
    case_id = w.take_request(_forms(store, 1)[0], district_crs="EPSG:4547").result(timeout=30)["service_request_id"]
    event = w.transition(case_id, "dispatched", actor="王芳", note="on my way").result(timeout=30)
    assert (event["from_status"], event["to_status"]) == ("reported", "dispatched")
    with pytest.raises(InputError, match="cannot go from 'dispatched' to 'closed'"):
        w.transition(case_id, "closed", actor="王芳").result(timeout=30)
    assert [r["status"] for r in feed.since(0)[1]] == ["reported", "dispatched"]
    status, = store.con.execute("SELECT status FROM cases WHERE case_id = ?", [case_id]).fetchone()
    assert status == "dispatched"


def test_detections_through_the_writer_fold_repeats(writer):
    w, store, feed = writer
    cameras = store.con.execute("SELECT camera_id FROM cameras ORDER BY camera_id").df()["camera_id"]
    now = pd.Timestamp.now()
    answers = []
    for camera in cameras[:40]:
        body = {"camera_id": camera, "category": "sanitation.garbage_overflow", "confidence": 0.8,
                "detected_at": now.isoformat()}
        first = w.take_detection(parse_detection(body))
        second = w.take_detection(parse_detection(body))
        answers.append((first, second))
    taken = 0
    for first, second in answers:
        try:
            a, b = first.result(timeout=30), second.result(timeout=30)
        except DetectionError:  # a camera whose target lies outside the district
            continue
        taken += 1
        assert b["case_id"] == a["case_id"] and b["duplicate"] and not a["duplicate"]
    assert taken > 10
    assert store.count("detections") == 2 * taken
    assert len(feed.since(0)[1]) == taken, "a joined detection changes no case"


def test_an_unexpected_failure_rolls_the_whole_batch_back(writer):
    w, store, feed = writer
    before = store.count("cases")

    def broken(con):
        con.execute("INSERT INTO cases (case_id) VALUES ('half-written')")  # violates NOT NULL

    with pytest.raises(Exception):
        w.submit(broken).result(timeout=30)
    assert store.count("cases") == before and feed.version == 0
    ok = w.take_request(_forms(store, 1)[0], district_crs="EPSG:4547").result(timeout=30)
    assert ok["service_request_id"] and store.count("cases") == before + 1


def _meta(con, key):
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
    return rows[0][0] if rows else None


def _put(key, *, then_raise=None, seen=None):
    """A job that writes a meta row, then raises ``then_raise``; it answers whether ``seen`` is in the store."""
    def job(con):
        con.execute("INSERT INTO meta VALUES (?, 'x')", [key])
        if then_raise is not None:
            raise then_raise
        return Written(_meta(con, seen) if seen else key)
    return job


def test_a_job_that_writes_and_then_raises_leaves_no_trace_and_its_batch_mates_commit(writer):
    w, store, feed = writer
    busy, release = threading.Event(), threading.Event()

    def hold(con):  # keeps the writer busy while the others queue up, so they are taken as one batch
        busy.set()
        release.wait(30)
        return Written("held")

    held = w.submit(hold)
    assert busy.wait(30)
    futures = {"a": w.submit(_put("t.a")),
               "refused": w.submit(_put("t.refused", then_raise=InputError("refused after writing"))),
               "request": w.take_request(_forms(store, 1)[0], district_crs="EPSG:4547"),
               "c": w.submit(_put("t.c", seen="t.refused")),
               "bug": w.submit(_put("t.bug", then_raise=RuntimeError("a bug after writing"))),
               "outside": w.take_request({**_forms(store, 1)[0], "lat": "10.0"}, district_crs="EPSG:4547"),
               "d": w.submit(_put("t.d", seen="t.bug"))}
    release.set()
    assert held.result(timeout=30) == "held"
    wait(list(futures.values()), timeout=60)
    with pytest.raises(InputError, match="refused after writing"):
        futures["refused"].result()
    with pytest.raises(RuntimeError, match="a bug after writing"):
        futures["bug"].result()
    with pytest.raises(Open311Error, match="outside every grid"):
        futures["outside"].result()
    assert futures["a"].result() == "t.a"
    assert futures["c"].result() is None and futures["d"].result() is None, "no later job saw the refused rows"
    case_id = futures["request"].result()["service_request_id"]
    reader = store.con.cursor()
    assert [_meta(reader, k) for k in ("t.a", "t.refused", "t.c", "t.bug", "t.d")] == ["x", None, "x", None, "x"]
    assert reader.execute("SELECT count(*) FROM cases WHERE case_id = ?", [case_id]).fetchall() == [(1,)]
    assert [r["case_id"] for r in feed.since(0)[1]] == [case_id]


def _merge_a_micro_grid_into_its_neighbour(con):
    """Grids of a parent with one micro-grid merged into a neighbour whose worker differs.

    Returns the parent's children after the merge (a GeoDataFrame), and the label point (x, y) of a
    building of the merged-away grid, the grid that holds it after the merge and that grid's worker.
    """
    from ingest.grids import grids_frame

    a, b, worker, x, y = con.execute(
        "SELECT a.grid_id, b.grid_id, b.worker, bu.label_x, bu.label_y FROM grids a JOIN grids b "
        "ON a.parent_id = b.parent_id AND a.grid_id <> b.grid_id JOIN buildings bu ON bu.grid_id = a.grid_id "
        "WHERE a.level = 'micro' AND b.level = 'micro' AND a.valid_to IS NULL AND b.valid_to IS NULL "
        "AND a.worker <> b.worker AND ST_Length(ST_Intersection(a.boundary, b.boundary)) > 50 "
        "ORDER BY a.grid_id, b.grid_id, bu.building_id LIMIT 1").fetchall()[0]
    frame = grids_frame(con, level="micro")
    frame = frame[frame["parent_id"] == frame.loc[frame["grid_id"] == a, "parent_id"].iloc[0]].copy()
    shapes = frame.set_index("grid_id").geometry
    frame.loc[frame["grid_id"] == b, "geometry"] = shapes[a].union(shapes[b])
    return frame[frame["grid_id"] != a], (x, y), b, worker


def test_a_request_after_a_grid_change_is_matched_to_the_new_micro_grid(writer):
    from ingest.grids import import_grids

    w, store, feed = writer
    frame, (x, y), grid_id, worker = _merge_a_micro_grid_into_its_neighbour(store.con.cursor())
    lon, lat = transform_xy(np.array([[x, y]]), "EPSG:4547", "EPSG:4326")[0]
    form = {**_forms(store, 1)[0], "lat": f"{lat:.7f}", "long": f"{lon:.7f}"}
    before = w.take_request(form, district_crs="EPSG:4547").result(timeout=30)
    assert worker not in before["service_notice"]
    busy, release = threading.Event(), threading.Event()
    held = w.submit(lambda con: busy.set() or release.wait(30) and Written(None))
    assert busy.wait(30)
    change = w.submit(lambda con: Written(import_grids(con, frame, actor="t", reason="merge", mode="replace"),
                                          grids_changed=True))
    after = w.take_request(form, district_crs="EPSG:4547")  # queued in the same batch, right after the change
    release.set()
    held.result(timeout=30)
    assert change.result(timeout=60)["deleted"]
    assert after.result(timeout=60)["service_notice"] == f"assigned to {worker}"
    case_id = after.result()["service_request_id"]
    assert store.con.execute("SELECT grid_id FROM cases WHERE case_id = ?", [case_id]).fetchall() == [(grid_id,)]


def test_a_checkpoint_asked_for_runs_on_the_writers_connection(writer, backend):
    """DuckDB-only: a CHECKPOINT folds a DuckDB file's log into it; PostgreSQL checkpoints by itself."""
    if backend == "postgres":
        pytest.skip("about the DuckDB file's write-ahead log")
    w, store, feed = writer
    store.count("users")  # the server reads on its shared connection before it serves

    def move_buildings(con):  # an update of indexed rows, as a grid save makes
        con.execute("UPDATE buildings SET grid_id = grid_id WHERE building_id IN "
                    "(SELECT building_id FROM buildings ORDER BY building_id LIMIT 50)")
        return Written(None, checkpoint=True)

    wal = store.path.with_name(store.path.name + ".wal")

    def logged() -> int:  # bytes in the log (DuckDB removes it after a CHECKPOINT)
        return wal.stat().st_size if wal.exists() else 0

    w.submit(move_buildings).result(timeout=30)
    assert logged() == 0, "the change went into the database file"
    session = store.con.cursor()
    session.execute("SELECT building_id FROM buildings").fetchone()  # a read left unfinished: CHECKPOINT must wait
    w.submit(move_buildings).result(timeout=30)
    assert logged() > 0, "refused while the session's read is open; the log keeps the change"
    session.execute("SELECT 1").fetchall()  # the session moves on
    w.submit(lambda con: Written(None)).result(timeout=30)
    assert logged() == 0, "folded in after the next commit"


def _in_feed(feed: CaseFeed, case_id: str, status: str, *, within_s: float = 30.0) -> bool:
    """Whether the feed gets the case in that status (waited for, up to ``within_s``: an event, not a timing)."""
    import time

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if any(r["case_id"] == case_id and r["status"] == status for r in feed.since(0)[1]):
            return True
        time.sleep(0.05)
    return False


def test_a_case_taken_by_one_process_reaches_the_feed_of_another(request, backend):
    """PostgreSQL-only in effect: each of two stores opened on one database (as two `twin serve` would) hears
    the other's new and changed cases through LISTEN/NOTIFY, and not its own twice. A file has one writer."""
    if backend == "duckdb":
        pytest.skip("a DuckDB file has one writing process: there is no other process to hear from")
    url = request.getfixturevalue("demo_copy_db")
    with Store(url) as one, Store(url) as other:
        feed_one, feed_other = CaseFeed(), CaseFeed()
        writer_one = IntakeWriter(one.con, feed_one, dedupe_window_s=600)
        writer_other = IntakeWriter(other.con, feed_other, dedupe_window_s=600)
        hearing = [follow_other_processes(url, one.con.cursor(), feed_one),
                   follow_other_processes(url, other.con.cursor(), feed_other)]
        try:
            assert all(h.wait_listening(30) for h in hearing)
            form = _forms(one, 1)[0]
            with pytest.raises(Open311Error):  # refused: rolled back, so nobody hears of it
                writer_one.take_request({**form, "lat": "10.0"}, district_crs="EPSG:4547").result(timeout=60)
            case_id = writer_one.take_request(form, district_crs="EPSG:4547").result(timeout=60)["service_request_id"]
            assert _in_feed(feed_other, case_id, "reported"), "the other process draws the new case"
            writer_other.transition(case_id, "dispatched", actor="王芳").result(timeout=60)
            assert _in_feed(feed_one, case_id, "dispatched"), "and the first one its change"
            assert [r["status"] for r in feed_one.since(0)[1]] == ["reported", "dispatched"], "each change once"
        finally:
            for h in hearing:
                h.close()
            writer_one.close()
            writer_other.close()


def test_two_processes_taking_cases_at_once_number_them_apart(request, backend):
    """PostgreSQL-only: two writers on one database (as two `twin serve`) take requests at the same time; every
    case gets its own number from the store's sequence and is stored. A file has one writing process."""
    if backend == "duckdb":
        pytest.skip("a DuckDB file has one writing process")
    url = request.getfixturevalue("demo_copy_db")
    with Store(url) as one, Store(url) as other:
        writers = [IntakeWriter(one.con, CaseFeed(), dedupe_window_s=600),
                   IntakeWriter(other.con, CaseFeed(), dedupe_window_s=600)]
        try:
            forms = _forms(one, 40)
            ids = []
            for k in range(0, 40, 2):  # in rounds, so each writer's transactions fall between the other's
                futures = [w.take_request(f, district_crs="EPSG:4547") for w, f in zip(writers, forms[k:k + 2])]
                ids += [f.result(timeout=60)["service_request_id"] for f in futures]
        finally:
            for w in writers:
                w.close()
        assert len(set(ids)) == 40
        stored, = one.con.execute("SELECT count(*) FROM cases WHERE case_id IN (SELECT unnest(?))", [ids]).fetchone()
        assert stored == 40
        assert verify_audit(one.con) is None, "the audit chain is one line: each writer appended to the real head"


def test_a_request_sent_again_with_its_idempotency_key_gets_the_first_answer_and_makes_no_second_case(writer):
    """What a client does after a 503 whose COMMIT may have been kept: it sends the same request with the same key.
    Within one batch or after it, the first answer comes back (with a new evaluation token), nothing is written
    twice; the key is its client's, and is refused with another request."""
    w, store, feed = writer
    form, other = _forms(store, 2)
    key = "d7b3c2e0-5a1f-4c2e-9b7a-000000000001"
    first, again = (w.take_request(form, district_crs="EPSG:4547", client="app", key=key),
                    w.take_request(form, district_crs="EPSG:4547", client="app", key=key))  # likely one batch
    first, again = first.result(timeout=30), again.result(timeout=30)
    later = w.take_request(form, district_crs="EPSG:4547", client="app", key=key).result(timeout=30)
    case_id = first["service_request_id"]
    assert not first.get("replayed") and again["replayed"] and later["replayed"]
    assert again["service_request_id"] == later["service_request_id"] == case_id
    tokens = {first["evaluation_token"], again["evaluation_token"], later["evaluation_token"]}
    assert later["evaluation_token"] != first["evaluation_token"], "a resend after the commit gets a new link"
    elsewhere = w.take_request(form, district_crs="EPSG:4547", client="other-app", key=key).result(timeout=30)
    assert elsewhere["service_request_id"] != case_id, "a key is its client's own"
    with pytest.raises(Open311Error, match="sent before with another request") as refused:
        w.take_request(other, district_crs="EPSG:4547", client="app", key=key).result(timeout=30)
    assert refused.value.code == 422
    stored, = store.con.execute("SELECT count(*) FROM cases WHERE case_id = ?", [case_id]).fetchone()
    assert stored == 1 and [r["case_id"] for r in feed.since(0)[1]].count(case_id) == 1
    issued, = store.con.execute("SELECT count(*) FROM evaluation_tokens WHERE case_id = ?", [case_id]).fetchone()
    assert issued == len(tokens), "each answer's evaluation link works"
    cameras = store.con.execute("SELECT camera_id FROM cameras ORDER BY camera_id").df()["camera_id"]
    for camera in cameras:
        body = {"camera_id": camera, "category": "sanitation.garbage_overflow", "confidence": 0.8,
                "detected_at": pd.Timestamp.now().isoformat()}
        try:
            seen = w.take_detection(parse_detection(body), client="cam", key=f"{camera}:0001").result(timeout=30)
        except DetectionError:  # a camera whose target lies outside the district
            continue
        resent = w.take_detection(parse_detection(body), client="cam", key=f"{camera}:0001").result(timeout=30)
        first_token, again_token = seen.pop("evaluation_token"), resent.pop("evaluation_token")
        assert resent == {**seen, "replayed": True}
        # a new case's reporter link is kept only as a hash: the resend gets a link of its own, as a request's does
        assert (first_token is None) == (again_token is None) == seen["duplicate"]
        assert seen["duplicate"] or first_token != again_token
        kept, = store.con.execute("SELECT count(*) FROM detections WHERE camera_id = ?", [camera]).fetchone()
        assert kept == 1, "the resend was not taken as a second sighting"
        break
    else:
        pytest.fail("no camera of the demo looks into the district")


def test_one_key_sent_to_two_processes_at_once_makes_one_case(demo_copy_db, backend):
    """PostgreSQL-only: two processes' writers take the same request with the same key at once (a client resending
    through the proxy to another process): one case. The writer whose transaction began before the other's commit
    does not see its key, loses the race (on the audit chain's head, or on the key), runs its batch again and
    answers with the first case."""
    if backend == "duckdb":
        pytest.skip("a DuckDB file has one writing process")
    with Store(demo_copy_db) as one, Store(demo_copy_db) as two:
        first, late = (IntakeWriter(one.con, CaseFeed(), dedupe_window_s=600),
                       IntakeWriter(two.con, CaseFeed(), dedupe_window_s=600))
        try:
            form = _forms(one, 1)[0]
            key = "race-0001-0123456789"
            go, read = threading.Event(), threading.Event()

            def held(con) -> Written:  # the late writer's batch has begun and read (its snapshot is taken)
                go.wait(30)
                return Written(None)

            def reading(con) -> Written:
                con.execute("SELECT count(*) FROM intake_keys").fetchall()
                read.wait(30)
                return Written(None)
            late.submit(held)
            late.submit(reading)
            racing = late.take_request(form, district_crs="EPSG:4547", client="app", key=key)
            go.set()  # the reading job and the request run in one batch, the reading one first
            won = first.take_request(form, district_crs="EPSG:4547", client="app", key=key).result(timeout=60)
            read.set()
            lost = racing.result(timeout=60)
            assert not won.get("replayed") and lost["replayed"]
            assert lost["service_request_id"] == won["service_request_id"]
            cases, = one.con.execute("SELECT count(*) FROM intake_keys WHERE key = ?", [key]).fetchone()
            assert cases == 1
        finally:
            first.close()
            late.close()
