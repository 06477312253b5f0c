"""Who sees what: the one gate between a user and the records of residents and cases.

Every read of residents or cases for the app, search, exports and the API goes
through a :class:`Gate` made for the signed-in :class:`~twin.access.access.Principal`.
The rules, all here:

- **leader**: everything as aggregates (key figures, grid tables), buildings with
  head counts and tag counts, and the cases of their grids. No resident records.
- **operator**: the residents and cases of their own grids, with ID numbers and
  phones masked. Unmasking one resident needs a stated reason and is audited.
  Every page of residents shown or exported is audited.
- **planner**: grids and buildings with head counts; no residents, no case records.
- **worker** (a grid worker, bound to micro-grids): on the phone page (:mod:`twin.field`), the cases given
  to them and those of their micro-grids, the steps of the field loop on them (:meth:`Gate.field_case`), the
  residents of their micro-grids masked as an operator sees them. Their positions on patrol are seen by
  the operators of their grids (``positions``), who may give a case to another worker (``act``).
- **admin**: users, API keys and the audit trail; no residents, no case records. The admin's
  commands on users and keys (:mod:`twin.access.commands`) are checked here too (:meth:`Gate.command`).
- **worker** (网格员, bound to micro-grids): as an operator, the residents (masked) and cases of their grids,
  and the cases assigned to them anywhere; of the loop's steps only their own (:data:`ROLE_STEPS`).
- **department** (bound to one department of the duties list): the details of the cases dispatched to it,
  and only those; no residents; of the loop's steps only its own.
- **public** (:func:`public_principal`, no user has it): anyone reading Open311 without a key.
  The cases of the whole district in their public view (:data:`CASE_VIEWS`): no house
  numbers, coarse places, descriptions with every number masked, or none.

A principal bound to grids is bound to them and everything under them; one
bound to none (not allowed for operators) covers the whole district.

An API key's client reads (Open311 GET) as a principal too (:func:`client_principal`):
the store's user of the same name when there is one, so ``twin users add citizen-app
--role leader --grids G1`` binds the key ``citizen-app`` to G1; otherwise a leader of
the whole district.

A refused access (a record outside the principal's grids, or one its role may not
read) is written to the audit trail as ``access.refused``: who, what, which record,
from where. :class:`Refusals` keeps a burst from flooding the trail.
"""

from __future__ import annotations

import copy
import datetime
import logging
import re
from collections.abc import Callable

import duckdb
import numpy as np
import pandas as pd

from twin import inspector
from twin.access.access import (MIN_REASON, PUBLIC_ROLE, Principal, audit, list_users, mask_id_number, mask_phone,
                                verify_audit)
from twin.access.keys import list_keys
from twin.access.ratelimit import RateLimiter
from twin.cases.cameras import CameraSight
from twin.cases.cases import next_statuses
from twin.errors import N_, AccessError, InputError
from twin.grids.grids import grids_under

log = logging.getLogger(__name__)

#: What each role may read besides aggregates and buildings.
RIGHTS: dict[str, frozenset[str]] = {
    "leader": frozenset({"cases", "cameras"}),
    "operator": frozenset({"cases", "cameras", "residents", "act", "positions"}),
    "planner": frozenset({"grids"}),
    "admin": frozenset({"users", "audit"}),
    "worker": frozenset({"cases", "cameras", "residents", "act", "field"}),
    "department": frozenset({"cases", "act"}),
    # the volunteer scheme (twin.volunteers): their own account, tasks, points; a merchant's offers and codes
    "resident": frozenset({"volunteer"}),
    "merchant": frozenset({"merchant"}),
    PUBLIC_ROLE: frozenset({"public cases"}),
}
#: The steps of the case loop (from, to) a role may take; a role not named here takes every step it may act on.
ROLE_STEPS: dict[str, frozenset[tuple[str, str]]] = {
    "worker": frozenset({("reported", "accepted"), ("dispatched", "accepted"), ("reopened", "accepted"),
                         ("accepted", "on_site"), ("on_site", "resolved"), ("accepted", "handed_up"),
                         ("on_site", "handed_up")}),
    "department": frozenset({("dispatched", "in_progress"), ("in_progress", "resolved")}),
}
#: How much of a case a right shows: the whole record, or its public view.
CASE_VIEWS = {"cases": "full", "public cases": "public"}
# Numbers people type into free text: mainland mobiles and resident ID numbers.
PHONE_IN_TEXT = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
ID_IN_TEXT = re.compile(r"(?<!\d)(\d{6})(\d{8})(\d{3}[\dXx])(?![\dXx])")

# Roles whose cases are not simply those of their grids: a department's are dispatched to it, a worker's are also
# those assigned to it.
ROLES_BY_CASE = ("department", "worker")

AuditSink = Callable[..., object]
"""Writes one audit row: called with ``actor``, ``action``, ``target``, ``detail``, ``source``."""


def mask_text(text: str | None) -> str | None:
    """Free text with any phone or ID number in it masked (``138****5678``, ``410105********1234``)."""
    if not isinstance(text, str) or not text:  # None, or NaN from a frame
        return text
    text = ID_IN_TEXT.sub(lambda m: m.group(1) + "*" * 8 + m.group(3), text)
    return PHONE_IN_TEXT.sub(lambda m: m.group(1) + "****" + m.group(3), text)


def client_principal(con: duckdb.DuckDBPyConnection, client: str, *, source: str | None = None) -> Principal | None:
    """Who an API key's client (:func:`twin.access.keys.client_for`) reads as; None when it may not read.

    The store's user named like the client, with that user's role and grids; a disabled
    user of that name reads nothing. A client with no such user is a leader of the whole district.
    """
    row = con.execute("SELECT role, grids, disabled, department FROM users WHERE username = ?", [client]).fetchone()
    if row is None:
        return Principal(client, "leader", (), source)
    return None if row[2] else Principal(client, row[0], tuple(row[1]), source, department=row[3])


def public_principal(*, source: str | None = None) -> Principal:
    """Anyone, reading without a key (Open311's keyless ``GET requests``): the public view of every case."""
    return Principal("public", PUBLIC_ROLE, (), source)


class Refusals:
    """Which refused accesses get an audit row: one per actor and record a minute, and ``per_minute`` per actor.

    Shared by every gate of a server (sessions and the API), like the sign-in refusals of
    :class:`scenes.auth.SignIns`, so a script asking for record after record cannot flood the trail.
    """

    def __init__(self, *, per_minute: int = 10) -> None:
        self.per_record = RateLimiter(rate_per_s=1 / 60, burst=1)
        self.per_actor = RateLimiter(rate_per_s=per_minute / 60, burst=per_minute)

    def allow(self, actor: str, target: str | None) -> bool:
        return self.per_record.allow(f"{actor}|{target}") and self.per_actor.allow(actor)


def direct_audit(con: duckdb.DuckDBPyConnection) -> AuditSink:
    """An audit sink writing on ``con`` itself (the CLI, notebooks, tests: one writer)."""
    return lambda **row: audit(con, **row)


_WHOLE_DISTRICT = object()  # a scope found to hold every grid in force


class Gate:
    """The records one principal may read, with masks applied and looks audited.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A cursor on the store to read from.
    principal : Principal
        Who is asking, and from where.
    audit_sink : callable, optional
        Where audit rows go; by default they are written on ``con``. ``twin serve``
        collects them and commits them through the store's writer before it shows
        what they record (:meth:`bound`, :class:`scenes.shared.OffLoop`).
    refusals : Refusals, optional
        Which refused accesses are recorded; ``twin serve`` shares one among all its gates.
    scopes : callable, optional
        ``scopes(grids) -> frozenset | None``: the grids at or under ``grids`` (:func:`twin.grids.grids.grids_under`,
        by default read on ``con``), or None when they are every grid in force (the whole district). ``twin serve``
        shares one per binding among its sessions (:meth:`scenes.shared.SharedDistrict.scope_of`): an operator of
        a city's every street would have 700,000 grids in scope, 80 MB as a set of ids.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, principal: Principal, *,
                 audit_sink: AuditSink | None = None, refusals: Refusals | None = None,
                 scopes: Callable[[tuple[str, ...]], frozenset[str] | None] | None = None) -> None:
        self.con = con
        self.principal = principal
        self._audit = audit_sink or direct_audit(con)
        self.refusals = refusals if refusals is not None else Refusals()
        self._scopes = scopes
        # The scope and its ids sorted (a query parameter), shared with the gates bound from this one.
        self._scope_cell: list = [None, None]
        self._paths: Callable[[str | None], list[dict]] | None = None
        self._sight: CameraSight | None = None
        self._cameras_near: Callable[[float, float, float, float], list[str]] | None = None
        self._grid_of: dict[str, str | None] | None = None  # a bound gate's: the buildings' grids it read

    def bound(self, con: duckdb.DuckDBPyConnection, *, audit_sink: AuditSink,
              paths: Callable[[str | None], list[dict]] | None = None, sight: CameraSight | None = None,
              cameras_near: Callable[[float, float, float, float], list[str]] | None = None) -> "Gate":
        """This gate on another cursor (another thread's) with another audit sink, for one look: the scope is
        shared, and a building's grid is read once in the look. ``paths`` gives a grid's path, ``sight`` the
        cameras that see a building and ``cameras_near`` the cameras standing in a box, from what the caller holds
        (a server's grid tree, :meth:`scenes.shared.SharedDistrict.grid_path`, its cameras and camera layer)
        rather than the store."""
        gate = copy.copy(self)
        gate.con, gate._audit, gate._grid_of = con, audit_sink, {}
        if paths is not None:
            gate._paths = paths
        if sight is not None:
            gate._sight = sight
        if cameras_near is not None:
            gate._cameras_near = cameras_near
        return gate

    # -- the rules ---------------------------------------------------------------
    def may(self, right: str) -> bool:
        """Whether the principal's role has ``right`` (see :data:`RIGHTS`)."""
        return right in RIGHTS[self.principal.role]

    @property
    def scope(self) -> frozenset[str] | None:
        """The grid ids the principal is bound to and all under them; None for the whole district."""
        if not self.principal.grids:
            return None
        if self._scope_cell[0] is None:
            scope = (self._scopes(tuple(self.principal.grids)) if self._scopes is not None
                     else grids_under(self.con, self.principal.grids))
            self._scope_cell[0] = _WHOLE_DISTRICT if scope is None else scope
        scope = self._scope_cell[0]
        return None if scope is _WHOLE_DISTRICT else scope

    def in_scope(self, grid_id: str | None) -> bool:
        scope = self.scope
        return scope is None or grid_id in scope

    def _require(self, right: str, what: str, target: str | None = None) -> None:
        if not self.may(right):
            self._refuse(what, target, AccessError(
                N_("{user} ({role}) may not see {what}; this needs the role {needed_roles}."),
                user=self.principal.username, role=self.principal.role, what=what, needed_roles=[r for r in RIGHTS if right in RIGHTS[r]]))

    def _require_grid(self, grid_id: str | None, kind: str, target: str) -> None:
        """Refuse unless ``grid_id`` is in the principal's scope; ``kind`` (building, resident, case) names
        ``target``."""
        if not self.in_scope(grid_id):
            self._refuse(f"{kind} {target}", target, AccessError(
                N_("{kind} {target} is in grid {grid_id}, outside {user}'s grids ({grids}); ask an operator of that "
                   "grid."), kind=kind, target=target, grid_id=grid_id, user=self.principal.username,
                grids=", ".join(self.principal.grids)))

    def _refuse(self, what: str, target: str | None, error: AccessError) -> None:
        """Record the refusal (see :class:`Refusals`) and raise ``error``."""
        self.record_refusal(what, target, str(error))
        raise error

    def record_refusal(self, what: str, target: str | None, reason: str) -> None:
        """An ``access.refused`` row: who (actor), from where (source), which record and what was asked, why."""
        if self.refusals.allow(self.principal.username, target):
            self.record("access.refused", target, {"what": what, "reason": reason})

    def record(self, action: str, target: str | None = None, detail: dict | str | None = None) -> None:
        """One audit row for this principal (actor and source filled in)."""
        self._audit(actor=self.principal.username, action=action, target=target, detail=detail,
                    source=self.principal.source)

    def _building_grid(self, building_id: str) -> str | None:
        if self._grid_of is not None and building_id in self._grid_of:  # read already in this look
            return self._grid_of[building_id]
        row = self.con.execute("SELECT grid_id FROM buildings WHERE building_id = ?", [building_id]).fetchone()
        if row is None:
            raise InputError(N_("no building {building_id!r} in the store"), building_id=building_id)
        if self._grid_of is not None:
            self._grid_of[building_id] = row[0]
        return row[0]

    def _sorted_scope(self) -> list[str]:
        """:attr:`scope`'s ids sorted, once per principal (a query parameter; thousands of ids for a street's)."""
        if self._scope_cell[1] is None:
            self._scope_cell[1] = sorted(self.scope or ())
        return self._scope_cell[1]

    # -- buildings ---------------------------------------------------------------
    def building_card(self, building_id: str) -> dict:
        """The building's card (:func:`twin.inspector.building_card`) with its residents' tags as counts.

        ``may_see_residents`` says whether :meth:`residents_page` would answer for it with residents,
        ``residents_counted`` whether the store counts its residents instead of listing them (no page to see).
        """
        card = inspector.building_card(self.con, building_id, paths=self._paths, sight=self._sight,
                                       cameras_near=self._cameras_near)
        if self._grid_of is not None:
            self._grid_of[building_id] = card["grid_id"]
        card["may_see_residents"] = (self.may("residents") and self.in_scope(card["grid_id"])
                                     and not card["residents_counted"])
        card["may_see_cases"] = self.may("cases") and self.in_scope(card["grid_id"])
        return card

    def residents_page(self, building_id: str, *, page: int = 0, page_size: int = 50) -> pd.DataFrame:
        """One page of a building's residents, masked; audited as ``residents.view``.

        Raises
        ------
        AccessError
            For any role but operator, and for buildings outside the operator's grids.
        """
        rows = self._residents(building_id, page=page, page_size=page_size)
        self.record("residents.view", building_id, {"page": page, "rows": len(rows)})
        return rows

    def export_residents(self, building_id: str) -> pd.DataFrame:
        """All residents of a building, masked, for a file; audited as ``residents.export``."""
        rows = self._residents(building_id, page=0, page_size=1_000_000)
        self.record("residents.export", building_id, {"rows": len(rows)})
        return rows

    def _residents(self, building_id: str, **page) -> pd.DataFrame:
        self._require("residents", N_("resident records"), building_id)
        self._require_grid(self._building_grid(building_id), N_("building"), building_id)
        rows = inspector.residents_page(self.con, building_id, **page)
        rows["phone"] = rows["phone"].map(mask_phone)
        rows["id_number"] = rows["id_number"].map(mask_id_number)
        return rows

    def unmask(self, resident_id: str, *, reason: str) -> dict:
        """One resident's ID number and phone in clear, for a stated reason; audited as ``resident.unmask``.

        Raises
        ------
        AccessError
            Without a reason of at least ``MIN_REASON`` characters, for any role but
            operator, or for a resident outside the operator's grids.
        """
        self._require("residents", N_("resident records"), resident_id)
        reason = (reason or "").strip()
        if len(reason) < MIN_REASON:
            raise AccessError(N_("unmasking resident {resident_id} needs a reason (at least {n} characters), "
                                 "for example 'calling about case 2026-0042'; it goes into the audit trail."),
                              resident_id=resident_id, n=MIN_REASON)
        found = self.check_resident(resident_id)
        self.record("resident.unmask", resident_id, {"reason": reason})
        return {"resident_id": resident_id, "name": found["name"], "id_number": found["id_number"],
                "phone": found["phone"]}

    def check_resident(self, resident_id: str) -> dict:
        """Refuse (audited) unless the principal may see this resident's record: a role with the right
        ``residents`` (operator, grid worker), the resident's building in their grids.

        Returns
        -------
        dict
            ``resident_id``, ``name``, ``id_number``, ``phone`` (in clear: the caller masks or audits),
            ``building_id``, ``grid_id``.

        Raises
        ------
        AccessError
            For a role without the right, or a resident outside the principal's grids.
        InputError
            When there is no such resident.
        """
        self._require("residents", N_("resident records"), resident_id)
        # Two lookups by key, not a join: on a PostgreSQL store each goes down to its index.
        row = self.con.execute("SELECT name, id_number, phone, building_id FROM residents WHERE resident_id = ?",
                               [resident_id]).fetchone()
        if row is None:
            raise InputError(N_("no resident {resident_id!r} in the store"), resident_id=resident_id)
        grid_id = self._building_grid(row[3]) if row[3] is not None else None
        self._require_grid(grid_id, N_("resident"), resident_id)
        return {"resident_id": resident_id, **dict(zip(("name", "id_number", "phone", "building_id"), row)),
                "grid_id": grid_id}

    # -- cases and cameras ---------------------------------------------------------
    def open_cases(self, *, building_id: str | None = None, grid_id: str | None = None) -> pd.DataFrame:
        """A building's (or micro-grid's) open cases the principal may see; empty otherwise."""
        grid = self._building_grid(building_id) if building_id is not None else grid_id
        if not self.may("cases") or (self.principal.role not in ROLES_BY_CASE and not self.in_scope(grid)):
            return pd.DataFrame(columns=list(inspector.OPEN_CASE_COLUMNS))
        # The building's few open cases, kept here by the rule itself (sees_case): the rule in SQL (_case_sql)
        # sends the ids of every grid in scope with the query, thousands for an operator of streets.
        found = inspector.open_cases(self.con, building_id=building_id, grid_id=grid_id, access_columns=True)
        seen = np.array([self.sees_case(g, d, w) for g, d, w in zip(
            *(found[c].tolist() for c in inspector.ACCESS_COLUMNS))], dtype=bool)
        if seen.all():  # mostly (and no case at all, on most buildings): no pandas selection, a click's milliseconds
            return found.iloc[:, :len(inspector.OPEN_CASE_COLUMNS)]
        return found.loc[seen, list(inspector.OPEN_CASE_COLUMNS)].reset_index(drop=True)

    def case_card(self, case_id: str) -> dict:
        """A case with its history (:func:`twin.inspector.case_card`); numbers in free text masked.
        ``next_statuses`` are the steps this principal may take (:meth:`steps`)."""
        self._require("cases", N_("case records"), case_id)
        card = inspector.case_card(self.con, case_id)
        self._require_case(case_id, card["grid_id"], card["department"], card["assigned_worker"])
        card["next_statuses"] = self.steps(card["status"], department=card["department"])
        return _masked(card)

    # -- the grid worker's field -------------------------------------------------
    def check_field(self) -> None:
        """Raise :class:`AccessError` (audited) unless the principal is a grid worker (the phone page's role)."""
        self._require("field", N_("the grid worker's page"))

    def field_cases_filter(self) -> tuple[str, list]:
        """An SQL condition on ``cases`` (with its parameters) keeping a worker's: given to them, or in their
        micro-grids. Refused (and audited) for any other role."""
        self.check_field()
        return "(assigned_worker = ? OR grid_id IN (SELECT unnest(?)))", [self.principal.username,
                                                                          self._sorted_scope()]

    def field_case(self, case_id: str, *, act: bool = False) -> dict:
        """A case's ``status``, ``grid_id`` and ``assigned_worker``, when the worker may see it (given to them, or in
        their micro-grids) or, with ``act``, take a step on it (given to them, or in their micro-grids and given
        to no one else).

        Raises
        ------
        AccessError
            For any role but worker, or a case that is not theirs (audited as ``access.refused``).
        InputError
            When there is no such case.
        """
        self._require("field", N_("the grid worker's page"), case_id)
        row = self.con.execute("SELECT status, grid_id, assigned_worker FROM cases WHERE case_id = ?",
                               [case_id]).fetchone()
        if row is None:
            raise InputError(N_("no case {case_id!r} in the store"), case_id=case_id)
        status, grid_id, assigned = row
        me = self.principal.username
        if assigned != me and not (self.in_scope(grid_id) and (not act or assigned is None)):
            reason = (N_("case {case_id} is given to {worker}, not to {user}; ask the operator to give it to you.")
                      if assigned else
                      N_("case {case_id} is in micro-grid {grid_id}, outside {user}'s micro-grids ({grids})."))
            self._refuse(f"case {case_id}", case_id, AccessError(reason, case_id=case_id, worker=assigned,
                                                                 grid_id=grid_id, user=me,
                                                                 grids=", ".join(self.principal.grids)))
        return {"case_id": case_id, "status": status, "grid_id": grid_id, "assigned_worker": assigned}

    def field_case_card(self, case_id: str) -> dict:
        """:meth:`case_card` for a worker's case (:meth:`field_case`): one given to them may lie outside their
        micro-grids."""
        self.field_case(case_id)
        return _masked(inspector.case_card(self.con, case_id))

    def check_case(self, case_id: str) -> None:
        """Raise :class:`AccessError` (audited) unless the principal may see ``case_id``'s record and photos: a
        worker their cases (:meth:`field_case`), other roles with case records those they see (:meth:`sees_case`:
        a department its own, the others those of their grids)."""
        if self.may("field"):
            self.field_case(case_id)
            return
        self._require("cases", N_("case records"), case_id)
        row = self.con.execute("SELECT grid_id, department, assigned_worker FROM cases WHERE case_id = ?",
                               [case_id]).fetchone()
        if row is None:
            raise InputError(N_("no case {case_id!r} in the store"), case_id=case_id)
        self._require_case(case_id, *row)

    def check_positions(self) -> None:
        """Raise :class:`AccessError` (audited) unless the principal may see grid workers' positions on patrol."""
        self._require("positions", N_("the grid workers' positions"))

    def check_worker(self, worker: str) -> tuple[str, ...]:
        """The micro-grids of the grid worker ``worker``, when the principal may see their position and load (an
        operator of one of those grids); else :class:`AccessError` (audited)."""
        self.check_positions()
        row = self.con.execute("SELECT grids FROM users WHERE username = ? AND role = 'worker'", [worker]).fetchone()
        if row is None:
            raise InputError(N_("{worker!r} is no enabled grid worker; pick one from the list of workers."),
                             worker=worker)
        grids = tuple(row[0])
        if not any(self.in_scope(g) for g in grids):
            self._refuse(f"worker {worker}", worker, AccessError(
                N_("grid worker {worker} works in {grids}, outside {user}'s grids."), worker=worker,
                grids=", ".join(grids), user=self.principal.username))
        return grids

    def sees_case(self, grid_id: str | None, department: str | None, assigned_worker: str | None) -> bool:
        """Whether the principal's role and binding reach a case (of ``grid_id``, dispatched to ``department``,
        assigned to ``assigned_worker``): a department its own cases, a worker its grids' and those given to it,
        the others their grids'."""
        role = self.principal.role
        if role == "department":
            return department is not None and department == self.principal.department
        if role == "worker" and assigned_worker is not None and assigned_worker == self.principal.username:
            return True
        return self.in_scope(grid_id)

    def _require_case(self, case_id: str, grid_id: str | None, department: str | None,
                      assigned_worker: str | None) -> None:
        """Refuse (audited) unless :meth:`sees_case`."""
        if self.sees_case(grid_id, department, assigned_worker):
            return
        if self.principal.role == "department":
            self._refuse(f"case {case_id}", case_id, AccessError(
                N_("case {target} is not dispatched to {user}'s department ({department}); a department sees only "
                   "its own cases."), target=case_id, user=self.principal.username,
                department=self.principal.department))
        self._require_grid(grid_id, N_("case"), case_id)

    def steps(self, status: str, *, department: str | None = None) -> list[str]:
        """The statuses the principal may move a case in ``status`` to: the loop's next ones that its role takes
        (:data:`ROLE_STEPS`; a worker takes no case a department holds), none for a role that does not act."""
        if not self.may("act"):
            return []
        allowed = ROLE_STEPS.get(self.principal.role)
        return [s for s in next_statuses(status) if allowed is None or (
            (status, s) in allowed and not (self.principal.role == "worker" and status == "dispatched"
                                            and department is not None))]

    def check_act(self, case_id: str, to_status: str | None = None) -> None:
        """Raise :class:`AccessError` unless the principal may move ``case_id`` along the case loop (to
        ``to_status``, when given: a step of its role, :meth:`steps`)."""
        self._require("act", N_("the case loop's actions"), case_id)
        row = self.con.execute("SELECT grid_id, department, assigned_worker, status FROM cases WHERE case_id = ?",
                               [case_id]).fetchone()
        if row is None:
            raise InputError(N_("no case {case_id!r} in the store"), case_id=case_id)
        self._require_case(case_id, *row[:3])
        if to_status is not None and to_status not in self.steps(row[3], department=row[1]) \
                and to_status in next_statuses(row[3]):
            self._refuse(f"case {case_id} to {to_status}", case_id, AccessError(
                N_("{user} ({role}) may not move case {target} from {from_status} to {to_status}; that step is "
                   "another role's."), user=self.principal.username, role=self.principal.role, target=case_id,
                from_status=row[3], to_status=to_status))

    def case_list(self, *, statuses: tuple[str, ...] | None = None, category: str | None = None,
                  grid_id: str | None = None, overdue: bool = False, escalated: bool = False) -> pd.DataFrame:
        """:func:`twin.inspector.case_list` within the principal's cases (:meth:`case_filter`); ``grid_id`` at any
        level (its cases and those of the grids under it); ``escalated``: the departments' cases on the street
        leader's list. Refused for roles without case records."""
        where = self.case_filter()
        grids = sorted(grids_under(self.con, [grid_id])) if grid_id is not None else None
        return inspector.case_list(self.con, statuses=statuses or inspector.OPEN_STATUSES, category=category,
                                   grid_ids=grids, overdue=overdue, escalated=escalated, where=where)

    def offline_cameras(self) -> pd.DataFrame:
        """:func:`twin.inspector.offline_cameras` (cameras are no one's personal data)."""
        return inspector.offline_cameras(self.con)

    def grid_card(self, grid_id: str) -> dict:
        """A grid's card (:func:`twin.inspector.grid_card`); its cases by category, and its worker's phone in
        clear, only for roles that see cases, in their grids (an empty table and a masked phone otherwise, with
        ``may_see_cases`` False): those roles coordinate with the worker, the others have no need of the number."""
        card = inspector.grid_card(self.con, grid_id, paths=self._paths)
        # A department sees its own cases, not a grid's.
        card["may_see_cases"] = self.may("cases") and self.in_scope(grid_id) and self.principal.role != "department"
        if not card["may_see_cases"]:
            card["cases"] = card["cases"].head(0)
            card["worker_phone"] = mask_phone(card["worker_phone"])
        return card

    def camera_card(self, camera_id: str) -> dict:
        """A camera's facts; its recent detections only for roles that see cases, in their grids."""
        card = inspector.camera_card(self.con, camera_id)
        if not (self.may("cameras") and self.in_scope(card["grid_id"])):
            card["detections"] = card["detections"].head(0)
        return card

    def element_card(self, building_id: str, element_index: int) -> dict:
        return inspector.element_card(self.con, building_id, element_index)

    # -- search --------------------------------------------------------------------
    def search(self, text: str, *, limit: int = 10) -> list[dict]:
        """:func:`twin.inspector.search`, keeping only the cases the principal may see."""
        if not self.may("cases"):
            found = inspector.search(self.con, text, limit=limit, case_grids=frozenset())
        elif self.principal.role in ROLES_BY_CASE:
            found = inspector.search(self.con, text, limit=limit, case_where=self._case_sql())
        else:
            found = inspector.search(self.con, text, limit=limit, case_grids=self.scope)
        asked = text.strip()
        if not any(r["kind"] == "case" and r["id"] == asked for r in found) and self.con.execute(
                "SELECT 1 FROM cases WHERE case_id = ?", [asked]).fetchone():
            # asked for that very case: a refused access, not a mere non-match
            self.record_refusal("a case by search", asked, f"case {asked} is not for "
                                f"{self.principal.username} ({self.principal.role}) to see.")
        return found

    def search_refusal(self, text: str) -> AccessError | None:
        """Why a search for ``text`` shows no case although one matches it (None when none is kept back).

        The message names the first matching case and the grid that keeps it from the principal.
        """
        cases = [r["id"] for r in inspector.search(self.con, text, limit=1, buildings=False)]
        if not cases:
            return None
        row = self.con.execute("SELECT grid_id, department, assigned_worker FROM cases WHERE case_id = ?",
                               cases).fetchone()
        try:
            self._require("cases", N_("case records"), cases[0])
            self._require_case(cases[0], *row)
        except AccessError as exc:
            return exc
        return None

    def case_view(self, target: str | None = None) -> str:
        """How much of a case the principal sees: ``"full"`` or ``"public"`` (see :data:`CASE_VIEWS`).

        Raises
        ------
        AccessError
            For a role that reads no cases (planner, admin); the refusal is audited.
        """
        for right, view in CASE_VIEWS.items():
            if self.may(right):
                return view
        self._require("cases", N_("case records"), target)
        raise AssertionError("unreachable: _require refused")

    def case_filter(self, *, asked: list[str] = ()) -> tuple[str, list]:
        """An SQL condition on ``cases`` (with its parameters) keeping the cases the principal may see.

        For reads that filter cases in SQL (Open311's ``GET requests``). ``asked`` are case ids
        named in the request: one that exists outside the principal's grids is refused.

        Raises
        ------
        AccessError
            For a role without case records, or an ``asked`` case outside the principal's grids.
        """
        self.case_view(asked[0] if len(asked) == 1 else None)
        if self.scope is None and self.principal.role not in ROLES_BY_CASE:
            return "true", []
        if asked:
            for case_id, *row in self.con.execute(
                    "SELECT case_id, grid_id, department, assigned_worker FROM cases WHERE case_id IN "
                    "(SELECT unnest(?)) ORDER BY case_id", [list(asked)]).fetchall():
                self._require_case(case_id, *row)
        return self._case_sql()

    def _case_sql(self) -> tuple[str, list]:
        """The SQL condition on ``cases`` (and its parameters) of :meth:`sees_case`."""
        role = self.principal.role
        if role == "department":
            return "department = ?", [self.principal.department]
        if self.scope is None:
            return "true", []
        if role == "worker":
            return "(grid_id IN (SELECT unnest(?)) OR assigned_worker = ?)", [self._sorted_scope(),
                                                                               self.principal.username]
        return "grid_id IN (SELECT unnest(?))", [self._sorted_scope()]

    # -- the admin's reads and commands ------------------------------------------------
    def audit_trail(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
                    since: pd.Timestamp | None = None, until: pd.Timestamp | None = None, kind: str | None = None,
                    limit: int = 200, offset: int = 0) -> pd.DataFrame:
        """The audit trail, newest first, filtered (``actor`` and ``target`` match a prefix; ``action`` exactly).

        ``since`` and ``until`` are days (``datetime.date``) or times of the store's clock, both included:
        ``until`` a day keeps the whole of it. ``kind`` is one of :data:`AUDIT_KINDS`.

        Returns
        -------
        DataFrame
            Columns ``seq, at, actor, action, target, detail, source, kind``.
        """
        self._require("audit", N_("the audit trail"))
        where, params = _trail_filter(actor=actor, action=action, target=target, since=since, until=until, kind=kind)
        return self.con.execute(
            f'SELECT seq, "at", actor, action, target, detail, source, {_KIND_SQL} AS kind FROM audit '
            f"WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
            [*params, max(1, min(limit, MAX_TRAIL_ROWS)), max(0, offset)]).df()

    def export_audit(self, **filters) -> pd.DataFrame:
        """Every row :meth:`audit_trail` gives for ``filters`` (up to ``MAX_TRAIL_ROWS``), for a file; the export is
        itself audited as ``audit.export`` with its filters and its number of rows."""
        rows = self.audit_trail(**filters, limit=MAX_TRAIL_ROWS)
        asked = {k: str(v) for k, v in filters.items() if v not in (None, "")}
        self.record("audit.export", None, {**asked, "rows": len(rows)})
        return rows

    def audit_actions(self) -> list[str]:
        self._require("audit", N_("the audit trail"))
        return [r[0] for r in self.con.execute("SELECT DISTINCT action FROM audit ORDER BY action").fetchall()]

    def verify_audit(self) -> int | None:
        """:func:`twin.access.access.verify_audit`: the first broken row's number, or None."""
        self._require("audit", N_("the audit trail"))
        return verify_audit(self.con)

    def users(self) -> list[dict]:
        self._require("users", N_("the users"))
        return list_users(self.con)

    def keys(self) -> list[dict]:
        """The intake clients' API keys (:func:`twin.access.keys.list_keys`): never a key or its hash."""
        self._require("users", N_("the API keys"))
        return list_keys(self.con)

    def record_names(self, ids: list[str]) -> dict[str, str]:
        """The names of the grids (their latest version's) and buildings among ``ids``, by id; for the audit
        trail's readers. Residents and cases are named by their ids alone (an admin reads no records)."""
        self._require("audit", N_("the audit trail"))
        if not ids:
            return {}
        return dict(self.con.execute(
            "SELECT grid_id, arg_max(name, version) FROM grids WHERE grid_id IN (SELECT unnest($1)) AND name IS NOT "
            "NULL GROUP BY grid_id UNION ALL SELECT building_id, coalesce(name, address) FROM buildings WHERE "
            "building_id IN (SELECT unnest($1)) AND coalesce(name, address) IS NOT NULL",
            [sorted(set(ids))]).fetchall())

    def command(self, name: str, args: dict) -> dict:
        """``args`` of the users' or keys' command ``name`` (:mod:`twin.access.commands`) with who asks and from
        where filled in, when the principal may manage users; a refused access otherwise."""
        self._require("users", "the users and keys", name)
        return {**args, "actor": self.principal.username, "source": self.principal.source}


def _masked(card: dict) -> dict:
    """A case card with the phone and ID numbers in its description and history masked."""
    card["description"] = mask_text(card["description"])
    card["history"]["note"] = card["history"]["note"].map(mask_text)
    return card


MAX_TRAIL_ROWS = 100_000  # rows of the trail one read (or CSV export) gives
#: The kinds of audit rows, by action: refused accesses (sign-ins, sessions, records) are their own kind.
AUDIT_KINDS: dict[str, tuple[str, ...]] = {
    "refused": ("access.refused", "signin.failed", "session.refused"),
    "signin": ("signin", "session.open"),
    "read": ("residents.view", "residents.export", "resident.unmask", "grids.export", "audit.export"),
}
OTHER_KIND = "change"  # every other action changes the store (users, keys, cases, grids)
_KIND_SQL = "CASE " + " ".join(f"WHEN action IN ({', '.join(repr(a) for a in actions)}) THEN '{kind}'"
                               for kind, actions in AUDIT_KINDS.items()) + f" ELSE '{OTHER_KIND}' END"


def _trail_filter(*, actor: str | None, action: str | None, target: str | None, since: object, until: object,
                  kind: str | None) -> tuple[str, list]:
    """The SQL condition on ``audit`` (with its parameters) of :meth:`Gate.audit_trail`'s filters."""
    where, params = ["true"], []
    for column, value in (("actor", actor), ("target", target)):
        if value:
            where.append(f"starts_with({column}, ?)")
            params.append(value)
    if action:
        where.append("action = ?")
        params.append(action)
    if since is not None:
        where.append('"at" >= ?')
        params.append(pd.Timestamp(since))
    if until is not None:
        day = isinstance(until, datetime.date) and not isinstance(until, datetime.datetime)
        where.append('"at" < ?' if day else '"at" <= ?')  # a day is kept whole: up to the next one's start
        params.append(pd.Timestamp(until) + pd.Timedelta(days=1) if day else pd.Timestamp(until))
    if kind:
        if kind not in (*AUDIT_KINDS, OTHER_KIND):
            raise InputError(f"audit kind {kind!r}: choose one of {', '.join((*AUDIT_KINDS, OTHER_KIND))}.")
        where.append(f"{_KIND_SQL} = ?")
        params.append(kind)
    return " AND ".join(where), params
