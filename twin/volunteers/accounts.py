"""Accounts of the volunteer scheme: residents (role ``resident``, linked to a resident record) and merchants
(role ``merchant``, linked to a ``merchants`` row).

The community's operator makes a resident's account from their resident record and gets a one-time code (shown
once, kept as its SHA-256, valid :data:`CODE_DAYS` days); the resident sets their own password with it on the
phone page (``/v/activate``). Nothing is sent by SMS. Until then the account's password is a random one nobody
knows. A merchant's account is made with a password shown once, as ``twin users add`` does.
"""

from __future__ import annotations

import hashlib
import re
import secrets

import duckdb
import pandas as pd

from twin.access.access import Principal, check_new_username, _check_password, audit, generate_password, hash_password
from twin.access.policy import Gate
from twin.errors import N_, AccessError, InputError
from twin.store.clock import store_now

CODE_DAYS = 7
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud or typed from paper
CODE_LENGTH = 10  # about 50 bits
MERCHANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CODE_REFUSED = N_("wrong account or code, or the code was used or has expired; ask your community for a new one.")


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def create_resident_account(con: duckdb.DuckDBPyConnection, resident_id: str, *, username: str | None = None,
                            actor: str, source: str | None = None) -> dict:
    """Make a resident's account (a user of role resident linked to ``resident_id``) and its one-time code.

    A resident who has an account gets a new code instead (the old one stops working), for a lost one.

    Returns
    -------
    dict
        ``username``, ``resident_id``, ``code`` (shown once), ``expires_at``, ``new`` (False: a new code only).
    """
    row = con.execute("SELECT name FROM residents WHERE resident_id = ?", [resident_id]).fetchall()
    if not row:
        raise InputError(N_("no resident {resident_id!r} in the store; the account is made from a resident record."),
                         resident_id=resident_id)
    have = con.execute("SELECT username FROM resident_accounts WHERE resident_id = ?", [resident_id]).fetchall()
    now = store_now(con)
    code = new_code()
    expires = now + pd.Timedelta(days=CODE_DAYS)
    if have:
        username = have[0][0]
        con.execute("UPDATE resident_accounts SET code_hash = ?, code_expires_at = ? WHERE username = ?",
                    [_code_hash(code), expires, username])
        audit(con, actor=actor, action="volunteer.code", target=username, source=source,
              detail={"resident_id": resident_id})
        return {"username": username, "resident_id": resident_id, "code": code, "expires_at": expires, "new": False}
    username = username or f"r{resident_id.lower()}"
    check_new_username(con, username)
    con.execute("INSERT INTO users (username, password_hash, role, grids, disabled, created_at, lang) "
                "VALUES (?, ?, 'resident', ?, false, ?, 'zh')",
                [username, hash_password(secrets.token_urlsafe(24)), [], now])
    con.execute("INSERT INTO resident_accounts (username, resident_id, created_at, created_by, code_hash, "
                "code_expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                [username, resident_id, now, actor, _code_hash(code), expires])
    audit(con, actor=actor, action="volunteer.account", target=username, source=source,
          detail={"resident_id": resident_id})
    return {"username": username, "resident_id": resident_id, "code": code, "expires_at": expires, "new": True}


def resident_account(gate: Gate, resident_id: str) -> dict | None:
    """Whether a resident the gate's principal may see (:meth:`Gate.check_resident`, refused and audited otherwise)
    has an account: None, or ``username``, ``activated`` (bool), ``code_expires_at`` (a code waiting, or None)."""
    gate.check_resident(resident_id)
    row = gate.con.execute("SELECT username, activated_at, code_expires_at FROM resident_accounts "
                           "WHERE resident_id = ?", [resident_id]).fetchall()
    if not row:
        return None
    username, activated, expires = row[0]
    return {"username": username, "activated": activated is not None, "code_expires_at": expires}


def issue_resident_account(gate: Gate, resident_id: str) -> dict:
    """:func:`create_resident_account` asked for by a signed-in user (the operator's building card), through the gate
    on the writing connection: only one who may see the resident's record (an operator or grid worker of their grids,
    :meth:`Gate.check_resident`; a refusal is audited as ``access.refused``). Audited as the command line's is
    (``volunteer.account``, or ``volunteer.code`` for a new code), with the user and where they asked from.

    Everything is checked before anything is written: a refusal leaves the store as it was but for its audit row.

    Returns
    -------
    dict
        As :func:`create_resident_account`: ``username``, ``resident_id``, ``code`` (shown once), ``expires_at``,
        ``new``.
    """
    gate.check_resident(resident_id)
    return create_resident_account(gate.con, resident_id, actor=gate.principal.username,
                                   source=gate.principal.source)


def activate_account(con: duckdb.DuckDBPyConnection, username: str, code: str, password: str, *,
                     source: str | None = None) -> dict:
    """Set a resident's password with their one-time code (which then stops working); audited.

    Raises
    ------
    InputError
        A wrong or used or expired code (one message for all, which tells a guesser nothing), or a weak password.
    """
    row = con.execute("SELECT code_hash, code_expires_at FROM resident_accounts WHERE username = ?",
                      [username or ""]).fetchall()
    now = store_now(con)
    if not row or row[0][0] is None or not secrets.compare_digest(row[0][0], _code_hash(code or "")) or (
            row[0][1] is not None and pd.Timestamp(row[0][1]) < now):
        raise InputError(CODE_REFUSED)
    _check_password(password, username=username)
    con.execute("UPDATE users SET password_hash = ? WHERE username = ?", [hash_password(password), username])
    con.execute("UPDATE resident_accounts SET code_hash = NULL, code_expires_at = NULL, activated_at = ? "
                "WHERE username = ?", [now, username])
    audit(con, actor=username, action="volunteer.activate", target=username, source=source)
    return {"username": username, "activated": True}


def resident_of(con: duckdb.DuckDBPyConnection, principal: Principal) -> dict:
    """The resident record behind a resident's account: ``resident_id``, ``name``, ``tags``, ``building_id``,
    ``grid_id`` (home micro-grid), ``x``, ``y`` (home, district CRS).

    Raises
    ------
    AccessError
        The principal is no resident, or has no account.
    """
    if principal.role != "resident":
        raise AccessError(N_("{user} ({role}) has no resident's account; this is for residents of the volunteer "
                             "scheme."), user=principal.username, role=principal.role)
    # Three lookups by key, not one join: on a PostgreSQL store each goes down to its index, where the join would
    # read every resident through DuckDB's scanner (a second a call on the full demo).
    found = con.execute("SELECT resident_id FROM resident_accounts WHERE username = ?", [principal.username]).fetchall()
    person = con.execute("SELECT name, tags, building_id FROM residents WHERE resident_id = ?",
                         [found[0][0]]).fetchall() if found else []
    if not person:
        raise AccessError(N_("{user} has no resident's account; ask your community for one."),
                          user=principal.username)
    name, tags, building = person[0]
    home = con.execute("SELECT grid_id, label_x, label_y FROM buildings WHERE building_id = ?",
                       [building]).fetchall() or [(None, None, None)]
    grid, x, y = home[0]
    return {"resident_id": found[0][0], "name": name, "tags": list(tags or []), "building_id": building,
            "grid_id": grid, "x": x, "y": y}


def add_merchant(con: duckdb.DuckDBPyConnection, merchant_id: str, name: str, *, address: str | None = None,
                 grid_id: str | None = None, username: str | None = None, actor: str,
                 source: str | None = None) -> dict:
    """A merchant and its account (a user of role merchant), whose password is returned once.

    Returns
    -------
    dict
        ``merchant_id``, ``name``, ``username``, ``password`` (shown once).
    """
    if not MERCHANT_ID.match(merchant_id or ""):
        raise InputError(N_("merchant id {merchant_id!r}: use 1-32 letters, digits, '_' or '-'."),
                         merchant_id=merchant_id)
    name = (name or "").strip()
    if not name:
        raise InputError(N_("a merchant needs a name."))
    if con.execute("SELECT count(*) FROM merchants WHERE merchant_id = ?", [merchant_id]).fetchall()[0][0]:
        raise InputError(N_("there is already a merchant {merchant_id!r}."), merchant_id=merchant_id)
    if grid_id is not None and not con.execute("SELECT count(*) FROM grids WHERE grid_id = ? AND valid_to IS NULL",
                                               [grid_id]).fetchall()[0][0]:
        raise InputError(N_("no grid {grid_id!r} in force; `twin grids export` lists them."), grid_id=grid_id)
    username = username or f"m-{merchant_id.lower()}"
    check_new_username(con, username)
    password = generate_password(username)
    now = store_now(con)
    con.execute("INSERT INTO users (username, password_hash, role, grids, disabled, created_at, lang) "
                "VALUES (?, ?, 'merchant', ?, false, ?, 'zh')", [username, hash_password(password), [], now])
    con.execute("INSERT INTO merchants (merchant_id, name, address, grid_id, username) VALUES (?, ?, ?, ?, ?)",
                [merchant_id, name, address, grid_id, username])
    audit(con, actor=actor, action="merchant.add", target=merchant_id, source=source,
          detail={"name": name, "username": username})
    return {"merchant_id": merchant_id, "name": name, "username": username, "password": password}


def merchant_of(con: duckdb.DuckDBPyConnection, principal: Principal) -> dict:
    """The merchant behind a merchant's account: ``merchant_id``, ``name``, ``address``.

    Raises
    ------
    AccessError
        The principal is no merchant's account.
    """
    row = con.execute("SELECT merchant_id, name, address FROM merchants WHERE username = ?",
                      [principal.username]).fetchall() if principal.role == "merchant" else []
    if not row:
        raise AccessError(N_("{user} ({role}) is no merchant's account; this is for merchants of the volunteer "
                             "scheme."), user=principal.username, role=principal.role)
    return dict(zip(("merchant_id", "name", "address"), row[0]))


