"""The volunteer scheme's benchmark (``twin bench volunteers --db data/demo.duckdb --json``).

On a copy of the store, with ``RESIDENTS`` resident accounts made on it (each signed in over HTTP from a loopback
address of its own group, 127.0.0.2-11, as phones come from many addresses) and a task of ``PLACES`` places:

- **The burst.** Every resident grabs the task at once (threads released together by a barrier): how many
  succeed (exactly ``PLACES`` is the goal), each grab's latency, and the burst's wall time. The baseline, in the
  same run: the same residents grabbing a task with a place for each, one at a time.
- Three ways of serving: one ``twin serve`` on the DuckDB file; one on the store copied into PostgreSQL (a
  throwaway cluster, ``tests/pgcluster.py``); and ``twin serve --workers 2`` behind nginx on that PostgreSQL store,
  where two processes' writers race for the last places (the losing transaction fails on the place's key and runs
  again, ``twin.cases.live.CONFLICTS``).
- Afterwards the store is read: the places taken, and the points ledger's chain.

It also saves the resident's page (``bench/out/volunteer.png``) and the merchant's (``volunteer-merchant.png``),
as the README shows them, from the DuckDB run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.browser import chromium, served, served_workers  # noqa: E402
from bench.common import OUT, store_copy, write_result  # noqa: E402
from tests.pgcluster import start_cluster  # noqa: E402
from tests.scenes.test_volunteers_api import PASSWORD, Client, activated_residents, grab_at_once  # noqa: E402
from twin.access.access import Principal, add_user  # noqa: E402
from twin.access.policy import Gate  # noqa: E402
from twin.store.clock import store_now  # noqa: E402
from twin.store.copy import copy_store  # noqa: E402
from twin.store.store import Store, open_for_command  # noqa: E402
from twin.volunteers.ledger import verify_ledger  # noqa: E402
from twin.volunteers.tasks import publish_task  # noqa: E402

RESIDENTS = 50
PLACES = 10
ADDRESSES = 10  # loopback addresses the residents sign in from (sign-ins are limited per address)


def prepare(db: str) -> dict:
    """Resident accounts ``bench-r00``..., a worker ``bench-w`` and two tasks at one building of their micro-grid:
    the burst's (``PLACES`` places) and the baseline's (a place for everyone)."""
    import pandas as pd

    with open_for_command(db, create=False) as store:
        con = store.con
        micro, x, y = con.execute("SELECT b.grid_id, b.label_x, b.label_y FROM buildings b JOIN grids g ON "
                                  "g.grid_id = b.grid_id AND g.valid_to IS NULL AND g.level = 'micro' "
                                  "ORDER BY b.building_id LIMIT 1").fetchone()
        add_user(con, "bench-w", PASSWORD, role="worker", grids=[micro], actor="bench")
        residents = activated_residents(con, RESIDENTS, prefix="bench-r", password=PASSWORD, actor="bench")
        gate, now = Gate(con, Principal("bench-w", "worker", (micro,))), store_now(con)
        tasks = [publish_task(gate, title=title, place="楼下", x=x, y=y, starts_at=now,
                              ends_at=now + pd.Timedelta(hours=3), places=places, points=10)["task_id"]
                 for title, places in (("压测：抢名额", PLACES), ("压测：逐个报名", RESIDENTS))]
    return {"burst": tasks[0], "baseline": tasks[1], "users": [f"bench-r{k:02d}" for k in range(len(residents))]}


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "max_ms": round(float(a.max()), 1)}


def grabs(port: int, found: dict) -> dict:
    """The burst and the one-at-a-time baseline against a server on ``port``."""
    phones = [Client(port, user, f"127.0.0.{2 + k % ADDRESSES}") for k, user in enumerate(found["users"])]
    answers, burst_s = grab_at_once(phones, found["burst"])
    timed = [(status, ms) for status, _, ms in answers]
    one_by_one = []
    for phone in phones:
        began = time.perf_counter()
        status, _ = phone.json("POST", "/api/v/grab", {"task_id": found["baseline"]})
        one_by_one.append((time.perf_counter() - began) * 1000)
        assert status == 200
    return {"grabs": len(phones), "places": PLACES, "succeeded": sum(s == 200 for s, _ in timed),
            "refused_full": sum(s == 400 for s, _ in timed), "other": sum(s not in (200, 400) for s, _ in timed),
            "burst_s": round(burst_s, 3), "burst": _percentiles([ms for _, ms in timed]),
            "one_at_a_time": _percentiles(one_by_one)}


def after(db: str, found: dict) -> dict:
    with Store(db, read_only=True) as store:
        con = store.con
        taken, = con.execute("SELECT count(*) FROM volunteer_grabs WHERE task_id = ?", [found["burst"]]).fetchone()
        return {"places_taken": int(taken), "ledger_intact": verify_ledger(con) is None}


def screenshots(port: int) -> list[str]:
    """The resident's task list and the merchant's page at 390×844, signed in as the demo's res1 and m-m1 (their
    passwords set here: the copy is the bench's own)."""
    from tests.scenes.test_volunteers_browser import PHONE

    shots = []
    OUT.mkdir(exist_ok=True)
    with chromium() as browser:
        for user, path, name in (("res1", "/v", "volunteer.png"), ("m-m1", "/m", "volunteer-merchant.png")):
            context = browser.new_context(**PHONE, locale="zh-CN")
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}{path}?lang=zh")
            page.fill("#username", user)
            page.fill("#password", PASSWORD)
            page.click("#signin")
            page.wait_for_function("window.twinVolunteerReady === true", timeout=120_000)
            page.screenshot(path=str(OUT / name))
            shots.append(str((OUT / name).relative_to(ROOT)))
            context.close()
    return shots


def _demo_passwords(db: str) -> None:
    from twin.access.access import hash_password

    with open_for_command(db, create=False) as store:
        store.con.execute("UPDATE users SET password_hash = ? WHERE username IN ('res1', 'm-m1')",
                          [hash_password(PASSWORD)])


def run(*, db: str | None = None, quick: bool = False) -> dict:
    import os

    source = Path(db or ROOT / "data" / "demo.duckdb")
    if not source.exists():
        raise FileNotFoundError(f"{source}: build the demo first (make demo)")
    load = os.getloadavg()[0]
    result = {"benchmark": "volunteers", "db": str(source), "residents": RESIDENTS, "places": PLACES,
              "load_average_at_start": round(load, 1)}
    with tempfile.TemporaryDirectory(prefix="twin-bench-volunteers-") as tmp:
        work = str(store_copy(source, into=Path(tmp) / "store"))
        Store(work).close()  # upgraded to this program's schema once, before anything is timed
        found = prepare(work)
        _demo_passwords(work)
        with served(work) as url:
            port = int(url.split(":")[2].split("/")[0])
            result["screenshots"] = [] if quick else screenshots(port)  # before the bench's grabs
            result["duckdb"] = grabs(port, found)
        result["duckdb"].update(after(work, found))
        cluster = start_cluster()
        try:
            for name, workers in (("postgres", 0), ("postgres_2_processes", 2)):
                pg = cluster.create_database(f"bench_{name}")
                copy_store(work, pg)
                with open_for_command(pg, create=False) as store:  # the copy's grabs away: a fresh burst
                    store.con.execute("DELETE FROM volunteer_grabs")
                if workers:
                    with served_workers(pg, workers=workers) as served_pg:
                        result[name] = grabs(int(served_pg.base.rsplit(":", 1)[1]), found)
                else:
                    with served(pg) as url:
                        result[name] = grabs(int(url.split(":")[2].split("/")[0]), found)
                result[name].update(after(pg, found))
        finally:
            cluster.stop()
    result["goals"] = {"exactly_the_places_met": all(
        result[k]["succeeded"] == PLACES == result[k]["places_taken"] and result[k]["ledger_intact"]
        for k in ("duckdb", "postgres", "postgres_2_processes"))}
    return write_result("volunteers", result, quick=quick)


if __name__ == "__main__":
    db_arg = sys.argv[sys.argv.index("--db") + 1] if "--db" in sys.argv else None
    print(json.dumps(run(db=db_arg, quick="--quick" in sys.argv), indent=2))
