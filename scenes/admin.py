"""The admin's screen: the audit trail (readable, filtered, refreshed, exported), the users and the API keys.

The trail is read on the session's cursor through the gate (it is one page of an indexed
table). Every change to users and keys is a command of :mod:`twin.access.commands` (the same
ones ``twin users|keys`` run), checked by the gate and run as one job of the store's writer
while the server runs (``writer``), or in one transaction on the session's cursor without one
(tests, notebooks). The event loop awaits the writer's commit, never blocks on it.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
from functools import partial

import duckdb
import pandas as pd
import panel as pn
import param

from scenes.i18n import (N_, _, audit_action_name, error_text, evaluation_name, format_time, level_name,
                         role_name, status_name)
from scenes.planner.saving import save_in_transaction
from scenes.shared import OffLoop
from scenes.theme import CSS, TABS_CSS
from twin.access.access import ROLES, WeakPassword, generate_password, password_rule_broken, rule_text
from twin.access.commands import access_commands
from twin.access.policy import AUDIT_KINDS, OTHER_KIND, Gate
from twin.cases.live import IntakeWriter
from twin.errors import TwinError
from twin.store.queries import grid_tree
from twin.store.schema import GRID_LEVELS

PAGE = 100
REFRESH_MS = 5000  # the trail's first page follows new rows, and the keys' table their use, this often
DETAIL_KEYS = {"from": N_("from status"), "to": N_("to status"), "note": N_("note"), "role": N_("role"),
               "grids": N_("grids"), "role_before": N_("role before"), "grids_before": N_("grids before"),
               "lang": N_("language"), "reason": N_("reason"), "page": N_("page"), "rows": N_("rows"),
               "cases": N_("cases"), "change_id": N_("change"), "parent_id": N_("parent"), "level": N_("level"),
               "what": N_("what was asked"), "history": N_("all versions"), "actor": N_("who"), "action": N_("what"),
               "target": N_("on"), "since": N_("since"), "until": N_("until"), "kind": N_("entry kind"),
               "department": N_("department"), "department_before": N_("department before"),
               "worker": N_("worker"), "previous": N_("worker before"), "result": N_("evaluation"),
               "via": N_("through"), "duties": N_("duties"), "departments": N_("departments"),
               "added": N_("added"), "removed": N_("removed")}
KIND_NAMES = {"refused": N_("refused access"), "signin": N_("sign-in"), "read": N_("read"),
              OTHER_KIND: N_("change")}
# Detail keys whose values are grid or building ids: shown with their names.
ID_KEYS = ("grids", "grids_before", "parent_id", "change_id")

# Why a sign-in was refused, as twin.access.access.check_credentials and scenes.auth.SignIns record it.
REFUSAL_NAMES = {"wrong name or password": N_("wrong name or password"), "disabled": N_("disabled"),
                 "too many attempts (more in this minute are refused unrecorded)":
                 N_("too many attempts (more in this minute are refused unrecorded)")}
COMMANDS = access_commands()


def _blank(value: object) -> bool:
    return value is None or value != value or value in ([], "", {})


def named(record_id: object, names: dict[str, str]) -> str:
    """``name (id)`` when the id has a name, else the id."""
    text = str(record_id)
    return f"{names[text]} ({text})" if text in names else text


def _detail(detail: object) -> dict | None:
    try:
        found = json.loads(detail) if isinstance(detail, str) else None
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def _value_text(key: str, value: object, names: dict[str, str]) -> str:
    if isinstance(value, dict):  # nested (what a grid save moved): its own pairs, in brackets
        return "(" + ", ".join(f"{k}: {_value_text(k, v, names)}" for k, v in value.items() if not _blank(v)) + ")"
    if isinstance(value, list):
        return ", ".join(_value_text(key, v, names) for v in value)
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if key in ("from", "to"):
        return status_name(value)
    if key in ("role", "role_before"):
        return role_name(value)
    if key == "reason" and value in REFUSAL_NAMES:
        return _(REFUSAL_NAMES[value])
    if key == "action":
        return audit_action_name(value)
    if key == "kind":
        return _(KIND_NAMES.get(value, str(value)))
    if key == "level":
        return level_name(value)
    if key == "result":
        return evaluation_name(value)
    return named(value, names) if key in ID_KEYS else str(value)


def detail_text(detail: object, names: dict[str, str] | None = None) -> str:
    """An audit row's detail (JSON) as ``name: value`` pairs in the session's language: statuses, roles and
    actions named, grid and building ids with their names (``names``), never raw JSON."""
    found = _detail(detail)
    if found is None:
        return "" if _blank(detail) else str(detail)
    names = names or {}
    return " · ".join(f"{_(DETAIL_KEYS[key]) if key in DETAIL_KEYS else key}: {_value_text(key, value, names)}"
                      for key, value in found.items() if not _blank(value))


def ids_in(rows: pd.DataFrame) -> list[str]:
    """The record ids a page of the trail names (targets, and grids in the details) that may have names."""
    ids = {str(t) for t in rows["target"] if isinstance(t, str)}
    for detail in rows["detail"]:
        for key, value in (_detail(detail) or {}).items():
            if key in ID_KEYS:
                ids.update(map(str, value if isinstance(value, list) else [value]))
    return sorted(ids)


def audit_html(rows: pd.DataFrame, names: dict[str, str] | None = None) -> str:
    """The trail as a plain table (every value escaped); refused accesses are marked as their own kind."""
    if rows.empty:
        return "<div class='twin-muted'>" + _("No rows match.") + "</div>"
    names = names or {}
    heads = ("#", _("when"), _("who"), _("entry kind"), _("what"), _("on"), _("detail"), _("from"))
    body = []
    for r in rows.itertuples():
        cells = (r.seq, format_time(r.at), r.actor, _(KIND_NAMES[r.kind]), audit_action_name(r.action),
                 None if _blank(r.target) else named(r.target, names), detail_text(r.detail, names), r.source)
        mark = " class='twin-refused'" if r.kind == "refused" else ""
        body.append(f"<tr{mark}>" + "".join(f"<td>{html.escape('' if _blank(v) else str(v))}</td>" for v in cells)
                    + "</tr>")
    return ("<table class='twin-table twin-audit'><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>"
            + "".join(body) + "</table>")


def audit_csv(rows: pd.DataFrame, names: dict[str, str]) -> bytes:
    """The rows as CSV (UTF-8 with a BOM, so a spreadsheet reads the Chinese): the columns of the table on screen,
    the detail as readable text."""
    frame = pd.DataFrame({
        "#": rows["seq"], _("when"): rows["at"].astype(str), _("who"): rows["actor"],
        _("entry kind"): [_(KIND_NAMES[k]) for k in rows["kind"]], _("what"): rows["action"].map(audit_action_name),
        _("on"): [None if _blank(t) else named(t, names) for t in rows["target"]],
        _("detail"): [detail_text(d, names) for d in rows["detail"]], _("from"): rows["source"]})
    return frame.to_csv(index=False).encode("utf-8-sig")


def grid_options(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every grid in force as a picker option, label to id, in the order of the grid tree (street → community →
    grid → micro-grid, each under its parent), drawn as its branches; a label holds the level, name and id, which
    the picker's search matches."""
    tree = grid_tree(con)
    path = tree[list(GRID_LEVELS)].fillna("").astype(str)
    tree = tree.assign(_path=path.apply(tuple, axis=1)).sort_values("_path")
    # Drawn as a tree, not with leading spaces: the picker trims a label's spaces and would then not know it.
    indent = {lvl: "│ " * (k - 1) + "└ " if k else "" for k, lvl in enumerate(GRID_LEVELS)}
    return {f"{indent.get(r.level, '')}{level_name(r.level)} {r.name or ''} · {r.grid_id}": r.grid_id
            for r in tree.itertuples()}


class AuditTrail(pn.viewable.Viewer):
    """The trail, filtered (who, what, kind, on which record, since and until which day), newest first, a page at a
    time; its first page follows new rows (:meth:`follow`); the filtered rows exported as CSV (audited)."""

    actor = param.String(default="", doc="user (or intake client) name, or its beginning")
    action = param.Selector(default="", objects=[""])
    kind = param.Selector(default="", objects=["", *AUDIT_KINDS, OTHER_KIND])
    target = param.String(default="", doc="record id (building, resident, case, grid, user, key), or its beginning")
    since = param.Date(default=None, allow_None=True)
    until = param.Date(default=None, allow_None=True)
    page = param.Integer(default=0, bounds=(0, None))

    def __init__(self, gate: Gate, *, off_loop: OffLoop | None = None, **params) -> None:
        super().__init__(**params)
        self.gate = gate
        self._off_loop = off_loop  # served: the export's read off the event loop, its audit row through the writer
        self.param.action.objects = ["", *gate.audit_actions()]
        self.table = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["twin-audit-rows"])
        self.chain = pn.pane.HTML("", stylesheets=[CSS], css_classes=["twin-chain"])
        self.check = pn.widgets.Button(label=_("Check the hash chain"), width=180)
        self.check.on_click(lambda _: self.check_chain())
        self.export = pn.widgets.FileDownload(callback=self._export_csv, filename="audit.csv", label=_("Export CSV"),
                                              css_classes=["twin-audit-export"], width=130, color="default")
        self.clear = pn.widgets.Button(label=_("Clear filters"), width=120, css_classes=["twin-audit-clear"])
        self.clear.on_click(lambda _: self.param.update(actor="", action="", kind="", target="", since=None,
                                                        until=None))
        self.more = pn.widgets.Button(label=_("older ›"), width=90)
        self.more.on_click(lambda _: setattr(self, "page", self.page + 1))
        self.newer = pn.widgets.Button(label=_("‹ newer"), width=90)
        self.newer.on_click(lambda _: setattr(self, "page", max(0, self.page - 1)))
        self._latest: int | None = None
        self.refresh()

    def filters(self) -> dict:
        """The filters as :meth:`twin.access.policy.Gate.audit_trail` takes them."""
        return {"actor": self.actor.strip() or None, "action": self.action or None, "kind": self.kind or None,
                "target": self.target.strip() or None, "since": self.since, "until": self.until}

    @param.depends("actor", "action", "kind", "target", "since", "until", watch=True)
    def _filters_changed(self) -> None:
        if self.page:
            self.page = 0  # refreshes through its own watcher
        else:
            self.refresh()

    @param.depends("page", watch=True)
    def refresh(self) -> None:
        rows = self.gate.audit_trail(**self.filters(), limit=PAGE, offset=self.page * PAGE)
        self.rows = rows
        self.table.object = audit_html(rows, self.gate.record_names(ids_in(rows)))
        self.more.disabled = len(rows) < PAGE
        self.newer.disabled = self.page == 0
        self._latest = self._newest()

    def _newest(self) -> int | None:
        return self.gate.con.execute("SELECT max(seq) FROM audit").fetchone()[0]

    def follow(self) -> None:
        """Show the rows added since the last look, when the first page is shown (a later page stays put)."""
        if self.page == 0 and self._newest() != self._latest:
            self.refresh()

    async def _export_csv(self) -> io.BytesIO:
        """The filtered rows as CSV; the gate audits the export (served: its row committed through the writer)."""
        filters = self.filters()
        if self._off_loop is None:
            rows = self.gate.export_audit(**filters)
        else:
            rows = await self._off_loop.look(self.gate, lambda gate: gate.export_audit(**filters))
        data = audit_csv(rows, self.gate.record_names(ids_in(rows)))
        self.refresh()  # the export's own row
        return io.BytesIO(data)

    def check_chain(self) -> int | None:
        broken = self.gate.verify_audit()
        self.chain.object = ("<span class='twin-ok'>" + _("The chain is whole: no row was changed or removed.")
                             + "</span>" if broken is None else "<span class='twin-alert'>"
                             + _("The chain breaks at row {row}: that row or the one before it was changed or "
                                 "removed outside the product.").format(row=broken) + "</span>")
        return broken

    def __panel__(self) -> pn.viewable.Viewable:
        # The filters wrap onto more lines on a small screen rather than run past its edge.
        kinds = {_("any"): "", **{_(KIND_NAMES[k]): k for k in (*AUDIT_KINDS, OTHER_KIND)}}
        filters = pn.FlexBox(pn.widgets.TextInput.from_param(self.param.actor, label=_("who"), width=150),
                             pn.widgets.Select.from_param(self.param.action, label=_("what"), width=170, options={
                                 (audit_action_name(a) if a else _("any")): a for a in self.param.action.objects}),
                             pn.widgets.Select.from_param(self.param.kind, label=_("entry kind"), width=130,
                                                          options=kinds, css_classes=["twin-audit-kind"]),
                             pn.widgets.TextInput.from_param(self.param.target, label=_("on"), width=150),
                             pn.widgets.DatePicker.from_param(self.param.since, label=_("since"), width=130,
                                                              css_classes=["twin-audit-since"]),
                             pn.widgets.DatePicker.from_param(self.param.until, label=_("until"), width=130,
                                                              css_classes=["twin-audit-until"]),
                             flex_wrap="wrap", sizing_mode="stretch_width")
        note = pn.pane.HTML("<span class='twin-muted'>" + _("New rows appear by themselves every {s} s.").format(
            s=REFRESH_MS // 1000) + "</span>", stylesheets=[CSS])
        return pn.Column(filters, pn.FlexBox(self.clear, self.check, self.export, note, self.chain, flex_wrap="wrap",
                                             sizing_mode="stretch_width"),
                         self.table, pn.Row(self.newer, self.more), sizing_mode="stretch_width")


class GridPicker(pn.viewable.Viewer):
    """Grids to bind a role to: a searchable list (name or id) shaped as the grid tree (:func:`grid_options`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, *, label: str, css_class: str, **params) -> None:
        super().__init__(**params)
        self.choice = pn.widgets.MultiChoice(label=label, options=grid_options(con), search_option_limit=50,
                                             placeholder=_("search by name or id"),
                                             sizing_mode="stretch_width", css_classes=[css_class])

    @property
    def value(self) -> list[str]:
        """The chosen grid ids."""
        return list(self.choice.value)

    @value.setter
    def value(self, grid_ids: list[str]) -> None:
        self.choice.value = list(grid_ids)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.choice


class AccessDesk(pn.viewable.Viewer):
    """Runs the admin's commands on users and keys (:mod:`twin.access.commands`) and says how each went.

    Parameters
    ----------
    gate : Gate
        The admin's gate: it checks the right to manage users and fills in who asks and from where.
    writer : IntakeWriter, optional
        The store's writer (``twin serve``); without one a command runs in a transaction of its own
        (:func:`scenes.planner.saving.save_in_transaction`).
    """

    def __init__(self, gate: Gate, *, writer: IntakeWriter | None = None) -> None:
        super().__init__()
        self.gate = gate
        self._writer = writer
        self.message = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                    css_classes=["twin-admin-message"])

    async def run(self, name: str, args: dict) -> dict | None:
        """Run command ``name``; its answer, or None after showing why it was refused."""
        try:
            command = COMMANDS[name]
            args = command.check(name, self.gate.command(name, args))
            if self._writer is None:
                return await save_in_transaction(self.gate.con)(partial(command, args=args))
            return await self._writer.command(partial(command, args=args), loop=asyncio.get_running_loop())
        except WeakPassword as exc:
            self.refuse(_("Refused: a password needs {rule}.").format(rule=rule_text(exc.rule, _)))
        except TwinError as exc:
            self.refuse(_("Refused: {why}").format(why=error_text(exc)))
        return None

    def refuse(self, text: str) -> None:
        self.message.object = f"<div class='twin-alert'>{html.escape(text)}</div>"

    def tell(self, text: str, *, secret: str | None = None) -> None:
        """Say what was done; a ``secret`` (a new password or key) is shown now and never again."""
        shown = (f"<div class='twin-secret'><code>{html.escape(secret)}</code></div><div class='twin-muted'>"
                 + _("Shown once: note it now. It is stored only as a hash.") + "</div>") if secret else ""
        self.message.object = f"<div class='twin-ok'>{html.escape(text)}</div>{shown}"

    def clear(self) -> None:
        self.message.object = ""

    def __panel__(self) -> pn.viewable.Viewable:
        return self.message


class UserDesk(pn.viewable.Viewer):
    """The users: the list; add one; and for a chosen one, bind the role to grids, reset the password (the new one
    shown once) or disable them. Each through :class:`AccessDesk`, audited."""

    def __init__(self, gate: Gate, desk: AccessDesk) -> None:
        super().__init__()
        self.gate, self.desk = gate, desk
        self.table = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["twin-users"])
        roles = {role_name(r): r for r in ROLES}
        self.new_name = pn.widgets.TextInput(label=_("name"), width=160, css_classes=["twin-new-user"])
        self.new_role = pn.widgets.Select(label=_("role"), options=roles, value="leader", width=120,
                                          css_classes=["twin-new-role"])
        self.new_lang = pn.widgets.Select(label=_("language"), options={"中文": "zh", "English": "en"}, value="zh",
                                          width=100)
        self.new_password = pn.widgets.PasswordInput(label=_("password"), width=200, css_classes=["twin-new-password"],
                                                     placeholder=_("empty: one is made for you"))
        self.new_grids = GridPicker(gate.con, label=_("grids (none: the whole district)"),
                                    css_class="twin-new-grids")
        # A department user is bound to one department of the duties list, not to grids.
        units = {f"{name} ({d})": d for d, name in gate.con.execute(
            "SELECT department_id, name FROM departments ORDER BY department_id").fetchall()}
        self.new_department = pn.widgets.Select(label=_("department"), options=units, width=200, visible=False,
                                                css_classes=["twin-new-department"])
        self.new_role.param.watch(lambda e: setattr(self.new_department, "visible", e.new == "department"), "value")
        self.add = pn.widgets.Button(label=_("Add user"), color="primary", width=110, css_classes=["twin-add-user"])
        self.add.on_click(self._add)
        self.chosen = pn.widgets.Select(label=_("user"), options=[], width=180, css_classes=["twin-chosen-user"])
        self.role = pn.widgets.Select(label=_("role"), options=roles, width=120, css_classes=["twin-user-role"])
        self.grids = GridPicker(gate.con, label=_("grids (none: the whole district)"),
                                css_class="twin-user-grids")
        self.department = pn.widgets.Select(label=_("department"), options=units, width=200, visible=False,
                                            css_classes=["twin-user-department"])
        self.role.param.watch(lambda e: setattr(self.department, "visible", e.new == "department"), "value")
        self.save = pn.widgets.Button(label=_("Save role and grids"), width=160, css_classes=["twin-save-grants"])
        self.save.on_click(self._grants)
        self.reset = pn.widgets.Button(label=_("Reset password"), width=130, css_classes=["twin-reset-password"])
        self.reset.on_click(self._reset)
        self.disable = pn.widgets.Button(label=_("Disable"), color="danger", width=90,
                                         css_classes=["twin-disable-user"])
        self.disable.on_click(self._disable)
        self.chosen.param.watch(lambda e: self._show_chosen(), "value")
        self.show()

    def show(self) -> None:
        """List the users again, and keep the chosen one chosen."""
        users = self.users = {u["username"]: u for u in self.gate.users()}
        names = self.gate.record_names([g for u in users.values() for g in u["grids"]])
        district, disabled = _("whole district"), _("disabled")
        rows = "".join(f"<tr><td>{html.escape(u['username'])}</td><td>{role_name(u['role'])}</td>"
                       f"<td>{html.escape(', '.join(named(g, names) for g in u['grids']) or district)}</td>"
                       f"<td>{disabled if u['disabled'] else ''}</td></tr>" for u in users.values())
        heads = "".join(f"<th>{h}</th>" for h in (_("name"), _("role"), _("grids"), ""))
        self.table.object = f"<table class='twin-table'><tr>{heads}</tr>{rows}</table>"
        chosen = self.chosen.value
        self.chosen.options = list(users)
        self.chosen.value = chosen if chosen in users else next(iter(users), None)
        self._show_chosen()

    def _show_chosen(self) -> None:
        user = self.users.get(self.chosen.value)
        for widget in (self.role, self.grids.choice, self.save, self.reset, self.disable):
            widget.disabled = user is None
        if user is not None:
            self.role.value = user["role"]
            self.grids.value = list(user["grids"])
            if user["department"] in self.department.options.values():
                self.department.value = user["department"]
            self.disable.disabled = user["disabled"]

    async def _add(self, _event=None) -> None:
        name, typed = self.new_name.value_input or self.new_name.value, self.new_password.value_input or ""
        name = name.strip()
        rule = password_rule_broken(typed, username=name) if typed else None
        if rule is not None:  # the same check as the store's: said before anything is sent
            return self.desk.refuse(_("Refused: a password needs {rule}.").format(rule=rule_text(rule, _)))
        password = typed or generate_password(name)
        role = self.new_role.value
        done = await self.desk.run("users.add", {"name": name, "password": password, "role": role,
                                                 "grids": list(self.new_grids.value), "lang": self.new_lang.value,
                                                 "department": self.new_department.value if role == "department"
                                                 else None})
        if done is not None:
            self.new_name.value = self.new_password.value = ""
            self.new_grids.value = []
            self.desk.tell(_("User {name} added.").format(name=name), secret=None if typed else password)
            self.show()

    async def _grants(self, _event=None) -> None:
        name = self.chosen.value
        role = self.role.value
        done = await self.desk.run("users.grants", {"name": name, "role": role, "grids": list(self.grids.value),
                                                    "department": self.department.value if role == "department"
                                                    else None})
        if done is not None:
            names = self.gate.record_names(done["grids"])
            self.desk.tell(_("{name} is now {role} of {grids}.").format(
                name=name, role=role_name(done["role"]),
                grids=", ".join(named(g, names) for g in done["grids"]) or _("whole district")))
            self.show()

    async def _reset(self, _event=None) -> None:
        name = self.chosen.value
        password = generate_password(name)
        if await self.desk.run("users.passwd", {"name": name, "password": password}) is not None:
            self.desk.tell(_("New password of {name}:").format(name=name), secret=password)

    async def _disable(self, _event=None) -> None:
        name = self.chosen.value
        if name == self.gate.principal.username:  # an admin who disables themselves is locked out at once
            return self.desk.refuse(_("Refused: you cannot disable yourself; ask another admin."))
        if await self.desk.run("users.disable", {"name": name}) is not None:
            self.desk.tell(_("{name} is disabled: they can no longer sign in.").format(name=name))
            self.show()

    def __panel__(self) -> pn.viewable.Viewable:
        label = partial(pn.pane.HTML, stylesheets=[CSS], sizing_mode="stretch_width")
        return pn.Column(
            self.table,
            label("<div class='label'>" + _("Add a user") + "</div>"),
            pn.FlexBox(self.new_name, self.new_role, self.new_department, self.new_lang, self.new_password,
                       flex_wrap="wrap", sizing_mode="stretch_width"),
            self.new_grids, self.add,
            label("<div class='label'>" + _("A user's role, grids and password") + "</div>"),
            pn.FlexBox(self.chosen, self.role, self.department, flex_wrap="wrap", sizing_mode="stretch_width"),
            self.grids, pn.FlexBox(self.save, self.reset, self.disable, flex_wrap="wrap", sizing_mode="stretch_width"),
            sizing_mode="stretch_width")


class KeyDesk(pn.viewable.Viewer):
    """The intake clients' API keys: each with when it was made, last used and its requests today; add one (the key
    shown once) or revoke one. Each through :class:`AccessDesk`, audited."""

    def __init__(self, gate: Gate, desk: AccessDesk) -> None:
        super().__init__()
        self.gate, self.desk = gate, desk
        self.table = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["twin-keys"])
        self.new_name = pn.widgets.TextInput(label=_("client name"), width=180, css_classes=["twin-new-key"])
        self.add = pn.widgets.Button(label=_("Add key"), color="primary", width=100, css_classes=["twin-add-key"])
        self.add.on_click(self._add)
        self.chosen = pn.widgets.Select(label=_("active key"), options=[], width=180, css_classes=["twin-chosen-key"])
        self.revoke = pn.widgets.Button(label=_("Revoke"), color="danger", width=90, css_classes=["twin-revoke"])
        self.revoke.on_click(self._revoke)
        self.show()

    def show(self) -> None:
        keys = self.gate.keys()
        never, active, revoked = _("never"), _("active"), _("revoked {time}")
        rows = "".join(
            f"<tr><td>{html.escape(k['name'])}</td><td>{format_time(k['created_at'])}</td>"
            f"<td>{revoked.format(time=format_time(k['revoked_at'])) if k['revoked_at'] else active}"
            f"</td><td>{format_time(k['last_used']) if k['last_used'] else never}</td>"
            f"<td class='num'>{k['requests_today']:,}</td></tr>" for k in keys)
        heads = "".join(f"<th>{h}</th>" for h in (_("client"), _("made"), _("state"), _("last used"),
                                                  _("requests today")))
        self.table.object = (f"<table class='twin-table'><tr>{heads}</tr>{rows}</table>" if keys else
                             "<div class='twin-muted'>" + _("No keys yet.") + "</div>")
        active_keys = [k["name"] for k in keys if not k["revoked_at"]]
        if active_keys != self.chosen.options:  # unchanged, the admin's choice stays as it is
            self.chosen.options = active_keys
        self.revoke.disabled = not self.chosen.options

    async def _add(self, _event=None) -> None:
        name = (self.new_name.value_input or self.new_name.value).strip()
        done = await self.desk.run("keys.add", {"name": name})
        if done is not None:
            self.new_name.value = ""
            self.desk.tell(_("Key of {name}:").format(name=name), secret=done["api_key"])
            self.show()

    async def _revoke(self, _event=None) -> None:
        name = self.chosen.value
        if name and await self.desk.run("keys.revoke", {"name": name}) is not None:
            self.desk.tell(_("The key of {name} is revoked.").format(name=name))
            self.show()

    def __panel__(self) -> pn.viewable.Viewable:
        note = pn.pane.HTML("<span class='twin-muted'>" + _("Requests are counted as the keys are used and written "
                                                             "every few seconds.") + "</span>", stylesheets=[CSS])
        return pn.Column(self.table, note, pn.FlexBox(self.new_name, self.add, flex_wrap="wrap",
                                                      sizing_mode="stretch_width"),
                         pn.FlexBox(self.chosen, self.revoke, flex_wrap="wrap", sizing_mode="stretch_width"),
                         sizing_mode="stretch_width")


class AdminScreen(pn.viewable.Viewer):
    """The audit trail, the users and the API keys, as tabs; what a command did (or why not) above them.

    Parameters
    ----------
    gate : Gate
        The admin's gate: every read and command goes through it.
    writer : IntakeWriter, optional
        The store's writer (``twin serve``): the commands on users and keys run there.
    off_loop : OffLoop, optional
        Served, the trail's export reads off the event loop.
    """

    def __init__(self, gate: Gate, *, writer: IntakeWriter | None = None, off_loop: OffLoop | None = None,
                 **params) -> None:
        super().__init__(**params)
        self.gate = gate
        self.trail = AuditTrail(gate, off_loop=off_loop)
        self.desk = AccessDesk(gate, writer=writer)
        self.users = UserDesk(gate, self.desk)
        self.keys = KeyDesk(gate, self.desk)
        self.tabs = pn.Tabs((_("Audit trail"), self.trail), (_("Users"), self.users), (_("API keys"), self.keys),
                            sizing_mode="stretch_width", css_classes=["twin-admin-tabs"], stylesheets=[TABS_CSS])
        self.tabs.param.watch(self._tab_changed, "active")
        self._poll = pn.state.add_periodic_callback(self.follow, period=REFRESH_MS) if pn.state.curdoc else None

    def follow(self) -> None:
        """Served, every ``REFRESH_MS``: the trail's new rows, or the keys' use, whichever tab is shown."""
        if self.tabs.active == 0:
            self.trail.follow()
        elif self.tabs.active == 2:
            self.keys.show()

    def _tab_changed(self, _event) -> None:
        self.desk.clear()  # a password or key shown once goes with the tab
        # What the tab shows is read again: the keys' use and the users may have changed meanwhile.
        (self.trail.refresh, self.users.show, self.keys.show)[self.tabs.active]()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.desk, self.tabs, sizing_mode="stretch_both", scroll=True)

