"""Fuzz the Open311 intake: raw form bodies and decoded forms, taken in as cases on a store copy."""

from __future__ import annotations

from bench.fuzzing.harness import fuzz_a_copy, replay
from bench.fuzzing.open311 import CODES, TARGET
from tests.conftest import copy_of

EXAMPLES = 500


def test_open311_forms_become_cases_or_are_refused_without_a_trace(small_demo, tmp_path):
    tally = fuzz_a_copy(TARGET, small_demo, tmp_path, max_examples=EXAMPLES)
    assert tally.ok > 0 and tally.refused > 0


def test_forms_with_text_that_is_not_unicode_or_too_many_fields_are_refused(small_demo, tmp_path):
    form = {"service_code": CODES[0], "lat": "34.76", "long": "113.72"}
    values = [{"form": {**form, "description": "\ud800"}}, {"form": {**form, "a\udfffb": "x"}},
              {"body": b"&".join([b"a=1"] * 101), "content_type": "application/x-www-form-urlencoded"},
              {"body": b"x" * (64 * 1024 + 1), "content_type": "application/x-www-form-urlencoded"},
              {"body": b"lat=\xff", "content_type": "application/x-www-form-urlencoded"},
              {"body": b"lat=1", "content_type": "application/json"}]
    tally = replay(TARGET, copy_of(small_demo, tmp_path), tmp_path, values)
    assert tally.refused == len(values)
