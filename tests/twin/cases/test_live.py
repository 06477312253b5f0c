"""The intake writer commits in batches before it answers, and the case feed tells sessions what changed."""

from __future__ import annotations

from concurrent.futures import wait

import pandas as pd
import pytest

from twin.cases.cases import load_taxonomy
from twin.geo.crs import transform_xy
from twin.cases.detections import DetectionError, parse_detection
from twin.errors import InputError
from twin.cases.live import CaseFeed, IntakeWriter
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
def writer(demo_copy):
    store = Store(demo_copy)
    feed = CaseFeed()
    yield IntakeWriter(store.con, feed, dedupe_window_s=600), store, feed
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
