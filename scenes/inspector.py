"""The inspector card: one building (with residents and open cases), case or camera."""

from __future__ import annotations

import asyncio
import html
import io
from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import panel as pn
import param

from scenes.i18n import (_, camera_status_name, case_kind_name, error_text, format_number, format_time, gender_name,
                         height_source_name, level_name, party_kind_name, source_name, status_name, tag_name, use_name)
from scenes.residentaccount import ResidentAccount
from scenes.shared import OffLoop
from scenes.theme import CSS
from twin.access.policy import MIN_REASON, Gate
from twin.cases.live import IntakeWriter
from twin.errors import TwinError
from twin.field.patrol import WORKLOAD_STATUSES, grid_coverage, worker_card, workers
from twin.grids.grids import grids_under

PAGE_SIZE = 50
WRITE_TIMEOUT_S = 10.0  # a case transition not committed by then is reported as failed
T = TypeVar("T")


def _rows(pairs: list[tuple[str, object]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs
                   if v is not None and v == v)


def _case_location(gate: Gate, case_id: str) -> tuple[float, float] | None:
    """Where a case is, in district coordinates (read after the gate showed the case)."""
    return gate.con.execute("SELECT ST_X(location), ST_Y(location) FROM cases WHERE case_id = ?", [case_id]).fetchone()


def _card(title: str, pairs: list[tuple[str, object]], *, subtitle: str = "", tail: str = "",
          kind: str = "") -> str:
    """One inspector card: a title, an optional subtitle, a table of facts and anything after it."""
    sub = f"<div class='twin-building-id'>{html.escape(subtitle)}</div>" if subtitle else ""
    return (f"<div class='twin-card {kind}'><div class='twin-title'>{html.escape(title)}</div>{sub}"
            f"<table class='twin-facts'>{_rows(pairs)}</table>{tail}</div>")


def residents_html(rows: pd.DataFrame) -> str:
    """Residents grouped by unit and household: a heading row per household with its size, then its people."""
    heads = (_("room"), _("name"), _("sex"), _("age"), _("ID number"), _("phone"), _("tags"))
    out = ["<table class='twin-table'><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>"]
    # One pass over the page's columns as lists (a pandas group-by per page cost more than all the rest of a click's
    # card, and even its row tuples cost a click a few milliseconds).
    households: dict[tuple, list] = {}
    columns = ("room", "name", "gender", "age", "id_number", "phone", "tags")
    for unit, household, *person in zip(*(rows[c].tolist() for c in ("unit", "household_id", *columns))):
        households.setdefault((unit, household), []).append(person)
    people_n = _("{n} people")
    for (unit, household), people in households.items():
        out.append(f"<tr class='twin-group'><td colspan='7'>{html.escape(str(unit))} · {html.escape(str(household))}"
                   f" · {people_n.format(n=len(people))}</td></tr>")
        out += [f"<tr><td>{html.escape(str(room))}</td><td>{html.escape(str(name))}</td>"
                f"<td>{html.escape(gender_name(gender))}</td><td>{age}</td>"
                f"<td class='twin-wrap'>{html.escape(str(id_number))}</td>"
                f"<td class='twin-wrap'>{html.escape(str(phone))}</td>"
                f"<td>{html.escape(_tags(tags))}</td></tr>"
                for room, name, gender, age, id_number, phone, tags in people]
    return "".join(out) + "</table>"


def cases_html(cases: pd.DataFrame) -> str:
    """Open cases with status, age and an overdue mark."""
    if cases.empty:
        return "<div class='twin-muted'>" + _("No open cases.") + "</div>"
    hours, overdue = _("{hours} h"), _("overdue")
    rows = "".join(f"<tr><td>{html.escape(r.case_id)}</td><td>{html.escape(case_kind_name(r.subcategory))}</td>"
                   f"<td>{html.escape(status_name(r.status))}</td>"
                   f"<td>{hours.format(hours=f'{r.age_h:.0f}')}</td>"
                   f"<td>{overdue if r.overdue else ''}</td></tr>" for r in cases.itertuples())
    heads = "".join(f"<th>{h}</th>" for h in (_("case"), _("kind"), _("status"), _("age"), ""))
    return ("<div class='label'>" + _("open cases") + f"</div><table class='twin-table'><tr>{heads}</tr>{rows}"
            "</table>")


def _residents_fact(card: dict) -> tuple[str, str]:
    """The card's line "residents: 1,234 in 456 households"."""
    return _("residents"), _("{residents} in {households} households").format(
        residents=format_number(card["residents"]), households=format_number(card["households"]))


def coverage_text(coverage: dict | None) -> str | None:
    """"87 % (26 of 30 buildings passed)", and "full" at 95 % and more; None without buildings or figures."""
    if not coverage or coverage["share"] is None:
        return None
    text = _("{share} % ({passed} of {buildings} buildings passed)").format(
        share=format_number(100 * coverage["share"]), passed=format_number(coverage["passed"]),
        buildings=format_number(coverage["buildings"]))
    return text + (" · " + _("full") if coverage["full"] else "")


def _nothing_picked() -> str:
    return "<div class='twin-muted'>" + _("Click a building, a case or a camera.") + "</div>"


def _tags(tags: object) -> str:
    """Resident tags (kept as a comma-separated text by the gate) by their names."""
    return ", ".join(tag_name(t.strip()) for t in str(tags or "").split(",") if t.strip())


def overdue_text(hours: float | None) -> str:
    """How long past its deadline: ``"3 d 4 h"``, ``"5 h"``, ``"40 min"`` (in the session's language); empty
    when not overdue."""
    if hours is None or hours != hours or hours <= 0:
        return ""
    days, rest = divmod(int(round(hours * 60)), 24 * 60)
    if days:
        return _("{days} d {hours} h").format(days=days, hours=rest // 60)
    return _("{hours} h").format(hours=rest // 60) if rest >= 60 else _("{minutes} min").format(minutes=rest)


def grid_cases_html(cases: pd.DataFrame) -> str:
    """Open and overdue cases of a grid by category, most open first."""
    if cases.empty:
        return "<div class='twin-muted'>" + _("No open cases.") + "</div>"
    rows = "".join(f"<tr><td>{html.escape(case_kind_name(r.category))}</td><td class='num'>{format_number(r.open)}"
                   f"</td><td class='num{' twin-overdue' if r.overdue else ''}'>{format_number(r.overdue)}</td></tr>"
                   for r in cases.itertuples())
    heads = "".join(f"<th>{h}</th>" for h in (_("category"), _("open"), _("overdue")))
    return ("<div class='label'>" + _("open cases by category") + "</div><table class='twin-table twin-grid-cases'>"
            f"<tr>{heads}</tr>{rows}</table>")


def party_html(orgs: pd.DataFrame, figures: dict | None = None, *, shown: int = 6, first: str | None = None) -> str:
    """A grid's party organisations (the largest kind first; ``first``, an org_id, before them all), each with its
    kind, secretary, members and the buildings it covers; then its party members' figures of the month."""
    title = "<div class='label'>" + _("party organisation") + "</div>"
    if first is not None and first in set(orgs["org_id"]):
        orgs = pd.concat([orgs[orgs["org_id"] == first], orgs[orgs["org_id"] != first]])
    if orgs.empty:
        listed = "<div class='twin-muted'>" + _("none recorded") + "</div>"
    else:
        facts = _("secretary {secretary} · {members} members · {buildings} buildings covered")
        items = "".join(
            f"<li class='twin-party-org{' twin-picked' if r.org_id == first else ''}' "
            f"data-org='{html.escape(r.org_id)}'>"
            f"<b>{html.escape(r.name)}</b> · {html.escape(party_kind_name(r.kind))}<br><span class='twin-muted'>"
            + html.escape(facts.format(secretary=r.secretary or "—", members=format_number(r.members or 0),
                                       buildings=format_number(r.buildings))) + "</span></li>"
            for r in orgs.head(shown).itertuples())
        more = ("<li class='twin-muted'>" + _("and {count} more").format(count=format_number(len(orgs) - shown))
                + "</li>") if len(orgs) > shown else ""
        listed = f"<ul class='twin-party'>{items}{more}</ul>"
    if not figures:
        return title + listed
    line = _("party members reported here: {reported} · active this month: {active} · services this month: "
             "{services} ({hours} h)").format(reported=format_number(figures["reported"]),
                                               active=format_number(figures["active"]),
                                               services=format_number(figures["services"]),
                                               hours=format_number(figures["hours"], digits=1))
    if figures.get("living") is not None:
        line += " · " + _("living here: {living}").format(living=format_number(figures["living"]))
    return f"{title}{listed}<div class='twin-party-figures twin-muted'>{html.escape(line)}</div>"


def why_not_listed(card: dict, gate: Gate) -> str:
    """Why a building card lists none of its residents for the signed-in user ('' when it lists them)."""
    if card["may_see_residents"]:
        return ""
    if card["residents_counted"]:
        return _("Residents are counted per building in this store, not listed one by one.")
    if not gate.may("residents"):
        return _("Residents are listed for operators only.")
    where = " › ".join(g["name"] for g in card["grid_path"])
    if not where:
        return _("No residents listed: this building lies outside every grid, so outside your grids ({mine}).").format(
            mine=", ".join(gate.principal.grids))
    return _("No residents listed: this building is in {where} ({grid}), outside your grids ({mine}). "
             "Ask an operator of that grid.").format(where=where, grid=card["grid_id"],
                                                     mine=", ".join(gate.principal.grids))


class Inspector(pn.viewable.Viewer):
    """What is selected: a building card with its residents and open cases, or a case or camera card.

    Everything is read through ``gate`` (:class:`twin.access.policy.Gate`), which decides what
    the signed-in user may see. ``show_residents`` is on for the operator's screen; the
    gate still refuses residents outside the operator's grids. With ``off_loop`` (``twin serve``)
    every look runs off the event loop, and what it audits is shown once committed.
    """

    building_id = param.String(default=None, allow_None=True)
    case_id = param.String(default=None, allow_None=True)
    camera_id = param.String(default=None, allow_None=True)
    show_residents = param.Boolean(default=False)
    can_act = param.Boolean(default=False, doc="Show the case card's transition buttons (the operator's screen)")
    page = param.Integer(default=0, bounds=(0, None))
    shown_building_id = param.String(default=None, allow_None=True,
                                     doc="The building whose card was last shown (the view's highlight follows it)")

    def __init__(self, gate: Gate, *, writer: IntakeWriter | None = None, off_loop: OffLoop | None = None,
                 coverage: Callable[[], pd.DataFrame] | None = None, **params) -> None:
        super().__init__(**params)
        self.gate = gate
        self._writer = writer
        self._coverage = coverage  # today's patrol coverage per micro-grid (scenes.shared.SharedDistrict.coverage)
        self._off_loop = off_loop  # served: looks run off the event loop (see look)
        self._looks = 0  # looks that replace the card, so far
        self.party_org: str | None = None  # a party organisation picked on the map: first on its grid's card
        self._last_look: asyncio.Future | None = None
        self.note = pn.widgets.TextInput(placeholder=_("note for the next step (optional)"),
                                         sizing_mode="stretch_width")
        self.actions = pn.Row(sizing_mode="stretch_width", css_classes=["twin-actions"])
        self.act_message = pn.pane.HTML("", stylesheets=[CSS])
        # Where a handed-up case is dispatched: by the duties list, or by hand to a department (the note says why).
        self.dispatch_to = pn.widgets.Select(options={}, sizing_mode="stretch_width", visible=False,
                                             css_classes=["twin-dispatch-to"])
        self.act = pn.Column(self.note, self.dispatch_to, self.actions, sizing_mode="stretch_width", visible=False)
        self.card = pn.pane.HTML(_nothing_picked(),
                                 sizing_mode="stretch_width", stylesheets=[CSS], css_classes=["twin-inspector"])
        # Plain HTML tables: a page of 50 needs no grid widget, and the page loads no table library.
        self.residents = pn.pane.HTML("", sizing_mode="stretch_width", visible=False, stylesheets=[CSS],
                                      css_classes=["twin-residents"])
        self.cases = pn.pane.HTML("", sizing_mode="stretch_width", visible=False, stylesheets=[CSS],
                                  css_classes=["twin-cases"])
        self.resident_rows = pd.DataFrame()
        self.prev = pn.widgets.Button(label=_("‹ previous"), width=90, disabled=True)
        self.next = pn.widgets.Button(label=_("next ›"), width=90, disabled=True, css_classes=["twin-next"])
        self.page_info = pn.pane.HTML("", stylesheets=[CSS])
        self.prev.on_click(lambda _: setattr(self, "page", self.page - 1))
        self.next.on_click(lambda _: setattr(self, "page", self.page + 1))
        self.pager = pn.Row(self.prev, self.page_info, self.next, visible=False)
        # Unmasking one resident: pick them, state why; the gate audits it.
        self.unmask_who = pn.widgets.Select(options={}, sizing_mode="stretch_width", min_width=120)
        self.unmask_reason = pn.widgets.TextInput(placeholder=_("reason (recorded)"), sizing_mode="stretch_width",
                                                  min_width=120)
        self.unmask_button = pn.widgets.Button(label=_("Unmask"), width=80, css_classes=["twin-unmask"])
        self.unmask_button.on_click(lambda _: self.unmask())
        self.unmasked = pn.pane.HTML("", stylesheets=[CSS], css_classes=["twin-unmasked"])
        self.export = pn.widgets.FileDownload(callback=self._export_csv, filename="residents.csv",
                                              label=_("Export CSV"), css_classes=["twin-export"],
                                              width=110, embed=False)
        # Two rows: four controls in one did not fit the panel's width.
        self.unmasking = pn.Column(pn.Row(self.unmask_who, self.unmask_reason, sizing_mode="stretch_width"),
                                   pn.Row(self.unmask_button, self.export), self.unmasked, visible=False,
                                   sizing_mode="stretch_width")
        # A listed resident's volunteer account (文明小杜): made here, its one-time code shown once.
        self.volunteer_account = ResidentAccount(self.look, writer, write_timeout_s=WRITE_TIMEOUT_S)
        # Rejecting a case: the button asks first, with a reason that goes into the case's history.
        self.reject_reason = pn.widgets.TextInput(placeholder=_("reason for rejecting (recorded)"),
                                                  sizing_mode="stretch_width", css_classes=["twin-reject-reason"])
        self.reject_confirm = pn.widgets.Button(label=_("Reject this case"), button_type="danger", height=32,
                                                css_classes=["twin-reject-confirm"])
        self.reject_cancel = pn.widgets.Button(label=_("Cancel"), height=32)
        self.reject_confirm.on_click(lambda _e: self.reject())
        self.reject_cancel.on_click(lambda _e: self._ask_rejection(False))
        self.rejecting = pn.Column(
            pn.pane.HTML("<div class='twin-alert'>" + _("Reject this case? Say why: the reporter is told.")
                         + "</div>", stylesheets=[CSS]),
            self.reject_reason, pn.Row(self.reject_confirm, self.reject_cancel), visible=False,
            sizing_mode="stretch_width", css_classes=["twin-rejecting"])
        # Giving the case to another grid worker (the operator's), with a reason that goes into its history.
        self.assign_to = pn.widgets.Select(options={}, sizing_mode="stretch_width", min_width=120,
                                           css_classes=["twin-assign-to"])
        self.assign_reason = pn.widgets.TextInput(placeholder=_("reason for giving it to them (recorded)"),
                                                  sizing_mode="stretch_width", min_width=120,
                                                  css_classes=["twin-assign-reason"])
        self.assign_button = pn.widgets.Button(label=_("Give to this worker"), height=32,
                                               css_classes=["twin-assign"])
        self.assign_button.on_click(lambda _e: self.assign())
        self.assigning = pn.Column(pn.pane.HTML("<div class='label'>" + _("give to another grid worker") + "</div>",
                                                stylesheets=[CSS]),
                                   pn.Row(self.assign_to, self.assign_reason, sizing_mode="stretch_width"),
                                   self.assign_button, visible=False, sizing_mode="stretch_width")
        # The tables join the page with the inspector (hidden until a building is shown), which joins it after the
        # view's first frame: not in the first document, and not in the first click's message either (adding them
        # there took that click 100 ms more on PostgreSQL under 25 sessions).
        self.details = pn.Column(sizing_mode="stretch_width")
        self._total = 0
        self._may_see_residents = False
        self._why_not_listed = ""

    # -- running a look: at once, or served off the event loop --------------------------------------------------
    def look(self, read: Callable[[Gate], T], show: Callable[[T | TwinError], None], *,
             early: Callable[[T], None] | None = None, replaces: bool = True) -> None:
        """``show(read(gate))``, or ``show(error)`` for a :class:`TwinError` it raised.

        Without a writer (tests, notebooks) at once. Served, ``read`` runs on a reader thread and its
        audit rows are committed through the writer before ``show``, the event loop waiting on neither;
        ``early`` may show what needs no audit row as soon as it is read. Shows keep the order of the
        looks, and a look that ``replaces`` the card makes the shows of older ones moot.
        """
        if replaces:
            self._looks += 1
        ticket = self._looks
        if self._off_loop is None:
            try:
                result = read(self.gate)
            except TwinError as exc:
                result = exc
            if early is not None and not isinstance(result, TwinError):
                early(result)
            show(result)
            return

        async def run() -> None:
            loop = asyncio.get_running_loop()
            before, self._last_look = self._last_look, loop.create_future()
            done = self._last_look
            try:
                result, rows = await self._off_loop.read(self.gate, read)
                if before is not None:
                    await before
                # Each in one message to the browser (a card's panes, tables and controls change together).
                if early is not None and ticket == self._looks and not isinstance(result, TwinError):
                    with pn.io.hold():
                        early(result)
                await self._off_loop.record(rows)
                if ticket == self._looks:
                    with pn.io.hold():
                        show(result)
            finally:
                done.set_result(None)
        pn.state.execute(run)

    def _show_error(self, error: TwinError) -> None:
        self.clear()
        self.card.object = f"<div class='twin-card'><div class='twin-muted'>{html.escape(error_text(error))}</div></div>"

    # -- buildings ------------------------------------------------------------------------------------------------
    @param.depends("building_id", "show_residents", watch=True)
    def _show_building(self) -> None:
        if self.building_id is None:
            return
        self.case_id = self.camera_id = None
        # At once: the previous card's actions go with it. Its tables stay beside it until this card replaces it
        # (_fill_building, in the card's own message): a click sends no message of its own before its card.
        self._hide_tables(building=True)
        building_id, residents = self.building_id, self.show_residents

        def read(gate: Gate) -> dict:
            card = gate.building_card(building_id)
            card["open_cases"] = gate.open_cases(building_id=building_id)
            card["page"] = (gate.residents_page(building_id, page=0, page_size=PAGE_SIZE)
                            if residents and card["may_see_residents"] and card["residents"] else None)
            return card
        self.look(read, self._fill_residents, early=self._fill_building)

    def _fill_building(self, card: dict) -> None:
        self._may_see_residents = card["may_see_residents"]
        self._why_not_listed = why_not_listed(card, self.gate)
        self._total = card["residents"]
        path = " › ".join(f"{g['name']}" for g in card["grid_path"]) or _("outside every grid")
        height = _("{height} m").format(height=format_number(card["height"], digits=1))
        if card["base_z"]:
            height = _("{height} from {base} m").format(height=height, base=format_number(card["base_z"], digits=1))
        facts = [(_("address"), card["address"]), (_("use"), use_name(card["use"])), (_("height"), height),
                 (_("floors"), card["floors"]),
                 (_("data"), _("{source} · {source_id} · height from {height_source}").format(
                     source=card["source"], source_id=card["source_id"],
                     height_source=height_source_name(card["height_source"]))),
                 (_("grid"), path),
                 _residents_fact(card),
                 (_("tags"), " · ".join(f"{tag_name(t)} {n}" for t, n in card["tags"].items()) or None)]
        seen = card["cameras"]
        names = [f"{html.escape(camera)} ({distance:.0f} m"
                 + ("" if status == "online" else f", {html.escape(camera_status_name(status))}") + ")"
                 for camera, status, distance in zip(*(seen[c].tolist()[:8] for c in ("camera_id", "status",
                                                                                        "distance_m")))]
        watchers = ("<div class='label'>" + _("cameras that see this building: {n}").format(n=len(seen)) + "</div>"
                    f"<div class='twin-cameras'>{' · '.join(names)}{' …' if len(seen) > 8 else ''}</div>")
        self.card.object = _card(card["name"] or card["building_id"], facts, subtitle=card["building_id"],
                                 tail=watchers)
        self.cases.object = cases_html(card["open_cases"])
        self.cases.visible = card["may_see_cases"]
        # The previous building's residents go with its card; this one's are shown once their look is audited.
        self.residents.visible = self.pager.visible = self.unmasking.visible = False
        self.volunteer_account.active = False
        self.unmasked.object = ""
        if not self.details.objects:
            self.details.objects = [self.cases, self.pager, self.unmasking, self.volunteer_account, self.residents]
        with param.discard_events(self):  # the first page came with the card
            self.page = 0
        self.shown_building_id = None  # the same building again still announces itself
        self.shown_building_id = card["building_id"]

    def _fill_residents(self, card: dict | TwinError) -> None:
        if isinstance(card, TwinError):
            return self._show_error(card)
        self._show_page(card["page"])

    @param.depends("page", watch=True)
    def _show_residents(self) -> None:
        if self._residents_visible():
            building_id, page = self.building_id, self.page
            self.look(lambda gate: gate.residents_page(building_id, page=page, page_size=PAGE_SIZE), self._show_page,
                      replaces=False)
        else:
            self._show_page(None)

    def _residents_visible(self) -> bool:
        return (self.show_residents and self.building_id is not None and self._total > 0
                and self._may_see_residents)

    def _show_page(self, rows: pd.DataFrame | TwinError | None) -> None:
        """Show a page of residents (None: none to show, or not for this user)."""
        if isinstance(rows, TwinError):
            self.unmasked.object = f"<span class='twin-muted'>{html.escape(error_text(rows))}</span>"
            rows = None
        visible = rows is not None and self._residents_visible()
        self.residents.visible = self.pager.visible = self.unmasking.visible = visible
        withheld = (self.show_residents and self.building_id is not None and self._total > 0
                    and not self._may_see_residents)
        if withheld:  # say why, rather than show nothing
            self.residents.param.update(visible=True, object=f"<div class='twin-muted twin-not-listed'>"
                                                             f"{html.escape(self._why_not_listed)}</div>")
        if not visible:
            self.volunteer_account.active = False
            return
        self.resident_rows = rows
        self.residents.object = residents_html(self.resident_rows)
        who = {f"{room} {name} · {resident[-4:]}": resident for room, name, resident in zip(
            *(self.resident_rows[c].tolist() for c in ("room", "name", "resident_id")))}
        self.unmask_who.param.update(options=who, value=next(iter(who.values()), None))
        self.volunteer_account.offer(who)
        self.volunteer_account.active = self.can_act
        pages = max(1, -(-self._total // PAGE_SIZE))
        self.prev.disabled = self.page == 0
        self.next.disabled = self.page >= pages - 1
        shown = _("residents {first}–{last} of {total}").format(
            first=format_number(self.page * PAGE_SIZE + 1),
            last=format_number(min(self._total, (self.page + 1) * PAGE_SIZE)),
            total=format_number(self._total))
        self.page_info.object = f"<span class='twin-muted'>{shown}</span>"

    def show_element(self, element_index: int) -> None:
        """Add the clicked model element (IFC class, name, storey, main property sets) to the building card."""
        if self.building_id is None:
            return
        building_id = self.building_id
        self.look(lambda gate: gate.element_card(building_id, element_index), self._fill_element, replaces=False)

    def _fill_element(self, e: dict | TwinError) -> None:
        if isinstance(e, TwinError):
            return self._show_error(e)
        sets = "".join(f"<div class='label'>{html.escape(name)}</div><table class='twin-facts'>"
                       + _rows([(k, v) for k, v in props.items()]) + "</table>" for name, props in e["psets"].items())
        self.card.object += _card(e["ifc_class"] or "", [(_("name"), e["name"]), (_("storey"), e["storey"]),
                                                         ("GlobalId", e["global_id"])], tail=sets, kind="twin-element")

    # -- cases and cameras ---------------------------------------------------------------------------------------
    def show_case(self, case_id: str, *, then: Callable[[dict], None] | None = None) -> None:
        """Show a case's card (refused and audited outside the user's grids); ``then(card)`` after it is shown."""
        def show(card: dict | TwinError) -> None:
            if isinstance(card, TwinError):  # a planner clicking a case dot, an operator another grid's case
                return self._show_error(card)
            self._fill_case(case_id, card)
            if then is not None:
                then(card)
        def read(gate: Gate) -> dict:
            card = {**gate.case_card(case_id), "location": _case_location(gate, case_id)}
            card["workers"] = workers(gate.con, grids=gate.scope) if gate.may("act") else None
            return card
        self.look(read, show)

    def _fill_case(self, case_id: str, card: dict) -> None:
        self.building_id = self.camera_id = None
        self.case_id = case_id
        self._hide_tables()
        history = "".join(f"<li>{format_time(r['at'], short=True)} · {html.escape(status_name(r['to_status']))} · "
                          f"{html.escape(str(r['actor']))}{' · ' + html.escape(str(r['note'])) if r['note'] else ''}"
                          "</li>" for _, r in card["history"].iterrows())
        grid = card["grid_id"] if card["grid_id"] == card["reported_grid_id"] else \
            _("{grid} (first in {reported_grid})").format(grid=card["grid_id"], reported_grid=card["reported_grid_id"])
        overdue = ("<div class='twin-overdue twin-overdue-banner'>"
                   + _("Overdue by {duration}").format(duration=overdue_text(card["overdue_h"])) + "</div>"
                   if card["overdue_h"] else "")
        facts = [(_("category"), f"{case_kind_name(card['category'])} · {case_kind_name(card['subcategory'])}"),
                 (_("status"), status_name(card["status"])), (_("source"), source_name(card["source"])),
                 (_("Reported at"), format_time(card["reported_at"])), (_("due"), format_time(card["due_at"])),
                 (_("worker"), card["assigned_worker"]), (_("department"), card["department_name"]),
                 (_("department's deadline"), format_time(card["deadline"]) if card["deadline"] is not None
                  else None),
                 (_("where"), card["address"]), (_("building"), card["building_id"]),
                 (_("grid"), grid), (_("grid worker"), card.get("assigned_worker")), (_("camera"), card["camera_id"]),
                 (_("detections"), card["detections"] or None), (_("what"), card["description"])]
        photo = _("photo")
        photos = "".join(f"<a href='{html.escape(u)}' target='_blank' rel='noopener'><img class='twin-photo' "
                         f"src='{html.escape(u)}' alt='{photo}' loading='lazy'></a>" for u in card["photos"][:6])
        self.card.object = _card(_("Case {case_id}").format(case_id=case_id), facts,
                                 kind="twin-case-overdue" if overdue else "",
                                 tail=overdue + ("<div class='label'>" + _("photos") + f"</div><div>{photos}</div>"
                                                 if photos else "")
                                 + "<div class='label'>" + _("history")
                                 + f"</div><ul class='twin-history'>{history}</ul>")
        buttons = []
        for status in card["next_statuses"]:
            b = pn.widgets.Button(label=f"→ {status_name(status)}", color="primary", height=32,
                                  css_classes=[f"twin-to-{status}"])
            b.on_click((lambda _e: self._ask_rejection(True)) if status == "rejected"
                       else (lambda _e, s=status: self.move_case(s)))
            buttons.append(b)
        self.actions.objects = buttons
        self.act.visible = bool(buttons) and self.can_act and self._writer is not None and self.gate.may("act")
        self.dispatch_to.visible = card["status"] == "handed_up" and "dispatched" in card["next_statuses"]
        if self.dispatch_to.visible:
            self.dispatch_to.options = {_("by the duties list"): "", **{
                f"{name} ({d})": d for d, name in self.gate.con.execute(
                    "SELECT department_id, name FROM departments ORDER BY department_id").fetchall()}}
            self.dispatch_to.value = ""
        others = [] if card.get("workers") is None else [
            w for w in card["workers"]["worker"] if w != card.get("assigned_worker")]
        self.assign_to.options = others
        self.assigning.visible = (bool(others) and card["status"] in WORKLOAD_STATUSES and self.can_act
                                  and self._writer is not None and self.gate.may("act"))

    def move_case(self, to_status: str, *, note: str | None = None) -> None:
        """Move the shown case to ``to_status`` through the store's writer, and show the card again.

        ``note`` goes into the case's history; by default, what the note box holds.
        """
        if self.case_id is None or self._writer is None:
            return
        case_id, who = self.case_id, self.gate.principal
        note = (self.note.value.strip() if note is None else note) or None
        department = (self.dispatch_to.value or None) if self.dispatch_to.visible and to_status == "dispatched" \
            else None

        def read(gate: Gate) -> dict:
            gate.check_act(case_id, to_status)
            # On a reader thread served: waiting for the writer's commit holds no event loop.
            return self._writer.transition(case_id, to_status, actor=who.username, source=who.source,
                                           note=note, department=department).result(timeout=WRITE_TIMEOUT_S)

        def show(moved: dict | TwinError) -> None:
            if isinstance(moved, TwinError):
                self.act_message.object = f"<span class='twin-muted'>{html.escape(error_text(moved))}</span>"
                return
            self.note.value = self.reject_reason.value = ""
            self.act_message.object = ""
            self.show_case(case_id)
        self.look(read, show, replaces=False)

    def assign(self) -> None:
        """Give the shown case to the grid worker picked, with the reason typed (refused without one)."""
        if self.case_id is None or self._writer is None or not self.assign_to.value:
            return
        case_id, who, worker = self.case_id, self.gate.principal, self.assign_to.value
        reason = (self.assign_reason.value_input or self.assign_reason.value or "").strip()

        def read(gate: Gate) -> dict:
            gate.check_act(case_id)
            return self._writer.assign(case_id, worker, actor=who.username, reason=reason,
                                       source=who.source).result(timeout=WRITE_TIMEOUT_S)

        def show(given: dict | TwinError) -> None:
            if isinstance(given, TwinError):
                self.act_message.object = f"<span class='twin-muted'>{html.escape(error_text(given))}</span>"
                return
            self.assign_reason.value = ""
            self.act_message.object = ""
            self.show_case(case_id)
        self.look(read, show, replaces=False)

    def show_worker(self, worker: str) -> None:
        """Show a grid worker's card: their micro-grids, their last check-in on patrol, their open cases."""
        self.look(lambda gate: worker_card(gate, worker), self._fill_worker)

    def _fill_worker(self, card: dict | TwinError) -> None:
        if isinstance(card, TwinError):
            return self._show_error(card)
        self.building_id = self.case_id = self.camera_id = None
        self._hide_tables()
        facts = [(_("micro-grids"), "、".join(card["grid_names"])),
                 (_("on patrol since"), format_time(card["on_patrol_since"]) if card["on_patrol_since"] else _("off")),
                 (_("last check-in"), format_time(card["last_at"]) if card["last_at"] else None),
                 (_("open cases"), format_number(card["open_load"]))]
        rows = "".join(f"<tr><td>{html.escape(r.case_id)}</td><td>{html.escape(case_kind_name(r.subcategory))}</td>"
                       f"<td>{html.escape(status_name(r.status))}</td><td>{format_time(r.deadline, short=True)}</td>"
                       "</tr>" for r in card["cases"].itertuples())
        heads = "".join(f"<th>{h}</th>" for h in (_("case"), _("kind"), _("status"), _("due")))
        cases = f"<table class='twin-table twin-worker-cases'><tr>{heads}</tr>{rows}</table>" if rows else ""
        self.card.object = _card(_("Grid worker {worker}").format(worker=card["worker"]), facts, tail=cases,
                                 kind="twin-worker-card")

    def show_grid(self, grid_id: str, *, party_org: str | None = None) -> None:
        """Show a grid's card: its worker, head counts, cases by category (for roles that see cases), party
        organisations (``party_org``, one picked on the map, first and marked), and today's patrol coverage."""
        self.party_org = party_org

        def read(gate: Gate) -> dict:
            card = gate.grid_card(grid_id)
            if self._coverage is not None:
                card["coverage"] = grid_coverage(self._coverage(), grids_under(gate.con, [grid_id]))
            return card
        self.look(read, self._fill_grid)

    def _fill_grid(self, card: dict | TwinError) -> None:
        if isinstance(card, TwinError):
            return self._show_error(card)
        self.building_id = self.case_id = self.camera_id = None
        self._hide_tables()
        within = " › ".join(g["name"] for g in card["grid_path"][:-1]) or None
        facts = [(_("level"), level_name(card["level"])), (_("within"), within),
                 (_("grid worker"), card["worker"] or "—"),
                 (_("worker's phone"), card["worker_phone"] or "—"),
                 _residents_fact(card),
                 (_("buildings"), format_number(card["buildings"])), (_("cameras"), format_number(card["cameras"])),
                 (_("patrol coverage today"), coverage_text(card.get("coverage")))]
        cases = grid_cases_html(card["cases"]) if card["may_see_cases"] else ""
        self.card.object = _card(card["name"], facts, subtitle=f"{card['grid_id']} · {level_name(card['level'])}",
                                 tail=cases + party_html(card["party_orgs"], card.get("party"),
                                                         first=self.party_org),
                                 kind="twin-grid-card")

    def _ask_rejection(self, asking: bool) -> None:
        """Show (or put away) the rejection's confirmation in place of the case's buttons."""
        self.rejecting.visible = asking
        self.act.visible = not asking
        self.act_message.object = ""

    def reject(self) -> None:
        """Reject the shown case with the reason typed in the confirmation; refuse without one."""
        reason = (self.reject_reason.value_input or self.reject_reason.value or "").strip()
        if len(reason) < MIN_REASON:
            self.act_message.object = ("<span class='twin-alert'>" + html.escape(
                _("A rejection needs a reason of at least {n} characters; it goes into the case's history.")
                .format(n=MIN_REASON)) + "</span>")
            return
        self.move_case("rejected", note=reason)

    def show_camera(self, camera_id: str) -> None:
        self.look(lambda gate: gate.camera_card(camera_id), lambda card: self._fill_camera(camera_id, card))

    def _fill_camera(self, camera_id: str, card: dict | TwinError) -> None:
        if isinstance(card, TwinError):
            return self._show_error(card)
        self.building_id = self.case_id = None
        self.camera_id = camera_id
        self._hide_tables()
        mounted = _("{z} m, heading {heading}°, field {fov}°, range {range} m").format(
            z=f"{card['z']:.1f}", heading=f"{card['heading_deg']:.0f}", fov=f"{card['fov_deg']:.0f}",
            range=f"{card['range_m']:.0f}")
        facts = [(_("name"), card["name"]), (_("status"), camera_status_name(card["status"])),
                 (_("stream"), card["stream_url"]),
                 (_("mounted"), mounted), (_("grid"), card["grid_id"]), (_("building"), card["building_id"])]
        found = card["detections"]
        rows = "".join(f"<tr><td>{format_time(r.detected_at, short=True)}</td>"
                       f"<td>{html.escape(case_kind_name(r.category))}</td>"
                       f"<td>{r.confidence:.2f}</td><td>{html.escape(r.case_id)}</td></tr>" for r in found.itertuples())
        heads = "".join(f"<th>{h}</th>" for h in (_("when"), _("what"), _("conf."), _("case")))
        recent = ("<div class='label'>" + _("recent detections") + "</div>" + (
            f"<table class='twin-table'><tr>{heads}</tr>{rows}</table>"
            if rows else "<div class='twin-muted'>" + _("none") + "</div>"))
        self.card.object = _card(_("Camera {camera_id}").format(camera_id=camera_id), facts, tail=recent)

    # -- unmasking and export --------------------------------------------------------------------------------------
    def unmask(self) -> None:
        """Show the picked resident's ID number and phone in clear, if the gate accepts the reason."""
        if not self.unmask_who.value:
            return
        resident_id, reason = self.unmask_who.value, self.unmask_reason.value_input or self.unmask_reason.value
        self.look(lambda gate: gate.unmask(resident_id, reason=reason), self._show_unmasked, replaces=False)

    def _show_unmasked(self, found: dict | TwinError) -> None:
        if isinstance(found, TwinError):
            self.unmasked.object = f"<span class='twin-muted'>{html.escape(error_text(found))}</span>"
            return
        self.unmask_reason.value = ""
        self.unmasked.object = (f"<div class='twin-unmasked-row'>{html.escape(str(found['name']))} · "
                                f"{html.escape(str(found['id_number']))} · {html.escape(str(found['phone']))}</div>")

    async def _export_csv(self):
        """The shown building's residents, masked, as CSV (the gate audits the export; served, off the loop)."""
        building_id = self.building_id
        if self._off_loop is None:
            rows = self.gate.export_residents(building_id)
        else:
            rows = await self._off_loop.look(self.gate, lambda gate: gate.export_residents(building_id))
        return io.BytesIO(rows.to_csv(index=False).encode("utf-8-sig"))

    def clear(self) -> None:
        self.building_id = self.case_id = self.camera_id = None
        self._hide_tables()
        self.card.object = _nothing_picked()

    def _hide_tables(self, *, building: bool = False) -> None:
        """Put away what the previous card showed: its tables and its case's actions (a card shows only its own);
        for a ``building`` card to come, a building card's tables stay until it replaces them (_fill_building)."""
        if not building:
            self.cases.visible = self.residents.visible = self.pager.visible = self.unmasking.visible = False
            self.volunteer_account.active = False
        self.act.visible = self.rejecting.visible = self.assigning.visible = False
        self.shown_building_id = None
        if self.actions.objects:  # setting [] again would send the row anew
            self.actions.objects = []
        self.act_message.object = ""

    @param.depends("can_act", watch=True)
    def _can_act(self) -> None:
        if self.case_id is not None:
            self.show_case(self.case_id)

    def __panel__(self) -> pn.viewable.Viewable:
        if not self.details.objects:
            self.details.objects = [self.cases, self.pager, self.unmasking, self.volunteer_account, self.residents]
        return pn.Column(self.card, self.act, self.rejecting, self.assigning, self.act_message, self.details,
                         sizing_mode="stretch_width")
