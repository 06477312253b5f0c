"""The admin's screen: the audit trail, filtered, with its hash-chain check, and the users."""

from __future__ import annotations

import html
import json

import pandas as pd
import panel as pn
import param

from scenes.i18n import N_, _, audit_action_name, format_time, role_name, status_name
from scenes.theme import CSS
from twin.access.policy import Gate

PAGE = 100
DETAIL_KEYS = {"from": N_("from status"), "to": N_("to status"), "note": N_("note"), "role": N_("role"),
               "grids": N_("grids"),
               "lang": N_("language"), "reason": N_("reason"), "page": N_("page"), "rows": N_("rows"),
               "cases": N_("cases"), "change_id": N_("change"), "parent_id": N_("parent"), "level": N_("level")}

# Why a sign-in was refused, as twin.access.access.check_credentials and scenes.auth.SignIns record it.
REFUSAL_NAMES = {"wrong name or password": N_("wrong name or password"), "disabled": N_("disabled"),
                 "too many attempts (more in this minute are refused unrecorded)":
                 N_("too many attempts (more in this minute are refused unrecorded)")}


def detail_text(detail: object) -> str:
    """An audit row's detail (JSON) as ``name: value`` pairs in the session's language; statuses and roles named."""
    try:
        found = json.loads(detail) if isinstance(detail, str) else None
    except json.JSONDecodeError:
        found = None
    if not isinstance(found, dict):
        return "" if detail is None or detail != detail else str(detail)
    pairs = []
    for key, value in found.items():
        if value in (None, [], ""):
            continue
        shown = (status_name(value) if key in ("from", "to") else role_name(value) if key == "role"
                 else _(REFUSAL_NAMES[value]) if key == "reason" and value in REFUSAL_NAMES
                 else ", ".join(map(str, value)) if isinstance(value, list) else str(value))
        pairs.append(f"{_(DETAIL_KEYS[key]) if key in DETAIL_KEYS else key}: {shown}")
    return " · ".join(pairs)


def audit_html(rows: pd.DataFrame) -> str:
    """The trail as a plain table (every value escaped)."""
    if rows.empty:
        return "<div class='twin-muted'>" + _("No rows match.") + "</div>"
    head = "".join(f"<th>{c}</th>" for c in ("#", _("when"), _("who"), _("what"), _("on"), _("detail"), _("from")))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None or v != v else str(v))}</td>" for v in
                         (r.seq, format_time(r.at), r.actor, audit_action_name(r.action), r.target,
                          detail_text(r.detail), r.source)) + "</tr>"
        for r in rows.itertuples())
    return f"<table class='twin-table twin-audit'><tr>{head}</tr>{body}</table>"


class AdminScreen(pn.viewable.Viewer):
    """Filters over the audit trail (who, what, on which record, since when), the chain check and the users."""

    actor = param.String(default="", doc="user (or intake client) name, or its beginning")
    action = param.Selector(default="", objects=[""])
    target = param.String(default="", doc="record id (building, resident, case, grid, user), or its beginning")
    since = param.Date(default=None, allow_None=True)
    page = param.Integer(default=0, bounds=(0, None))

    def __init__(self, gate: Gate, **params) -> None:
        super().__init__(**params)
        self.gate = gate
        self.param.action.objects = ["", *gate.audit_actions()]
        self.table = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["twin-audit-rows"])
        self.chain = pn.pane.HTML("", stylesheets=[CSS], css_classes=["twin-chain"])
        self.check = pn.widgets.Button(label=_("Check the hash chain"), width=180)
        self.check.on_click(lambda _: self.check_chain())
        self.users = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width")
        self.more = pn.widgets.Button(label=_("older ›"), width=90)
        self.more.on_click(lambda _: setattr(self, "page", self.page + 1))
        self.newer = pn.widgets.Button(label=_("‹ newer"), width=90)
        self.newer.on_click(lambda _: setattr(self, "page", max(0, self.page - 1)))
        self.refresh()
        self.show_users()

    @param.depends("actor", "action", "target", "since", watch=True)
    def _filters_changed(self) -> None:
        if self.page:
            self.page = 0  # refreshes through its own watcher
        else:
            self.refresh()

    @param.depends("page", watch=True)
    def refresh(self) -> None:
        rows = self.gate.audit_trail(actor=self.actor.strip() or None, action=self.action or None,
                                     target=self.target.strip() or None, since=self.since, limit=PAGE,
                                     offset=self.page * PAGE)
        self.rows = rows
        self.table.object = audit_html(rows)
        self.more.disabled = len(rows) < PAGE
        self.newer.disabled = self.page == 0

    def check_chain(self) -> int | None:
        broken = self.gate.verify_audit()
        self.chain.object = ("<span class='twin-ok'>" + _("The chain is whole: no row was changed or removed.")
                             + "</span>" if broken is None else "<span class='twin-alert'>"
                             + _("The chain breaks at row {row}: that row or the one before it was changed or "
                                 "removed outside the product.").format(row=broken) + "</span>")
        return broken

    def show_users(self) -> None:
        district, disabled = _("whole district"), _("disabled")
        rows = "".join(f"<tr><td>{html.escape(u['username'])}</td><td>{role_name(u['role'])}</td>"
                       f"<td>{html.escape(', '.join(u['grids']) or district)}</td>"
                       f"<td>{disabled if u['disabled'] else ''}</td></tr>" for u in self.gate.users())
        heads = "".join(f"<th>{h}</th>" for h in (_("name"), _("role"), _("grids"), ""))
        self.users.object = ("<div class='label'>" + _("users") + "</div><table class='twin-table'><tr>"
                             f"{heads}</tr>{rows}</table>")

    def __panel__(self) -> pn.viewable.Viewable:
        # The filters wrap onto a second line on a small screen rather than run past its edge.
        filters = pn.FlexBox(pn.widgets.TextInput.from_param(self.param.actor, name=_("who"), width=160),
                             pn.widgets.Select.from_param(self.param.action, name=_("what"), width=170, options={
                                 (audit_action_name(a) if a else _("any")): a for a in self.param.action.objects}),
                             pn.widgets.TextInput.from_param(self.param.target, name=_("on"), width=160),
                             pn.widgets.DatePicker.from_param(self.param.since, name=_("since"), width=140),
                             flex_wrap="wrap", sizing_mode="stretch_width")
        title = pn.pane.HTML("<div class='twin-title'>" + _("Audit trail") + "</div>", stylesheets=[CSS])
        return pn.Column(title, filters,
                         pn.Row(self.check, self.chain), self.table, pn.Row(self.newer, self.more), self.users,
                         sizing_mode="stretch_both", scroll=True)
