"""Sign-in for ``twin serve``: Panel's own auth, with the users kept in the store.

Panel's :class:`~panel.auth.BasicAuthProvider` serves the login page and keeps
the signed-in user in a signed cookie; here the names and passwords are checked
against the store's ``users`` table (salted scrypt, :mod:`twin.access.access`), every
attempt is audited with the address it came from, and attempts are rate limited
per user and address and per address. A user who is disabled or removed loses
access at the next page or session, not only at the next sign-in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path

import duckdb
import panel as pn
import tornado.escape
import tornado.web
from panel.auth import BasicAuthProvider, BasicLoginHandler, _validate_next_url
from panel.config import config
from panel.io.state import state

from scenes.i18n import N_, choose_lang, translations
from twin.access.access import SIGNIN_REFUSED, Principal, check_credentials, find_user
from twin.cases.live import IntakeWriter
from twin.access.ratelimit import RateLimiter
from twin.errors import StoreUnavailable
from twin.store.store import is_unavailable

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
USER_CACHE_S = 10.0  # how long a looked-up user (enabled or not) is trusted before asking the store again
# At most 5 tries per name and address, and 20 per address, in a minute (tokens refill steadily).
SIGNIN_PER_USER = {"rate_per_s": 5 / 60, "burst": 5}
SIGNIN_PER_ADDRESS = {"rate_per_s": 20 / 60, "burst": 20}
MAX_FIELD = 256
# The store's refusal (twin.access.access.SIGNIN_REFUSED) as a msgid: the login page shows it translated.
N_("wrong user name or password, or the user is disabled.")
TOO_MANY_TRIES = N_("Too many attempts: wait {seconds} s and try again.")
STORE_UNREACHABLE = N_("The district's store cannot be reached just now: try again in a few seconds.")
STORE_RETRY_S = 2  # Retry-After of a sign-in while the store's database server cannot be reached
_page_lang: ContextVar[str] = ContextVar("page_lang")


def _page_gettext(message: str) -> str:
    """``_`` of the sign-in and sign-out pages: their ``?lang=`` (set by the handler's ``prepare``)."""
    return translations(_page_lang.get()).gettext(message)


class PageLanguage:
    """A mixin of Tornado handlers whose templates speak the page's ``?lang=`` (default: the UI's default)."""

    def prepare(self) -> None:
        _page_lang.set(choose_lang(self.get_argument("lang", None), None))
        return super().prepare()


class Remembered:
    """A lookup by text whose answers (None too) are kept for ``ttl_s`` seconds, at most ``size`` of them.

    For what every request asks (a user's role, an API key's client) and changes rarely: the
    store is asked again once an answer is older than ``ttl_s``.
    """

    def __init__(self, lookup: Callable[[str], object], *, ttl_s: float, size: int = 10_000) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._size = size
        self._seen: dict[str, tuple[object, float]] = {}

    def __call__(self, key: object) -> object:
        if not isinstance(key, str) or not key:  # a JSON body may carry a list or a number
            return None
        hit = self._seen.get(key)
        if hit is None or time.monotonic() - hit[1] > self._ttl_s:
            if len(self._seen) >= self._size:
                self._seen.clear()
            hit = self._seen[key] = (self._lookup(key), time.monotonic())
        return hit[0]

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def clear(self) -> None:
        """Forget every answer (the store changed them elsewhere)."""
        self._seen = {}


class SignIns:
    """Checks sign-ins against the store: rate limits, the password check off the event loop, the audit.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        The store's connection (cursors of it are made per check).
    writer : IntakeWriter
        Audit rows go through the store's one writer.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, writer: IntakeWriter) -> None:
        self._con = con
        self._writer = writer
        reader = con.cursor()
        self._users = Remembered(lambda name: find_user(reader, name), ttl_s=USER_CACHE_S)
        self.per_user = RateLimiter(**SIGNIN_PER_USER)
        self.per_address = RateLimiter(**SIGNIN_PER_ADDRESS)
        # A burst of refused tries is one audit row a minute per address, so it cannot flood the trail.
        self.refusals_recorded = RateLimiter(rate_per_s=1 / 60, burst=1)
        # Whether the store is known to be reachable, asked without a round trip (``twin serve`` on PostgreSQL:
        # its listeners are connected); while it is not, pages and sign-ins answer 503.
        self.reachable: Callable[[], bool] = lambda: True

    def wait_s(self, username: str, address: str) -> float:
        """0 when this attempt may be checked, else the seconds to wait (and the attempt is spent)."""
        if self.per_address.allow(address) and self.per_user.allow(f"{username}|{address}"):
            return 0.0
        return max(self.per_address.retry_after(address), self.per_user.retry_after(f"{username}|{address}"), 1.0)

    async def check(self, username: str, password: str, *, address: str) -> bool:
        """Whether the name and password are right; the attempt is audited either way."""
        user, why = await asyncio.to_thread(self._check, username, password)
        if user is None:
            await asyncio.wrap_future(self._writer.audit(actor=username or "?", action="signin.failed",
                                                         source=address, detail={"reason": why}))
            return False
        await asyncio.wrap_future(self._writer.audit(actor=username, action="signin", source=address))
        self.per_user.forget(f"{username}|{address}")  # a right password clears the name's tries from there
        self._users.forget(username)
        return True

    def forget_users(self) -> None:
        """Look every user up afresh (users were changed elsewhere: disabled, given other grids)."""
        self._users.clear()

    def _check(self, username: str, password: str) -> tuple[dict | None, str]:
        con = self._con.cursor()
        try:
            return check_credentials(con, username, password)
        finally:
            con.close()

    async def refused(self, username: str, *, address: str) -> None:
        """Audit a try refused for its rate (the first of each minute per address)."""
        if self.refusals_recorded.allow(address):
            await asyncio.wrap_future(self._writer.audit(
                actor=username or "?", action="signin.failed", source=address,
                detail={"reason": "too many attempts (more in this minute are refused unrecorded)"}))

    def principal(self, username: str | None, *, source: str | None = None) -> Principal | None:
        """The enabled user ``username`` (looked up at most every ``USER_CACHE_S``), or None."""
        user = self._users(username)
        return None if user is None else dataclasses.replace(user, source=source)

    def may_read(self, username: str | None) -> bool:
        """Whether ``username`` is an enabled user, who may read the district's view (its tiles and cameras)."""
        return self._users(username) is not None


class SignInHandler(PageLanguage, BasicLoginHandler):
    """``/login``: the form (GET) and its check (POST)."""

    signins: SignIns

    async def post(self) -> None:
        username = self.get_argument("username", "")[:MAX_FIELD]
        password = self.get_argument("password", "")[:MAX_FIELD]
        address = self.request.remote_ip or "?"
        wait = self.signins.wait_s(username, address)
        if wait:
            await self.signins.refused(username, address=address)
            self.set_status(429)
            self.set_header("Retry-After", str(int(wait + 0.999)))
            self.write(self._login_template.render(
                login_endpoint=self._login_endpoint,
                errormessage=_page_gettext(TOO_MANY_TRIES).format(
                    seconds=int(wait + 0.999))))
            return
        try:
            if not self.signins.reachable():
                raise StoreUnavailable("the store's PostgreSQL server is not answering this process.")
            right = await self.signins.check(username, password, address=address)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning("a sign-in was refused: the store cannot be reached (%s)", exc)
            self.set_status(503)
            self.set_header("Retry-After", str(STORE_RETRY_S))
            self.write(self._login_template.render(login_endpoint=self._login_endpoint,
                                                   errormessage=_page_gettext(STORE_UNREACHABLE)))
            return
        if right:
            self.set_current_user(username)
            self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)) or state.base_url)
        else:
            self.redirect(self._login_endpoint.lstrip("/") + "?error=" + tornado.escape.url_escape(SIGNIN_REFUSED)
                          + "&lang=" + _page_lang.get())


class StoreAuthProvider(BasicAuthProvider):
    """Panel's basic auth provider with the login page and users of the store."""

    def __init__(self, signins: SignIns) -> None:
        self._signins = signins  # before the base class, which validates the handlers it is given
        super().__init__(login_template=str(TEMPLATES / "login.html"),
                         logout_template=str(TEMPLATES / "logout.html"))
        for template in (self._login_template, self._logout_template):
            template.globals.update(_=_page_gettext, page_lang=_page_lang.get)

    @property
    def get_user(self):
        def get_user(handler) -> str | None:
            name = handler.get_secure_cookie("user", max_age_days=config.oauth_expiry)
            name = name.decode("utf-8") if name else None
            if name is None:
                return None  # off to the sign-in page, which needs no store until its form is sent
            try:
                if not self._signins.reachable():
                    raise StoreUnavailable("the store's PostgreSQL server is not answering this process.")
                principal = self._signins.principal(name)
            except Exception as exc:  # every page asks: a store that cannot be reached is a 503, not a 500
                if is_unavailable(exc):
                    log.warning("a page was refused with 503: %s", exc)
                    refuse_unreachable(handler)
                raise
            return name if principal is not None else None
        return get_user

    @property
    def logout_handler(self):
        return type("StoreSignOutHandler", (PageLanguage, super().logout_handler), {})

    @property
    def login_handler(self):
        return type("StoreSignInHandler", (SignInHandler,), {
            "_login_endpoint": self._login_endpoint, "_login_template": self._login_template,
            "signins": self._signins})


def refuse_unreachable(handler: tornado.web.RequestHandler) -> None:
    """Answer ``handler``'s request 503 with Retry-After (the store cannot be reached), and end it.

    A :class:`tornado.web.HTTPError` would not do: Tornado's error page starts from a cleared response, without the
    Retry-After that tells a browser, a proxy or a monitor when to ask again.
    """
    handler.clear()
    handler.set_status(503, reason="Store Unavailable")
    handler.set_header("Retry-After", str(STORE_RETRY_S))
    handler.set_header("Cache-Control", "no-store")
    handler.set_header("Content-Type", "text/plain; charset=utf-8")
    raise tornado.web.Finish(translations(choose_lang(handler.get_argument("lang", None), None)).gettext(
        STORE_UNREACHABLE))


def session_principal(signins: SignIns) -> Principal | None:
    """The signed-in user of the current Panel session, with the address the session came from."""
    context = pn.state.curdoc.session_context if pn.state.curdoc is not None else None
    request = getattr(context, "request", None)
    address = getattr(request, "remote_ip", None) if request is not None else None
    return signins.principal(pn.state.user, source=address)

