"""Fuzz target: the detection API's JSON bodies, decoded as the server does and taken by a DetectionDesk."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pandas as pd
from hypothesis import strategies as st

from bench.fuzzing.harness import INJECTIONS, SANE_CASES, SURROGATES, Target, texts
from twin.cases.detections import DETECTION_FIELDS, DetectionDesk, DetectionError, ai_categories, parse_detection
from twin.store.store import Store

NOW = pd.Timestamp("2026-11-26 12:00")

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         texts(max_size=20, surrogates=True))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
stamps = st.one_of(
    st.sampled_from(["2026-11-26T10:00:00+08:00", "2026-11-26T03:59:59Z", "2026-11-26 11:00", "1677-09-21T00:12:43",
                     "2262-04-11T23:47:16.854775807", "0001-01-01", "9999-12-31T23:59:59", "2026-02-30T00:00:00",
                     "2026-11-26T10:00:00+25:00", "now", "today", "1", "-1", "1e10", "T", "2026-W48-4", "\x00",
                     "2026-11-26T10:00:00\x00' OR '1'='1"]),
    st.datetimes().map(lambda d: d.isoformat()),
    texts(max_size=30, surrogates=True), json_scalars)
numbers = st.one_of(st.floats(0, 1), st.floats(), st.integers(-2, 2), st.booleans(), texts(max_size=5), st.none())


@st.composite
def bodies(draw) -> dict:
    """A valid detection from a real camera with some fields fuzzed, dropped or added."""
    body = {"camera_id": draw(st.sampled_from(["CAM00001", "CAM00002", "CAM00700"])),
            "category": draw(st.sampled_from(ai_categories())), "confidence": draw(st.floats(0, 1)),
            "detected_at": draw(st.sampled_from(["2026-11-26T10:00:00+08:00", "2026-11-26T09:00:00+08:00"]))}
    fuzzed = {
        "camera_id": st.one_of(st.sampled_from(["CAM00001", " CAM00001 ", "cam00001", "CAM99999"]),
                               texts(surrogates=True), json_values),
        "category": st.one_of(st.sampled_from(ai_categories()), texts(), json_values),
        "confidence": numbers, "detected_at": stamps,
        "snapshot_url": st.one_of(st.sampled_from(["http://v.test/s.jpg", "https://v.test/" + "é" * 2100,
                                                   "javascript:alert(1)", "http://v.test/\ud800",
                                                   "http://v.test/'; DROP TABLE detections; --"]),
                                  texts(surrogates=True), json_values),
        "bbox": st.one_of(st.lists(numbers, max_size=5), st.lists(st.floats(1, 1e4), min_size=4, max_size=4),
                          json_values),
        "api_key": texts(),
    }
    for name in draw(st.lists(st.sampled_from(DETECTION_FIELDS), max_size=3, unique=True)):
        body[name] = draw(fuzzed[name])
    for name in draw(st.lists(st.sampled_from(tuple(body)), max_size=1)):
        body.pop(name, None)
    body.update(draw(st.dictionaries(st.sampled_from(INJECTIONS[:6] + ("colour",)), json_scalars, max_size=1)))
    return body


def _json_text(value) -> str:
    return json.dumps(value, ensure_ascii=True)  # lone surrogates travel as \\ud800 escapes, as a client may send


inputs = st.one_of(
    st.builds(_json_text, bodies()), st.builds(_json_text, bodies()), st.builds(_json_text, json_values),
    st.sampled_from(['{"camera_id": "\\ud800", "category": "x"}', "[" * 50 + "]" * 50, "1e999", "NaN",
                     '{"camera_id": "CAM00001", "camera_id": "CAM00002"}'] + list(SURROGATES)),
)


@contextlib.contextmanager
def session(store_path: Path, workdir: Path):
    """Each input: the body decoded as the server does, parsed, and taken by one desk in one transaction;
    the desk forgets what a rolled-back transaction wrote. A body that is not JSON is refused with the
    server's 400 (``DetectionError`` on the field ``body``), so it is counted as refused, never as taken."""
    with Store(store_path) as store:
        desk = DetectionDesk(store.con)

        def run(text: str) -> None:
            try:
                body = json.loads(text)
            except ValueError as exc:
                raise DetectionError("body", f"not UTF-8 JSON ({exc}).") from exc
            if isinstance(body, dict):
                body.pop("api_key", None)  # the server takes the key out for itself
            try:
                with store.transaction() as con:
                    desk.take(con, parse_detection(body, now=NOW), received_at=NOW)
            except Exception:
                desk.forget()
                raise

        yield store.con, run


TARGET = Target("twin.cases.detections", inputs, ("cases", "case_events", "detections"), session, sane=SANE_CASES)
