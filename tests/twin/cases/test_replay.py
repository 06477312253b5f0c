"""Feed files for `twin feed replay`: checked line by line before anything is sent."""

from __future__ import annotations

import json

import pytest

from twin.errors import InputError
from twin.cases.replay import encode, read_feed


def test_the_demo_feed_reads_and_encodes(small_demo):
    lines = read_feed(small_demo.with_suffix(".feed.jsonl"))
    kinds = {line["kind"] for line in lines}
    assert kinds == {"detection", "open311"} and len(lines) > 50
    path, content_type, body = encode(next(line for line in lines if line["kind"] == "detection"), api_key="k")
    assert path == "/api/detections" and json.loads(body)["api_key"] == "k"
    path, content_type, body = encode(next(line for line in lines if line["kind"] == "open311"), api_key="k")
    assert content_type == "application/x-www-form-urlencoded" and b"api_key=k" in body


@pytest.mark.parametrize("text, words", [
    ("{not json\n", ":1: not JSON"),
    ('{"kind": "tweet", "body": {}}\n', ":1: expected"),
    ('\n{"kind": "detection", "form": {}}\n', ":2: expected"),
])
def test_a_bad_line_is_named(tmp_path, text, words):
    path = tmp_path / "feed.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match=words):
        read_feed(path)
    with pytest.raises(InputError, match="no such feed file"):
        read_feed(tmp_path / "missing.jsonl")
