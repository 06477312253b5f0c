"""The volunteer scheme's phone pages (文明小杜) and their small JSON API, served by ``twin serve``.

Built as the grid worker's page is (:mod:`scenes.field`): plain HTML with its script inline
(``templates/volunteer.html``, ``volunteer.js``), the app's sign-in and cookie, every answer JSON, every POST
with the header ``X-Twin-Field: 1`` (no CSRF), and everything asked through the core's rules
(:mod:`twin.volunteers`), which refuse a role or a record that is not the asker's.

- ``GET /v``: the resident's page (tasks near them, grab, check in and out, points and ledger, rewards, 小杜拍).
  ``GET|POST /v/activate``: a resident sets their password with the one-time code their community gave them.
- ``GET /api/v/me``, ``/api/v/tasks?lon=&lat=``, ``/api/v/rewards``; ``POST /api/v/grab``, ``/api/v/site``
  (check in or out, with the phone's position), ``/api/v/redeem``, ``/api/v/reports?service_code=&lon=&lat=``
  (the photo as the body: taken in through the Open311 intake).
- ``GET /m``: the merchant's page; ``GET /api/m/overview``, ``POST /api/m/check``, ``/api/m/use``.
- ``GET /worker/tasks``: the grid worker's (or an operator's) tasks and residents' reports; ``GET /api/v/worker``,
  ``POST /api/v/worker/publish``, ``/api/v/worker/confirm``, ``/api/v/worker/review``.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from tornado.web import RequestHandler

from scenes.auth import TEMPLATES
from scenes.field import FIELD_HEADER, FieldDesk, PhotoUploadHandler, _FieldRoute
from scenes.i18n import LANGS, N_, STATUS_NAMES, _, case_kind_name, choose_lang, error_text, js_texts, speaking
from scenes.phone import PAGE_TEMPLATES, finish_page, not_this_roles_page, render_phone_page
from scenes.shared import READS
from twin.access.access import MIN_PASSWORD, Principal, user_lang
from twin.cases.cases import load_taxonomy
from twin.cases.live import Written
from twin.errors import InputError, TwinError
from twin.field.photos import MAX_PHOTO_BYTES, check_photo
from twin.store.clock import to_store_time
from twin.volunteers import ledger
from twin.volunteers.accounts import activate_account, resident_of
from twin.volunteers.reports import REPORT_POINTS, my_reports, pending_reports, record_report, report_form, \
    review_report
from twin.volunteers.rewards import check_code, merchant_overview, my_redemptions, redeem, rewards, use_code
from twin.volunteers.tasks import (CHECK_IN_RADIUS_M, check_on_site, confirm_task, grab_task, my_tasks, open_tasks,
                                   publish_task, worker_tasks)

VOLUNTEER_JS = Path(__file__).with_name("volunteer.js")
PAGE = TEMPLATES / "volunteer.html"
ACTIVATE = TEMPLATES / "activate.html"
# Which page each role has here, and its path.
PAGES = {"resident": "/v", "merchant": "/m", "worker": "/worker/tasks", "operator": "/worker/tasks"}
REASON_NAMES = {"task": N_("volunteer task"), "report": N_("photo report (小杜拍)"), "redeem": N_("reward redeemed")}
VERDICT_NAMES = {"valid": N_("valid"), "duplicate": N_("duplicate"), "not_a_problem": N_("not a problem")}


class VolunteerDesk(FieldDesk):
    """The field desk (cursors, writer, sign-ins, refusals, the CRS) with the volunteer routes' needs."""


class _Route(_FieldRoute):
    """A volunteer route: the signed-in principal, JSON answers, reads on reader threads, writes as writer jobs."""

    def body_json(self) -> dict:
        try:
            body = json.loads(self.request.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            raise InputError(N_("send a JSON object."))
        return body

    async def read_as(self, read) -> object:
        """``read(con, principal)`` on a reader thread."""
        return await self.look(lambda gate: read(gate.con, gate.principal))

    def body_text(self, field: str) -> str:
        """The JSON body's ``field`` as text ('' when absent); an :class:`InputError` for a body that is no object."""
        return str(self.body_json().get(field) or "")

    async def apply_to_field(self, field: str,
                             act: Callable[[duckdb.DuckDBPyConnection, Principal, str], dict]) -> None:
        """Answer ``act(con, principal, the body's field)`` run as one job of the writer."""
        try:
            value = self.body_text(field)
        except InputError as exc:
            return self.refuse(exc)
        self.answer(await self.apply(lambda gate: act(gate.con, gate.principal, value)))

    def position(self, body: dict) -> tuple[float, float]:
        """The phone's position in the district CRS from ``lon`` and ``lat``; an :class:`InputError` without one."""
        try:
            lon, lat = float(body.get("lon")), float(body.get("lat"))
        except (TypeError, ValueError):
            lon = lat = math.nan
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise InputError(N_("the phone's position is needed (allow the page to use the location)."))
        return self.desk.to_district(lon, lat)

    def answer(self, found: object) -> None:
        if isinstance(found, TwinError):
            return self.refuse(found)
        self.reply(found)

    def lonlat(self, rows: list[dict]) -> list[dict]:
        """Rows with ``x``, ``y`` (district CRS) given as ``lon``, ``lat`` instead."""
        if rows:
            lonlat = self.desk.to_lonlat(np.array([r["x"] for r in rows]), np.array([r["y"] for r in rows]))
            for row, (lon, lat) in zip(rows, lonlat):
                row["lon"], row["lat"] = round(float(lon), 7), round(float(lat), 7)
                del row["x"], row["y"]
        return rows


# -- the resident ----------------------------------------------------------------------------------------------
class MeHandler(_Route):
    """``GET /api/v/me``: the resident's own account: name, balance, ledger, tasks, codes, reports."""

    async def get(self) -> None:
        def read(con, principal):
            me = resident_of(con, principal)
            return {"name": me["name"], "balance": ledger.balance(con, me["resident_id"]),
                    "ledger": ledger.entries(con, me["resident_id"], limit=50),
                    "tasks": my_tasks(con, principal), "codes": my_redemptions(con, principal),
                    "reports": my_reports(con, principal)}
        found = await self.read_as(read)
        if not isinstance(found, TwinError):
            self.lonlat(found["tasks"])
        self.answer(found)


class TasksHandler(_Route):
    """``GET /api/v/tasks?lon=&lat=``: the public task list, nearest the phone (or the resident's home) first."""

    async def get(self) -> None:
        try:
            near = self.position({"lon": self.get_argument("lon", None), "lat": self.get_argument("lat", None)})
        except InputError:
            near = None
        found = await self.read_as(lambda con, principal: open_tasks(con, principal, near=near))
        self.answer({"tasks": self.lonlat(found)} if not isinstance(found, TwinError) else found)


class RewardsHandler(_Route):
    """``GET /api/v/rewards``: the rewards on offer (residents and merchants)."""

    async def get(self) -> None:
        found = await self.read_as(lambda con, principal: (resident_of(con, principal), rewards(con))[1])
        self.answer({"rewards": found} if not isinstance(found, TwinError) else found)


class GrabHandler(_Route):
    """``POST /api/v/grab``: ``{"task_id"}``; 400 when the task is full (or the resident may not take it)."""

    async def post(self) -> None:
        await self.apply_to_field("task_id", grab_task)


class SiteHandler(_Route):
    """``POST /api/v/site``: ``{"task_id", "lon", "lat", "out"}``: check in (or out) on site."""

    async def post(self) -> None:
        try:
            body = self.body_json()
            x, y = self.position(body)
        except InputError as exc:
            return self.refuse(exc)
        task_id, out = str(body.get("task_id") or ""), bool(body.get("out"))
        self.answer(await self.apply(lambda gate: check_on_site(gate.con, gate.principal, task_id, x=x, y=y,
                                                                out=out)))


class RedeemHandler(_Route):
    """``POST /api/v/redeem``: ``{"reward_id"}``; the code for the merchant, or 400 with too few points."""

    async def post(self) -> None:
        await self.apply_to_field("reward_id", redeem)


class ReportHandler(PhotoUploadHandler):
    """``POST /api/v/reports?service_code=&lon=&lat=&description=``: a 小杜拍 photo as the body, taken in as an
    Open311 request (:meth:`twin.cases.live.IntakeWriter.take_report`) with the photo kept with its case."""

    async def post(self) -> None:
        if self.received > MAX_PHOTO_BYTES:
            return super().post("")  # its refusal of a photo over the limit
        data = b"".join(self.chunks)
        self.chunks = []
        principal = self.principal
        try:
            if principal.role != "resident":
                resident_of(self.desk.cursors(), principal)  # the refusal, for any other role
            form = report_form(service_code=self.get_argument("service_code", ""),
                               lon=float(self.get_argument("lon", "nan")), lat=float(self.get_argument("lat", "nan")),
                               description=self.get_argument("description", ""))
        except (TwinError, ValueError) as exc:
            return self.refuse(exc if isinstance(exc, TwinError) else InputError(str(exc)))

        def check() -> object:
            try:
                return check_photo(data, name=N_("the photo"))
            except TwinError as exc:
                return exc
        photo = await asyncio.get_running_loop().run_in_executor(READS, check)
        if isinstance(photo, TwinError):
            return self.refuse(photo)
        answer = await self.desk.writer.take_report(
            form, district_crs=self.desk.crs, then=lambda con, case: record_report(con, principal, case, photo),
            loop=asyncio.get_running_loop())
        if isinstance(answer, TwinError):
            return self.refuse(answer)
        self.reply(answer)


# -- the merchant ----------------------------------------------------------------------------------------------
class MerchantHandler(_Route):
    """``GET /api/m/overview``: the merchant's rewards and redemptions."""

    async def get(self) -> None:
        self.answer(await self.read_as(merchant_overview))


class CodeHandler(_Route):
    """``POST /api/m/check`` (what a code is for) and ``/api/m/use`` (take it): ``{"code"}``."""

    async def post(self, what: str) -> None:
        if what != "check":
            return await self.apply_to_field("code", use_code)
        try:
            code = self.body_text("code")
        except InputError as exc:
            return self.refuse(exc)
        self.answer(await self.read_as(lambda con, principal: check_code(con, principal, code)))


# -- the grid worker -------------------------------------------------------------------------------------------
class WorkerTasksHandler(_Route):
    """``GET /api/v/worker``: the tasks in the worker's grids with their places, and reports to review."""

    async def get(self) -> None:
        found = await self.look(lambda gate: {"tasks": worker_tasks(gate), "reports": pending_reports(gate)})
        if not isinstance(found, TwinError):
            self.lonlat(found["tasks"])
        self.answer(found)


class WorkerActionHandler(_Route):
    """``POST /api/v/worker/publish|confirm|review``."""

    async def post(self, what: str) -> None:
        try:
            body = self.body_json()
            if what == "publish":
                x, y = self.position(body)
                window = [to_store_time(pd.Timestamp(body.get(k)), self.desk.zone) for k in ("starts_at", "ends_at")]
                run = lambda gate: publish_task(  # noqa: E731
                    gate, title=body.get("title"), place=body.get("place"), x=x, y=y, starts_at=window[0],
                    ends_at=window[1], places=body.get("places"), points=body.get("points"),
                    eligibility=body.get("eligibility") or "anyone")
            elif what == "confirm":
                task_id, place_no = str(body.get("task_id") or ""), body.get("place_no")
                run = lambda gate: confirm_task(gate, task_id, int(place_no))  # noqa: E731
            else:
                case_id, verdict = str(body.get("case_id") or ""), str(body.get("verdict") or "")
                run = lambda gate: review_report(gate, case_id, verdict, note=body.get("note"))  # noqa: E731
                return self.answer(await self.apply(run, case_id=case_id))  # a rejected case is drawn anew
        except (TwinError, ValueError, TypeError) as exc:
            return self.refuse(exc if isinstance(exc, TwinError) else InputError(str(exc)))
        self.answer(await self.apply(run))


# -- the pages -------------------------------------------------------------------------------------------------
class PageHandler(RequestHandler):
    """``GET /v``, ``/m``, ``/worker/tasks``: the page of the signed-in user's role (a sign-in first)."""

    def initialize(self, desk: VolunteerDesk, page: str) -> None:
        self.desk, self.page = desk, page

    async def get(self) -> None:
        name = self.get_secure_cookie("user")
        principal = self.desk.signins.principal(name.decode("utf-8") if name else None,
                                                source=self.request.remote_ip)
        asked = self.get_argument("lang", None)
        path = self.request.path
        if principal is None:
            lang = choose_lang(asked, None)
            return self.redirect(f"/login?next={urllib.parse.quote(f'{path}?lang={lang}')}&lang={lang}")
        preference = await asyncio.get_running_loop().run_in_executor(
            READS, lambda: user_lang(self.desk.cursors(), principal.username))
        lang = choose_lang(asked, preference)
        with speaking(lang):
            if PAGES.get(principal.role) != path:
                self.set_status(403)
                return self.finish(page_for_others(principal, path))
            page = render_page(principal, page=self.page, lang=lang)
        finish_page(self, page)


class ActivateHandler(RequestHandler):
    """``GET|POST /v/activate``: a resident sets their password with the one-time code (rate limited as sign-ins
    are, audited)."""

    def initialize(self, desk: VolunteerDesk) -> None:
        self.desk = desk

    def show(self, *, lang: str, error: str = "", done: bool = False, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        with speaking(lang):
            self.finish(PAGE_TEMPLATES.get_template(ACTIVATE.name).render(_=_, lang=lang, error=error, done=done, min=MIN_PASSWORD))

    def get(self) -> None:
        self.show(lang=choose_lang(self.get_argument("lang", None), None))

    async def post(self) -> None:
        lang = choose_lang(self.get_argument("lang", None), None)
        username = self.get_argument("username", "")[:64]
        code, password = self.get_argument("code", "")[:64], self.get_argument("password", "")[:256]
        address = self.request.remote_ip or "?"
        wait = self.desk.signins.wait_s(username, address)
        if wait:
            with speaking(lang):
                return self.show(lang=lang, status=429, error=_("Too many attempts: wait {seconds} s and try again.")
                                 .format(seconds=int(wait + 0.999)))
        if password != self.get_argument("password2", "")[:256]:
            with speaking(lang):
                return self.show(lang=lang, status=400, error=_("The two passwords differ."))

        def job(con) -> Written:
            try:
                return Written(activate_account(con, username, code, password, source=address))
            except TwinError as exc:
                return Written(exc)
        answer = await self.desk.writer.submit(job, loop=asyncio.get_running_loop())
        if isinstance(answer, TwinError):
            with speaking(lang):
                return self.show(lang=lang, status=400, error=error_text(answer))
        self.show(lang=lang, done=True)


def page_config(principal: Principal, *, page: str, lang: str) -> dict:
    """What the page's script starts from: who, which page, the words for codes, the limits."""
    taxonomy = load_taxonomy()
    return {"user": principal.username, "role": principal.role, "page": page, "lang": lang, "langs": list(LANGS),
            "header": FIELD_HEADER, "radius_m": CHECK_IN_RADIUS_M, "report_points": REPORT_POINTS,
            "max_photo_bytes": MAX_PHOTO_BYTES, "photo_types": ["image/jpeg", "image/png", "image/webp"],
            "statuses": {code: _(name) for code, name in STATUS_NAMES.items()},
            "reasons": {code: _(name) for code, name in REASON_NAMES.items()},
            "verdicts": {code: _(name) for code, name in VERDICT_NAMES.items()},
            "kinds": {k["code"]: case_kind_name(k["code"]) for k in taxonomy["subcategories"]},
            "texts": js_texts(VOLUNTEER_JS)}


def render_page(principal: Principal, *, page: str, lang: str) -> str:
    """A volunteer page's HTML in ``lang`` (inside :func:`speaking`), its script and configuration inline."""
    return render_phone_page(PAGE, config=page_config(principal, page=page, lang=lang), script=VOLUNTEER_JS, _=_,
                             lang=lang, user=principal.username, page=page, path=PAGES[principal.role])




def page_for_others(principal: Principal, path: str) -> str:
    """What another role gets at a volunteer page: whose page it is, and the way to their own."""
    return not_this_roles_page(title=_("Volunteers"), text=_("This page is not for {user}'s role.").format(
        user=principal.username), link=PAGES.get(principal.role, "/app"), link_text=_("Open your page"),
        css_class="twin-not-yours")


def volunteer_routes(desk: VolunteerDesk) -> list[tuple]:
    """Tornado routes of the volunteer pages and their API (see the module's docstring)."""
    args = {"desk": desk}
    return [(r"/v", PageHandler, {**args, "page": "resident"}),
            (r"/m", PageHandler, {**args, "page": "merchant"}),
            (r"/worker/tasks", PageHandler, {**args, "page": "worker"}),
            (r"/v/activate", ActivateHandler, args),
            (r"/api/v/me", MeHandler, args),
            (r"/api/v/tasks", TasksHandler, args),
            (r"/api/v/rewards", RewardsHandler, args),
            (r"/api/v/grab", GrabHandler, args),
            (r"/api/v/site", SiteHandler, args),
            (r"/api/v/redeem", RedeemHandler, args),
            (r"/api/v/reports", ReportHandler, args),
            (r"/api/m/overview", MerchantHandler, args),
            (r"/api/m/(check|use)", CodeHandler, args),
            (r"/api/v/worker", WorkerTasksHandler, args),
            (r"/api/v/worker/(publish|confirm|review)", WorkerActionHandler, args)]

