"""Users, their roles bound to grids, masked personal data, and the audit trail with its hash chain.

The building blocks of access control: ``twin serve``'s sign-in (:mod:`scenes.auth`) checks
passwords with :func:`check_credentials` and audits each attempt; every read of residents
and cases goes through the per-role rules of :mod:`twin.access.policy`.

- Passwords are stored as salted scrypt hashes; sign-ins, failed or not, are audited.
- Roles: ``leader`` (aggregates, residents only as counts and tags), ``operator``
  (residents and cases of their grids, ID numbers and phones masked), ``planner``
  (grids and buildings, no residents), ``admin`` (users and settings), and for the field loop
  ``worker`` (a grid worker, 网格员, bound to micro-grids) and ``department`` (a unit of the duties
  list, bound to one department: ``users.department``).
- The audit table is append-only in the product, and each row carries the SHA-256
  of the previous row's hash and its own content, so an edited or deleted row
  breaks the chain at that row (:func:`verify_audit`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from twin.errors import N_, InputError, check_choice
from twin.store.clock import store_now
from twin.store.store import newest_row

ROLES = ("leader", "operator", "planner", "admin", "worker", "department", "resident", "merchant")
# Roles of the volunteer scheme (twin.volunteers): their users are made with their account (a resident record, a
# merchant), never by ``twin users add``.
ACCOUNT_ROLES = ("resident", "merchant")
GRID_BOUND_ROLES = ("operator", "worker")  # roles that must be bound to grids
LANGS = ("zh", "en")  # the UI languages a user may choose; the first is the default
PUBLIC_ROLE = "public"  # anyone without a key or a sign-in (Open311 reads): a principal's role, never a user's
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 10
MIN_REASON = 5  # characters of a stated reason (unmasking a resident, dispatching or reassigning a case by hand)
SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # about 50 ms a check here: slow for a guesser, fine for a sign-in
GENESIS = "0" * 64
SIGNIN_REFUSED = "wrong user name or password, or the user is disabled."


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user with a role bound to grids, and where the request comes from.

    Every read of residents or cases takes one (``principal=``), so the rules of
    :mod:`twin.access.policy` decide what it gets. ``grids`` empty means the whole district
    (leaders, planners and admins may be bound to all of it; operators and workers may not).
    A ``department`` user is bound to one department (``department``) instead.
    """

    username: str
    role: str
    grids: tuple[str, ...] = ()
    source: str | None = field(default=None, compare=False)
    department: str | None = None  # role department: the department it acts for

    def __post_init__(self) -> None:
        check_choice("role", self.role, (*ROLES, PUBLIC_ROLE))
        object.__setattr__(self, "grids", tuple(self.grids))


def hash_password(password: str) -> str:
    """A salted scrypt hash, ``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT, dklen=32)
    return "scrypt${n}${r}${p}$".format(**SCRYPT) + base64.b64encode(salt).decode() + "$" + \
        base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a :func:`hash_password` hash (compared in constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    found = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(found, base64.b64decode(digest))


MIN_NAME_IN_PASSWORD = 3  # a shorter user name ("li") is no rule: it would forbid too many passwords
MIN_DISTINCT = 5  # different characters in a password: no "aaaaaaaaaa" or "1212121212"
#: The rules a password must keep, by name: what each asks for (the admin screen shows it translated).
PASSWORD_RULES = {"length": N_("at least {min} characters"),
                  "name": N_("to leave out the user name"),
                  "variety": N_("at least {distinct} different characters")}


def password_rule_broken(password: str, *, username: str) -> str | None:
    """The name of the first of :data:`PASSWORD_RULES` that ``password`` breaks for ``username``, or None."""
    password = password or ""
    if len(password) < MIN_PASSWORD:
        return "length"
    if len(username or "") >= MIN_NAME_IN_PASSWORD and username.lower() in password.lower():
        return "name"
    if len(set(password)) < MIN_DISTINCT:
        return "variety"
    return None


def generate_password(username: str) -> str:
    """A random password (16 characters, about 96 bits) that keeps every rule, to be shown once."""
    while True:
        password = secrets.token_urlsafe(12)
        if password_rule_broken(password, username=username) is None:
            return password


def rule_text(rule: str, translate=lambda text: text) -> str:
    """The text of password rule ``rule``, through ``translate`` (the UI's ``_``), with its numbers."""
    return translate(PASSWORD_RULES[rule]).format(min=MIN_PASSWORD, distinct=MIN_DISTINCT)


class WeakPassword(InputError):
    """A password breaks one of :data:`PASSWORD_RULES`; ``rule`` names which."""

    def __init__(self, username: str, rule: str) -> None:
        super().__init__(f"the password for {username!r} is too weak; the rule it breaks: {rule_text(rule)}. "
                         "Choose another (a few words and a number make a good one).")
        self.rule = rule


def _check_password(password: str, *, username: str) -> None:
    rule = password_rule_broken(password, username=username)
    if rule is not None:
        raise WeakPassword(username, rule)


def _known_grids(con: duckdb.DuckDBPyConnection, grids: list[str], *, role: str) -> list[str]:
    """``grids`` sorted without repeats, when each is a grid in force and the role may have them."""
    grids = sorted(set(grids))
    known = {r[0] for r in con.execute("SELECT grid_id FROM grids WHERE valid_to IS NULL AND grid_id IN "
                                       "(SELECT unnest(?))", [grids]).fetchall()} if grids else set()
    if set(grids) - known:
        raise InputError(f"no grid {sorted(set(grids) - known)[0]!r} in force; `twin grids export` lists them.")
    if role in GRID_BOUND_ROLES and not grids:
        raise InputError(f"a user of role {role} is bound to grids: give --grids G1,G2 (their residents and cases "
                         "only).")
    if role == "worker":
        coarser = [g for g, in con.execute("SELECT grid_id FROM grids WHERE valid_to IS NULL AND level <> 'micro' "
                                           "AND grid_id IN (SELECT unnest(?)) ORDER BY grid_id", [grids]).fetchall()]
        if coarser:
            raise InputError("a grid worker is bound to micro-grids: give --grids M1,M2 with micro-grid ids"
                             f" ({', '.join(coarser)} is not one).")
    return grids


def _known_department(con: duckdb.DuckDBPyConnection, department: str | None, *, role: str) -> str | None:
    """The department a user of ``role`` is bound to: one of the store's for role department, none otherwise."""
    if role != "department":
        if department:
            raise InputError(f"--department {department!r} binds only a user of role department; leave it out "
                             f"for role {role}.")
        return None
    if not department:
        raise InputError("a user of role department is bound to one department: give --department ID "
                         "(`twin duties export FILE` lists them).")
    if not con.execute("SELECT count(*) FROM departments WHERE department_id = ?", [department]).fetchall()[0][0]:
        raise InputError(f"no department {department!r}; the departments come with the duties list "
                         "(`twin duties export FILE` lists them, `twin duties import FILE` adds them).")
    return department


def check_new_username(con: duckdb.DuckDBPyConnection, username: str, *,
                       taken: str = N_("there is already a user {username!r}; pick another name.")) -> None:
    """Refuse a user name that is malformed, or taken already (``taken``: the message, with ``{username}``)."""
    if not USERNAME.match(username or ""):
        raise InputError(N_("user name {username!r}: use 1-64 letters, digits, '.', '_', '@' or '-'."),
                         username=username)
    if con.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone():
        raise InputError(taken, username=username)


def add_user(con: duckdb.DuckDBPyConnection, username: str, password: str, *, role: str,
             grids: list[str] = (), lang: str | None = None, actor: str = "admin", source: str | None = None,
             department: str | None = None) -> dict:
    """Add a user bound to ``grids`` (grid ids in force, any level), or for role department to ``department``,
    with a UI language (None: the default); audited."""
    check_new_username(con, username, taken=N_("there is already a user {username!r}; pick another name or use "
                                               "`twin users passwd`."))
    check_choice("role", role, ROLES)
    _refuse_account_role(role)
    if lang is not None:
        check_choice("lang", lang, LANGS)
    _check_password(password, username=username)
    grids = _known_grids(con, grids, role=role)
    department = _known_department(con, department, role=role)
    con.execute("INSERT INTO users (username, password_hash, role, grids, disabled, created_at, lang, department) "
                "VALUES (?, ?, ?, ?, false, ?, ?, ?)",
                [username, hash_password(password), role, grids, store_now(con), lang, department])
    detail = {"role": role, "grids": grids, "lang": lang, **({"department": department} if department else {})}
    audit(con, actor=actor, action="user.add", target=username, detail=detail, source=source)
    return {"username": username, "role": role, "grids": grids, "lang": lang, "department": department}


def _refuse_account_role(role: str) -> None:
    """Users of the volunteer scheme's roles come with their account, which links them to a resident or a merchant."""
    if role in ACCOUNT_ROLES:
        raise InputError(f"a user of role {role} comes with their account: `twin volunteers "
                         f"{'account RESIDENT_ID' if role == 'resident' else 'merchant add ID NAME'}` makes both.")


def set_lang(con: duckdb.DuckDBPyConnection, username: str, lang: str) -> None:
    """Keep the UI language ``username`` chose (one of ``LANGS``); the header's language switch calls it."""
    check_choice("lang", lang, LANGS)
    _require_user(con, username)
    con.execute("UPDATE users SET lang = ? WHERE username = ?", [lang, username])


def _require_user(con: duckdb.DuckDBPyConnection, username: str) -> None:
    """Refuse a change of a user who does not exist (asked first: DuckDB updates PostgreSQL tables without
    RETURNING)."""
    if not con.execute("SELECT count(*) FROM users WHERE username = ?", [username]).fetchall()[0][0]:
        raise InputError(f"no user {username!r}.")


def user_lang(con: duckdb.DuckDBPyConnection, username: str) -> str | None:
    """The UI language ``username`` chose, or None when they chose none (or there is no such user)."""
    row = con.execute("SELECT lang FROM users WHERE username = ?", [username]).fetchone()
    return row[0] if row else None


def list_users(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every user with role, grids (or department) and whether disabled (never the hashes)."""
    rows = con.execute("SELECT username, role, grids, disabled, created_at, department FROM users "
                       "ORDER BY username").fetchall()
    return [{"username": u, "role": r, "grids": list(g), "disabled": d, "created_at": str(c), "department": p}
            for u, r, g, d, c, p in rows]


def disable_user(con: duckdb.DuckDBPyConnection, username: str, *, actor: str = "admin",
                 source: str | None = None) -> None:
    """Refuse ``username``'s sign-ins (and their open sessions' next page); audited as ``user.disable``."""
    _require_user(con, username)
    con.execute("UPDATE users SET disabled = true WHERE username = ?", [username])
    audit(con, actor=actor, action="user.disable", target=username, source=source)


def set_password(con: duckdb.DuckDBPyConnection, username: str, password: str, *, actor: str = "admin",
                 source: str | None = None) -> None:
    """Give ``username`` a new password (refused when weak: :class:`WeakPassword`); audited as ``user.passwd``."""
    _check_password(password, username=username)
    _require_user(con, username)
    con.execute("UPDATE users SET password_hash = ? WHERE username = ?", [hash_password(password), username])
    audit(con, actor=actor, action="user.passwd", target=username, source=source)


def set_grants(con: duckdb.DuckDBPyConnection, username: str, *, role: str, grids: list[str], actor: str = "admin",
               source: str | None = None, department: str | None = None) -> dict:
    """Bind ``username``'s role to ``grids`` (grid ids in force, any level; none: the whole district), or for
    role department to ``department``; audited as ``user.grants`` with the role and grids before and after."""
    check_choice("role", role, ROLES)
    _refuse_account_role(role)
    grids = _known_grids(con, grids, role=role)
    department = _known_department(con, department, role=role)
    before = con.execute("SELECT role, grids, department FROM users WHERE username = ?", [username]).fetchone()
    if before is None:
        raise InputError(f"no user {username!r}.")
    con.execute("UPDATE users SET role = ?, grids = ?, department = ? WHERE username = ?",
                [role, grids, department, username])
    detail = {"role": role, "grids": grids, "role_before": before[0], "grids_before": list(before[1])}
    if department or before[2]:
        detail.update(department=department, department_before=before[2])
    audit(con, actor=actor, action="user.grants", target=username, source=source, detail=detail)
    return {"username": username, "role": role, "grids": grids, "department": department}


_DUMMY_HASH = hash_password("x" * MIN_PASSWORD)


def check_credentials(con: duckdb.DuckDBPyConnection, username: str, password: str) -> tuple[dict | None, str]:
    """``({username, role, grids}, "")`` when the password is right and the user enabled, else ``(None, why)``.

    Reads only: the caller audits the attempt (``scenes.auth.SignIns.check`` does, through the writer).
    """
    row = con.execute("SELECT password_hash, role, grids, disabled, department FROM users WHERE username = ?",
                      [username]).fetchone()
    # A missing user costs a hash too, so the answer's time does not tell which names exist.
    ok = verify_password(password, row[0] if row else _DUMMY_HASH) and row is not None
    if not ok or row[3]:
        return None, "disabled" if ok else "wrong name or password"
    return {"username": username, "role": row[1], "grids": list(row[2]), "department": row[4]}, ""


def find_user(con: duckdb.DuckDBPyConnection, username: str) -> Principal | None:
    """The enabled user ``username`` as a :class:`Principal` (no source), or None."""
    row = con.execute("SELECT role, grids, department FROM users WHERE username = ? AND NOT disabled",
                      [username]).fetchone()
    return Principal(username, row[0], tuple(row[1]), department=row[2]) if row else None


def mask_id_number(value: str | None) -> str | None:
    """``410105199001011234`` -> ``410105********1234``: the region and the last four stay."""
    if not value:
        return value
    return value[:6] + "*" * max(0, len(value) - 10) + value[-4:] if len(value) > 10 else "*" * len(value)


def mask_phone(value: str | None) -> str | None:
    """``13812345678`` -> ``138****5678``."""
    if not value:
        return value
    return value[:3] + "*" * max(0, len(value) - 7) + value[-4:] if len(value) > 7 else "*" * len(value)


def _row_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, target: str | None, detail: str | None,
              source: str | None) -> str:
    payload = json.dumps([prev_hash, seq, at, actor, action, target, detail, source], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def audit(con: duckdb.DuckDBPyConnection, *, actor: str, action: str, target: str | None = None,
          detail: dict | str | None = None, source: str | None = None) -> int:
    """Append one row to the audit trail (inside the caller's transaction); returns its number."""
    last = newest_row(con, "audit", "seq, hash")
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = store_now(con, unit="us")
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True) if isinstance(detail, dict) else detail
    digest = _row_hash(prev, seq, at.isoformat(), actor, action, target, text, source)
    con.execute('INSERT INTO audit (seq, "at", actor, action, target, detail, source, prev_hash, hash) '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [seq, at, actor, action, target, text, source, prev, digest])
    return seq


def verify_audit(con: duckdb.DuckDBPyConnection) -> int | None:
    """The number of the first row whose content or link does not match the chain, or None when it is whole."""
    prev = GENESIS
    expected = 1
    for seq, at, actor, action, target, detail, source, prev_hash, digest in con.execute(
            'SELECT seq, "at", actor, action, target, detail, source, prev_hash, hash FROM audit ORDER BY seq'
    ).fetchall():
        if seq != expected or prev_hash != prev or digest != _row_hash(
                prev, seq, pd.Timestamp(at).isoformat(), actor, action, target, detail, source):
            return seq
        prev, expected = digest, seq + 1
    return None
