"""Post a recorded stream of intake (JSON lines) to a running ``twin serve``, at a steady rate.

Each line is one request::

    {"kind": "detection", "body": {"camera_id": ..., "category": ..., "confidence": ..., "detected_at": ...}}
    {"kind": "open311", "form": {"service_code": ..., "lat": ..., "long": ..., "description": ...}}

A small asyncio HTTP/1.1 client keeps a few connections alive, so one process
can post hundreds of requests a second (``twin feed replay`` and the feed
benchmark share it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlparse

import pandas as pd

from twin.errors import InputError

log = logging.getLogger(__name__)
FEED_KINDS = ("detection", "open311")


@dataclass
class Posted:
    """One request's outcome: HTTP status, parsed JSON reply, and when it was sent and answered."""

    index: int
    status: int
    reply: object
    sent: float  # time.perf_counter()
    answered: float


def read_feed(path: str | Path) -> list[dict]:
    """Read and check a feed file; an error names the line and what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such feed file.")
    lines = []
    with path.open(encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not JSON ({exc.msg}); each line is one JSON object.") from None
            kind = line.get("kind") if isinstance(line, dict) else None
            payload = "body" if kind == "detection" else "form"
            if kind not in FEED_KINDS or not isinstance(line.get(payload), dict):
                raise InputError(f"{path}:{number}: expected {{\"kind\": \"detection\", \"body\": {{...}}}} or "
                                 f"{{\"kind\": \"open311\", \"form\": {{...}}}}, found {text.strip()[:80]!r}.")
            lines.append(line)
    return lines


def encode(line: dict, *, api_key: str, live_times: bool = True) -> tuple[str, str, bytes]:
    """The path, content type and body of one feed line's request.

    With ``live_times``, a detection's ``detected_at`` becomes the time of sending,
    so a recorded day can be replayed at any hour.
    """
    if line["kind"] == "detection":
        body = dict(line["body"])
        if live_times:
            body["detected_at"] = pd.Timestamp.now(tz="UTC").floor("ms").isoformat()  # with its offset
        return "/api/detections", "application/json", json.dumps({**body, "api_key": api_key}).encode()
    return ("/open311/v2/requests.json", "application/x-www-form-urlencoded",
            urlencode({**line["form"], "api_key": api_key}).encode())


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str,
                content_type: str, body: bytes) -> tuple[int, bytes]:
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n".encode() + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for header in head.split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def post_all(url: str, requests: Iterable[tuple[str, str, bytes]], *, rate: float, connections: int = 8,
                   on_reply: Callable[[Posted], None] | None = None, sources: Sequence[str] = ()) -> list[Posted]:
    """Post ``(path, content_type, body)`` requests to the server at ``url``, ``rate`` per second.

    Requests are sent on schedule over ``connections`` kept-alive connections; a
    request whose connection is busy waits for it (and its wait counts in its latency).
    ``sources``: local addresses the connections leave from, in turn (as many clients would, to a proxy
    that spreads clients by address); empty: the system's choice.
    """
    if not rate > 0:
        raise InputError(f"--rate must be above 0 requests per second, found {rate!r}.")
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    queue: asyncio.Queue = asyncio.Queue()
    results: list[Posted] = []

    async def worker(source: str | None) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port,
                                                           local_addr=(source, 0) if source else None)
        except OSError as exc:
            raise InputError(f"cannot reach {url} ({exc}); is `twin serve` running there?") from None
        try:
            while (item := await queue.get()) is not None:
                index, due, (path, content_type, body) = item
                status, raw = await _post(reader, writer, f"{host}:{port}", path, content_type, body)
                try:
                    reply = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    reply = raw.decode(errors="replace")
                posted = Posted(index, status, reply, due, time.perf_counter())
                results.append(posted)
                if on_reply is not None:
                    on_reply(posted)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker(sources[k % len(sources)] if sources else None))
               for k in range(connections)]
    start = time.perf_counter()
    for index, request in enumerate(requests):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((index, max(due, start), request))
        for w in workers:
            if w.done() and w.exception():
                raise w.exception()
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return sorted(results, key=lambda p: p.index)


def replay(path: str | Path, *, url: str, api_key: str, rate: float, live_times: bool = True,
           progress: Callable[[int], None] | None = None) -> dict:
    """Post a feed file; a summary of what the server took, joined and refused.

    Returns
    -------
    dict
        ``posted``, ``accepted`` (201), ``new_cases``, ``joined`` (detections that joined an
        open case), ``refused`` (by HTTP status), ``seconds`` and ``rate`` (posted per second).
    """
    lines = read_feed(path)
    if not api_key:
        raise InputError("an API key is needed: pass --api-key (see `twin keys add`).")
    requests: Iterator = (encode(line, api_key=api_key, live_times=live_times) for line in lines)
    started = time.perf_counter()
    posted = asyncio.run(post_all(url, requests, rate=rate,
                                  on_reply=(lambda _p: progress(1)) if progress else None))
    seconds = time.perf_counter() - started
    refused: dict[str, int] = {}
    for p in posted:
        if p.status != 201:
            refused[str(p.status)] = refused.get(str(p.status), 0) + 1
            log.warning("line %d refused (%d): %s", p.index + 1, p.status, p.reply)
    accepted = [p for p in posted if p.status == 201]
    joined = sum(1 for p in accepted if isinstance(p.reply, dict) and p.reply.get("duplicate"))
    return {"posted": len(posted), "accepted": len(accepted), "new_cases": len(accepted) - joined, "joined": joined,
            "refused": refused, "seconds": round(seconds, 2), "rate": round(len(posted) / seconds, 1)}
