"""``twin serve``: the app, the Open311 intake and the detection API, in one process on one store.

The process holds the store's one writable DuckDB connection. Browser sessions
read through cursors of it, one per thread (the rule is written in :mod:`scenes.shared`).
Intake requests go to one writer thread (:class:`twin.cases.live.IntakeWriter`), which
commits them in batches before it answers any of them, and publishes what changed to
every open session. Open311 reads run on the reader threads, through the access gate of
the key's client (:func:`twin.access.policy.client_principal`) or, without a key, of the
public (:func:`twin.access.policy.public_principal`, limited per address), never on the event loop.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from zoneinfo import ZoneInfo

import duckdb
import panel as pn
from tornado.web import RequestHandler

from scenes.auth import Remembered, SignIns, StoreAuthProvider, session_principal
from scenes.evaluate import evaluation_routes
from scenes.field import FieldDesk, field_routes
from scenes.i18n import choose_lang, translations, use
from scenes.reconnect import StoreUnreachable, reconnect_when_lost
from scenes.screens import DistrictApp, FieldWorkerElsewhere, SignedOut
from scenes.shared import READS, Cursors, HeapTrimmer, OffLoop, SharedDistrict, release_memory
from scenes.theme import PAGE_CSS
from scenes.cameraserve import CAMERA_MODES, CAMERAS_NEAR_URL, camera_routes, cameras_by_view
from scenes.tileserve import VIEW_MODES, TileRefresher, tile_routes, tiled_view, update_in_own_process
from scenes.volunteers import PAGES as VOLUNTEER_PAGES, VolunteerDesk, volunteer_routes
from twin.access.access import LANGS, set_lang, user_lang
from twin.access.keys import KeyUse, client_for, record_key_use
from twin.access.policy import Gate, Refusals, client_principal, public_principal
from twin.access.ratelimit import RateLimiter
from twin.cases.cameras import keep_camera_sight
from twin.cases.detections import DEDUPE_WINDOW_S, DetectionError, parse_detection
from twin.cases.evaluations import TOKEN_PATH
from twin.cases.idempotency import check_key
from twin.errors import InputError, check_choice
from twin.cases.live import CaseFeed, IntakeWriter, Written, follow_other_processes
from twin.cases.open311 import (Open311Error, decode_form, discovery, find_requests, service_definition, services,
                                to_xml)
from twin.field.patrol import purge_positions
from twin.store.clock import store_timezone
from twin.store.control import Command, ControlChannel
from twin.store.notices import Listener
from twin.store.schema import CHANGES_CHANNEL, NOTIFIED_TABLES
from twin.store.store import Store, is_unavailable, user_folder

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024  # one intake request
MAX_HTTP_BODY_BYTES = 1024 * 1024  # anything posted to the server (the sign-in form, intake): refused above
MAX_WS_MESSAGE_BYTES = 4 * 1024 * 1024  # a browser session's message (picks, typed text; no uploads)
# DuckDB in the server: its buffers capped (it keeps the blocks it read up to 80 % of the machine by default; a
# query needing more spills to disk), and its allocator giving freed memory back soon. See twin bench city.
SERVER_DUCKDB_SETTINGS = {"memory_limit": "256MB", "allocator_flush_threshold": "32MB",
                          "allocator_background_threads": "true", "enable_progress_bar": "false"}
LISTENING_WAIT_S = 10.0  # at start, for the store's notices (PostgreSQL) before answering pages
KEY_CACHE_S = 10.0  # a key is looked up again after this long
INTAKE_RATE = 1000.0  # requests per second per API key (bursts of twice that)
PUBLIC_RATE = 5.0  # keyless Open311 reads per second per address (bursts of twice that)
CONTACT = "the district's grid governance office (see the README's Open311 section)"
KEY_SERVICE = "ask the district's administrator for a key (`twin keys add NAME`); reading needs none"
STORE_RETRY_S = 2  # Retry-After while the store's PostgreSQL server cannot be reached (a restart takes seconds)
UNREACHABLE = ("the store cannot be reached just now (its database server is restarting or down); the request "
               "is not acknowledged. Send it again after the Retry-After seconds.")


KEY_USE_FLUSH_S = 5.0  # the keys' use is written to the store this often (when there was any)
SWEEP_S = 300.0  # cases resolved 3 days ago without an answer are evaluated by default this often (and at start)


# Start-up reads leave DuckDB's buffers holding the blocks read (70 MB of a city's store) until a query needs the
# room: they are given back once the layers are made, by lowering the limit to this for a moment.
STARTED_CACHE_LIMIT = "1MB"


def drop_cached_blocks(con: duckdb.DuckDBPyConnection) -> None:
    """Evict the blocks DuckDB's buffers keep of what ``con``'s database read (they are read again when needed), and
    set its memory limit back to ``SERVER_DUCKDB_SETTINGS``'. Call it while nothing else reads (the limit is low for
    a moment): ``twin serve`` does once its start-up reads are done."""
    try:
        con.execute(f"SET memory_limit = '{STARTED_CACHE_LIMIT}'")
    except duckdb.Error as exc:  # blocks in use cannot go: what could is gone, and serving goes on
        log.info("DuckDB kept more than %s of blocks after start-up: %s", STARTED_CACHE_LIMIT, exc)
    finally:
        con.execute(f"SET memory_limit = '{SERVER_DUCKDB_SETTINGS['memory_limit']}'")


class PeriodicJob:
    """A job run through the writer at start and every ``period_s``, from a thread of its own; a failure is logged
    and the job tried again at the next period."""

    name = "job"

    def __init__(self, writer: IntakeWriter, *, period_s: float) -> None:
        self._writer = writer
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"twin-{self.name}", daemon=True)
        self._thread.start()

    def run_once(self) -> object:
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:
                log.exception("%s failed; it runs again in %.0f s", self.name, self._period_s)
            if self._stop.wait(self._period_s):
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class EvaluationSweeper(PeriodicJob):
    """Closes unanswered resolved cases as evaluated by default (:func:`twin.cases.evaluations.sweep_evaluations`)."""

    name = "evaluation-sweep"

    def __init__(self, writer: IntakeWriter, *, period_s: float = SWEEP_S) -> None:
        super().__init__(writer, period_s=period_s)

    def sweep(self) -> list[str]:
        """Sweep now; the cases closed (none when the sweep failed: it is logged, and tried again later)."""
        try:
            swept = self._writer.sweep_evaluations().result()
        except Exception:
            log.exception("the evaluations' sweep failed; it runs again in %.0f s", self._period_s)
            return []
        if swept:
            log.info("evaluated by default: %d case(s)", len(swept))
        return swept

    run_once = sweep


def clients_of(cursors: Cursors) -> Remembered:
    """API key to client name, remembered for a few seconds so intake under load does not ask the store each time
    (:meth:`Remembered.clear` forgets them at once, when another process changed the keys).

    A lookup reads on the asking thread's own cursor.
    """
    return Remembered(lambda key: client_for(cursors(), key), ttl_s=KEY_CACHE_S)


class KeyUseWriter:
    """Writes the keys' counted use (:class:`twin.access.keys.KeyUse`) through the writer every ``period_s``,
    from a thread of its own, and once more when closed."""

    def __init__(self, key_use: KeyUse, writer: IntakeWriter, *, period_s: float = KEY_USE_FLUSH_S) -> None:
        self.key_use = key_use
        self._writer = writer
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twin-key-use", daemon=True)
        self._thread.start()

    def flush(self) -> None:
        """Write what was counted since the last flush; waits for the commit (a lost count is logged)."""
        rows = self.key_use.take()
        if rows:
            try:
                self._writer.submit(lambda con: Written(record_key_use(con, rows))).result()
            except Exception as exc:
                if is_unavailable(exc):  # counted again, and written with the next flush after the store is back
                    self.key_use.give_back(rows)
                    return
                log.exception("the use of %d API keys was not recorded", len(rows))

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()


RETENTION_EVERY_S = 3600.0  # positions past their keeping are looked for this often (and at start)


class Retention(PeriodicJob):
    """Deletes patrol positions older than they are kept (:func:`twin.field.patrol.purge_positions`, audited)."""

    name = "retention"

    def __init__(self, writer: IntakeWriter, *, period_s: float = RETENTION_EVERY_S) -> None:
        super().__init__(writer, period_s=period_s)

    def purge(self) -> dict | None:
        try:
            return self._writer.submit(lambda con: Written(purge_positions(con))).result()
        except Exception:
            log.exception("old patrol positions were not deleted (tried again in %.0f s)", self._period_s)
            return None

    run_once = purge


class _Intake(RequestHandler):
    """Common ground of the intake routes: the store, its writer and the API key check."""

    def initialize(self, store: Store, writer: IntakeWriter, clients: Callable[[object], str | None], off_loop: OffLoop,
                   refusals: Refusals, crs: str, limiter: RateLimiter, public: RateLimiter | None,
                   zone: ZoneInfo) -> None:
        self.store = store
        self.crs = crs
        self.writer = writer
        self.clients = clients
        self.off_loop = off_loop
        self.refusals = refusals
        self.limiter = limiter
        self.zone = zone  # of the store's timestamps (detections' times are read into it)
        self.public = public  # keyless reading's limiter per address; None when public reading is off

    def over_limit(self, client: str) -> str | None:
        """None when ``client`` may send this request now, else why not (the wait goes out as Retry-After)."""
        refusal = self.limit_refusal(client)
        if refusal is not None:
            self.retry_after(self.limiter.retry_after(client))
        return refusal

    def limit_refusal(self, client: str) -> str | None:
        """:meth:`over_limit` without the header: any thread may ask."""
        if self.limiter.allow(client):
            return None
        return (f"client {client} is over its {self.limiter.rate_per_s:g} requests a second; "
                "wait for the Retry-After seconds and send again.")

    def retry_after(self, wait_s: float) -> None:
        self.set_header("Retry-After", str(max(1, round(wait_s))))

    def idempotency_key(self, fallback: object = None) -> str | None:
        """The request's ``Idempotency-Key`` header (else ``fallback``, a detection's own id), checked; None without
        one. A resend with the same key gets the first answer again (:mod:`twin.cases.idempotency`)."""
        key = self.request.headers.get("Idempotency-Key", fallback)
        return None if key is None else check_key(key)

    def replayed(self, answer: dict) -> bool:
        """Whether ``answer`` is a resend's (the first sending's answer again): said in a header, out of the body."""
        if not answer.pop("replayed", False):
            return False
        self.set_header("Idempotent-Replayed", "true")
        return True

    # A store that cannot be reached (a PostgreSQL store's server restarting) fails whatever the request needed
    # of it: the key lookup, the read or the writer's commit. Any of these answers 503 with Retry-After, never
    # a 500, and nothing was acknowledged (the writer answers only after its COMMIT).
    def log_exception(self, typ, value, tb) -> None:
        if is_unavailable(value):  # the writer logs the outage once; each refusal is no bug
            log.info("%s %s: 503, the store cannot be reached", self.request.method, self.request.path)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if not is_unavailable(error):
            return super().write_error(status_code, **kwargs)
        self.set_status(503)
        self.retry_after(STORE_RETRY_S)
        self.unreachable()

    def unreachable(self) -> None:
        """Send the 503 body of a store that cannot be reached, in the route's format."""
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": {"field": "store", "message": UNREACHABLE}}))


class _Open311(_Intake):
    """The GeoReport routes: the format, errors in the spec's shape."""

    def reply(self, items: list[dict] | dict, *, fmt: str, root: str, item: str | None = None,
              status: int = 200) -> None:
        self.set_status(status)
        if fmt == "xml":
            self.set_header("Content-Type", "text/xml; charset=utf-8")
            self.finish(to_xml(items, root=root, item=item))
        else:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps(items, ensure_ascii=False, default=str))

    def fail(self, error: Open311Error, *, fmt: str) -> None:
        if error.retry_after_s is not None:
            self.retry_after(error.retry_after_s)
        self.reply(error.body(), fmt=fmt, root="errors", item="error", status=error.code)

    def unreachable(self) -> None:
        fmt = self.path_args[-1] if self.path_args and self.path_args[-1] in ("json", "xml") else "json"
        self.fail(Open311Error(503, UNREACHABLE, retry_after_s=STORE_RETRY_S), fmt=fmt)

    def query(self) -> dict[str, str]:
        return {k: v[-1].decode(errors="replace") for k, v in self.request.query_arguments.items()}

    def client_of(self, key: str | None) -> str:
        """The client a key belongs to, within its rate; else the GeoReport error to send (any thread may ask)."""
        client = self.clients(key)
        if client is None:
            raise Open311Error(403, "api_key is missing, unknown or revoked; ask the district for a key.")
        refusal = self.limit_refusal(client)
        if refusal:
            raise Open311Error(429, refusal, retry_after_s=self.limiter.retry_after(client))
        return client

    def reader(self, con, key: str | None, source: str):
        """Who reads: the key's client (:meth:`client_of`), or the public when there is no key and public reading
        is on (within its rate per address); else the GeoReport error to send (any thread may ask)."""
        if key:
            client = self.client_of(key)
            principal = client_principal(con, client, source=source)
            if principal is None:
                raise Open311Error(403, f"the key's client {client} is a disabled user: it reads nothing.")
            return principal
        if self.public is None:
            raise Open311Error(401, "this district reads service requests only with an api_key; ask it for one.")
        if not self.public.allow(source):
            raise Open311Error(429, f"{source} is over {self.public.rate_per_s:g} requests a second without a key; "
                                    "wait for the Retry-After seconds, or read with an api_key.",
                               retry_after_s=self.public.retry_after(source))
        return public_principal(source=source)

    async def read_requests(self, query: dict[str, str], *, fmt: str, one: str | None = None) -> None:
        """Answer ``GET requests`` (or, with ``one``, ``GET requests/{one}``) as the key's client may read them,
        or, without a key, as the public may.

        The key lookup and the read run on a reader thread; the event loop waits on neither, nor
        on the writer's commit of a refused access's audit row (which comes before the answer).
        """
        source = self.request.remote_ip
        rows: list[dict] = []

        def read() -> list[dict] | Open311Error:
            con = self.off_loop.cursors()
            try:
                principal = self.reader(con, query.get("api_key"), source)
                gate = Gate(con, principal, audit_sink=lambda **row: rows.append(row), refusals=self.refusals)
                found = find_requests(gate, {"service_request_id": one} if one is not None else query,
                                      district_crs=self.crs)
                if one is not None and not found:
                    raise Open311Error(404, f"no service request {one!r}.")
                return found
            except Open311Error as exc:
                return exc
        found = await asyncio.get_running_loop().run_in_executor(READS, read)
        await self.off_loop.record(rows)
        if isinstance(found, Open311Error):
            return self.fail(found, fmt=fmt)
        self.reply(found, fmt=fmt, root="service_requests", item="request")


class ServicesHandler(_Open311):
    def get(self, fmt: str) -> None:
        self.reply(services(), fmt=fmt, root="services", item="service")


class ServiceHandler(_Open311):
    """``GET services/{code}``: the service definition (its attributes)."""

    def get(self, code: str, fmt: str) -> None:
        try:
            self.reply(service_definition(code), fmt=fmt, root="service_definition")
        except Open311Error as exc:
            self.fail(exc, fmt=fmt)


class DiscoveryHandler(_Open311):
    """``GET /open311/discovery``: the Service Discovery file naming this server's one endpoint."""

    def get(self, fmt: str) -> None:
        url = f"{self.request.protocol}://{self.request.host}/open311/v2"
        self.reply(discovery(url, contact=CONTACT, key_service=KEY_SERVICE), fmt=fmt, root="discovery")


class RequestsHandler(_Open311):
    async def get(self, fmt: str) -> None:
        await self.read_requests(self.query(), fmt=fmt)

    async def post(self, fmt: str) -> None:
        try:
            form = decode_form(self.request.body, content_type=self.request.headers.get("Content-Type"))
            client = self.client_of(form.get("api_key"))
            key = self.idempotency_key()
            answer = await self.writer.take_request(form, district_crs=self.crs, client=client, key=key,
                                                   loop=asyncio.get_running_loop())
        except InputError as exc:
            return self.fail(Open311Error(400, str(exc)), fmt=fmt)
        except Open311Error as exc:
            return self.fail(exc, fmt=fmt)
        # The reporter's one-use link to evaluate the case once it is handled (twin.cases.evaluations).
        token = answer.pop("evaluation_token", None)
        if token:
            answer["evaluation_url"] = f"{self.request.protocol}://{self.request.host}{TOKEN_PATH}{token}"
        replayed = self.replayed(answer)
        log.info("open311: %s from %s%s", answer["service_request_id"], client, " (sent again)" if replayed else "")
        self.reply([answer], fmt=fmt, root="service_requests", item="request", status=200 if replayed else 201)


class RequestHandler(_Open311):
    async def get(self, request_id: str, fmt: str) -> None:
        await self.read_requests(self.query(), fmt=fmt, one=request_id)


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
            key = self.idempotency_key(body.pop("source_id", None) if isinstance(body, dict) else None)
        except InputError as exc:
            return self.refuse(400, "Idempotency-Key", str(exc))
        try:
            answer = await self.writer.take_detection(parse_detection(body, zone=self.zone), client=client, key=key,
                                                     loop=asyncio.get_running_loop())
        except DetectionError as exc:
            return self.refuse(400, exc.field, str(exc))
        token = answer.pop("evaluation_token", None)  # a new case's: its reporter's link, as an Open311 receipt's
        if token:
            answer["evaluation_url"] = f"{self.request.protocol}://{self.request.host}{TOKEN_PATH}{token}"
        replayed = self.replayed(answer)
        log.debug("detection %s from %s -> %s", answer["detection_id"], client, answer["case_id"])
        self.reply(answer, 200 if replayed else 201)


class HealthHandler(RequestHandler):
    """``GET /health``: 200 while this process can read its store, else 503 with Retry-After. The pages ask it
    before reloading (:mod:`scenes.reconnect`); a proxy or a monitor may ask it too. It tells nothing else."""

    def initialize(self, cursors: Cursors) -> None:
        self.cursors = cursors

    async def get(self) -> None:
        def read() -> bool:
            try:
                self.cursors().execute("SELECT count(*) FROM meta").fetchall()
                return True
            except Exception as exc:
                if is_unavailable(exc):
                    return False
                raise
        reachable = await asyncio.get_running_loop().run_in_executor(READS, read)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        if not reachable:
            self.set_status(503)
            self.set_header("Retry-After", str(STORE_RETRY_S))
        self.finish(json.dumps({"store": "reachable" if reachable else "unreachable"}))


def intake_routes(store: Store, writer: IntakeWriter, *, cursors: Cursors | None = None,
                  refusals: Refusals | None = None, intake_rate: float = INTAKE_RATE,
                  public_rate: float | None = PUBLIC_RATE, clients: Remembered | None = None,
                  key_use: KeyUse | None = None) -> list[tuple]:
    """Tornado routes of the GeoReport v2 API and the detection API.

    Posting needs an API key. Reading Open311 requests needs none, within ``public_rate`` requests
    a second per address; ``public_rate`` None turns keyless reading off (a 401).
    ``cursors`` and ``refusals`` are the app's (:class:`scenes.shared.SharedDistrict`), so that the
    routes' reader threads and the sessions' share cursors and one throttle of refused accesses.
    ``clients`` (:func:`clients_of`): the API keys' clients as remembered, when the caller forgets them on a change.
    Each request with a known key is counted in ``key_use`` (:class:`KeyUseWriter` writes the counts).
    """
    cursors = cursors if cursors is not None else Cursors(store.con)
    clients = clients if clients is not None else clients_of(cursors)
    counted = clients if key_use is None else (lambda key: key_use.note(clients(key)))
    args = {"store": store, "writer": writer, "clients": counted, "off_loop": OffLoop(cursors, writer),
            "refusals": refusals if refusals is not None else Refusals(), "crs": store.district.crs,
            "limiter": RateLimiter(rate_per_s=intake_rate, burst=2 * intake_rate),
            "public": RateLimiter(rate_per_s=public_rate, burst=2 * public_rate) if public_rate else None,
            "zone": store_timezone(cursors())}
    return [(r"/open311/discovery\.(json|xml)", DiscoveryHandler, args),
            (r"/open311/v2/services\.(json|xml)", ServicesHandler, args),
            (r"/open311/v2/services/([^/]+)\.(json|xml)", ServiceHandler, args),
            (r"/open311/v2/requests\.(json|xml)", RequestsHandler, args),
            (r"/open311/v2/requests/([^/.]+)\.(json|xml)", RequestHandler, args),
            (r"/api/detections", DetectionsHandler, args),
            (r"/health", HealthHandler, {"cursors": cursors})]


def serve(db: str, *, port: int, address: str, origins: list[str],
          dedupe_window_s: float = DEDUPE_WINDOW_S, intake_rate: float = INTAKE_RATE,
          public_rate: float | None = PUBLIC_RATE, oauth: dict | None = None,
          commands: dict[str, Command] | None = None, behind_proxy: bool = False, view: str = "auto",
          tiles: str | None = None, cameras: str = "auto", cookie_secret: str | None = None) -> None:
    """Serve the app at ``/app`` (after sign-in at ``/login``), the intake at ``/open311/v2/`` and
    ``/api/detections`` (with API keys) until interrupted (Ctrl-C or SIGTERM). Open311 requests are
    read without a key at ``public_rate`` per address, or not at all when it is None (:func:`intake_routes`).

    ``oauth`` (``provider``, ``key``, ``secret``, optional ``redirect_uri``) signs users in through
    Panel's OAuth providers instead of the store's passwords; the user name the provider gives
    must still be a user of the store, whose role and grids apply. ``commands`` are the writing
    commands (``twin keys``, ``users``, ``grids import``) that reach the server's writer through
    the store's control socket (:mod:`twin.store.control`) while it runs. ``behind_proxy``: the client's
    address (for the rate limits and the audit trail) is the one the proxy sends (:mod:`scenes.workers`).

    ``view`` is how the 3D view draws the buildings: "buffer" (all at once), "tiles" (3D Tiles streamed from
    ``/tiles/``, :mod:`scenes.tileserve`) or "auto" (tiles above ``TILED_ABOVE`` buildings). The tiles are
    the folder ``tiles`` (written by ``twin export tiles``), or else exported at start to ``DB.tiles`` beside
    the store (only the changed tiles are rewritten). ``cameras`` is how the view gets the cameras: "all" at once,
    "near" (those near where it looks, from ``/cameras/near``, :mod:`scenes.cameraserve`) or "auto" (near above
    ``CAMERAS_BY_VIEW_ABOVE`` cameras).

    ``cookie_secret`` signs the sign-in cookies; None draws a fresh one. The processes of ``twin serve --workers``
    share one, so that a browser sent to another process (its own was stopped or killed) stays signed in.
    """
    check_choice("view", view, VIEW_MODES)
    check_choice("cameras", cameras, CAMERA_MODES)
    for lang in LANGS:  # refuse to start without the compiled catalogues, rather than speak English silently
        translations(lang)
    started = time.perf_counter()
    store = Store(db)
    if not store.count("users"):
        log.warning("%s has no users: nobody can sign in. Add one with `twin users add NAME --role admin`.", db)
    _keep_camera_sight(store)
    coverage_s = time.perf_counter() - started
    tiled = tiled_view(view, store.count("buildings"))
    own_tiles = tiled and tiles is None
    if own_tiles:  # exported (or found up to date) by a process of its own, which must open the file alone
        tiles = _tiles_folder(store)
        if not store.postgres:
            store.close()
        summary = update_in_own_process(db, tiles)
        log.info("tiles for the view in %s: %s, %d of %d written in %.1f s", tiles, summary["how"],
                 len(summary["written"]), summary["tiles"], summary["seconds"])
        if not store.postgres:
            store = Store(db)
    tiles_s = time.perf_counter() - started - coverage_s
    for name, value in SERVER_DUCKDB_SETTINGS.items():
        store.con.execute(f"SET {name} = '{value}'")
    feed = CaseFeed()
    writer = IntakeWriter(store.con, feed, dedupe_window_s=dedupe_window_s)
    # Each thread reads on its own cursor (scenes/shared.py); the writer has its own and checkpoints there.
    shared = SharedDistrict(store.con.cursor(), feed=feed, writer=writer, tiled=tiled)
    shared.warm()  # the first session's colouring and table, computed before anyone waits for them
    drop_cached_blocks(store.con)
    release_memory()
    log.info("start-up in %.1f s: camera coverage %.1f s, tiles %.1f s, the district's layers and figures %.1f s",
             time.perf_counter() - started, coverage_s, tiles_s, time.perf_counter() - started - coverage_s - tiles_s)
    signins = SignIns(store.con.cursor(), writer)
    sessions = store.con.cursor()  # makes each browser session's cursor, on the event loop
    clients = clients_of(shared.cursors)
    # Other processes serving the same PostgreSQL store: their cases are drawn here too, and their changes of
    # keys, users and grids are followed at once.
    listeners = [follow_other_processes(db, store.con.cursor(), feed),
                 follow_store_changes(db, clients=clients, signins=signins, shared=shared, writer=writer)
                 ] if store.postgres else []
    # While this process hears nothing from the PostgreSQL server, it is down or out of reach: pages answer 503.
    signins.reachable = lambda: all(listener.listening for listener in listeners)
    # Pages are answered once this process hears the others (a sign-in at once would get a 503 meanwhile).
    for listener in listeners:
        if not listener.wait_listening(LISTENING_WAIT_S):
            log.warning("not yet listening to the store's notices after %.0f s: pages answer 503 until then",
                        LISTENING_WAIT_S)
    view_patterns = _tile_routes(store, shared, signins, folder=tiles) if tiled else []
    if cameras_by_view(cameras, len(shared.cameras)):
        shared.cameras_url = CAMERAS_NEAR_URL
    view_patterns += camera_routes(cameras=lambda: shared.cameras, signed_in=signins.may_read)
    if own_tiles:  # grid saves change the grid ids in the tiles' property tables
        refresher = TileRefresher(shared.cursors, district=store.district, folder=tiles)
        shared.after_grids_saved = refresher.request
    pn.extension("vtk", theme="dark", sizing_mode="stretch_width", global_css=[PAGE_CSS])

    def app() -> pn.viewable.Viewable:
        asked = {k: v[-1].decode(errors="replace") for k, v in pn.state.session_args.items()
                 if k in ("lang", "set_lang")}
        try:
            page = session_app(asked)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            # The store went away between the page's request (a 503 while it is known to be away: SignIns)
            # and its session: say so, and open the page once it is back.
            log.warning("a session was opened without the store, which cannot be reached (%s)", exc)
            use(choose_lang(asked.get("set_lang") or asked.get("lang"), None))
            return StoreUnreachable()
        reconnect_when_lost(pn.state.curdoc)
        return page

    def session_app(asked: dict[str, str]) -> pn.viewable.Viewable:
        principal = session_principal(signins)
        if principal is None:  # the cookie's user was disabled or removed since, or OAuth found no such user
            use(choose_lang(asked.get("set_lang") or asked.get("lang"), None))
            writer.audit(actor=pn.state.user or "?", action="session.refused", source=None)
            return SignedOut()
        if principal.role == "worker":  # their page is the phone's, at /worker
            use(choose_lang(asked.get("lang"), None))
            return FieldWorkerElsewhere()
        if principal.role in ("resident", "merchant"):  # the volunteer scheme's phone pages, /v and /m
            use(choose_lang(asked.get("lang"), None))
            return FieldWorkerElsewhere(page=VOLUNTEER_PAGES[principal.role])
        con = sessions.cursor()
        if asked.get("set_lang") in LANGS:  # the header's switch: kept as the user's preference (not awaited:
            # this page speaks it already, and the event loop does not wait on the writer)
            kept = writer.command(partial(_keep_lang, username=principal.username, lang=asked["set_lang"]))
            kept.add_done_callback(lambda f: f.exception() and log.error("keeping %s's language failed: %s",
                                                                         principal.username, f.exception()))
        use(choose_lang(asked.get("set_lang") or asked.get("lang"), user_lang(con, principal.username)))
        writer.audit(actor=principal.username, action="session.open", source=principal.source)
        # a session's objects go when it ends; the heap they leave free goes back to the system
        pn.state.on_session_destroyed(lambda _context: release_memory())
        return DistrictApp(con, shared, principal=principal)

    def execute(command: Command, args: dict) -> dict:
        """Run a command of the control channel in the writer (one that only reads, on a cursor of its own);
        after an import the sessions' grids follow too."""
        if command.reads_only:
            with store.con.cursor() as cursor:
                return command(cursor, args)
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
    # A fresh cookie secret each start (unless the workers share one): signing in again after a restart is the
    # price of keeping no secret on disk.
    if oauth:
        sign_in = {"oauth_provider": oauth["provider"], "oauth_key": oauth["key"], "oauth_secret": oauth["secret"],
                   "oauth_redirect_uri": oauth.get("redirect_uri"), "oauth_encryption_key": oauth.get("encryption_key")}
    else:
        sign_in = {"auth_provider": StoreAuthProvider(signins)}
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C, so the socket is removed and the writer drained
    control = ControlChannel(db, commands or {}, execute=execute)
    key_use = KeyUseWriter(KeyUse(store_timezone(store.con)), writer)
    sweeper = EvaluationSweeper(writer)
    retention = Retention(writer)
    trimmer = HeapTrimmer()  # the sessions' big sends and reads leave the heap large: given back as it grows
    field = field_routes(FieldDesk(cursors=shared.cursors, writer=writer, signins=signins, refusals=shared.refusals,
                                   crs=store.district.crs))
    field += volunteer_routes(VolunteerDesk(cursors=shared.cursors, writer=writer, signins=signins,
                                            refusals=shared.refusals, crs=store.district.crs))
    try:
        pn.serve({"app": app}, port=port, address=address, websocket_origin=origins, show=False,
                 title="District twin", extra_patterns=intake_routes(store, writer, cursors=shared.cursors,
                                                                     refusals=shared.refusals, intake_rate=intake_rate,
                                                                     public_rate=public_rate, clients=clients,
                                                                     key_use=key_use.key_use)
                 + evaluation_routes(shared.cursors, writer) + view_patterns + field,
                 cookie_secret=cookie_secret or secrets.token_urlsafe(32),
                 websocket_max_message_size=MAX_WS_MESSAGE_BYTES,
                 http_server_kwargs={"max_body_size": MAX_HTTP_BODY_BYTES, "xheaders": behind_proxy}, **sign_in)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        control.close()
        trimmer.close()
        sweeper.close()
        key_use.close()
        retention.close()
        if own_tiles:
            refresher.close()
        for listener in listeners:
            listener.close()
        writer.close()


def follow_store_changes(db: str, *, clients: Remembered, signins: SignIns, shared: SharedDistrict | None,
                         writer: IntakeWriter) -> Listener:
    """Follow what any process changes in a PostgreSQL store's keys, users, grids and ``meta``, as it commits
    (:func:`twin.store.store.create_change_triggers`): a revoked key or a disabled user is refused here at once,
    saved grids are drawn and matched to, and ``meta`` (its time zone, its clock) is read afresh. This process's
    own grid saves are left out: its writer and the saving session followed them already (the keys and users it
    changed are looked up afresh, which is cheap)."""
    def follow(tables: list[str] | None) -> None:
        tables = set(NOTIFIED_TABLES if tables is None else tables)  # None: notices may have been missed
        if "meta" in tables:
            writer.forget_meta()  # every cursor of the store's connection shares what it remembers
        if "api_keys" in tables:
            clients.clear()
        if "users" in tables:
            signins.forget_users()
        if "grids" in tables:
            writer.command(lambda con: {}, grids_changed=True).result()  # the intake matches to the new grids
            if shared is not None:
                shared.forget_grids()

    origin = writer.feed.origin
    return Listener(db, CHANGES_CHANNEL, follow, skip=lambda sender, table: sender == origin and table == "grids")


def _keep_camera_sight(store: Store) -> None:
    """Keep the per-grid camera coverage in the store when the cameras or footprints changed since it was kept
    (once: then every start reads it)."""
    started = time.perf_counter()
    with store.transaction():
        computed = keep_camera_sight(store.con)
    if computed:
        log.info("camera coverage computed and kept in the store in %.1f s", time.perf_counter() - started)


def _tiles_folder(store: Store) -> str:
    """Where the server keeps its own tileset: beside a DuckDB file, in the user's folder for PostgreSQL."""
    if store.path is not None:
        return f"{store.path}.tiles"
    return str(user_folder() / f"tiles-{hashlib.sha256(store.name.encode()).hexdigest()[:16]}")


def _tile_routes(store: Store, shared: SharedDistrict, signins: SignIns, *, folder: str) -> list[tuple]:
    """The tile routes of the tileset in ``folder`` (and ``shared.tileset`` set to their URL)."""
    shared.tileset = "/tiles/tileset.json"
    # The ids are read on each request: a grid save replaces the layer, not its ids' order.
    return tile_routes(folder, district=store.district, building_ids=lambda: shared.layer.building_id,
                       signed_in=signins.may_read,
                       model_elements=lambda: shared.model_elements)


def _keep_lang(con: duckdb.DuckDBPyConnection, *, username: str, lang: str) -> dict:
    set_lang(con, username, lang)
    return {"username": username, "lang": lang}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
