"""The admin's screen: the audit trail, filtered, with its hash-chain check, and the users."""

from __future__ import annotations

import html

import pandas as pd
import panel as pn
import param

from scenes.theme import CSS
from twin.access.policy import Gate

PAGE = 100


def audit_html(rows: pd.DataFrame) -> str:
    """The trail as a plain table (every value escaped)."""
    if rows.empty:
        return "<div class='twin-muted'>No rows match.</div>"
    head = "".join(f"<th>{c}</th>" for c in ("#", "when", "who", "what", "on", "detail", "from"))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None or v != v else str(v))}</td>" for v in
                         (r.seq, str(r.at)[:19], r.actor, r.action, r.target, r.detail, r.source)) + "</tr>"
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
        self.check = pn.widgets.Button(label="Check the hash chain", width=180)
        self.check.on_click(lambda _: self.check_chain())
        self.users = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width")
        self.more = pn.widgets.Button(label="older ›", width=90)
        self.more.on_click(lambda _: setattr(self, "page", self.page + 1))
        self.newer = pn.widgets.Button(label="‹ newer", width=90)
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
        self.chain.object = ("<span class='twin-ok'>The chain is whole: no row was changed or removed.</span>"
                             if broken is None else
                             f"<span class='twin-alert'>The chain breaks at row {broken}: that row or the one "
                             "before it was changed or removed outside the product.</span>")
        return broken

    def show_users(self) -> None:
        rows = "".join(f"<tr><td>{html.escape(u['username'])}</td><td>{u['role']}</td>"
                       f"<td>{html.escape(', '.join(u['grids']) or 'whole district')}</td>"
                       f"<td>{'disabled' if u['disabled'] else ''}</td></tr>" for u in self.gate.users())
        self.users.object = ("<div class='label'>users</div><table class='twin-table'><tr><th>name</th><th>role</th>"
                             f"<th>grids</th><th></th></tr>{rows}</table>")

    def __panel__(self) -> pn.viewable.Viewable:
        # The filters wrap onto a second line on a small screen rather than run past its edge.
        filters = pn.FlexBox(pn.widgets.TextInput.from_param(self.param.actor, name="who", width=160),
                             pn.widgets.Select.from_param(self.param.action, name="what", width=170),
                             pn.widgets.TextInput.from_param(self.param.target, name="on", width=160),
                             pn.widgets.DatePicker.from_param(self.param.since, name="since", width=140),
                             flex_wrap="wrap", sizing_mode="stretch_width")
        return pn.Column(pn.pane.HTML("<div class='twin-title'>Audit trail</div>", stylesheets=[CSS]), filters,
                         pn.Row(self.check, self.chain), self.table, pn.Row(self.newer, self.more), self.users,
                         sizing_mode="stretch_both", scroll=True)
