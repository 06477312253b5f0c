"""The building card's volunteer account block (文明小杜): the operator picks a resident of the page listed and
makes their account, and is shown its name and one-time code once, to hand to the resident.

The core does the work and the checks (:func:`twin.volunteers.accounts.issue_resident_account`: only a user who
may see the resident's record, audited as ``twin volunteers account`` is), as one job of the store's writer.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from concurrent.futures import TimeoutError as WriteTimeout

import panel as pn
import param

from scenes.i18n import N_, _, error_text, format_time
from scenes.theme import CSS
from twin.access.policy import Gate
from twin.cases.live import IntakeWriter, Written
from twin.errors import StoreError, TwinError
from twin.volunteers.accounts import CODE_DAYS, issue_resident_account, resident_account

ACTIVATE_PATH = "/v/activate"

Look = Callable[..., None]
""":meth:`scenes.inspector.Inspector.look`: ``look(read, show, replaces=False)`` runs ``read(gate)`` (served, off
the event loop, its audit rows committed) and then ``show`` with its result or its :class:`TwinError`."""


def issued_html(made: dict) -> str:
    """The account made (or its new code), shown once: name, code, until when, and what the resident does with it."""
    head = (_("Volunteer account made") if made["new"] else
            _("This resident already had an account: here is a new one-time code; the old one no longer works."))
    facts = [(_("account"), made["username"], "twin-account-username"),
             (_("one-time code"), made["code"], "twin-account-code"),
             (_("valid until"), format_time(made["expires_at"]), "twin-account-expires")]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td class='{c}'>{html.escape(str(v))}</td></tr>"
                   for k, v, c in facts)
    tell = _("Give the account and the code to the resident in person: on their phone they open {path}, set a "
             "password with the code (within {days} days), then sign in at /v. The code is shown only this once."
             ).format(path=ACTIVATE_PATH, days=CODE_DAYS)
    return (f"<div class='twin-account-issued'><div class='label'>{html.escape(head)}</div>"
            f"<table class='twin-facts'>{rows}</table><div class='twin-muted'>{html.escape(tell)}</div></div>")


def account_state_html(account: dict | None) -> str:
    """Whether the picked resident has an account, and what pressing the button will do."""
    if account is None:
        return "<span class='twin-muted'>" + html.escape(_("No volunteer account yet.")) + "</span>"
    state = _("activated") if account["activated"] else _("not activated yet")
    return ("<span class='twin-muted'>" + html.escape(
        _("Has the account {username} ({state}). A new code replaces the old one (for a lost password or code)."
          ).format(username=account["username"], state=state)) + "</span>")


class ResidentAccount(pn.viewable.Viewer):
    """Pick a resident of the listed page, press, and their volunteer account is made (or a resident who has one
    gets a new code); the name and code are shown once.

    Parameters
    ----------
    look : callable
        The inspector's :meth:`~scenes.inspector.Inspector.look`.
    writer : IntakeWriter, optional
        The store's writer; without one (a read-only app) the block is never shown.
    write_timeout_s : float
        An account not committed by then is reported as failed (the inspector's, as for its case transitions).
    """

    resident_id = param.Selector(default="", objects=[""], doc="The resident picked ('' for none)")
    account = param.Dict(default=None, allow_None=True, doc="The picked resident's account (resident_account), or None")
    known = param.Boolean(default=False, doc="Whether ``account`` was read for the resident picked")
    issued = param.Dict(default=None, allow_None=True,
                        doc="What the last press made: username, code, expires_at, new (shown once)")
    error = param.String(default="", doc="The last refusal, in the session's language")
    active = param.Boolean(default=False, doc="Shown (residents listed, a writer to write with)")

    def __init__(self, look: Look, writer: IntakeWriter | None, *, write_timeout_s: float, **params) -> None:
        super().__init__(**params)
        self._look = look
        self._writer = writer
        self._timeout_s = write_timeout_s
        self._picks = 0  # picks so far: a late answer about an earlier pick is dropped
        self.pick = pn.widgets.Select.from_param(self.param.resident_id, name="", sizing_mode="stretch_width",
                                                 min_width=120, css_classes=["twin-account-who"])
        self.button = pn.widgets.Button(label=_("Open a volunteer account"), color="primary", height=32,
                                        disabled=True, css_classes=["twin-account-make"])
        self.button.on_click(lambda _e: self.make())
        self.state = pn.pane.HTML("", stylesheets=[CSS], css_classes=["twin-account-state"])
        self.shown = pn.pane.HTML("", stylesheets=[CSS], css_classes=["twin-account"])
        self.layout = pn.Column(
            pn.pane.HTML("<div class='label'>" + html.escape(_("volunteer account (文明小杜)")) + "</div>",
                         stylesheets=[CSS]),
            self.pick, self.button, self.state, self.shown,  # one under another: side by side did not fit at 1280 px
            visible=False, sizing_mode="stretch_width", css_classes=["twin-account-block"])
        self._draw()

    def offer(self, who: dict[str, str]) -> None:
        """The residents listed (label to resident id), none picked; what was shown before goes."""
        self._picks += 1
        with param.parameterized.batch_call_watchers(self):
            self.param.resident_id.objects = {_("pick a resident"): "", **who}
            self.resident_id = ""
        self._clear()

    def _clear(self) -> None:
        self.param.update(account=None, known=False, issued=None, error="")

    @param.depends("resident_id", watch=True)
    def _picked(self) -> None:
        self._picks += 1
        self._clear()
        resident_id, ticket = self.resident_id, self._picks
        if not resident_id or not self.active:
            return

        def show(found: dict | None | TwinError) -> None:
            if ticket != self._picks:
                return
            if isinstance(found, TwinError):
                self.error = error_text(found)
            else:
                self.param.update(account=found, known=True)
        self._look(lambda gate: resident_account(gate, resident_id), show, replaces=False)

    def make(self) -> None:
        """Make the picked resident's account (or their new code) through the store's writer, and show it once."""
        resident_id, ticket = self.resident_id, self._picks
        if not resident_id or self._writer is None:
            return
        writer, timeout_s = self._writer, self._timeout_s

        def read(gate: Gate) -> dict:
            principal, refusals = gate.principal, gate.refusals

            def job(con) -> Written:
                try:  # the core checks before it writes: a refusal leaves only its audit row
                    return Written(issue_resident_account(Gate(con, principal, refusals=refusals), resident_id))
                except TwinError as exc:
                    return Written(exc)
            # On a reader thread served: waiting for the writer's commit holds no event loop.
            try:
                answer = writer.submit(job).result(timeout=timeout_s)
            except WriteTimeout:
                raise StoreError(N_("the store did not answer within {seconds} s; pick the resident again to see "
                                    "whether their account was made before you press again."),
                                 seconds=f"{timeout_s:g}") from None
            if isinstance(answer, TwinError):
                raise answer
            return answer

        def show(made: dict | TwinError) -> None:
            if ticket != self._picks:
                return
            if isinstance(made, TwinError):
                self.param.update(issued=None, error=error_text(made))
            else:
                self.param.update(error="", issued=made, known=True, account={
                    "username": made["username"], "activated": bool((self.account or {}).get("activated")),
                    "code_expires_at": made["expires_at"]})
        self._look(read, show, replaces=False)

    @param.depends("active", "resident_id", "account", "known", "issued", "error", watch=True)
    def _draw(self) -> None:
        self.layout.visible = self.active and self._writer is not None
        self.button.disabled = not self.resident_id
        self.button.label = (_("Issue a new one-time code") if self.account is not None
                             else _("Open a volunteer account"))
        self.state.object = (account_state_html(self.account) if self.resident_id and self.known and not self.issued
                             and not self.error else "")
        self.shown.object = (issued_html(self.issued) if self.issued else
                             f"<span class='twin-alert'>{html.escape(self.error)}</span>" if self.error else "")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout
