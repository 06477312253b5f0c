"""Intake sent again: the same idempotency key gets the first answer back, and no second case.

A request whose COMMIT was cut off (the PostgreSQL server restarting, the network) is answered 503, and it may
have been kept all the same. A client that sends it again with the same key (Open311's and the detection API's
``Idempotency-Key`` header, or a detection's own ``source_id``) gets the answer its first sending got, not a second
case. The key is kept per client (an API key's), in ``intake_keys``, in the transaction that keeps the case, so it
is kept exactly when the case is; a key sent again with another request is refused (keys are made anew per
request). On a PostgreSQL store served by several processes, two sendings at once meet on the table's primary key,
and the later one's writer runs its batch again and finds the first (:data:`twin.cases.live.CONFLICTS`).
"""

from __future__ import annotations

import hashlib
import json
import re

import duckdb

from twin.errors import N_, InputError
from twin.store.clock import store_now

KEY = re.compile(r"[A-Za-z0-9_.:-]{8,128}")
ROUTES = ("open311", "detection")


def check_key(key: object) -> str:
    """``key`` when it is an idempotency key (8-128 letters, digits and ``_.:-``; a UUID is one); else an
    :class:`InputError`."""
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise InputError(N_("{key!r} is not an idempotency key: send 8 to 128 letters, digits or _.:- (a UUID made "
                            "anew for each request is one), the same for each sending of that request."),
                         key=str(key)[:80])
    return key


def request_digest(request: dict) -> str:
    """What a request asked, as a digest (the API key left out): a key sent again must ask the same."""
    canonical = json.dumps({k: v for k, v in request.items() if k != "api_key"}, sort_keys=True, default=str,
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def kept_answer(con: duckdb.DuckDBPyConnection, *, client: str, key: str, route: str, digest: str) -> dict | None:
    """The answer the first sending of ``key`` by ``client`` got, or None when the key is new.

    Raises
    ------
    InputError
        When the key was sent before with another request, or to the other route.
    """
    found = con.execute("SELECT route, request, answer FROM intake_keys WHERE client = ? AND key = ?",
                        [client, key]).fetchall()
    if not found:
        return None
    kept_route, kept_digest, answer = found[0]
    if (kept_route, kept_digest) != (route, digest):
        raise InputError(N_("the idempotency key {key!r} was sent before with another request; make a new key for "
                            "each request, and send the same key only with the same request again."), key=key)
    return json.loads(answer)


def write_keys(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    """Keep the keys of answered requests (``client``, ``key``, ``route``, ``request`` digest, ``case_id``,
    ``answer``), inside the transaction that keeps their cases."""
    if not rows:
        return
    at = store_now(con, unit="us")
    con.executemany('INSERT INTO intake_keys (client, key, route, request, case_id, "at", answer) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [[r["client"], r["key"], r["route"], r["request"], r["case_id"], at,
                      json.dumps(r["answer"], ensure_ascii=False, default=str)] for r in rows])
