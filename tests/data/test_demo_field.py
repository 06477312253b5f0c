"""The demo's grid workers: accounts for a handful of micro-grids, and a day of patrols that cover them unevenly."""

from __future__ import annotations

import pandas as pd

from twin.access.access import verify_audit
from twin.field.patrol import patrol_coverage
from twin.store.store import Store


def test_the_demo_has_worker_accounts_and_their_patrols_of_the_demo_day(small_demo):
    with Store(small_demo, read_only=True) as store:
        con = store.con
        workers = dict(con.execute("SELECT username, grids[1] FROM users WHERE role = 'worker'").fetchall())
        levels = {level for level, in con.execute("SELECT level FROM grids WHERE valid_to IS NULL AND grid_id IN "
                                                  "(SELECT unnest(?))", [list(workers.values())]).fetchall()}
        checkins = dict(con.execute("SELECT worker, count(*) FROM patrol_checkins GROUP BY 1").fetchall())
        audited, = con.execute("SELECT count(*) FROM audit WHERE action = 'patrol.position'").fetchone()
        coverage = patrol_coverage(con).set_index("grid_id")
        now = pd.Timestamp(con.execute("SELECT value FROM meta WHERE key = 'now'").fetchone()[0])
        days = con.execute('SELECT worker, "at"::DATE, min("at"), max("at") FROM patrol_checkins GROUP BY ALL'
                           ).fetchall()
        last_shift, = con.execute("SELECT max(ended_at) FROM patrol_shifts").fetchone()
        assert verify_audit(con) is None
    assert len(workers) == 6 and levels == {"micro"}
    assert set(checkins) == set(workers) and audited == sum(checkins.values())
    shares = coverage.loc[list(workers.values()), "share"]
    assert shares.max() == 1.0 and shares.min() < 0.95, "full and partial micro-grids for the leader's colouring"
    # A day of rounds the day before, from the morning into the afternoon; the demo's day's round over before its clock.
    yesterday = now.normalize() - pd.Timedelta(days=1)
    before = {w: (first, last) for w, day, first, last in days if pd.Timestamp(day) == yesterday}
    assert set(before) == set(workers) and all(last - first >= pd.Timedelta(hours=7) for first, last in before.values())
    assert {pd.Timestamp(day) for _, day, _, _ in days} == {yesterday, now.normalize()}
    assert max(last for *_, last in days) <= now and last_shift <= now
