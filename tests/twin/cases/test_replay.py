"""Feed files for `twin feed replay`: checked line by line before anything is sent."""

from __future__ import annotations

import asyncio
import json

import pytest

from twin.errors import InputError
from twin.cases.replay import encode, post_all, read_feed


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


def test_the_connections_leave_from_the_given_addresses_in_turn():
    """A proxy that spreads clients by address (nginx's ip_hash) sees as many clients as there are sources."""
    peers: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n[]")
            await writer.drain()
        writer.close()

    async def run() -> list:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await post_all(f"http://127.0.0.1:{port}", [("/x", "text/plain", b"hi")] * 8, rate=1000,
                                  connections=4, sources=["127.0.5.1", "127.0.6.1"])

    posted = asyncio.run(run())
    assert [p.status for p in posted] == [201] * 8
    assert sorted(peers) == ["127.0.5.1", "127.0.5.1", "127.0.6.1", "127.0.6.1"]
