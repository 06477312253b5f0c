"""The case loop: statuses, the transitions allowed between them, and the taxonomy of case kinds.

reported -> dispatched -> in_progress -> resolved -> evaluated -> closed, plus
rejected (from reported or dispatched) and reopened (after evaluation, then
dispatched again). Every transition is checked and written to ``case_events``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import duckdb
import pandas as pd

from twin.errors import InputError

CASE_STATUSES = ("reported", "dispatched", "in_progress", "resolved", "evaluated", "closed", "rejected", "reopened")
# The department still owes work on these; only they can be overdue.
OPEN_STATUSES = ("reported", "dispatched", "in_progress", "reopened")
CASE_TRANSITIONS = frozenset({
    (None, "reported"), ("reported", "dispatched"), ("reported", "rejected"),
    ("dispatched", "in_progress"), ("dispatched", "rejected"), ("in_progress", "resolved"),
    ("resolved", "evaluated"), ("evaluated", "closed"), ("evaluated", "reopened"),
    ("reopened", "dispatched"),
})


@lru_cache(maxsize=1)
def load_taxonomy() -> dict:
    """The default case taxonomy shipped with the product (``twin/taxonomy.json``).

    Returns
    -------
    dict
        ``categories`` (``code``, ``name``, ``name_en``, ``department``) and ``subcategories``
        (``code``, ``category``, ``name``, ``name_en``, ``deadline_hours``, ``ai``, ...).
    """
    return json.loads(resources.files("twin").joinpath("taxonomy.json").read_text(encoding="utf-8"))


def check_transition(from_status: str | None, to_status: str) -> None:
    """Raise :class:`InputError`, naming both statuses and the allowed ones, unless the move is allowed."""
    if (from_status, to_status) not in CASE_TRANSITIONS:
        allowed = sorted(t for f, t in CASE_TRANSITIONS if f == from_status)
        raise InputError(f"a case cannot go from {from_status!r} to {to_status!r}; from {from_status!r} it can go "
                         f"to {', '.join(allowed) or 'nowhere (it is final)'}.")


def record_transition(con: duckdb.DuckDBPyConnection, case_id: str, to_status: str, *, actor: str,
                      note: str | None = None, at: pd.Timestamp | None = None) -> dict:
    """Move a case to ``to_status`` and write the event (inside the caller's transaction).

    Returns
    -------
    dict
        The event: ``case_id``, ``at``, ``from_status``, ``to_status``, ``actor``, ``note``.
    """
    row = con.execute("SELECT status FROM cases WHERE case_id = ?", [case_id]).fetchone()
    if row is None:
        raise InputError(f"no case {case_id!r} in the store")
    if not actor:
        raise InputError(f"case {case_id}: a transition needs the actor who makes it")
    check_transition(row[0], to_status)
    at = pd.Timestamp(at) if at is not None else pd.Timestamp.now().floor("s")
    con.execute("UPDATE cases SET status = ?, updated_at = ? WHERE case_id = ?", [to_status, at, case_id])
    con.execute('INSERT INTO case_events (case_id, "at", from_status, to_status, actor, note) VALUES (?, ?, ?, ?, ?, ?)',
                [case_id, at, row[0], to_status, actor, note])
    return {"case_id": case_id, "at": at, "from_status": row[0], "to_status": to_status, "actor": actor, "note": note}


BUILDING_MATCH_M = 30.0  # a point outside every footprint goes to the nearest building this close


def subcategory(code: str) -> dict:
    """The taxonomy entry of a subcategory code, or an error that lists where to find the valid ones."""
    entry = next((s for s in load_taxonomy()["subcategories"] if s["code"] == code), None)
    if entry is None:
        sample = ", ".join(s["code"] for s in load_taxonomy()["subcategories"][:4])
        raise InputError(f"unknown case subcategory {code!r}; use a code of twin/taxonomy.json (e.g. {sample}).")
    return entry


def match_location(con: duckdb.DuckDBPyConnection, x: float, y: float) -> dict:
    """The building, micro-grid and responsible worker for a point in the district CRS (metres).

    The building is the one whose footprint holds the point, else the nearest within 30 m
    (else none). The micro-grid is the one in force that holds the point; a point in no
    micro-grid lies outside the district and is refused.

    Returns
    -------
    dict
        ``building_id`` (or None), ``distance_m`` to it, ``grid_id`` and ``worker``.
    """
    grid = con.execute("""SELECT grid_id, worker FROM grids WHERE level = 'micro' AND valid_to IS NULL
                          AND ST_Intersects(boundary, ST_Point(?, ?)) ORDER BY grid_id LIMIT 1""", [x, y]).fetchone()
    if grid is None:
        raise InputError(f"the point ({x:.2f}, {y:.2f}) lies outside every grid of the district; "
                         "check its coordinates (and their CRS).")
    reach = BUILDING_MATCH_M + 500.0  # label points lie inside footprints; no footprint here is 500 m across
    building = con.execute("""
        SELECT building_id, ST_Distance(footprint, ST_Point(?, ?)) AS d FROM buildings
        WHERE label_x BETWEEN ? AND ? AND label_y BETWEEN ? AND ? AND d <= ?
        ORDER BY d, building_id LIMIT 1""", [x, y, x - reach, x + reach, y - reach, y + reach,
                                             BUILDING_MATCH_M]).fetchone()
    return {"building_id": building[0] if building else None,
            "distance_m": round(float(building[1]), 2) if building else None,
            "grid_id": grid[0], "worker": grid[1]}


def create_case(con: duckdb.DuckDBPyConnection, *, subcategory_code: str, source: str, x: float, y: float,
                description: str | None = None, address: str | None = None, camera_id: str | None = None,
                actor: str = "intake", reported_at: pd.Timestamp | None = None, prefix: str = "C") -> dict:
    """Take in a case at a point: match it to its building, micro-grid and worker, set its deadline.

    Runs inside the caller's transaction; the case and its first event are written together.

    Returns
    -------
    dict
        ``case_id``, ``status`` ('reported'), ``category``, ``subcategory``, ``building_id``,
        ``grid_id``, ``worker``, ``reported_at``, ``due_at``.
    """
    kind = subcategory(subcategory_code)
    where = match_location(con, x, y)
    at = pd.Timestamp(reported_at) if reported_at is not None else pd.Timestamp.now().floor("s")
    due = at + pd.Timedelta(hours=float(kind["deadline_hours"]))
    day = f"{prefix}{at:%Y%m%d}-"
    last, = con.execute("SELECT max(case_id) FROM cases WHERE case_id LIKE ? || '%'", [day]).fetchone()
    number = int(last.rsplit("-", 1)[1]) + 1 if last else 1
    case_id = f"{day}{number:04d}"
    con.execute("""INSERT INTO cases (case_id, category, subcategory, source, status, description, address, location,
                                      building_id, grid_id, reported_grid_id, camera_id, reported_at, updated_at,
                                      due_at)
                   VALUES (?, ?, ?, ?, 'reported', ?, ?, ST_Point(?, ?), ?, ?, ?, ?, ?, ?, ?)""",
                [case_id, kind["category"], kind["code"], source, description, address, x, y, where["building_id"],
                 where["grid_id"], where["grid_id"], camera_id, at, at, due])
    con.execute('INSERT INTO case_events (case_id, "at", from_status, to_status, actor, note) '
                "VALUES (?, ?, NULL, 'reported', ?, ?)", [case_id, at, actor, f"assigned to {where['worker']}"])
    return {"case_id": case_id, "status": "reported", "category": kind["category"], "subcategory": kind["code"],
            **where, "reported_at": at, "due_at": due}
