"""API keys for the intake routes (Open311, detections): one per client, stored hashed, revocable."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import duckdb

from twin.errors import InputError
from twin.store.clock import store_now

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _digest(key: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def add_key(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """Make a new key for client ``name`` and store its hash; the key itself is shown only now."""
    if not NAME_PATTERN.match(name or ""):
        raise InputError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-'.")
    if con.execute("SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL", [name]).fetchone():
        raise InputError(f"there is already a key named {name!r}; revoke it first or pick another name.")
    key = secrets.token_urlsafe(32)
    con.execute("INSERT OR REPLACE INTO api_keys VALUES (?, ?, ?, NULL)",
                [name, _digest(key), store_now(con)])
    return key


def revoke_key(con: duckdb.DuckDBPyConnection, name: str) -> None:
    # Asked first: DuckDB updates PostgreSQL tables without RETURNING.
    if not con.execute("SELECT count(*) FROM api_keys WHERE name = ? AND revoked_at IS NULL", [name]).fetchall()[0][0]:
        raise InputError(f"no active key named {name!r}.")
    con.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", [store_now(con), name])


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
