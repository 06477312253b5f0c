"""The demo's volunteer scheme: a month of tasks and points before its day, merchants with rewards, open tasks in
the demo workers' micro-grids, and accounts to sign in with in the users' file."""

from __future__ import annotations

import pandas as pd

from twin.store.store import Store
from twin.volunteers.figures import community_ranking, volunteer_table
from twin.volunteers.ledger import verify_ledger


def test_the_demo_has_a_month_of_volunteering_merchants_and_open_tasks(small_demo):
    with Store(small_demo, read_only=True) as store:
        con = store.con
        now = pd.Timestamp(store.meta()["now"])
        month = pd.Period(now, "M")  # most of the demo's 30 days of volunteering
        assert verify_ledger(con) is None
        table = volunteer_table(con, level="community", month=month)
        ranking = community_ranking(con, month=month)
        merchants, rewards = con.execute("SELECT count(*), (SELECT count(*) FROM rewards) FROM merchants").fetchone()
        open_tasks, = con.execute("SELECT count(*) FROM volunteer_tasks WHERE ends_at > now()::TIMESTAMP").fetchone()
        negative, = con.execute("SELECT count(*) FROM (SELECT resident_id, sum(amount) AS s FROM points_ledger "
                                "GROUP BY 1) WHERE s < 0").fetchone()
        spent, = con.execute("SELECT count(*) FROM redemptions WHERE used_at IS NOT NULL").fetchone()
        logins = [u for u, in con.execute("SELECT username FROM users WHERE role IN ('resident', 'merchant') AND "
                                          "password_hash <> '!' ORDER BY username").fetchall()]
    assert table["tasks"].sum() > 20 and table["hours"].sum() > 0 and table["points"].sum() > 0
    assert ranking["rank"].iloc[0] == 1 and ranking["points"].is_monotonic_decreasing
    assert merchants == 4 and rewards >= 4 and open_tasks >= 1 and negative == 0 and spent > 0
    assert {"m-m1", "res1"} <= set(logins)
    users_file = small_demo.with_suffix(".users").read_text()
    assert "res1 " in users_file and "m-m1 " in users_file
