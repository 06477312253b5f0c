"""Simulated operator sessions: the app opened and driven over Bokeh's websocket protocol, as BokehJS does,
without a browser (test and bench tooling, not product).

A session signs in (the login form's POST; the user is a signed cookie), opens ``/app`` (the page carries the
session's token), connects the websocket with the token and the cookie, pulls the document, and then sets what
the browser's 3D view sets: ``ready`` once its first frame is drawn (the side panels, the inspector among them,
join the page then) and ``pick`` when a building is clicked. It reads what the server sends back: the
inspector card's text, and the live case markers' updates. Every connection leaves from the session's own
source address on the loopback range, so that a proxy's ``ip_hash`` spreads the sessions over its workers as
it spreads browsers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import urllib.parse
from collections.abc import Iterator

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

VIEW_MODEL = re.compile(r"DistrictView\d*")  # the 3D view's data model (Panel names it after the class)
CARD_CLASS = "twin-inspector"  # the inspector card's HTML pane
TOKEN = re.compile(r'token\W{0,8}:\W{0,8}([A-Za-z0-9_.\-]{20,})')
MAX_MESSAGE_BYTES = 1 << 30
OPEN_TIMEOUT_S = 180.0


def ip_hash_worker(address: str, workers: int) -> int:
    """The index of the worker that nginx's ``ip_hash`` sends ``address`` to, with ``workers`` equal servers all up.

    nginx (ngx_http_upstream_ip_hash_module.c) hashes the first three octets of an IPv4 address from 89:
    ``hash = (hash * 113 + octet) % 6271``, then takes ``hash % total_weight``.
    """
    value = 89
    for octet in address.split(".")[:3]:
        value = (value * 113 + int(octet)) % 6271
    return value % workers


def balanced_sources(count: int, workers: int, *, first: int = 1) -> tuple[list[str], list[int]]:
    """``count`` loopback addresses ``127.0.k.1`` (k from ``first`` on; they differ in the third octet, which
    ``ip_hash`` reads) that nginx spreads evenly over ``workers`` equal servers, and the worker of each."""
    wanted = [count // workers + (w < count % workers) for w in range(workers)]
    found: list[list[str]] = [[] for _ in range(workers)]
    for k in range(first, 255):
        address = f"127.0.{k}.1"
        worker = ip_hash_worker(address, workers)
        if len(found[worker]) < wanted[worker]:
            found[worker].append(address)
        if all(len(f) == n for f, n in zip(found, wanted)):
            break
    else:
        raise RuntimeError(f"fewer than {count} addresses from 127.0.{first}.1 on spread evenly over {workers} workers")
    order = [(a, w) for n in range(max(wanted)) for w in range(workers) if n < wanted[w] for a in [found[w][n]]]
    return [a for a, _ in order], [w for _, w in order]


def _objects(value) -> Iterator[dict]:
    """Every serialized Bokeh model in a message's JSON (``{"type": "object", "name", "id", "attributes"}``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "object" and "id" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _map(values: dict) -> dict:
    """A JavaScript object as BokehJS serializes it."""
    return {"type": "map", "entries": [[k, v] for k, v in values.items()]}


def _message(msgtype: str, content: dict, msgid: str) -> list[str]:
    """A Bokeh protocol message without buffers: its header, metadata and content frames."""
    return [json.dumps({"msgid": msgid, "msgtype": msgtype}), "{}", json.dumps(content)]


class OperatorSession:
    """One signed-in app session spoken to over Bokeh's protocol.

    Parameters
    ----------
    base : str
        The server (or proxy) to reach, ``http://host:port``.
    username, password : str
        A user of the store.
    source : str
        The loopback address this session's connections leave from.
    """

    def __init__(self, base: str, username: str, password: str, *, source: str) -> None:
        self.base, self.username, self.password, self.source = base, username, password, source
        self.view_id: str | None = None  # the 3D view's data model
        self.card_id: str | None = None
        self.open_s: dict[str, float] = {}
        self.received_bytes = 0
        self.opened_bytes = 0  # received over the websocket until the inspector was on the page
        self.case_seen: dict[str, float] = {}  # case id -> when its marker update arrived (perf_counter)
        self._card_waiters: list[tuple[str, asyncio.Future]] = []
        self._case_waiters: dict[str, list[asyncio.Future]] = {}
        self._card_ready = asyncio.Event()
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._seq = 0
        self._msgid = 0
        self.error: BaseException | None = None

    # -- opening ----------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Sign in, open the app, pull its document, and say the first frame is drawn; returns once the
        inspector card is in the document. ``open_s`` gets the time of each part."""
        http = AsyncHTTPClient()
        started = time.perf_counter()
        answer = await http.fetch(self._request("/login", method="POST", body=urllib.parse.urlencode(
            {"username": self.username, "password": self.password})), raise_error=False)
        if answer.code != 302 or "error=" in answer.headers.get("Location", ""):
            raise RuntimeError(f"{self.source}: signing in as {self.username} failed: HTTP {answer.code}")
        self._cookie = "; ".join(c.split(";", 1)[0] for c in answer.headers.get_list("Set-Cookie"))
        signed_in = time.perf_counter()
        page = await http.fetch(self._request("/app"), raise_error=False)
        if page.code != 200:
            raise RuntimeError(f"{self.source}: /app answered HTTP {page.code} after signing in")
        found = TOKEN.search(page.body.decode(errors="replace"))
        if found is None:
            raise RuntimeError(f"{self.source}: the app's page carries no session token")
        paged = time.perf_counter()
        ws_url = self.base.replace("http", "ws", 1) + "/app/ws"
        self._ws = await websocket_connect(
            HTTPRequest(ws_url, headers={"Cookie": self._cookie, "Origin": self.base}, network_interface=self.source,
                        request_timeout=OPEN_TIMEOUT_S),
            subprotocols=["bokeh", found.group(1)], max_message_size=MAX_MESSAGE_BYTES)
        header, _, _ = await self._next()
        if header["msgtype"] != "ACK":
            raise RuntimeError(f"{self.source}: the server's first message is {header['msgtype']}, not ACK")
        await self._send("PULL-DOC-REQ", {})
        _, doc, _ = await self._next()
        views = [o["id"] for o in _objects(json.loads(doc)) if VIEW_MODEL.fullmatch(str(o.get("name")))]
        if len(views) != 1:
            raise RuntimeError(f"{self.source}: the document holds {len(views)} 3D views, not one")
        self.view_id = views[0]
        pulled = time.perf_counter()
        self._reader = asyncio.create_task(self._read())
        # BokehJS says the document is rendered (Panel holds a session's changes until then), and the 3D view
        # later says its first frame is drawn: the side panels, the inspector among them, join the page.
        await self._send("PATCH-DOC", {"events": [{"kind": "MessageSent", "msg_type": "bokeh_event", "msg_data": {
            "type": "event", "name": "document_ready", "values": {}}}]})
        await self._set("ready", True)
        await asyncio.wait_for(self._card_ready.wait(), OPEN_TIMEOUT_S)
        self.open_s = {"sign_in": signed_in - started, "page": paged - signed_in, "document": pulled - paged,
                       "panels": time.perf_counter() - pulled, "total": time.perf_counter() - started}
        self.opened_bytes = self.received_bytes

    def _request(self, path: str, **kw) -> HTTPRequest:
        headers = {"Cookie": self._cookie} if getattr(self, "_cookie", None) else {}
        return HTTPRequest(self.base + path, headers=headers, follow_redirects=False, network_interface=self.source,
                           request_timeout=OPEN_TIMEOUT_S, **kw)

    # -- talking --------------------------------------------------------------------------------------------------
    async def _send(self, msgtype: str, content: dict) -> None:
        self._msgid += 1
        for frame in _message(msgtype, content, f"sim{self._msgid}"):
            await self._ws.write_message(frame)

    async def _set(self, attr: str, value) -> None:
        """Change a property of the 3D view's data model, as the browser's view does."""
        await self._send("PATCH-DOC", {"events": [{"kind": "ModelChanged", "model": {"id": self.view_id},
                                                   "attr": attr, "new": value}]})

    async def _frame(self) -> str | bytes:
        fragment = await self._ws.read_message()
        if fragment is None:
            raise ConnectionError(f"{self.source}: the server closed the session's websocket")
        self.received_bytes += len(fragment)
        return fragment

    async def _next(self) -> tuple[dict, str, dict[str, bytes]]:
        """The next message: its header, its content as the JSON text it came in, and its buffers by id.

        The content is left undecoded (unlike bokeh's own ``Receiver``): one client serves every session, and
        most of what the server sends them (figures, tables, colours) is not looked at.
        """
        header = json.loads(await self._frame())
        await self._frame()  # metadata
        content = await self._frame()
        buffers: dict[str, bytes] = {}
        for _ in range(header.get("num_buffers", 0)):
            ref = json.loads(await self._frame())["id"]
            buffers[ref] = await self._frame()
        return header, content, buffers

    async def _read(self) -> None:
        try:
            while True:
                header, content, buffers = await self._next()
                if header["msgtype"] == "PATCH-DOC" and self._wanted(content):
                    self._patched(json.loads(content).get("events", []), buffers, time.perf_counter())
        except BaseException as exc:  # closed: waiters fail with it
            self.error = exc
            for _, future in self._card_waiters:
                if not future.done():
                    future.set_exception(ConnectionError(str(exc)))
            raise

    def _wanted(self, content: str) -> bool:
        """Whether a patch may hold the inspector card (its model, or its text) or case markers."""
        if self.card_id is None:
            return CARD_CLASS in content
        return (bool(self._card_waiters) and f'"{self.card_id}"' in content) or '"case_updates"' in content

    def _patched(self, events: list[dict], buffers: dict[str, bytes], at: float) -> None:
        if self.card_id is None:
            cards = [o["id"] for o in _objects(events) if CARD_CLASS in (o.get("attributes", {}).get("css_classes")
                                                                         or [])]
            if cards:
                self.card_id = cards[0]
                self._card_ready.set()
        for event in events:
            if event.get("kind") != "ModelChanged":
                continue
            model = event.get("model", {}).get("id")
            if model == self.card_id and event.get("attr") == "text":
                text = str(event.get("new"))
                for wanted, future in list(self._card_waiters):
                    if wanted in text and not future.done():
                        future.set_result(at)
                        self._card_waiters.remove((wanted, future))
            elif model == self.view_id and event.get("attr") == "case_updates":
                for case_id in _case_ids(event.get("new"), buffers):
                    self.case_seen.setdefault(case_id, at)
                    for future in self._case_waiters.pop(case_id, []):
                        if not future.done():
                            future.set_result(at)

    # -- what an operator does ----------------------------------------------------------------------------------
    async def pick(self, index: int, building_id: str, *, timeout: float = 30.0) -> float:
        """Click building ``index`` (its id ``building_id``); seconds until the inspector card names it."""
        future = asyncio.get_running_loop().create_future()
        self._card_waiters.append((building_id, future))
        self._seq += 1
        started = time.perf_counter()
        await self._set("pick", _map({"kind": "building", "index": int(index), "seq": self._seq, "element": -1}))
        try:
            return await asyncio.wait_for(future, timeout) - started
        finally:
            if (building_id, future) in self._card_waiters:  # timed out
                self._card_waiters.remove((building_id, future))

    def case_arrival(self, case_id: str) -> asyncio.Future:
        """A future of when case ``case_id``'s marker update reaches this session (perf_counter)."""
        future = asyncio.get_running_loop().create_future()
        if case_id in self.case_seen:
            future.set_result(self.case_seen[case_id])
        else:
            self._case_waiters.setdefault(case_id, []).append(future)
        return future

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            self._ws.close()


def _case_ids(value, buffers: dict[str, bytes]) -> list[str]:
    """The case ids at the end of a ``case_updates`` buffer (:func:`scenes.layers.case_update_records`)."""
    if not isinstance(value, dict) or value.get("type") != "bytes":
        return []
    data = value.get("data")
    raw = buffers.get(data.get("id")) if isinstance(data, dict) else base64.b64decode(data or "")
    if not raw or len(raw) < 4:
        return []
    count = int.from_bytes(raw[:4], "little")
    ids = raw[4 + count * 6 * 4:]
    return ids.decode(errors="replace").split("\n") if ids else []
