"""The case loop: statuses, the transitions allowed between them, and the taxonomy of case kinds.

reported -> dispatched -> in_progress -> resolved -> evaluated -> closed, plus
rejected (from reported or dispatched) and reopened (after evaluation, then
dispatched again). In the field, a grid worker accepts a case (reported, dispatched or
reopened), goes on site and handles it (resolved), or hands it up (handed_up) with a reason;
a handed-up case is dispatched to a department by the duties list, or by hand with a reason.
A resolved case is evaluated by its reporter (satisfied, or reopened when not) or, after
three days without an answer, by default (:mod:`twin.cases.evaluations`).
Every transition is checked and written to ``case_events`` by :func:`record_transition`,
with its effects on the case (its worker, department and deadline; the reporter's question).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from twin.access.access import MIN_REASON, audit
from twin.store.clock import store_now
from twin.store.store import AttachedConnection, next_numbers
from twin.errors import N_, InputError
from twin.grids.grids import locate

CASE_STATUSES = ("reported", "dispatched", "in_progress", "resolved", "evaluated", "closed", "rejected", "reopened",
                 "accepted", "on_site", "handed_up")
# Someone still owes work on these (a worker, a department); only they can be overdue.
OPEN_STATUSES = ("reported", "dispatched", "in_progress", "reopened", "accepted", "on_site", "handed_up")
NUMBER_BLOCK = 64  # case numbers taken from a PostgreSQL store's sequence in one round trip
CASE_TRANSITIONS = frozenset({
    (None, "reported"), ("reported", "dispatched"), ("reported", "rejected"),
    ("dispatched", "in_progress"), ("dispatched", "rejected"), ("in_progress", "resolved"),
    ("resolved", "evaluated"), ("evaluated", "closed"), ("evaluated", "reopened"),
    ("reopened", "dispatched"),
    # the grid worker's steps
    ("reported", "accepted"), ("dispatched", "accepted"), ("reopened", "accepted"), ("accepted", "on_site"),
    ("on_site", "resolved"), ("accepted", "handed_up"), ("on_site", "handed_up"),
    # a department takes a handed-up case; the reporter evaluates a resolved one (not satisfied: reopened)
    ("handed_up", "dispatched"), ("resolved", "reopened"),
})
ASK_DAYS = 7  # a reporter's evaluation token answers for this long after the question is asked (the case resolved)


@lru_cache(maxsize=1)
def load_taxonomy() -> dict:
    """The default case taxonomy shipped with the product (``twin/cases/taxonomy.json``).

    Returns
    -------
    dict
        ``categories`` (``code``, ``name``, ``name_en``, ``department``) and ``subcategories``
        (``code``, ``category``, ``name``, ``name_en``, ``deadline_hours``, ``ai``, ...).
    """
    return json.loads(resources.files("twin.cases").joinpath("taxonomy.json").read_text(encoding="utf-8"))


def check_transition(from_status: str | None, to_status: str) -> None:
    """Raise :class:`InputError`, naming both statuses and the allowed ones, unless the move is allowed."""
    if (from_status, to_status) not in CASE_TRANSITIONS:
        allowed = sorted(t for f, t in CASE_TRANSITIONS if f == from_status)
        if not allowed:
            raise InputError(N_("a case cannot go from {from_status!r} to {to_status!r}; {from_status!r} is "
                                "final."),
                             from_status=from_status, to_status=to_status)
        raise InputError(N_("a case cannot go from {from_status!r} to {to_status!r}; from {from_status!r} it can "
                            "go to {allowed_statuses}."), from_status=from_status, to_status=to_status,
                         allowed_statuses=allowed)


def next_statuses(status: str | None) -> list[str]:
    """The statuses a case in ``status`` may move to, in loop order."""
    return [t for t in CASE_STATUSES if (status, t) in CASE_TRANSITIONS]


def record_transition(con: duckdb.DuckDBPyConnection, case_id: str, to_status: str, *, actor: str,
                      note: str | None = None, at: pd.Timestamp | None = None, department: str | None = None) -> dict:
    """Move a case to ``to_status`` and write the event (inside the caller's transaction), with the step's effects.

    The effects, whoever takes the step:

    - **accepted**: ``actor`` becomes the case's ``assigned_worker``.
    - **dispatched** to a department: a handed-up case goes to ``department``, or, when None, to the one the
      duties list names for its kind (:func:`duty_for`); a reopened case that a department handled goes back to
      it. A department other than the list's is dispatching *by hand* and needs ``note`` as the reason (at least
      ``MIN_REASON`` characters). ``deadline`` is then ``at`` plus the duty's hours (the kind's taxonomy hours
      without a duty). A case reported and dispatched with no ``department`` stays with its grid, as before.
    - **resolved**: the reporter is asked (their unused evaluation tokens answer for ``ASK_DAYS`` from ``at``).

    Returns
    -------
    dict
        The event: ``case_id``, ``at``, ``from_status``, ``to_status``, ``actor``, ``note``; and, dispatched to a
        department, ``department`` and ``deadline``.

    Raises
    ------
    InputError
        For no such case, no actor, a step the loop does not allow, an unknown department, a handed-up case whose
        kind has no duty and no department given, or a department by hand without a reason.
    """
    row = con.execute("SELECT status, subcategory, category, department FROM cases WHERE case_id = ?",
                      [case_id]).fetchone()
    if row is None:
        raise InputError(N_("no case {case_id!r} in the store"), case_id=case_id)
    if not actor:
        raise InputError(N_("case {case_id}: a transition needs the actor who makes it"), case_id=case_id)
    from_status, kind, category, had_department = row
    check_transition(from_status, to_status)
    at = pd.Timestamp(at) if at is not None else not_before_last_event(con, case_id, store_now(con))
    event = {"case_id": case_id, "at": at, "from_status": from_status, "to_status": to_status, "actor": actor,
             "note": note}
    routed = None
    if to_status == "dispatched" and (department is not None or from_status == "handed_up" or had_department):
        routed = _route(con, case_id, kind=kind, category=category, asked=department,
                        current=None if from_status == "handed_up" else had_department, note=note)
    changes = {"status": to_status, "updated_at": at}
    if to_status == "accepted":
        changes["assigned_worker"] = actor
    if routed is not None:
        changes["department"], hours, name = routed
        changes["deadline"] = at + pd.Timedelta(hours=hours)
        event.update(department=changes["department"], deadline=changes["deadline"])
        event["note"] = note = f"{name}: {note}" if note else name  # the history names where it went
    con.execute(f"UPDATE cases SET {', '.join(f'{c} = ?' for c in changes)} WHERE case_id = ?",
                [*changes.values(), case_id])
    if to_status == "resolved":
        con.execute("UPDATE evaluation_tokens SET expires_at = ? WHERE case_id = ? AND used_at IS NULL",
                    [at + pd.Timedelta(days=ASK_DAYS), case_id])
    con.execute('INSERT INTO case_events (case_id, "at", from_status, to_status, actor, note) VALUES (?, ?, ?, ?, ?, ?)',
                [case_id, at, from_status, to_status, actor, note])
    return event


def not_before_last_event(con: duckdb.DuckDBPyConnection, case_id: str, at: pd.Timestamp) -> pd.Timestamp:
    """``at``, or the case's last event's time when that is later: a step stamped now (to the second) after one
    stamped to the microsecond in the same second (a worker's, from the phone) keeps the case's history in order."""
    last, = con.execute('SELECT max("at") FROM case_events WHERE case_id = ?', [case_id]).fetchone()
    return max(pd.Timestamp(at), pd.Timestamp(last)) if last is not None else pd.Timestamp(at)


def duty_for(con: duckdb.DuckDBPyConnection, kind: str) -> dict | None:
    """The duties list's entry for a subcategory code: its own row, else its category's; None without either.

    Returns
    -------
    dict or None
        ``kind`` (the row's: the subcategory or its category), ``department_id``, ``deadline_hours`` and
        ``escalation_hours``.
    """
    category = kind.split(".", 1)[0]
    row = con.execute("SELECT kind, department_id, deadline_hours, escalation_hours FROM duties WHERE kind IN (?, ?) "
                      "ORDER BY kind = ? DESC LIMIT 1", [kind, category, kind]).fetchall()
    return dict(zip(("kind", "department_id", "deadline_hours", "escalation_hours"), row[0])) if row else None


def _route(con: duckdb.DuckDBPyConnection, case_id: str, *, kind: str, category: str, asked: str | None,
           current: str | None, note: str | None) -> tuple[str, float, str]:
    """The department a dispatched case goes to, the hours it has, and its name: see :func:`record_transition`."""
    duty = duty_for(con, kind)
    listed = duty["department_id"] if duty else None
    department = asked or current or listed
    if department is None:
        raise InputError(N_("case {case_id}: the duties list names no department for {kind!r} (nor its category "
                            "{category!r}); dispatch it by hand to a department with a reason, or add the kind to "
                            "the list (twin duties import)."), case_id=case_id, kind=kind, category=category)
    named = con.execute("SELECT name FROM departments WHERE department_id = ?", [department]).fetchall()
    if not named:
        raise InputError(N_("case {case_id}: no department {department!r}; the departments are those of the duties "
                            "list (twin duties export lists them)."), case_id=case_id, department=department)
    if asked is not None and asked != listed and len((note or "").strip()) < MIN_REASON:
        raise InputError(N_("case {case_id}: dispatching it by hand to {department!r} (the duties list says "
                            "{listed!r}) needs a reason of at least {n} characters in the note; it goes into the "
                            "case's history."), case_id=case_id, department=department, listed=listed, n=MIN_REASON)
    hours = duty["deadline_hours"] if duty else subcategory(kind)["deadline_hours"]
    return department, float(hours), named[0][0]


def assign_worker(con: duckdb.DuckDBPyConnection, case_id: str, worker: str, *, actor: str, reason: str,
                  source: str | None = None) -> dict:
    """Give a case to another grid worker, for a stated reason (inside the caller's transaction); audited.

    The case keeps its status; its history gets an event from and to that status naming both workers and
    the reason, and the audit trail a ``case.assign`` row.

    Parameters
    ----------
    worker : str
        The user name of an enabled user of role ``worker``.
    reason : str
        Why, at least ``MIN_REASON`` characters.

    Returns
    -------
    dict
        ``case_id``, ``worker`` (also ``to_worker``), ``previous`` (the worker before, or None; also
        ``from_worker``), ``at``, ``status``, ``actor``, ``reason``.

    Raises
    ------
    InputError
        For no such case, a closed or rejected one, no such worker, or a missing reason.
    """
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON:
        raise InputError(N_("case {case_id}: reassigning it needs a reason of at least {n} characters; it goes into "
                            "the case's history and the audit trail."), case_id=case_id, n=MIN_REASON)
    row = con.execute("SELECT status, assigned_worker FROM cases WHERE case_id = ?", [case_id]).fetchone()
    if row is None:
        raise InputError(N_("no case {case_id!r} in the store"), case_id=case_id)
    status, previous = row
    if status not in OPEN_STATUSES or status == "handed_up":
        raise InputError(N_("case {case_id} is {status!r}: only a case a worker still owes work on can go to "
                            "another worker."), case_id=case_id, status=status)
    user = con.execute("SELECT role, disabled FROM users WHERE username = ?", [worker]).fetchone()
    if user is None or user[0] != "worker" or user[1]:
        raise InputError(N_("case {case_id}: {worker!r} is not an enabled grid worker (a user of role worker); "
                            "twin users list shows them."), case_id=case_id, worker=worker)
    if worker == previous:
        raise InputError(N_("case {case_id} is {worker}'s already."), case_id=case_id, worker=worker)
    at = store_now(con)
    note = f"reassigned from {previous or '-'} to {worker}: {reason}"
    con.execute("UPDATE cases SET assigned_worker = ?, updated_at = ? WHERE case_id = ?", [worker, at, case_id])
    con.execute('INSERT INTO case_events (case_id, "at", from_status, to_status, actor, note) '
                "VALUES (?, ?, ?, ?, ?, ?)", [case_id, at, status, status, actor, note])
    audit(con, actor=actor, action="case.assign", target=case_id, source=source,
          detail={"worker": worker, "previous": previous, "reason": reason})
    return {"case_id": case_id, "worker": worker, "previous": previous, "at": at, "status": status,
            "from_worker": previous, "to_worker": worker, "actor": actor, "reason": reason}


BUILDING_MATCH_M = 30.0  # a point outside every footprint goes to the nearest building this close


def subcategory(code: str) -> dict:
    """The taxonomy entry of a subcategory code, or an error that lists where to find the valid ones."""
    entry = next((s for s in load_taxonomy()["subcategories"] if s["code"] == code), None)
    if entry is None:
        sample = ", ".join(s["code"] for s in load_taxonomy()["subcategories"][:4])
        raise InputError(f"unknown case subcategory {code!r}; use a code of twin/cases/taxonomy.json (e.g. {sample}).")
    return entry


def match_location(con: duckdb.DuckDBPyConnection, x: float, y: float) -> dict:
    """The building, micro-grid and responsible worker for a point in the district CRS (metres).

    The building is the one whose footprint holds the point, else the nearest within 30 m
    (else none). The micro-grid is the one in force that holds the point, by
    :func:`twin.grids.grids.locate`'s rule (on a shared edge, the smallest id); a point in no
    micro-grid lies outside the district and is refused. :class:`LocationMatcher` answers
    the same from memory, for intake under load.

    Returns
    -------
    dict
        ``building_id`` (or None), ``distance_m`` to it, ``grid_id`` and ``worker``.
    """
    # The store finds the grids whose extent holds the point; locate decides which holds it.
    near = con.execute("""SELECT grid_id, worker, ST_AsWKB(boundary) FROM grids WHERE level = 'micro'
                          AND valid_to IS NULL AND ST_Intersects_Extent(boundary, ST_Point(?, ?))""",
                       [x, y]).fetchall()
    grid_id = locate([[x, y]], [g for g, _, _ in near], shapely.from_wkb([bytes(w) for _, _, w in near]))[0]
    if grid_id is None:
        raise _outside(x, y)
    reach = LocationMatcher.REACH_M
    building = con.execute("""
        SELECT building_id, ST_Distance(footprint, ST_Point(?, ?)) AS d FROM buildings
        WHERE label_x BETWEEN ? AND ? AND label_y BETWEEN ? AND ? AND d <= ?
        ORDER BY d, building_id LIMIT 1""", [x, y, x - reach, x + reach, y - reach, y + reach,
                                             BUILDING_MATCH_M]).fetchone()
    return {"building_id": building[0] if building else None,
            "distance_m": round(float(building[1]), 2) if building else None,
            "grid_id": grid_id, "worker": next(w for g, w, _ in near if g == grid_id)}


def _outside(x: float, y: float) -> InputError:
    return InputError(N_("the point ({x:.2f}, {y:.2f}) lies outside every grid of the district; "
                         "check its coordinates (and their CRS)."), x=x, y=y)


class LocationMatcher:
    """:func:`match_location` from memory, a square of the district at a time.

    The first point to fall in a square of ``CELL_M`` metres reads from the store the micro-grids in force whose
    extent meets the square and the footprints that may lie within ``BUILDING_MATCH_M`` of it (by
    :func:`match_location`'s reach), into R-trees; a match there then takes tens of microseconds instead of
    milliseconds. The ``MAX_CELLS`` squares used last are kept: a district is held whole after its first
    cases, a city's million footprints never are (about 1 MB a square). Make a new one after grids or
    buildings change.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A cursor of the store, used by the matching thread alone (the writer's).
    """

    CELL_M = 2000.0
    MAX_CELLS = 32
    REACH_M = BUILDING_MATCH_M + 500.0  # label points lie inside footprints; no footprint here is 500 m across

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._cells: OrderedDict[tuple[int, int], _Cell] = OrderedDict()

    def match(self, x: float, y: float) -> dict:
        """As :func:`match_location`."""
        cell = self._cell(x, y)
        grid_id = locate([[x, y]], cell.grid_ids, cell.boundaries, tree=cell.grids)[0]
        if grid_id is None:
            raise _outside(x, y)
        point = shapely.Point(x, y)
        near = cell.buildings.query(point, predicate="dwithin", distance=BUILDING_MATCH_M)
        found = {"building_id": None, "distance_m": None}
        if len(near):
            d = shapely.distance(cell.footprints[near], point)
            best = min(range(len(near)), key=lambda k: (d[k], cell.building_ids[near[k]]))
            found = {"building_id": cell.building_ids[near[best]], "distance_m": round(float(d[best]), 2)}
        return {**found, "grid_id": grid_id, "worker": cell.workers[grid_id]}

    def _cell(self, x: float, y: float) -> _Cell:
        key = (int(np.floor(x / self.CELL_M)), int(np.floor(y / self.CELL_M)))
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = self._read(*key)
            if len(self._cells) > self.MAX_CELLS:
                self._cells.popitem(last=False)
        self._cells.move_to_end(key)
        return cell

    def _read(self, i: int, j: int) -> _Cell:
        x0, y0 = i * self.CELL_M, j * self.CELL_M
        x1, y1 = x0 + self.CELL_M, y0 + self.CELL_M
        grids = self._con.execute(
            "SELECT grid_id, worker, ST_AsWKB(boundary) FROM grids WHERE level = 'micro' AND valid_to IS NULL "
            "AND ST_Intersects_Extent(boundary, ST_MakeEnvelope(?, ?, ?, ?)) ORDER BY grid_id",
            [x0, y0, x1, y1]).fetchall()
        r = self.REACH_M
        buildings = self._con.execute(
            "SELECT building_id, ST_AsWKB(footprint) FROM buildings WHERE label_x BETWEEN ? AND ? "
            "AND label_y BETWEEN ? AND ? ORDER BY building_id", [x0 - r, x1 + r, y0 - r, y1 + r]).fetchall()
        boundaries = shapely.from_wkb([bytes(g[2]) for g in grids]) if grids else np.array([], dtype=object)
        footprints = shapely.from_wkb([bytes(b[1]) for b in buildings]) if buildings else np.array([], dtype=object)
        return _Cell(grid_ids=np.array([g[0] for g in grids], dtype=object), workers={g[0]: g[1] for g in grids},
                     boundaries=boundaries, grids=shapely.STRtree(boundaries),
                     building_ids=np.array([b[0] for b in buildings], dtype=object), footprints=footprints,
                     buildings=shapely.STRtree(footprints))


@dataclass(frozen=True)
class _Cell:
    """What :class:`LocationMatcher` holds for one square."""

    grid_ids: np.ndarray
    workers: dict
    boundaries: np.ndarray
    grids: shapely.STRtree
    building_ids: np.ndarray
    footprints: np.ndarray
    buildings: shapely.STRtree


class CaseNumbers:
    """Case ids ``{prefix}{YYYYMMDD}-NNNN``.

    In a DuckDB file, numbered in memory after the store's last one of the day: only for the one process that
    writes the store (``twin serve`` holds its write lock); numbers are read from the store once per day and
    prefix, then counted here. In PostgreSQL, where several processes write, the number comes from the store's
    sequence (taken :data:`NUMBER_BLOCK` at a time): unique across processes and days, with gaps.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._block: list[int] = []

    def next(self, con: duckdb.DuckDBPyConnection, at: pd.Timestamp, prefix: str = "C") -> str:
        day = f"{prefix}{at:%Y%m%d}-"
        if isinstance(con, AttachedConnection):
            if not self._block:
                self._block = next_numbers(con, "case_numbers", NUMBER_BLOCK)[::-1]
            return f"{day}{self._block.pop():04d}"
        if day not in self._last:
            self._last[day] = _last_number(con, day)
        self._last[day] += 1
        return f"{day}{self._last[day]:04d}"

    def reset(self) -> None:
        """Read the numbers from the store again (after a rolled-back transaction)."""
        self._last.clear()


def _last_number(con: duckdb.DuckDBPyConnection, day: str) -> int:
    # Numbers grow past 9999, so the largest is found as a number, not as text.
    last, = con.execute("SELECT max(TRY_CAST(substr(case_id, length(?) + 1) AS INTEGER)) FROM cases "
                        "WHERE starts_with(case_id, ?)", [day, day]).fetchone()
    return int(last) if last is not None else 0


CASE_COLUMNS = ("case_id", "category", "subcategory", "source", "status", "description", "address", "x", "y",
                "building_id", "grid_id", "reported_grid_id", "camera_id", "reported_at", "updated_at", "due_at",
                "media_url", "attributes")


def new_case(*, subcategory_code: str, source: str, x: float, y: float, where: dict, case_id: str,
             description: str | None = None, address: str | None = None, camera_id: str | None = None,
             media_url: str | None = None, actor: str = "intake", reported_at: pd.Timestamp | None = None,
             attributes: str | None = None) -> dict:
    """A case record (``CASE_COLUMNS`` plus ``worker`` and the first event's ``actor``), not yet written.

    ``where`` is the point's match (:func:`match_location`); the deadline comes from the subcategory.
    """
    kind = subcategory(subcategory_code)
    at = pd.Timestamp(reported_at) if reported_at is not None else pd.Timestamp.now().floor("s")
    return {"case_id": case_id, "category": kind["category"], "subcategory": kind["code"], "source": source,
            "status": "reported", "description": description, "address": address, "x": float(x), "y": float(y),
            "building_id": where["building_id"], "distance_m": where["distance_m"], "grid_id": where["grid_id"],
            "reported_grid_id": where["grid_id"], "worker": where["worker"], "camera_id": camera_id,
            "reported_at": at, "updated_at": at, "due_at": at + pd.Timedelta(hours=float(kind["deadline_hours"])),
            "media_url": media_url, "attributes": attributes, "actor": actor}


def write_cases(con: duckdb.DuckDBPyConnection, cases: list[dict]) -> None:
    """Insert new cases and their first events, in two statements (inside the caller's transaction), and the
    evaluation tokens of those that carry a ``token_hash``."""
    if not cases:
        return
    # An Arrow table: far cheaper to build and to scan than a DataFrame for a few rows.
    types = {"x": pa.float64(), "y": pa.float64(), "reported_at": pa.timestamp("us"),
             "updated_at": pa.timestamp("us"), "due_at": pa.timestamp("us")}
    frame = pa.table({c: pa.array([case[c] for case in cases], type=types.get(c, pa.string()))
                      for c in (*CASE_COLUMNS, "worker", "actor")})
    con.register("incoming_cases", frame)
    try:
        names = ", ".join(CASE_COLUMNS).replace("x, y", "location")
        values = ", ".join(CASE_COLUMNS).replace("x, y", "ST_Point(x, y)")
        con.execute(f"INSERT INTO cases ({names}) SELECT {values} FROM incoming_cases")
        con.execute('INSERT INTO case_events (case_id, "at", from_status, to_status, actor, note) '
                    "SELECT case_id, reported_at, NULL, 'reported', actor, 'assigned to ' || coalesce(worker, '?') "
                    "FROM incoming_cases")
    finally:
        con.unregister("incoming_cases")
    # The reporters' evaluation tokens (twin.cases.evaluations), as hashes: Open311 intake gives each its own.
    tokens = [(c["token_hash"], c["case_id"], c["reported_at"]) for c in cases if c.get("token_hash")]
    if tokens:
        con.execute("INSERT INTO evaluation_tokens (token_hash, case_id, issued_at) VALUES "  # one statement: see
                    + ", ".join(["(?, ?, ?)"] * len(tokens)), [v for row in tokens for v in row])  # Store.set_meta


def create_case(con: duckdb.DuckDBPyConnection, *, subcategory_code: str, source: str, x: float, y: float,
                prefix: str = "C", matcher: LocationMatcher | None = None, numbers: CaseNumbers | None = None,
                write: bool = True, **details) -> dict:
    """Take in a case at a point: match it to its building, micro-grid and worker, set its deadline.

    Runs inside the caller's transaction; the case and its first event are written together.
    ``matcher`` and ``numbers`` make intake under load fast (without them the store answers);
    with ``write=False`` the record is only returned, for :func:`write_cases` to write in a batch.
    ``details`` are :func:`new_case`'s optional fields (description, address, camera_id,
    media_url, attributes, actor, reported_at).

    Returns
    -------
    dict
        The case record of :func:`new_case`: ``case_id``, ``status`` ('reported'), ``category``,
        ``subcategory``, ``building_id``, ``grid_id``, ``worker``, ``reported_at``, ``due_at``, ``x``, ``y``...
    """
    subcategory(subcategory_code)  # an unknown code is refused before anything else
    where = matcher.match(x, y) if matcher is not None else match_location(con, x, y)
    at = pd.Timestamp(details.pop("reported_at", None) or store_now(con))
    case_id = (numbers or CaseNumbers()).next(con, at, prefix)
    case = new_case(subcategory_code=subcategory_code, source=source, x=x, y=y, where=where, case_id=case_id,
                    reported_at=at, **details)
    if write:
        write_cases(con, [case])
    return case
