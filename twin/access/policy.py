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
- **admin**: users and the audit trail; no residents, no case records.

A principal bound to grids is bound to them and everything under them; one
bound to none (not allowed for operators) covers the whole district.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import duckdb
import pandas as pd

from twin import inspector
from twin.access.access import Principal, audit, list_users, mask_id_number, mask_phone, verify_audit
from twin.errors import AccessError, InputError

log = logging.getLogger(__name__)

#: What each role may read besides aggregates and buildings.
RIGHTS: dict[str, frozenset[str]] = {
    "leader": frozenset({"cases", "cameras"}),
    "operator": frozenset({"cases", "cameras", "residents", "act"}),
    "planner": frozenset({"grids"}),
    "admin": frozenset({"users", "audit"}),
}
MIN_REASON = 5  # characters of a stated reason for unmasking
# Numbers people type into free text: mainland mobiles and resident ID numbers.
PHONE_IN_TEXT = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
ID_IN_TEXT = re.compile(r"(?<!\d)(\d{6})(\d{8})(\d{3}[\dXx])(?![\dXx])")

AuditSink = Callable[..., object]
"""Writes one audit row: called with ``actor``, ``action``, ``target``, ``detail``, ``source``."""


def mask_text(text: str | None) -> str | None:
    """Free text with any phone or ID number in it masked (``138****5678``, ``410105********1234``)."""
    if not isinstance(text, str) or not text:  # None, or NaN from a frame
        return text
    text = ID_IN_TEXT.sub(lambda m: m.group(1) + "*" * 8 + m.group(3), text)
    return PHONE_IN_TEXT.sub(lambda m: m.group(1) + "****" + m.group(3), text)


def grids_under(con: duckdb.DuckDBPyConnection, grid_ids: tuple[str, ...] | list[str]) -> frozenset[str]:
    """The grids in force at or under ``grid_ids`` (any level), as ids."""
    rows = con.execute("""
        WITH RECURSIVE down(grid_id, depth) AS (
            SELECT grid_id, 0 FROM grids WHERE grid_id IN (SELECT unnest(?)) AND valid_to IS NULL
            UNION ALL
            SELECT g.grid_id, down.depth + 1 FROM grids g JOIN down ON g.parent_id = down.grid_id
            WHERE g.valid_to IS NULL AND down.depth < 8)
        SELECT DISTINCT grid_id FROM down""", [list(grid_ids)]).fetchall()
    return frozenset(r[0] for r in rows)


def direct_audit(con: duckdb.DuckDBPyConnection) -> AuditSink:
    """An audit sink writing on ``con`` itself (the CLI, notebooks, tests: one writer)."""
    return lambda **row: audit(con, **row)


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
        passes one that writes through the store's writer thread and waits for the commit,
        so nothing is shown before its look is on record.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, principal: Principal, *,
                 audit_sink: AuditSink | None = None) -> None:
        self.con = con
        self.principal = principal
        self._audit = audit_sink or direct_audit(con)
        self._scope: frozenset[str] | None = None

    # -- the rules ---------------------------------------------------------------
    def may(self, right: str) -> bool:
        """Whether the principal's role has ``right`` (see :data:`RIGHTS`)."""
        return right in RIGHTS[self.principal.role]

    @property
    def scope(self) -> frozenset[str] | None:
        """The grid ids the principal is bound to and all under them; None for the whole district."""
        if not self.principal.grids:
            return None
        if self._scope is None:
            self._scope = grids_under(self.con, self.principal.grids)
        return self._scope

    def in_scope(self, grid_id: str | None) -> bool:
        scope = self.scope
        return scope is None or grid_id in scope

    def _require(self, right: str, what: str) -> None:
        if not self.may(right):
            raise AccessError(f"{self.principal.username} ({self.principal.role}) may not see {what}; "
                              f"this needs a role with '{right}' ({', '.join(r for r in RIGHTS if right in RIGHTS[r])}).")

    def _require_grid(self, grid_id: str | None, what: str) -> None:
        if not self.in_scope(grid_id):
            raise AccessError(f"{what} is in grid {grid_id!r}, outside {self.principal.username}'s grids "
                              f"({', '.join(self.principal.grids)}); ask an operator of that grid.")

    def record(self, action: str, target: str | None = None, detail: dict | str | None = None) -> None:
        """One audit row for this principal (actor and source filled in)."""
        self._audit(actor=self.principal.username, action=action, target=target, detail=detail,
                    source=self.principal.source)

    def _building_grid(self, building_id: str) -> str | None:
        row = self.con.execute("SELECT grid_id FROM buildings WHERE building_id = ?", [building_id]).fetchone()
        if row is None:
            raise InputError(f"no building {building_id!r} in the store")
        return row[0]

    # -- buildings ---------------------------------------------------------------
    def building_card(self, building_id: str) -> dict:
        """The building's card (:func:`twin.inspector.building_card`) with its residents' tags as counts.

        ``may_see_residents`` says whether :meth:`residents_page` would answer for it.
        """
        card = inspector.building_card(self.con, building_id)
        card["tags"] = dict(self.con.execute(
            "SELECT tag, count(*) FROM (SELECT unnest(tags) AS tag FROM residents WHERE rowid IN "
            "(SELECT rowid FROM residents WHERE building_id = ?)) GROUP BY tag ORDER BY count(*) DESC, tag",
            [building_id]).fetchall())
        card["may_see_residents"] = self.may("residents") and self.in_scope(card["grid_id"])
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
        self._require("residents", "resident records")
        self._require_grid(self._building_grid(building_id), f"building {building_id}")
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
        self._require("residents", "resident records")
        reason = (reason or "").strip()
        if len(reason) < MIN_REASON:
            raise AccessError(f"unmasking resident {resident_id} needs a reason (at least {MIN_REASON} characters), "
                              "for example 'calling about case 2026-0042'; it goes into the audit trail.")
        row = self.con.execute("SELECT r.name, r.id_number, r.phone, b.grid_id FROM residents r "
                               "JOIN buildings b USING (building_id) WHERE r.resident_id = ?", [resident_id]).fetchone()
        if row is None:
            raise InputError(f"no resident {resident_id!r} in the store")
        self._require_grid(row[3], f"resident {resident_id}")
        self.record("resident.unmask", resident_id, {"reason": reason})
        return {"resident_id": resident_id, "name": row[0], "id_number": row[1], "phone": row[2]}

    # -- cases and cameras ---------------------------------------------------------
    def open_cases(self, *, building_id: str | None = None, grid_id: str | None = None) -> pd.DataFrame:
        """A building's (or micro-grid's) open cases the principal may see; empty otherwise."""
        grid = self._building_grid(building_id) if building_id is not None else grid_id
        if not (self.may("cases") and self.in_scope(grid)):
            return pd.DataFrame(columns=list(inspector.OPEN_CASE_COLUMNS))
        return inspector.open_cases(self.con, building_id=building_id, grid_id=grid_id)

    def case_card(self, case_id: str) -> dict:
        """A case with its history (:func:`twin.inspector.case_card`); numbers in free text masked."""
        self._require("cases", "case records")
        card = inspector.case_card(self.con, case_id)
        self._require_grid(card["grid_id"], f"case {case_id}")
        card["description"] = mask_text(card["description"])
        card["history"]["note"] = card["history"]["note"].map(mask_text)
        return card

    def check_act(self, case_id: str) -> None:
        """Raise :class:`AccessError` unless the principal may move ``case_id`` along the case loop."""
        self._require("act", "the case loop's actions")
        row = self.con.execute("SELECT grid_id FROM cases WHERE case_id = ?", [case_id]).fetchone()
        if row is None:
            raise InputError(f"no case {case_id!r} in the store")
        self._require_grid(row[0], f"case {case_id}")

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
        return inspector.search(self.con, text, limit=limit,
                                case_grids=self.scope if self.may("cases") else frozenset())

    def search_refusal(self, text: str) -> str | None:
        """Why a search for ``text`` shows no case although one matches it (None when none is kept back).

        The message names the first matching case and the grid that keeps it from the principal.
        """
        cases = [r["id"] for r in inspector.search(self.con, text, limit=1) if r["kind"] == "case"]
        if not cases:
            return None
        grid_id, = self.con.execute("SELECT grid_id FROM cases WHERE case_id = ?", cases).fetchone()
        try:
            self._require("cases", "case records")
            self._require_grid(grid_id, f"case {cases[0]}")
        except AccessError as exc:
            return str(exc)
        return None

    # -- the admin's reads -------------------------------------------------------------
    def audit_trail(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
                    since: pd.Timestamp | None = None, limit: int = 200, offset: int = 0) -> pd.DataFrame:
        """The audit trail, newest first, filtered (``actor`` and ``target`` match a prefix; ``action`` exactly).

        Returns
        -------
        DataFrame
            Columns ``seq, at, actor, action, target, detail, source``.
        """
        self._require("audit", "the audit trail")
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
        return self.con.execute(
            f'SELECT seq, "at", actor, action, target, detail, source FROM audit WHERE {" AND ".join(where)} '
            "ORDER BY seq DESC LIMIT ? OFFSET ?", [*params, max(1, min(limit, 10_000)), max(0, offset)]).df()

    def audit_actions(self) -> list[str]:
        self._require("audit", "the audit trail")
        return [r[0] for r in self.con.execute("SELECT DISTINCT action FROM audit ORDER BY action").fetchall()]

    def verify_audit(self) -> int | None:
        """:func:`twin.access.access.verify_audit`: the first broken row's number, or None."""
        self._require("audit", "the audit trail")
        return verify_audit(self.con)

    def users(self) -> list[dict]:
        self._require("users", "the users")
        return list_users(self.con)
