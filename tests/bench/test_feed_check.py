"""The feed bench finds acknowledged cases missing from the store and forms stored twice, on the small demo."""

from __future__ import annotations

from bench.feed import building_points, check_store, report_forms
from twin.cases.detections import DEDUPE_WINDOW_S
from twin.cases.live import CaseFeed, IntakeWriter
from twin.store.store import Store


def _take(db, forms: list[dict], crs: str) -> list[str]:
    """The forms taken by the server's own writer; the case ids it acknowledged."""
    with Store(db) as store:
        writer = IntakeWriter(store.con, CaseFeed(), dedupe_window_s=DEDUPE_WINDOW_S)
        futures = [writer.take_request(f, district_crs=crs, client="test") for f in forms]
        return [f.result()["service_request_id"] for f in futures]


def test_a_step_holds_only_with_every_acknowledged_case_stored_once(demo_copy):
    points, crs = building_points(demo_copy)
    forms = report_forms(points, crs, 20, label="step0")
    acked = _take(demo_copy, forms, crs)
    steps = {"step0": {"p99_ms": 50.0, "not_acknowledged": 0}, "step1": {"p99_ms": 50.0, "not_acknowledged": 0}}

    check_store(demo_copy, steps, {"step0": acked, "step1": []})
    assert [(s["lost"], s["duplicated"], s["held"]) for s in steps.values()] == [(0, 0, True), (0, 0, True)]

    check_store(demo_copy, steps, {"step0": [*acked, "C20990101-0001"], "step1": []})
    assert (steps["step0"]["lost"], steps["step0"]["held"]) == (1, False)

    _take(demo_copy, forms[:1], crs)  # the same form stored a second time
    check_store(demo_copy, steps, {"step0": acked, "step1": []})
    assert (steps["step0"]["lost"], steps["step0"]["duplicated"], steps["step0"]["held"]) == (0, 1, False)
    assert steps["step1"]["held"]


def test_a_slow_or_unacknowledged_step_does_not_hold(demo_copy):
    steps = {"step0": {"p99_ms": 250.0, "not_acknowledged": 0}, "step1": {"p99_ms": 50.0, "not_acknowledged": 3},
             "step2": {"not_acknowledged": 0}}  # the client failed: no latency
    check_store(demo_copy, steps, {})
    assert [s["held"] for s in steps.values()] == [False, False, False]
