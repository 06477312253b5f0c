"""API keys for the intake routes (Open311, detections): one per client, stored hashed, revocable.

Each request a key makes is counted where the server checks the key (:class:`KeyUse`, in
memory), and the counts go into the ``key_use`` table (a row per key and day, with the
last use) every few seconds, in one statement through the server's writer; the admin
screen and ``twin keys list`` read them from there.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd

from twin.access.access import audit
from twin.errors import InputError
from twin.store.clock import now_in, store_now

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _digest(key: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def add_key(con: duckdb.DuckDBPyConnection, name: str, *, actor: str = "admin", source: str | None = None) -> str:
    """Make a new key for client ``name`` and store its hash; the key itself is shown only now. Audited as
    ``key.add``."""
    if not NAME_PATTERN.match(name or ""):
        raise InputError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-'.")
    if con.execute("SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL", [name]).fetchone():
        raise InputError(f"there is already a key named {name!r}; revoke it first or pick another name.")
    key = secrets.token_urlsafe(32)
    con.execute("INSERT OR REPLACE INTO api_keys VALUES (?, ?, ?, NULL)",
                [name, _digest(key), store_now(con)])
    audit(con, actor=actor, action="key.add", target=name, source=source)
    return key


def revoke_key(con: duckdb.DuckDBPyConnection, name: str, *, actor: str = "admin", source: str | None = None) -> None:
    """Stop accepting client ``name``'s key at once (the server forgets it within ``KEY_CACHE_S``); audited."""
    # Asked first: DuckDB updates PostgreSQL tables without RETURNING.
    if not con.execute("SELECT count(*) FROM api_keys WHERE name = ? AND revoked_at IS NULL", [name]).fetchall()[0][0]:
        raise InputError(f"no active key named {name!r}.")
    con.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", [store_now(con), name])
    audit(con, actor=actor, action="key.revoke", target=name, source=source)


def list_keys(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every key (never its hash): name, made, revoked (None while active), last used and requests today.

    "Today" is the store's day (``meta.timezone``); uses not yet flushed by a running
    server (:class:`KeyUse`, a few seconds) are not counted yet.
    """
    today = store_now(con).date()
    rows = con.execute(
        "SELECT k.name, k.created_at, k.revoked_at, max(u.last_used), "
        "coalesce(sum(u.requests) FILTER (WHERE u.day = ?), 0) FROM api_keys k LEFT JOIN key_use u USING (name) "
        "GROUP BY k.name, k.created_at, k.revoked_at ORDER BY k.revoked_at IS NOT NULL, k.name", [today]).fetchall()
    return [{"name": n, "created_at": _text(c), "revoked_at": _text(r), "last_used": _text(u), "requests_today": int(t)}
            for n, c, r, u, t in rows]


def _text(stamp: object) -> str | None:
    return None if stamp is None else pd.Timestamp(stamp).isoformat(sep=" ")


class KeyUse:
    """Requests per client and day, counted in memory (any thread) until :meth:`take` hands them to a writer.

    Parameters
    ----------
    zone : ZoneInfo
        The store's zone: a request's day and time are the store's.
    """

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, object], list] = {}

    def note(self, client: str | None) -> str | None:
        """Count one request of ``client`` (None, no known key, counts nothing); returns ``client``."""
        if client is not None:
            at = now_in(self._zone)
            with self._lock:
                tally = self._pending.setdefault((client, at.date()), [0, at])
                tally[0] += 1
                tally[1] = at
        return client

    def take(self) -> list[tuple[str, object, int, pd.Timestamp]]:
        """The counts since the last take, as ``(name, day, requests, last_used)`` rows; the tally starts over."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [(name, day, count, last) for (name, day), (count, last) in pending.items()]

    def give_back(self, rows: list[tuple[str, object, int, pd.Timestamp]]) -> None:
        """Count again what :meth:`take` handed out and could not be written (the store was out of reach)."""
        with self._lock:
            for name, day, count, last in rows:
                tally = self._pending.setdefault((name, day), [0, last])
                tally[0] += count
                tally[1] = max(tally[1], last)


def record_key_use(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> int:
    """Add :meth:`KeyUse.take`'s rows to ``key_use`` (inside the caller's transaction); the number of rows."""
    if rows:
        con.executemany("INSERT INTO key_use VALUES (?, ?, ?, ?) ON CONFLICT (name, day) DO UPDATE SET "
                        "requests = key_use.requests + excluded.requests, "
                        "last_used = greatest(key_use.last_used, excluded.last_used)", rows)
    return len(rows)


def client_for(con: duckdb.DuckDBPyConnection, key: str | None) -> str | None:
    """The client name a key belongs to, or None for a missing, unknown or revoked key.

    Anything but text (a number or a list from a JSON body) and text UTF-8 cannot carry
    (a lone surrogate from a JSON escape) is no key either.
    """
    if not key or not isinstance(key, str):
        return None
    try:
        digest = _digest(key)
    except UnicodeEncodeError:
        return None
    for name, stored in con.execute("SELECT name, key_hash FROM api_keys WHERE revoked_at IS NULL").fetchall():
        if hmac.compare_digest(stored, digest):
            return name
    return None
