"""``twin serve``: the app, the Open311 intake and the detection API, in one process on one store.

The process holds the store's one writable DuckDB connection. Browser sessions
read through cursors of it. Intake requests go to one writer thread
(:class:`twin.cases.live.IntakeWriter`), which commits them in batches before it
answers any of them, and publishes what changed to every open session.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
import signal
from functools import partial

import duckdb
import panel as pn
from tornado.web import RequestHandler

from scenes.auth import Remembered, SignIns, StoreAuthProvider, session_principal
from scenes.i18n import choose_lang, translations, use
from scenes.screens import DistrictApp, SignedOut
from scenes.theme import PAGE_CSS
from scenes.shared import SharedDistrict
from twin.cases.detections import DEDUPE_WINDOW_S, DetectionError, parse_detection
from twin.access.access import LANGS, set_lang, user_lang
from twin.access.keys import client_for
from twin.cases.live import CaseFeed, IntakeWriter
from twin.cases.open311 import Open311Error, decode_form, find_requests, services, to_xml
from twin.access.ratelimit import RateLimiter
from twin.store.control import Command, ControlChannel
from twin.store.store import Store

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024  # one intake request
MAX_HTTP_BODY_BYTES = 1024 * 1024  # anything posted to the server (the sign-in form, intake): refused above
MAX_WS_MESSAGE_BYTES = 4 * 1024 * 1024  # a browser session's message (picks, typed text; no uploads)
KEY_CACHE_S = 10.0  # a key is looked up again after this long
INTAKE_RATE = 1000.0  # requests per second per API key (bursts of twice that)


def clients_of(store: Store) -> Remembered:
    """API key to client name, remembered for a few seconds so intake under load does not ask the store each time."""
    reader = store.con.cursor()
    return Remembered(lambda key: client_for(reader, key), ttl_s=KEY_CACHE_S)


class _Intake(RequestHandler):
    """Common ground of the intake routes: the store, its writer and the API key check."""

    def initialize(self, store: Store, writer: IntakeWriter, clients: Remembered,
                   reader: duckdb.DuckDBPyConnection, crs: str, limiter: RateLimiter) -> None:
        # Handlers are made per request: the cursor is made once (opening one costs milliseconds).
        self.store = store
        self.crs = crs
        self.writer = writer
        self.clients = clients
        self.con = reader
        self.limiter = limiter

    def over_limit(self, client: str) -> str | None:
        """None when ``client`` may send this request now, else why not (the wait goes out as Retry-After)."""
        if self.limiter.allow(client):
            return None
        self.set_header("Retry-After", str(max(1, round(self.limiter.retry_after(client)))))
        return (f"client {client} is over its {self.limiter.rate_per_s:g} requests a second; "
                "wait for the Retry-After seconds and send again.")


class _Open311(_Intake):
    """The GeoReport routes: the format, errors in the spec's shape."""

    def reply(self, items: list[dict], *, fmt: str, root: str, item: str, status: int = 200) -> None:
        self.set_status(status)
        if fmt == "xml":
            self.set_header("Content-Type", "text/xml; charset=utf-8")
            self.finish(to_xml(items, root=root, item=item))
        else:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps(items, ensure_ascii=False, default=str))

    def fail(self, error: Open311Error, *, fmt: str) -> None:
        self.reply(error.body(), fmt=fmt, root="errors", item="error", status=error.code)

    def query(self) -> dict[str, str]:
        return {k: v[-1].decode(errors="replace") for k, v in self.request.query_arguments.items()}

    def client_of(self, key: str | None) -> str:
        """The client a key belongs to, within its rate; else the GeoReport error to send."""
        client = self.clients(key)
        if client is None:
            raise Open311Error(403, "api_key is missing, unknown or revoked; ask the district for a key.")
        refusal = self.over_limit(client)
        if refusal:
            raise Open311Error(429, refusal)
        return client


class ServicesHandler(_Open311):
    def get(self, fmt: str) -> None:
        self.reply(services(), fmt=fmt, root="services", item="service")


class RequestsHandler(_Open311):
    def get(self, fmt: str) -> None:
        query = self.query()
        try:
            self.client_of(query.get("api_key"))
            found = find_requests(self.con, query, district_crs=self.crs)
        except Open311Error as exc:
            return self.fail(exc, fmt=fmt)
        self.reply(found, fmt=fmt, root="service_requests", item="request")

    async def post(self, fmt: str) -> None:
        try:
            form = decode_form(self.request.body, content_type=self.request.headers.get("Content-Type"))
            client = self.client_of(form.get("api_key"))
            answer = await self.writer.take_request(form, district_crs=self.crs, client=client,
                                                   loop=asyncio.get_running_loop())
        except Open311Error as exc:
            return self.fail(exc, fmt=fmt)
        log.info("open311: %s from %s", answer["service_request_id"], client)
        self.reply([answer], fmt=fmt, root="service_requests", item="request", status=201)


class RequestHandler(_Open311):
    def get(self, request_id: str, fmt: str) -> None:
        try:
            self.client_of(self.query().get("api_key"))
        except Open311Error as exc:
            return self.fail(exc, fmt=fmt)
        found = find_requests(self.con, {"service_request_id": request_id}, district_crs=self.crs)
        if not found:
            return self.fail(Open311Error(404, f"no service request {request_id!r}."), fmt=fmt)
        self.reply(found, fmt=fmt, root="service_requests", item="request")


class DetectionsHandler(_Intake):
    """``POST /api/detections``: one detection as JSON; 201 with the case it opened or joined."""

    def reply(self, body: dict, status: int) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body, ensure_ascii=False, default=str))

    def refuse(self, status: int, field: str, message: str) -> None:
        self.reply({"error": {"field": field, "message": message}}, status)

    async def post(self) -> None:
        if len(self.request.body) > MAX_BODY_BYTES:
            return self.refuse(413, "body", f"the body is over {MAX_BODY_BYTES // 1024} KB.")
        if not self.request.headers.get("Content-Type", "").startswith("application/json"):
            return self.refuse(415, "body", "send the detection as application/json.")
        try:
            body = json.loads(self.request.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self.refuse(400, "body", f"not UTF-8 JSON ({exc}).")
        key = self.request.headers.get("X-API-Key") or (body.pop("api_key", None) if isinstance(body, dict) else None)
        client = self.clients(key)
        if client is None:
            return self.refuse(403, "api_key", "missing, unknown or revoked; send it in the X-API-Key header.")
        refusal = self.over_limit(client)
        if refusal:
            return self.refuse(429, "api_key", refusal)
        try:
            answer = await self.writer.take_detection(parse_detection(body), client=client,
                                                     loop=asyncio.get_running_loop())
        except DetectionError as exc:
            return self.refuse(400, exc.field, str(exc))
        log.debug("detection %s from %s -> %s", answer["detection_id"], client, answer["case_id"])
        self.reply(answer, 201)


def intake_routes(store: Store, writer: IntakeWriter, *, intake_rate: float = INTAKE_RATE) -> list[tuple]:
    """Tornado routes of the GeoReport v2 intake and the detection API (each needs an API key)."""
    args = {"store": store, "writer": writer, "clients": clients_of(store), "reader": store.con.cursor(),
            "crs": store.district.crs, "limiter": RateLimiter(rate_per_s=intake_rate, burst=2 * intake_rate)}
    return [(r"/open311/v2/services\.(json|xml)", ServicesHandler, args),
            (r"/open311/v2/requests\.(json|xml)", RequestsHandler, args),
            (r"/open311/v2/requests/([^/.]+)\.(json|xml)", RequestHandler, args),
            (r"/api/detections", DetectionsHandler, args)]


def serve(db: str, *, port: int, address: str, origins: list[str],
          dedupe_window_s: float = DEDUPE_WINDOW_S, intake_rate: float = INTAKE_RATE,
          oauth: dict | None = None, commands: dict[str, Command] | None = None) -> None:
    """Serve the app at ``/app`` (after sign-in at ``/login``), the intake at ``/open311/v2/`` and
    ``/api/detections`` (with API keys) until interrupted (Ctrl-C or SIGTERM).

    ``oauth`` (``provider``, ``key``, ``secret``, optional ``redirect_uri``) signs users in through
    Panel's OAuth providers instead of the store's passwords; the user name the provider gives
    must still be a user of the store, whose role and grids apply. ``commands`` are the writing
    commands (``twin keys``, ``users``, ``grids import``) that reach the server's writer through
    the store's control socket (:mod:`twin.store.control`) while it runs.
    """
    for lang in LANGS:  # refuse to start without the compiled catalogues, rather than speak English silently
        translations(lang)
    store = Store(db)
    if not store.count("users"):
        log.warning("%s has no users: nobody can sign in. Add one with `twin users add NAME --role admin`.", db)
    feed = CaseFeed()
    writer = IntakeWriter(store.con, feed, dedupe_window_s=dedupe_window_s)
    shared = SharedDistrict(store.con.cursor(), feed=feed, writer=writer)
    signins = SignIns(store.con, writer)
    pn.extension("vtk", theme="dark", sizing_mode="stretch_width", global_css=[PAGE_CSS])

    def app() -> pn.viewable.Viewable:
        principal = session_principal(signins)
        asked = {k: v[-1].decode(errors="replace") for k, v in pn.state.session_args.items()
                 if k in ("lang", "set_lang")}
        if principal is None:  # the cookie's user was disabled or removed since, or OAuth found no such user
            use(choose_lang(asked.get("set_lang") or asked.get("lang"), None))
            writer.audit(actor=pn.state.user or "?", action="session.refused", source=None)
            return SignedOut()
        con = store.con.cursor()
        if asked.get("set_lang") in LANGS:  # the header's switch: kept as the user's preference
            writer.command(partial(_keep_lang, username=principal.username, lang=asked["set_lang"])).result(timeout=10)
        use(choose_lang(asked.get("set_lang") or asked.get("lang"), user_lang(con, principal.username)))
        writer.audit(actor=principal.username, action="session.open", source=principal.source)
        return DistrictApp(con, shared, principal=principal)

    def execute(command: Command, args: dict) -> dict:
        """Run a command of the control channel in the writer; after an import the sessions' grids follow too."""
        answer = writer.command(partial(command, args=args), grids_changed=command.grids_changed).result()
        if command.grids_changed:
            try:
                shared.forget_grids()
            except Exception:  # the import is committed: say so, and let the log tell about the layer
                log.exception("the grids were imported, but the sessions' grid colouring did not follow")
        return answer

    # What was loaded at start-up (geometry, texts, R-trees) stays for the server's life: keep it out of
    # the garbage collector's sweeps, and sweep less often, so intake under load sees no long pauses.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    # A fresh cookie secret each start: signing in again after a restart is the price of keeping no secret on disk.
    if oauth:
        sign_in = {"oauth_provider": oauth["provider"], "oauth_key": oauth["key"], "oauth_secret": oauth["secret"],
                   "oauth_redirect_uri": oauth.get("redirect_uri"), "oauth_encryption_key": oauth.get("encryption_key")}
    else:
        sign_in = {"auth_provider": StoreAuthProvider(signins)}
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C, so the socket is removed and the writer drained
    control = ControlChannel(db, commands or {}, execute=execute)
    try:
        pn.serve({"app": app}, port=port, address=address, websocket_origin=origins, show=False,
                 title="District twin", extra_patterns=intake_routes(store, writer, intake_rate=intake_rate),
                 cookie_secret=secrets.token_urlsafe(32), websocket_max_message_size=MAX_WS_MESSAGE_BYTES,
                 http_server_kwargs={"max_body_size": MAX_HTTP_BODY_BYTES}, **sign_in)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        control.close()
        writer.close()


def _keep_lang(con: duckdb.DuckDBPyConnection, *, username: str, lang: str) -> dict:
    set_lang(con, username, lang)
    return {"username": username, "lang": lang}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
