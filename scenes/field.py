"""The grid worker's phone page at ``/worker`` and its small JSON API, served by ``twin serve``.

A plain HTML page with its script and styles inline (``templates/worker.html``, ``worker.js``), not a Panel
document: a phone on a poor network gets one response of a few tens of kilobytes, and the page keeps
working offline (its actions wait in the phone's IndexedDB queue). It signs in as the app does (the same
``/login`` and cookie) and everything it asks goes through the worker's
:class:`~twin.access.policy.Gate` on the server.

Routes (every ``/api/field`` answer is JSON; an error is ``{"error": {"kind", "message"}}`` in the
page's language):

- ``GET /worker``: the page (a sign-in first; other roles are told it is the grid workers').
- ``GET /api/field/cases``: the worker's open cases (:func:`twin.field.worklist.worker_cases`), each with its
  place in longitude and latitude (the phone measures its own distance: its position leaves it only on patrol).
- ``GET /api/field/cases/{id}``: one case with its steps, photos and a small map of its micro-grid.
- ``POST /api/field/actions``: ``{"kind": "step"|"patrol"|"position", "key": ..., "age_ms": ...}`` applied once per
  key (:mod:`twin.field.actions`, :mod:`twin.field.patrol`); 409 for a case that moved on meanwhile.
- ``POST /api/field/cases/{id}/photos?kind=before|after&key=...&age_ms=...``: the photo's bytes as the body.
- ``GET /api/field/photos/{id}``: a stored photo, to whoever may see its case (the worker, the operators).

The POST routes need the header ``X-Twin-Field: 1``: a form of another site cannot send it, so a signed-in
worker's cookie cannot be used from there (no CSRF). ``age_ms`` says how long ago the worker acted (the phone
queued it meanwhile), so the store keeps when it happened, by the server's clock.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import math
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from tornado.web import RequestHandler, stream_request_body

from scenes.auth import TEMPLATES, SignIns
from scenes.i18n import (LANGS, N_, STATUS_NAMES, WORKER_JS, _, case_kind_name, choose_lang, error_text, js_texts,
                         speaking)
from scenes.phone import finish_page, not_this_roles_page, render_phone_page
from scenes.shared import READS, Cursors, OffLoop
from twin.access.access import Principal, user_lang
from twin.access.policy import MIN_REASON, Gate, Refusals
from twin.cases.cases import load_taxonomy, match_location
from twin.cases.live import IntakeWriter, Written
from twin.errors import AccessError, InputError, TwinError
from twin.field.actions import FIELD_STEPS, PHOTO_STATUSES, FieldConflict, add_photo, case_photo, take_step
from twin.field.patrol import CHECK_IN_EVERY_S, check_in, on_patrol, set_patrol
from twin.field.photos import MAX_PHOTO_BYTES, PhotoError, PhotoTooLarge, check_photo
from twin.field.worklist import worker_case, worker_cases
from twin.geo.crs import transform_xy
from twin.store.clock import now_in, store_timezone, with_offset
from twin.store.queries import _now as store_clock

log = logging.getLogger(__name__)
WGS84 = "EPSG:4326"
MAX_AGE_MS = 30 * 24 * 3600 * 1000  # an action queued longer than positions are kept is refused
UPLOAD_SLACK = 64 * 1024  # a photo's request may carry this much over the photo's limit before it is cut off
FIELD_HEADER = "X-Twin-Field"
PAGE = TEMPLATES / "worker.html"


class FieldDesk:
    """What the routes share: the store's cursors and writer, the sign-ins, the refusals' throttle.

    Parameters
    ----------
    cursors : Cursors
        Each reader thread's cursor (``scenes.shared``).
    writer : IntakeWriter
        The store's one writer: every action is one of its jobs.
    signins : SignIns
        Who the cookie's user is (enabled, role, grids).
    refusals : Refusals
        The app's throttle of refused accesses' audit rows.
    crs : str
        The district CRS.
    """

    def __init__(self, *, cursors: Cursors, writer: IntakeWriter, signins: SignIns, refusals: Refusals,
                 crs: str) -> None:
        self.cursors, self.writer, self.signins, self.refusals, self.crs = cursors, writer, signins, refusals, crs
        self.off_loop = OffLoop(cursors, writer)
        self.zone: ZoneInfo = store_timezone(cursors())

    def to_lonlat(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """District CRS to longitude, latitude (n x 2)."""
        return transform_xy(np.column_stack([x, y]), self.crs, WGS84) if len(x) else np.zeros((0, 2))

    def to_district(self, lon: float, lat: float) -> tuple[float, float]:
        x, y = transform_xy(np.array([[lon, lat]]), WGS84, self.crs)[0]
        return float(x), float(y)

    def local_frame(self, origin: tuple[float, float]) -> dict:
        """Longitude and latitude to metres from ``origin`` (district CRS) near it, as an affine map the phone
        applies: ``x = a·(lon - lon0) + b·(lat - lat0)``, ``y = c·(lon - lon0) + d·(lat - lat0)`` (a few cm off
        over a micro-grid)."""
        lon0, lat0 = self.to_lonlat(np.array([origin[0]]), np.array([origin[1]]))[0]
        step = 1e-3
        xy = transform_xy(np.array([[lon0, lat0], [lon0 + step, lat0], [lon0, lat0 + step]]), WGS84, self.crs)
        return {"lon0": lon0, "lat0": lat0, "a": (xy[1, 0] - xy[0, 0]) / step, "b": (xy[2, 0] - xy[0, 0]) / step,
                "c": (xy[1, 1] - xy[0, 1]) / step, "d": (xy[2, 1] - xy[0, 1]) / step,
                "dx": xy[0, 0] - origin[0], "dy": xy[0, 1] - origin[1]}


ANSWER_TIMES = ("at", "since")  # an action's answer gives its times as the store keeps them (naive ISO)


def _with_offsets(answer: dict, zone: ZoneInfo) -> dict:
    """An action's answer with its times given with the store zone's offset."""
    return {k: with_offset(pd.Timestamp(v), zone) if k in ANSWER_TIMES and isinstance(v, str) else v
            for k, v in answer.items()}


def _json(value: object, zone: ZoneInfo) -> object:
    """Store values as JSON: times with the store zone's offset, missing numbers as null."""
    if isinstance(value, dict):
        return {k: _json(v, zone) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v, zone) for v in value]
    if isinstance(value, datetime.datetime):
        return with_offset(pd.Timestamp(value), zone)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NaT or (value is not None and not isinstance(value, str | bool | int | float) and pd.isna(value)):
        return None
    return value


ERROR_KINDS: tuple[tuple[type[TwinError], int, str], ...] = (
    (FieldConflict, 409, "conflict"), (AccessError, 403, "refused"), (PhotoTooLarge, 413, "too_large"),
    (PhotoError, 415, "not_image"), (InputError, 400, "invalid"), (TwinError, 400, "invalid"))


class _FieldRoute(RequestHandler):
    """Who asks (the app's cookie), in which language, and answers as JSON."""

    def initialize(self, desk: FieldDesk) -> None:
        self.desk = desk

    def prepare(self) -> None:
        name = self.get_secure_cookie("user")
        self.principal: Principal | None = self.desk.signins.principal(
            name.decode("utf-8") if name else None, source=self.request.remote_ip)
        self.lang = choose_lang(self.get_argument("lang", None), None)
        if self.principal is None:
            return self.fail(401, "signed_out", _in(self.lang, N_("You are signed out: sign in again.")))
        if self.request.method == "POST" and self.request.headers.get(FIELD_HEADER) != "1":
            return self.fail(403, "refused", f"send the header {FIELD_HEADER}: 1 (the phone page does).")

    def reply(self, body: object, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(_json(body, self.desk.zone), ensure_ascii=False, separators=(",", ":")))

    def fail(self, status: int, kind: str, message: str, **more: object) -> None:
        self.reply({"error": {"kind": kind, "message": message, **more}}, status)

    def refuse(self, error: TwinError) -> None:
        status, kind = next((s, k) for cls, s, k in ERROR_KINDS if isinstance(error, cls))
        with speaking(self.lang):
            message = error_text(error)
        more = {"current": error.current} if isinstance(error, FieldConflict) else {}
        self.fail(status, kind, message, **more)

    def gate(self) -> Gate:
        """The principal's gate for a reader thread (:meth:`OffLoop.read` binds it there)."""
        return Gate(None, self.principal, refusals=self.desk.refusals)

    async def look(self, read: Callable[[Gate], object]) -> object:
        """``read(gate)`` on a reader thread, its audit rows committed; a :class:`TwinError` is returned."""
        result, rows = await self.desk.off_loop.read(self.gate(), read)
        await self.desk.off_loop.record(rows)
        return result

    async def apply(self, run: Callable[[Gate], dict], *, case_id: str | None = None) -> dict | TwinError:
        """``run(gate)`` as one job of the store's writer, on its connection; a refusal it raised (before writing
        anything but the refusal's audit row) is returned, and that row committed."""
        principal, refusals = self.principal, self.desk.refusals

        def job(con) -> Written:
            try:
                answer = run(Gate(con, principal, refusals=refusals))
            except TwinError as exc:
                return Written(exc)
            moved = case_id is not None and not answer.get("replayed")
            return Written(answer, changed=[case_id] if moved else [])
        return await self.desk.writer.submit(job, loop=asyncio.get_running_loop())

    def acted_at(self, age_ms: object) -> pd.Timestamp | None:
        """When the worker acted, by the server's clock, from ``age_ms`` (how long the phone held the action)."""
        try:
            age = float(age_ms)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(age) or age < 0:
            return None
        return now_in(self.desk.zone, unit="us") - pd.Timedelta(milliseconds=min(age, MAX_AGE_MS))


class CasesHandler(_FieldRoute):
    """``GET /api/field/cases``: the worker's cases with their places in longitude and latitude."""

    async def get(self) -> None:
        found = await self.look(lambda gate: (worker_cases(gate), store_clock(gate.con)))
        if isinstance(found, TwinError):
            return self.refuse(found)
        cases, now = found
        lonlat = self.desk.to_lonlat(np.array([c["x"] for c in cases]), np.array([c["y"] for c in cases]))
        for case, (lon, lat) in zip(cases, lonlat):
            del case["x"], case["y"]
            case["lon"], case["lat"] = round(float(lon), 7), round(float(lat), 7)
        # The store's clock (a demo's is fixed): the phone counts deadlines from it, not from its own.
        self.reply({"cases": cases, "now": now})


class CaseHandler(_FieldRoute):
    """``GET /api/field/cases/{id}``: one case, its steps, photos and map (with the map's frame for the phone)."""

    async def get(self, case_id: str) -> None:
        card = await self.look(lambda gate: worker_case(gate, case_id))
        if isinstance(card, TwinError):
            return self.refuse(card)
        card["map"]["frame"] = self.desk.local_frame(card["map"].pop("origin"))
        card["history"] = [{**e, "note": e["note"] if isinstance(e["note"], str) else None} for e in card["history"]]
        self.reply(card)


class ActionsHandler(_FieldRoute):
    """``POST /api/field/actions``: a step, a patrol switch or a check-in, once per key."""

    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self.fail(400, "invalid", f"the body is not JSON ({exc}).")
        if not isinstance(body, dict):
            return self.fail(400, "invalid", "send one action as a JSON object.")
        kind, key, at = body.get("kind"), body.get("key"), self.acted_at(body.get("age_ms"))
        if kind == "step":
            case_id = str(body.get("case_id") or "")
            answer = await self.apply(lambda gate: take_step(
                gate, key=key, case_id=case_id, step=body.get("step"), seen_status=body.get("seen_status"),
                note=body.get("note"), at=at), case_id=case_id)
        elif kind == "patrol":
            answer = await self.apply(lambda gate: set_patrol(gate, key=key, on=bool(body.get("on")), at=at))
        elif kind == "position":
            answer = await self.position(body, key=key, at=at)
        else:
            return self.fail(400, "invalid", f"unknown action kind {kind!r}; send step, patrol or position.")
        if isinstance(answer, TwinError):
            return self.refuse(answer)
        self.reply(_with_offsets(answer, self.desk.zone))

    async def position(self, body: dict, *, key: object, at: pd.Timestamp | None) -> dict | TwinError:
        """A check-in: the phone's longitude and latitude, matched to its micro-grid on a reader thread first."""
        try:
            lon, lat = float(body.get("lon")), float(body.get("lat"))
            accuracy = None if body.get("accuracy") is None else float(body["accuracy"])
        except (TypeError, ValueError):
            lon = lat = math.nan
            accuracy = None
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            return InputError("a check-in needs the phone's longitude (lon) and latitude (lat) in degrees.")
        x, y = self.desk.to_district(lon, lat)

        def locate() -> dict | TwinError:
            try:
                return match_location(self.desk.cursors(), x, y)
            except TwinError as exc:
                return exc
        where = await asyncio.get_running_loop().run_in_executor(READS, locate)
        if isinstance(where, TwinError):
            return where
        return await self.apply(lambda gate: check_in(gate, key=key, x=x, y=y, at=at, accuracy_m=accuracy,
                                                      where=where))


@stream_request_body
class PhotoUploadHandler(_FieldRoute):
    """``POST /api/field/cases/{id}/photos``: a photo's bytes as the body; checked by content off the event loop."""

    def prepare(self) -> None:
        self.chunks: list[bytes] = []
        self.received = 0
        super().prepare()
        if self._finished:
            return
        # Up to a little over the limit the body is read (and dropped) so that the phone gets the refusal; a far
        # larger one is cut off unread (the phone checks the size before it sends).
        self.request.connection.set_max_body_size(MAX_PHOTO_BYTES + UPLOAD_SLACK)
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_PHOTO_BYTES + UPLOAD_SLACK:
            self.refuse(PhotoTooLarge(_photo_size_template(), size_mb=int(declared) / 2**20,
                                      max_mb=MAX_PHOTO_BYTES // 2**20, name=N_("the photo")))

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received <= MAX_PHOTO_BYTES:
            self.chunks.append(chunk)

    async def post(self, case_id: str) -> None:
        if self.received > MAX_PHOTO_BYTES:
            return self.refuse(PhotoTooLarge(_photo_size_template(), size_mb=self.received / 2**20,
                                             max_mb=MAX_PHOTO_BYTES // 2**20, name=N_("the photo")))
        data = b"".join(self.chunks)
        self.chunks = []
        kind, key = self.get_argument("kind", ""), self.get_argument("key", "")
        at = self.acted_at(self.get_argument("age_ms", None))
        name = self.get_argument("name", "") or N_("the photo")

        def check() -> object:
            try:
                return check_photo(data, name=name[:80])
            except TwinError as exc:
                return exc
        photo = await asyncio.get_running_loop().run_in_executor(READS, check)
        if isinstance(photo, TwinError):
            return self.refuse(photo)
        answer = await self.apply(lambda gate: add_photo(gate, key=key, case_id=case_id, kind=kind, photo=photo,
                                                         at=at), case_id=case_id)
        if isinstance(answer, TwinError):
            return self.refuse(answer)
        self.reply(_with_offsets(answer, self.desk.zone))


def _photo_size_template() -> str:
    """:func:`twin.field.photos.check_photo`'s refusal of a photo over the limit, for one refused unread."""
    return N_("{name} is {size_mb:.1f} MB; a photo may be at most {max_mb} MB. Take it at a lower resolution.")


class PhotoHandler(_FieldRoute):
    """``GET /api/field/photos/{id}``: the stored photo, to whoever may see its case."""

    async def get(self, photo_id: str) -> None:
        def read(gate: Gate) -> tuple[str, bytes] | None:
            found = case_photo(gate.con, photo_id)
            if found is None:
                return None
            gate.check_case(found[0])
            return found[1], found[2]
        found = await self.look(read)
        if isinstance(found, TwinError):
            return self.refuse(found)
        if found is None:
            return self.fail(404, "invalid", f"no photo {photo_id!r}.")
        self.set_header("Content-Type", found[0])
        self.set_header("Cache-Control", "private, max-age=86400, immutable")
        self.finish(found[1])


class WorkerPageHandler(RequestHandler):
    """``GET /worker``: the phone page, for signed-in grid workers (a sign-in first, and back here)."""

    def initialize(self, desk: FieldDesk) -> None:
        self.desk = desk

    async def get(self) -> None:
        name = self.get_secure_cookie("user")
        principal = self.desk.signins.principal(name.decode("utf-8") if name else None,
                                                source=self.request.remote_ip)
        asked = self.get_argument("lang", None)
        if principal is None:
            lang = choose_lang(asked, None)
            return self.redirect(f"/login?next={urllib.parse.quote(f'/worker?lang={lang}')}&lang={lang}")

        def read() -> tuple[str | None, pd.Timestamp | None]:
            con = self.desk.cursors()
            return user_lang(con, principal.username), on_patrol(con, principal.username)
        preference, since = await asyncio.get_running_loop().run_in_executor(READS, read)
        lang = choose_lang(asked, preference)
        with speaking(lang):
            if principal.role != "worker":
                self.set_status(403)
                return self.finish(_page_for_others(principal, lang))
            page = render_page(principal, lang=lang, patrol_since=with_offset(since, self.desk.zone))
        finish_page(self, page)


def page_config(principal: Principal, *, lang: str, patrol_since: str | None) -> dict:
    """What the page's script starts from: who, the language's words for codes, the loop's steps, the limits."""
    taxonomy = load_taxonomy()
    return {"user": principal.username, "lang": lang, "langs": list(LANGS), "grids": list(principal.grids),
            "patrol": {"on": patrol_since is not None, "since": patrol_since},
            "statuses": {code: _(name) for code, name in STATUS_NAMES.items()},
            "kinds": {k["code"]: case_kind_name(k["code"]) for k in taxonomy["categories"] + taxonomy["subcategories"]},
            "steps": FIELD_STEPS, "next": _next_steps(), "photo_statuses": PHOTO_STATUSES,
            "max_photo_bytes": MAX_PHOTO_BYTES, "photo_types": ["image/jpeg", "image/png", "image/webp"],
            "min_reason": MIN_REASON, "check_in_s": CHECK_IN_EVERY_S, "header": FIELD_HEADER,
            "texts": js_texts(WORKER_JS)}


def _next_steps() -> dict[str, list[str]]:
    """Per status, the worker's steps (so a step taken offline shows the next ones at once)."""
    from twin.cases.cases import CASE_STATUSES
    from twin.field.actions import steps_for

    return {s: steps_for(s) for s in CASE_STATUSES}


def render_page(principal: Principal, *, lang: str, patrol_since: str | None) -> str:
    """The page's HTML in ``lang`` (inside :func:`speaking`), with its script and configuration inline."""
    return render_phone_page(PAGE, config=page_config(principal, lang=lang, patrol_since=patrol_since),
                             script=WORKER_JS, _=_, lang=lang, user=principal.username, path="/worker")


def _page_for_others(principal: Principal, lang: str) -> str:
    """What another role gets at ``/worker``: whose page it is, and the way to the app."""
    return not_this_roles_page(
        title=_("Grid worker"), text=_("This page is for grid workers; {user} signs in as another role.").format(
            user=principal.username), link=f"/app?lang={lang}", link_text=_("Open the app"), css_class="twin-not-worker")


def field_routes(desk: FieldDesk) -> list[tuple]:
    """Tornado routes of the phone page and its API (see the module's docstring)."""
    args = {"desk": desk}
    return [(r"/worker", WorkerPageHandler, args),
            (r"/api/field/cases", CasesHandler, args),
            (r"/api/field/cases/([^/]+)/photos", PhotoUploadHandler, args),
            (r"/api/field/cases/([^/]+)", CaseHandler, args),
            (r"/api/field/actions", ActionsHandler, args),
            (r"/api/field/photos/([0-9a-f]{8,64})", PhotoHandler, args)]


def _in(lang: str, message: str) -> str:
    with speaking(lang):
        return _(message)
