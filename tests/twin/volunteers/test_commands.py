"""``twin volunteers`` on a copy of the small demo: accounts with their one-time codes, merchants, rewards, the
ledger's check; bad input exits 2 and changes nothing."""

from __future__ import annotations

import json

from tests.conftest import store_fingerprint
from tests.test_cli import twin
from twin.store.store import Store


def test_accounts_merchants_rewards_and_the_ledgers_check_from_the_command_line(demo_copy):
    db = str(demo_copy)
    with Store(db, read_only=True) as store:
        rid = store.con.execute("SELECT resident_id FROM residents ORDER BY resident_id LIMIT 1").fetchone()[0]
    made = twin("volunteers", "account", rid, "--db", db, "--json")
    assert made.returncode == 0, made.stderr
    account = json.loads(made.stdout)
    assert account["new"] and len(account["code"]) == 10
    shop = json.loads(twin("volunteers", "merchant", "t1", "便民超市", "--address", "金水路1号", "--db", db,
                           "--json").stdout)
    assert shop["username"] == "m-t1" and shop["password"]
    reward = twin("volunteers", "reward", "t1", "一袋米", "--points", "30", "--stock", "5", "--db", db, "--json")
    assert reward.returncode == 0 and json.loads(reward.stdout)["points"] == 30
    before = store_fingerprint(db)
    for bad in (("account", "R-nobody"), ("reward", "t9", "x", "--points", "1", "--stock", "1"),
                ("merchant", "t1", "again"), ("reward", "t1", "x", "--points", "0", "--stock", "1")):
        refused = twin("volunteers", *bad, "--db", db)
        assert refused.returncode == 2 and refused.stderr.strip(), bad
    assert store_fingerprint(db) == before
    checked = json.loads(twin("volunteers", "verify", "--db", db, "--json").stdout)
    assert checked["broken_at"] is None and checked["rows"] > 0  # the demo's month of points
    with Store(db, read_only=True) as store:
        actions = [a for a, in store.con.execute("SELECT action FROM audit ORDER BY seq DESC LIMIT 3").fetchall()]
    assert actions == ["reward.add", "merchant.add", "volunteer.account"]
