"""``/r/{token}``: the resident's phone page where the reporter of a case says whether it was solved.

No account: the token in the address (from the case's Open311 receipt, ``evaluation_url``) is the
reporter's one-use key (:mod:`twin.cases.evaluations`). The page shows the case without anything
personal (its kind, status and times), asks the question once the case is handled, and takes the
answer through the store's writer: satisfied closes the case, not satisfied reopens it with the note
and gives a new link for the next time. Chinese first (``?lang=en`` for English), made for a phone
(390 px wide, large touch targets), no script, nothing loaded from elsewhere.
"""

from __future__ import annotations

import asyncio
import logging

from tornado.web import RequestHandler

from scenes.phone import PAGE_TEMPLATES
from scenes.i18n import N_, EVALUATION_NAMES, STATUS_NAMES, case_kind_name, choose_lang, translations
from scenes.shared import READS, Cursors
from twin.access.ratelimit import RateLimiter
from twin.cases.evaluations import ANSWERS, ASK_DAYS, MAX_NOTE, QUESTION, EvaluationError, token_case
from twin.cases.live import IntakeWriter
from twin.errors import InputError, TwinError

log = logging.getLogger(__name__)
TOKEN_PATTERN = r"/r/([A-Za-z0-9_-]{1,64})"
PAGE_RATE = {"rate_per_s": 1.0, "burst": 20}  # per address: a person answers a few times, a guesser is slowed
# HTTP status of a token that cannot answer, by why (twin.cases.evaluations.EvaluationError.reason).
STATUS_OF = {"unknown": 404, "used": 410, "expired": 410, "not_yet": 409, "closed": 409}


def _time(value: object, lang: str) -> str:
    if value is None or value != value:
        return ""
    return f"{value.year}年{value.month}月{value.day}日 {value:%H:%M}" if lang == "zh" else f"{value:%d %b %Y %H:%M}"


class EvaluationPage(RequestHandler):
    """GET shows the case and, once it is handled, the question; POST takes the answer (``answer``, ``note``)."""

    def initialize(self, cursors: Cursors, writer: IntakeWriter, limiter: RateLimiter) -> None:
        self.cursors = cursors
        self.writer = writer
        self.limiter = limiter

    def set_default_headers(self) -> None:
        # The token is in the address: it must not leave in a Referer, be cached, or the page be framed.
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                                                   "form-action 'self'; base-uri 'none'")

    @property
    def lang(self) -> str:
        return choose_lang(self.get_argument("lang", None), None)

    def _within_rate(self) -> bool:
        address = self.request.remote_ip or "?"
        if self.limiter.allow(address):
            return True
        self.set_header("Retry-After", str(max(1, round(self.limiter.retry_after(address)))))
        self._render(None, error=self._gettext(N_("Too many tries from here: wait a little and try again.")),
                     status=429)
        return False

    def _gettext(self, message: str) -> str:
        return translations(self.lang).gettext(message)

    async def _case(self, token: str) -> dict | EvaluationError:
        def read() -> dict | EvaluationError:
            try:
                return token_case(self.cursors(), token)
            except EvaluationError as exc:
                return exc
        return await asyncio.get_running_loop().run_in_executor(READS, read)

    async def get(self, token: str) -> None:
        if not self._within_rate():
            return
        case = await self._case(token)
        if isinstance(case, EvaluationError):
            return self._render(None, error=self._error(case), status=STATUS_OF[case.reason])
        self._render(case, token=token)

    async def post(self, token: str) -> None:
        if not self._within_rate():
            return
        answer = self.get_body_argument("answer", "")
        note = self.get_body_argument("note", "")[:MAX_NOTE + 1]
        case = await self._case(token)
        if isinstance(case, EvaluationError):
            return self._render(None, error=self._error(case), status=STATUS_OF[case.reason])
        if answer not in ANSWERS:
            return self._render(case, token=token, note=note, status=400,
                                error=self._gettext(N_("Choose satisfied or not satisfied.")))
        try:
            done = await self.writer.evaluate(token, satisfied=answer == "satisfied", note=note,
                                              source=self.request.remote_ip, loop=asyncio.get_running_loop())
        except EvaluationError as exc:
            return self._render(None, error=self._error(exc), status=STATUS_OF[exc.reason])
        except InputError as exc:  # not satisfied without a note, or too long a note
            return self._render(case, token=token, note=note, status=400, error=self._error(exc))
        except TwinError as exc:
            log.warning("an evaluation of %s was refused: %s", case["case_id"], exc)
            return self._render(case, token=token, note=note, status=400, error=self._error(exc))
        log.info("case %s evaluated: %s", done["case_id"], done["result"])
        self._render({**case, "status": done["status"]}, done=done)

    def _error(self, error: TwinError) -> str:
        """A refusal in the page's language (its template translated, then filled)."""
        try:
            return self._gettext(error.template).format(**error.params) if error.params else \
                self._gettext(error.template or str(error))
        except (KeyError, IndexError, ValueError):
            return str(error)

    def _render(self, case: dict | None, *, token: str | None = None, done: dict | None = None,
                note: str = "", error: str | None = None, status: int = 200) -> None:
        lang = self.lang
        gettext = translations(lang).gettext
        kind = None if case is None else " · ".join(case_kind_name(c, lang) for c in (case["category"],
                                                                                         case["subcategory"]))
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(PAGE_TEMPLATES.get_template("evaluate.html").render(
            _=gettext, lang=lang, case=case, kind=kind, token=token, done=done, note=note, error=error,
            question=QUESTION[lang], status=None if case is None else gettext(STATUS_NAMES[case["status"]]),
            result=None if done is None else gettext(EVALUATION_NAMES[done["result"]]),
            reported=None if case is None else _time(case["reported_at"], lang),
            answer_by=None if case is None or case["answer_by"] is None else _time(case["answer_by"], lang),
            days=ASK_DAYS, max_note=MAX_NOTE))


def evaluation_routes(cursors: Cursors, writer: IntakeWriter) -> list[tuple]:
    """The Tornado route of the resident's page, for ``twin serve``'s extra patterns (no sign-in)."""
    return [(TOKEN_PATTERN, EvaluationPage, {"cursors": cursors, "writer": writer,
                                             "limiter": RateLimiter(**PAGE_RATE)})]
