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
