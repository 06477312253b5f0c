"""The demo's volunteer scheme (文明小杜): a month of tasks done and points earned and spent, a few merchants with
rewards, open tasks in the demo workers' micro-grids, and resident accounts to sign in with.

The month is the 30 days before the demo's fixed clock (``meta.now``): in each community a few tasks at its
buildings (more in some communities than others, so the ranking has an order), their places mostly taken,
checked in and out and confirmed by the micro-grid's worker, each confirmation a credit on the points ledger (in
time order, so the chain is one line), and some residents' points spent at the merchants (codes, most of them
taken). These are the demo's set-up, not audited acts. The open tasks run from the wall clock's now for a week
(the phone pages check against the wall clock), so a freshly built demo has tasks to grab.
"""

from __future__ import annotations

import secrets

import duckdb
import numpy as np
import pandas as pd

from twin.access.access import hash_password
from twin.party.orgs import PARTY_MEMBER_TAG
from twin.store.clock import store_now
from twin.store.queries import _now
from twin.volunteers import ledger

DEMO_RESIDENT_ACCOUNTS = 6  # res1 ... with passwords in the demo's users file
TASK_TITLES = ("清扫楼道", "垃圾分类督导", "关爱独居老人", "文明劝导", "清理小广告", "社区防疫宣传", "护送学生过马路",
               "绿地除草")
MERCHANTS = (("m1", "便民超市", (("一袋大米", 60, 30), ("一瓶食用油", 40, 30))),
             ("m2", "阳光理发店", (("理发一次", 50, 20),)),
             ("m3", "早点铺", (("早餐一份", 15, 100), ("豆浆一杯", 5, 200))),
             ("m4", "百姓药房", (("口罩一盒", 20, 50),)))
UNUSABLE = "!"  # the password of the demo residents' accounts that nobody signs in to (verify_password refuses it)


def demo_volunteers(con: duckdb.DuckDBPyConnection, *, seed: int, worker_grids: list[str]) -> None:
    """Write the demo's scheme; its accounts get their passwords from :func:`volunteer_users`."""
    rng = np.random.default_rng(seed + 18)
    now = _now(con)
    month_start = now.normalize() - pd.Timedelta(days=31)
    _merchants(con)
    buildings = con.execute("""
        SELECT b.building_id, b.label_x, b.label_y, b.grid_id, c.grid_id AS community FROM buildings b
        JOIN grids m ON m.grid_id = b.grid_id AND m.valid_to IS NULL
        JOIN grids g ON g.grid_id = m.parent_id AND g.valid_to IS NULL
        JOIN grids c ON c.grid_id = g.parent_id AND c.valid_to IS NULL
        WHERE b.use = 'residential' ORDER BY b.building_id""").df()
    if buildings.empty:
        return
    residents = con.execute("SELECT r.resident_id, r.building_id, list_contains(coalesce(r.tags, []), ?) AS party "
                            "FROM residents r WHERE r.building_id IN (SELECT unnest(?)) AND r.birth_date < DATE "
                            "'2008-01-01' ORDER BY r.resident_id",
                            [PARTY_MEMBER_TAG, buildings["building_id"].tolist()]).df()
    by_building = {b: g["resident_id"].to_numpy() for b, g in residents.groupby("building_id")}
    workers = dict(con.execute("SELECT grid_id, coalesce(worker, 'worker') FROM grids WHERE level = 'micro' AND "
                               "valid_to IS NULL").fetchall())
    tasks, grabs, credits, accounts = [], [], [], {}
    communities = sorted(buildings["community"].unique())
    for k, community in enumerate(communities):
        here = buildings[buildings["community"] == community]
        for n in range(int(rng.integers(1, 6)) if k % 3 else int(rng.integers(4, 9))):
            b = here.iloc[int(rng.integers(len(here)))]
            people = by_building.get(b["building_id"])
            if people is None or len(people) == 0:
                continue
            day = now.normalize() - pd.Timedelta(days=int(rng.integers(1, 31)))
            starts = day + pd.Timedelta(hours=int(rng.integers(8, 17)))
            hours = float(rng.choice([1.0, 1.5, 2.0, 3.0]))
            places, points = int(rng.integers(3, 11)), int(rng.choice([5, 10, 15, 20, 30]))
            task_id = f"T{starts:%Y%m%d}-d{k:03d}{n}"
            tasks.append({"task_id": task_id, "title": str(rng.choice(TASK_TITLES)), "place": f"{b['building_id']} 楼下",
                          "x": float(b["label_x"]), "y": float(b["label_y"]), "grid_id": b["grid_id"],
                          "starts_at": starts, "ends_at": starts + pd.Timedelta(hours=hours), "places": places,
                          "points": points, "eligibility": "party" if rng.random() < 0.2 else "anyone",
                          "published_by": workers.get(b["grid_id"], "worker"), "published_at": starts - pd.Timedelta(days=3)})
            takers = rng.choice(people, size=min(len(people), int(rng.integers(places // 2, places + 1))), replace=False)
            for place_no, rid in enumerate(takers, start=1):
                checked_in = starts + pd.Timedelta(minutes=int(rng.integers(-10, 10)))
                checked_out = checked_in + pd.Timedelta(hours=hours)
                confirmed = checked_out + pd.Timedelta(minutes=int(rng.integers(5, 120)))
                accounts.setdefault(rid, f"r{rid.lower()}")
                grabs.append({"task_id": task_id, "place_no": place_no, "resident_id": rid, "username": accounts[rid],
                              "grabbed_at": starts - pd.Timedelta(days=1), "checked_in_at": checked_in,
                              "checked_out_at": checked_out, "confirmed_at": confirmed,
                              "confirmed_by": workers.get(b["grid_id"], "worker"), "hours": hours})
                credits.append((confirmed, rid, points, task_id, workers.get(b["grid_id"], "worker")))
    _insert(con, "volunteer_tasks", tasks)
    _insert(con, "volunteer_grabs", grabs)
    _accounts(con, accounts, at=month_start)
    spends = _spends(con, rng, credits)
    for at, rid, amount, ref, actor in sorted(credits + [s[:5] for s in spends], key=lambda c: (c[0], c[3])):
        ledger.append(con, resident_id=rid, amount=amount, reason="task" if amount > 0 else "redeem", ref=ref,
                      actor=actor, at=at)
    seqs = dict(con.execute("SELECT ref, seq FROM points_ledger WHERE reason = 'redeem'").fetchall())
    _insert(con, "redemptions", [{**s[5], "ledger_seq": seqs[s[3]]} for s in spends])
    _signing_in(con, worker_grids)


def volunteer_users(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """(Re)set the passwords of the demo's merchants (``m-m1`` ...) and signing-in residents (``res1`` ...):
    name, password, role, grids, for the users' file."""
    made = []
    for username, role in con.execute("SELECT username, role FROM users WHERE (role = 'merchant' AND username LIKE "
                                      "'m-%') OR (role = 'resident' AND regexp_full_match(username, 'res[0-9]+')) "
                                      "ORDER BY role, username").fetchall():
        password = secrets.token_urlsafe(12)
        con.execute("UPDATE users SET password_hash = ? WHERE username = ?", [hash_password(password), username])
        made.append({"username": username, "password": password, "role": role, "grids": []})
    return made


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    if rows:
        frame = pd.DataFrame(rows)  # noqa: F841 (read by name below)
        con.execute(f"INSERT INTO {table} ({', '.join(rows[0])}) SELECT * FROM frame")


def _merchants(con: duckdb.DuckDBPyConnection) -> None:
    grids = [g for g, in con.execute("SELECT grid_id FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                                     "ORDER BY grid_id LIMIT 4").fetchall()]
    for k, (merchant_id, name, offers) in enumerate(MERCHANTS):
        username = f"m-{merchant_id}"
        con.execute("INSERT INTO users (username, password_hash, role, grids, disabled, created_at, lang) VALUES "
                    "(?, ?, 'merchant', [], false, ?, 'zh')", [username, UNUSABLE, store_now(con)])
        con.execute("INSERT INTO merchants VALUES (?, ?, ?, ?, ?)",
                    [merchant_id, name, f"金水路{10 + 7 * k}号", grids[k % len(grids)] if grids else None, username])
        for j, (title, points, stock) in enumerate(offers):
            con.execute("INSERT INTO rewards VALUES (?, ?, ?, ?, ?, true)",
                        [f"RW-{merchant_id}-{j + 1}", merchant_id, title, points, stock])


def _accounts(con: duckdb.DuckDBPyConnection, accounts: dict[str, str], *, at: pd.Timestamp) -> None:
    """Accounts for the residents who volunteered in the month (set up long ago; nobody signs in to them here)."""
    if not accounts:
        return
    frame = pd.DataFrame({"username": list(accounts.values()), "resident_id": list(accounts)})  # noqa: F841
    con.execute("INSERT INTO users (username, password_hash, role, grids, disabled, created_at, lang) "
                "SELECT username, ?, 'resident', [], false, ?, 'zh' FROM frame", [UNUSABLE, at])
    con.execute("INSERT INTO resident_accounts (username, resident_id, created_at, created_by, activated_at) "
                "SELECT username, resident_id, ?, 'demo', ? FROM frame", [at, at])


def _spends(con: duckdb.DuckDBPyConnection, rng: np.random.Generator, credits: list) -> list[tuple]:
    """Some residents spend at the merchants, within what they earned before: (at, resident, -points, code, actor,
    redemption row)."""
    rewards = con.execute("SELECT reward_id, merchant_id, points FROM rewards ORDER BY reward_id").fetchall()
    earned: dict[str, list] = {}
    for at, rid, points, _, _ in sorted(credits, key=lambda c: c[0]):
        earned.setdefault(rid, []).append((at, points))
    spends, used_codes = [], set()
    for rid, rows in sorted(earned.items()):
        total, last = sum(p for _, p in rows), max(a for a, _ in rows)
        affordable = [r for r in rewards if r[2] <= total]
        if not affordable or rng.random() < 0.4:
            continue
        reward_id, merchant_id, points = affordable[int(rng.integers(len(affordable)))]
        at = last + pd.Timedelta(hours=int(rng.integers(1, 72)))
        code = f"{int(rng.integers(10**7, 10**8))}"
        if code in used_codes:
            continue
        used_codes.add(code)
        used = at + pd.Timedelta(hours=int(rng.integers(1, 48))) if rng.random() < 0.8 else None
        spends.append((at, rid, -int(points), code, f"r{rid.lower()}",
                       {"code": code, "reward_id": reward_id, "merchant_id": merchant_id, "resident_id": rid,
                        "points": int(points), "created_at": at, "used_at": used,
                        "used_by": f"m-{merchant_id}" if used is not None else None}))
    return spends


def _signing_in(con: duckdb.DuckDBPyConnection, worker_grids: list[str]) -> None:
    """Open tasks in the demo workers' micro-grids from now (the wall clock) for a week, and residents living there
    with accounts to sign in with (res1 ...; the first a party member where one lives there)."""
    now = store_now(con)
    spots = con.execute("SELECT grid_id, building_id, label_x, label_y FROM buildings WHERE grid_id IN (SELECT "
                        "unnest(?)) ORDER BY grid_id, building_id", [worker_grids]).fetchall() if worker_grids else []
    for k, (grid_id, building_id, x, y) in enumerate(spots[:: max(1, len(spots) // 4)][:4]):
        worker = f"worker{worker_grids.index(grid_id) + 1}"
        con.execute("INSERT INTO volunteer_tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [f"T{now:%Y%m%d}-open{k}", TASK_TITLES[k % len(TASK_TITLES)], f"{building_id} 楼下", x, y, grid_id,
                     now + pd.Timedelta(hours=k), now + pd.Timedelta(days=7), 5 + 5 * (k % 2), 10 + 5 * k,
                     "party" if k == 3 else "anyone", worker, now])
    people = con.execute("SELECT r.resident_id FROM residents r JOIN buildings b USING (building_id) WHERE b.grid_id "
                         "IN (SELECT unnest(?)) AND r.resident_id NOT IN (SELECT resident_id FROM resident_accounts) "
                         "AND r.birth_date < DATE '2008-01-01' ORDER BY list_contains(coalesce(r.tags, []), ?) DESC, "
                         "r.resident_id LIMIT ?", [worker_grids, PARTY_MEMBER_TAG, DEMO_RESIDENT_ACCOUNTS]).fetchall() \
        if worker_grids else []
    for k, (rid,) in enumerate(people, start=1):
        con.execute("INSERT INTO users (username, password_hash, role, grids, disabled, created_at, lang) VALUES "
                    "(?, ?, 'resident', [], false, ?, 'zh')", [f"res{k}", UNUSABLE, now])
        con.execute("INSERT INTO resident_accounts (username, resident_id, created_at, created_by, activated_at) "
                    "VALUES (?, ?, ?, 'demo', ?)", [f"res{k}", rid, now, now])
