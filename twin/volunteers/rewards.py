"""Merchants' rewards for points, and the codes residents redeem them with.

A resident redeems a reward: its points are spent at once (a ledger row) and a code is issued. The resident shows
the code at the merchant, who checks it on their own page and takes it: a code is taken once, and only by the
merchant whose reward it is. A reward's stock left is its stock less its redemptions (counted, never stored).
"""

from __future__ import annotations

import secrets

import duckdb

from twin.access.access import Principal, audit
from twin.errors import N_, AccessError, InputError
from twin.store.clock import store_now
from twin.volunteers import ledger
from twin.volunteers.accounts import merchant_of, resident_of

CODE_DIGITS = 8


def add_reward(con: duckdb.DuckDBPyConnection, merchant_id: str, title: str, *, points: int, stock: int,
               actor: str, source: str | None = None, reward_id: str | None = None) -> dict:
    """A merchant's reward: ``title`` for ``points``, ``stock`` of them; audited as ``reward.add``."""
    if not con.execute("SELECT count(*) FROM merchants WHERE merchant_id = ?", [merchant_id]).fetchall()[0][0]:
        raise InputError(N_("no merchant {merchant_id!r}; `twin volunteers merchant add` makes one."),
                         merchant_id=merchant_id)
    title = (title or "").strip()
    if not title or len(title) > 80:
        raise InputError(N_("a reward needs a title of 1 to 80 characters."))
    for what, value in ((N_("points"), points), (N_("stock"), stock)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
            raise InputError(N_("{what} {value!r}: expected a whole number from 1 to 100000."), what=what,
                             value=value)
    reward_id = reward_id or f"RW-{secrets.token_hex(4)}"
    con.execute("INSERT INTO rewards (reward_id, merchant_id, title, points, stock, active) VALUES (?, ?, ?, ?, ?, "
                "true)", [reward_id, merchant_id, title, points, stock])
    audit(con, actor=actor, action="reward.add", target=reward_id, source=source,
          detail={"merchant_id": merchant_id, "title": title, "points": points, "stock": stock})
    return {"reward_id": reward_id, "merchant_id": merchant_id, "title": title, "points": points, "stock": stock}


REWARD_SQL = ("SELECT w.reward_id, w.merchant_id, m.name AS merchant, m.address, w.title, w.points, w.stock, "
              "w.stock - (SELECT count(*) FROM redemptions d WHERE d.reward_id = w.reward_id) AS left_ "
              "FROM rewards w JOIN merchants m USING (merchant_id)")
REWARD_KEYS = ("reward_id", "merchant_id", "merchant", "address", "title", "points", "stock", "left")


def rewards(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The active rewards of every merchant, with the stock left, cheapest first."""
    rows = con.execute(f"{REWARD_SQL} WHERE w.active ORDER BY w.points, w.reward_id").fetchall()
    return [dict(zip(REWARD_KEYS, r)) for r in rows]


def redeem(con: duckdb.DuckDBPyConnection, principal: Principal, reward_id: str) -> dict:
    """A resident redeems a reward: its points spent, a code issued for the merchant. Audited as ``points.spend``.

    Returns
    -------
    dict
        ``code``, ``reward_id``, ``title``, ``merchant``, ``points``, ``balance`` (after).

    Raises
    ------
    NotEnoughPoints
        The balance is below the reward's points.
    InputError
        No such reward, or none left.
    """
    me = resident_of(con, principal)
    found = con.execute(f"{REWARD_SQL} WHERE w.reward_id = ? AND w.active", [reward_id]).fetchall()
    if not found:
        raise InputError(N_("no reward {reward_id!r} on offer."), reward_id=reward_id)
    reward = dict(zip(REWARD_KEYS, found[0]))
    if reward["left"] <= 0:
        raise InputError(N_("{title} at {merchant} is all gone; pick another reward."), title=reward["title"],
                         merchant=reward["merchant"])
    now = store_now(con, unit="us")
    while True:
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        if not con.execute("SELECT count(*) FROM redemptions WHERE code = ?", [code]).fetchall()[0][0]:
            break
    row = ledger.append(con, resident_id=me["resident_id"], amount=-int(reward["points"]), reason="redeem",
                        ref=code, actor=principal.username, at=now)
    con.execute("INSERT INTO redemptions (code, reward_id, merchant_id, resident_id, points, ledger_seq, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", [code, reward_id, reward["merchant_id"], me["resident_id"],
                                                 int(reward["points"]), row["seq"], now])
    audit(con, actor=principal.username, action="points.spend", target=principal.username, source=principal.source,
          detail={"points": int(reward["points"]), "reason": "redeem", "reward_id": reward_id, "seq": row["seq"]})
    return {"code": code, "reward_id": reward_id, "title": reward["title"], "merchant": reward["merchant"],
            "points": int(reward["points"]), "balance": row["balance"], "at": now}


def my_redemptions(con: duckdb.DuckDBPyConnection, principal: Principal) -> list[dict]:
    """The resident's codes, newest first: reward, merchant, points, when issued and when taken."""
    me = resident_of(con, principal)
    rows = con.execute("SELECT d.code, w.title, m.name, m.address, d.points, d.created_at, d.used_at FROM "
                       "redemptions d JOIN rewards w USING (reward_id) JOIN merchants m ON m.merchant_id = "
                       "d.merchant_id WHERE d.resident_id = ? ORDER BY d.created_at DESC", [me["resident_id"]]
                       ).fetchall()
    return [dict(zip(("code", "title", "merchant", "address", "points", "created_at", "used_at"), r)) for r in rows]


def _merchants_code(con: duckdb.DuckDBPyConnection, principal: Principal, code: str) -> tuple[dict, dict]:
    shop = merchant_of(con, principal)
    code = (code or "").strip()
    rows = con.execute("SELECT d.code, d.merchant_id, w.title, d.points, d.created_at, d.used_at, d.used_by FROM "
                       "redemptions d JOIN rewards w USING (reward_id) WHERE d.code = ?", [code]).fetchall()
    if not rows:
        raise InputError(N_("no code {code!r}: check the digits with the resident."), code=code[:20])
    found = dict(zip(("code", "merchant_id", "title", "points", "created_at", "used_at", "used_by"), rows[0]))
    if found["merchant_id"] != shop["merchant_id"]:
        audit(con, actor=principal.username, action="access.refused", target=code, source=principal.source,
              detail={"what": "redemption code", "reason": "another merchant's code"})
        raise AccessError(N_("code {code} is for another merchant's reward; it cannot be taken here."), code=code)
    return shop, found


def check_code(con: duckdb.DuckDBPyConnection, principal: Principal, code: str) -> dict:
    """What a code is for, as its merchant checks it: ``code``, ``title``, ``points``, ``created_at``, ``used_at``
    (None: not yet taken). Another merchant's code is refused (and the refusal audited)."""
    _, found = _merchants_code(con, principal, code)
    return {k: found[k] for k in ("code", "title", "points", "created_at", "used_at")}


def use_code(con: duckdb.DuckDBPyConnection, principal: Principal, code: str) -> dict:
    """The merchant takes a code: the reward is handed over, and the code is spent. Audited as
    ``redemption.use``.

    Raises
    ------
    InputError
        The code was taken already (double redemption), or there is no such code.
    AccessError
        Another merchant's code.
    """
    shop, found = _merchants_code(con, principal, code)
    if found["used_at"] is not None:
        raise InputError(N_("code {code} was taken already, on {at}; a code is good for one reward."),
                         code=found["code"], at=str(found["used_at"])[:16])
    now = store_now(con, unit="us")
    con.execute("UPDATE redemptions SET used_at = ?, used_by = ? WHERE code = ?", [now, principal.username,
                                                                                   found["code"]])
    audit(con, actor=principal.username, action="redemption.use", target=found["code"], source=principal.source,
          detail={"merchant_id": shop["merchant_id"], "title": found["title"], "points": int(found["points"])})
    return {"code": found["code"], "title": found["title"], "points": int(found["points"]), "used_at": now}


def merchant_overview(con: duckdb.DuckDBPyConnection, principal: Principal, *, limit: int = 100) -> dict:
    """A merchant's own page: ``merchant``, their ``rewards`` (with stock left), the ``redemptions`` they took (code,
    reward, points, issued, taken), newest first, and how many codes are ``outstanding`` (issued, not yet shown to
    them: their digits are the residents' to show). Nothing of residents."""
    shop = merchant_of(con, principal)
    offers = [dict(zip(REWARD_KEYS, r)) for r in con.execute(
        f"{REWARD_SQL} WHERE w.merchant_id = ? ORDER BY w.points, w.reward_id", [shop["merchant_id"]]).fetchall()]
    taken = con.execute("SELECT d.code, w.title, d.points, d.created_at, d.used_at FROM redemptions d JOIN rewards w "
                        "USING (reward_id) WHERE d.merchant_id = ? AND d.used_at IS NOT NULL ORDER BY d.used_at DESC "
                        "LIMIT ?", [shop["merchant_id"], int(limit)]).fetchall()
    outstanding = con.execute("SELECT count(*) FROM redemptions WHERE merchant_id = ? AND used_at IS NULL",
                              [shop["merchant_id"]]).fetchall()[0][0]
    return {"merchant": shop, "rewards": offers, "outstanding": int(outstanding),
            "redemptions": [dict(zip(("code", "title", "points", "created_at", "used_at"), r)) for r in taken]}


