"""AI detections: validation that names the field, placement at the camera's target, and de-duplication."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.cases.cases import match_location
from twin.cases.detections import DetectionDesk, DetectionError, ai_categories, camera_target, parse_detection
from twin.cases.evaluations import token_hash
from twin.store.store import Store, open_for_command

NOW = pd.Timestamp("2026-11-26 12:00")


def body(**changes) -> dict:
    return {"camera_id": "CAM00001", "category": "traffic.illegal_parking", "confidence": 0.9,
            "detected_at": "2026-11-26T10:00:00+08:00", **changes}


def test_a_detection_is_parsed_with_its_time_in_utc():
    d = parse_detection(body(bbox=[10, 20, 30, 40], snapshot_url="http://video.local/s/1.jpg"), now=NOW)
    assert d["detected_at"] == pd.Timestamp("2026-11-26 10:00") and d["bbox"] == [10.0, 20.0, 30.0, 40.0], \
        "kept in the store's zone (Asia/Shanghai)"
    assert parse_detection(body(detected_at="2026-11-26T02:00:00Z"), now=NOW)["detected_at"] == d["detected_at"]


@pytest.mark.parametrize("changes, field, words", [
    ({"camera_id": ""}, "camera_id", "required"),
    ({"category": "other.other"}, "category", "not an AI scene"),
    ({"confidence": 1.2}, "confidence", "0 to 1"),
    ({"confidence": True}, "confidence", "0 to 1"),
    ({"detected_at": "yesterday-ish"}, "detected_at", "ISO 8601"),
    ({"detected_at": "2026-11-27T12:00:00"}, "detected_at", "future"),
    ({"snapshot_url": "file:///etc/passwd"}, "snapshot_url", "http"),
    ({"bbox": [1, 2, 3]}, "bbox", "width, height"),
    ({"bbox": [1, 2, -3, 4]}, "bbox", "width, height"),
    ({"colour": "red"}, "body", "unknown field.*'colour'"),
])
def test_bad_detections_name_the_field_and_why(changes, field, words):
    with pytest.raises(DetectionError, match=words) as caught:
        parse_detection(body(**changes), now=NOW)
    assert caught.value.field == field


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()),
                 st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.text(), st.floats(), st.integers()))))
def test_any_json_is_either_a_detection_or_a_detection_error(value):
    try:
        parse_detection(value, now=NOW)
    except DetectionError as exc:
        assert exc.field and str(exc).startswith(exc.field)


@given(heading=st.floats(0, 360), pitch=st.floats(-89, 30), z=st.floats(2, 40), reach=st.floats(5, 200))
def test_the_target_lies_on_the_heading_within_range(heading, pitch, z, reach):
    x, y = camera_target(100.0, 200.0, z, heading_deg=heading, pitch_deg=pitch, range_m=reach)
    d = math.hypot(x - 100.0, y - 200.0)
    assert d <= reach + 1e-6
    if d > 1e-6:
        bearing = math.degrees(math.atan2(x - 100.0, y - 200.0)) % 360
        assert min(abs(bearing - heading % 360), 360 - abs(bearing - heading % 360)) < 1e-3
    if pitch < -1 and z / math.tan(math.radians(-pitch)) < reach:
        assert d == pytest.approx(z / math.tan(math.radians(-pitch)))


def _camera(con) -> str:
    # A camera whose target lies inside the district.
    for camera_id, x, y, z, h, p, r in con.execute(
            "SELECT camera_id, ST_X(position), ST_Y(position), z, heading_deg, pitch_deg, range_m FROM cameras "
            "ORDER BY camera_id").fetchall():
        try:
            match_location(con, *camera_target(x, y, z, heading_deg=h, pitch_deg=p, range_m=r))
            return camera_id
        except Exception:
            continue
    raise AssertionError("no camera looks into the district")


def test_repeats_within_the_window_join_one_case_and_later_ones_open_another(demo_copy):
    with open_for_command(demo_copy) as store:
        camera = _camera(store.con)
        desk = DetectionDesk(store.con, window_s=600)
        start = pd.Timestamp("2026-11-26 10:00")
        taken = [desk.take(store.con, parse_detection(body(camera_id=camera, detected_at=(start + pd.Timedelta(
            seconds=60 * k)).isoformat()), now=NOW)) for k in range(8)]  # every minute for 8 minutes
        other = desk.take(store.con, parse_detection(body(camera_id=camera, category="sanitation.garbage_overflow",
                                                          detected_at=start.isoformat()), now=NOW))
        later = desk.take(store.con, parse_detection(body(camera_id=camera, detected_at=(
            start + pd.Timedelta(minutes=7 + 11)).isoformat()), now=NOW))
    assert len({t["case_id"] for t in taken}) == 1 and [t["duplicate"] for t in taken] == [False] + [True] * 7
    assert other["case_id"] != taken[0]["case_id"] and not other["duplicate"]
    assert later["case_id"] not in (taken[0]["case_id"], other["case_id"])
    with Store(demo_copy, read_only=True) as store:
        case = store.con.execute("SELECT source, camera_id, status FROM cases WHERE case_id = ?",
                                 [taken[0]["case_id"]]).fetchone()
        joined, = store.con.execute("SELECT count(*) FROM detections WHERE case_id = ?",
                                    [taken[0]["case_id"]]).fetchone()
    assert case == ("ai", camera, "reported") and joined == 8
    # The client that saw it is the new case's reporter: one token (kept as its hash), none for the repeats.
    assert taken[0]["evaluation_token"] and [t["evaluation_token"] for t in taken[1:]] == [None] * 7
    with Store(demo_copy, read_only=True) as store:
        held = store.con.execute("SELECT token_hash FROM evaluation_tokens WHERE case_id = ?",
                                 [taken[0]["case_id"]]).fetchall()
    assert held == [(token_hash(taken[0]["evaluation_token"]),)]


def test_a_new_desk_finds_the_open_case_in_the_store_and_a_closed_case_is_not_joined(demo_copy):
    with open_for_command(demo_copy) as store:
        camera = _camera(store.con)
        first = DetectionDesk(store.con).take(store.con, parse_detection(body(camera_id=camera), now=NOW))
    with open_for_command(demo_copy) as store:  # as after a server restart
        again = DetectionDesk(store.con).take(store.con, parse_detection(body(camera_id=camera), now=NOW))
        store.con.execute("UPDATE cases SET status = 'closed' WHERE case_id = ?", [first["case_id"]])
        after_close = DetectionDesk(store.con).take(store.con, parse_detection(body(camera_id=camera), now=NOW))
    assert again["case_id"] == first["case_id"] and again["duplicate"]
    assert after_close["case_id"] != first["case_id"]


def test_an_unknown_camera_is_refused_and_nothing_is_written(demo_copy):
    with pytest.raises(DetectionError, match="no camera 'CAM99999'"), open_for_command(demo_copy) as store:
        DetectionDesk(store.con).take(store.con, parse_detection(body(camera_id="CAM99999"), now=NOW))
    with Store(demo_copy, read_only=True) as store:
        assert store.count("detections") == 0


def test_the_ai_scenes_are_in_the_taxonomy():
    assert {"building_safety.thrown_objects", "fire_safety.fire_lane_blocked", "traffic.illegal_parking",
            "sanitation.garbage_overflow", "fire_safety.ebike_indoor_charging", "public_security.face_alert"} <= set(
        ai_categories())
