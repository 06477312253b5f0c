"""Fuzz the detection API: JSON bodies parsed and taken by the DetectionDesk on a store copy."""

from __future__ import annotations

from bench.fuzzing.detections import TARGET
from bench.fuzzing.harness import fuzz_a_copy, replay
from tests.conftest import copy_of
from twin.store.store import Store

EXAMPLES = 500


def detections_in(store_path) -> int:
    with Store(store_path, read_only=True) as store:
        return store.con.execute("SELECT count(*) FROM detections").fetchone()[0]


def test_detections_become_cases_or_are_refused_without_a_trace(small_demo, tmp_path):
    before = detections_in(small_demo)
    tally = fuzz_a_copy(TARGET, small_demo, tmp_path, max_examples=EXAMPLES)
    assert tally.ok > 0 and tally.refused > 0
    assert set(tally.reasons) == {"DetectionError"}, "every refusal is the API's 400, naming the field"
    assert detections_in(tmp_path / "store.duckdb") - before == tally.ok, "each detection taken is stored once"


def test_a_body_that_is_not_json_is_refused_not_taken(small_demo, tmp_path):
    tally = replay(TARGET, copy_of(small_demo, tmp_path), tmp_path, ["NaN-", "{", "1e999x", "", "\ud800"])
    assert tally.refused == tally.tried == 5 and tally.ok == 0


FOUND = [  # inputs fuzzing found that crashed instead of being refused with a DetectionError
    '{"camera_id": "CAM00001", "category": "traffic.illegal_parking", "confidence": 0.5, '
    '"detected_at": "2026-11-26T10:00:00+08:00", "snapshot_url": "http://v.test/\\ud800"}',  # DuckDB refuses surrogates
    '{"camera_id": "CAM0\\udc800001", "category": "traffic.illegal_parking", "confidence": 0.5, '
    '"detected_at": "2026-11-26T10:00:00+08:00"}',
    '{"camera_id": "CAM00001", "category": "traffic.illegal_parking", "confidence": 0.0, "detected_at": "-1"}',
    '{"camera_id": "CAM00001", "category": "traffic.illegal_parking", "confidence": 0.0, "detected_at": "0001-01-01"}',
]


def test_what_fuzzing_found_is_refused(small_demo, tmp_path):
    tally = replay(TARGET, copy_of(small_demo, tmp_path), tmp_path, FOUND)
    assert tally.refused == len(FOUND)
