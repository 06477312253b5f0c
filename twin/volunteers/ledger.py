"""The points ledger: one row per credit or spend, with its reason, chained by SHA-256 as the audit trail is.

A resident's balance is the sum of their rows, never a stored number that could drift. A spend that would take a
balance below zero is refused before anything is written. The chain runs over every resident's rows in order
(``seq``): an edited, inserted or deleted row breaks it at that row (:func:`verify_ledger`). On a PostgreSQL store
two processes that read the same head both try the same ``seq``; the second one's transaction fails on the key
and runs again on the new head (``twin.cases.live.CONFLICTS``), so the chain stays one line and a balance is
checked against every spend committed before.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import pandas as pd

from twin.access.access import GENESIS
from twin.errors import N_, InputError, check_choice
from twin.store.clock import store_now
from twin.store.store import newest_row
from twin.store.schema import POINTS_REASONS

MAX_AMOUNT = 100_000  # points in one row


class NotEnoughPoints(InputError):
    """A spend larger than the resident's balance."""


def _row_hash(prev_hash: str, seq: int, at: str, resident_id: str, amount: int, reason: str, ref: str | None,
              actor: str) -> str:
    payload = json.dumps([prev_hash, seq, at, resident_id, amount, reason, ref, actor], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def balance(con: duckdb.DuckDBPyConnection, resident_id: str) -> int:
    """The resident's points: the sum of their ledger rows (0 without any)."""
    return int(con.execute("SELECT coalesce(sum(amount), 0) FROM points_ledger WHERE resident_id = ?",
                           [resident_id]).fetchall()[0][0])


def append(con: duckdb.DuckDBPyConnection, *, resident_id: str, amount: int, reason: str, ref: str | None,
           actor: str, at: pd.Timestamp | None = None) -> dict:
    """Append one credit (``amount`` > 0) or spend (< 0) to the ledger, inside the caller's transaction.

    Parameters
    ----------
    resident_id : str
        Whose points.
    amount : int
        Points, non-zero, at most ``MAX_AMOUNT`` either way.
    reason : {'task', 'report', 'redeem'}
        See ``twin.store.schema.POINTS_REASONS``.
    ref : str or None
        The task, case or redemption the row is for.
    actor : str
        Who credited (the confirming worker) or spent (the resident).

    Returns
    -------
    dict
        ``seq``, ``at``, ``amount``, ``balance`` (after this row).

    Raises
    ------
    NotEnoughPoints
        A spend over the balance (nothing is written).
    """
    check_choice("reason", reason, POINTS_REASONS)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_AMOUNT:
        raise InputError(N_("points {amount!r}: expected a whole number of points, not 0, at most {most} either way."),
                         amount=amount, most=MAX_AMOUNT)
    before = balance(con, resident_id)
    if before + amount < 0:
        raise NotEnoughPoints(N_("{points} points are needed and the balance is {balance}; nothing was spent. Earn "
                                 "more with a task first."), points=-amount, balance=before)
    last = newest_row(con, "points_ledger", "seq, hash")
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = pd.Timestamp(at) if at is not None else store_now(con, unit="us")
    digest = _row_hash(prev, seq, at.isoformat(), resident_id, amount, reason, ref, actor)
    con.execute('INSERT INTO points_ledger (seq, "at", resident_id, amount, reason, ref, actor, prev_hash, hash) '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [seq, at, resident_id, amount, reason, ref, actor, prev, digest])
    return {"seq": seq, "at": at, "amount": amount, "balance": before + amount}


def entries(con: duckdb.DuckDBPyConnection, resident_id: str, *, limit: int = 100) -> list[dict]:
    """The resident's ledger rows, newest first: ``seq``, ``at``, ``amount``, ``reason``, ``ref``."""
    rows = con.execute('SELECT seq, "at", amount, reason, ref FROM points_ledger WHERE resident_id = ? '
                       "ORDER BY seq DESC LIMIT ?", [resident_id, int(limit)]).fetchall()
    return [{"seq": s, "at": pd.Timestamp(a), "amount": int(n), "reason": r, "ref": f} for s, a, n, r, f in rows]


def verify_ledger(con: duckdb.DuckDBPyConnection) -> int | None:
    """The ``seq`` of the first row whose content or link breaks the chain, or whose resident's running balance
    goes below zero there; None when the whole ledger holds."""
    prev, expected = GENESIS, 1
    running: dict[str, int] = {}
    for seq, at, resident_id, amount, reason, ref, actor, prev_hash, digest in con.execute(
            'SELECT seq, "at", resident_id, amount, reason, ref, actor, prev_hash, hash FROM points_ledger '
            "ORDER BY seq").fetchall():
        if seq != expected or prev_hash != prev or digest != _row_hash(
                prev, seq, pd.Timestamp(at).isoformat(), resident_id, amount, reason, ref, actor):
            return seq
        running[resident_id] = running.get(resident_id, 0) + amount
        if running[resident_id] < 0:
            return seq
        prev, expected = digest, seq + 1
    return None
