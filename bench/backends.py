"""The two backends side by side (``twin bench backends --db data/demo.duckdb --json``).

On the full demo district (12,813 buildings, 1.127 million residents), copied into a throwaway
PostgreSQL 15/PostGIS 3 cluster that the bench starts (tests/pgcluster.py) and stops:

- `twin store copy`, file to PostgreSQL and back (one transaction each, counts and checksums checked);
- per-grid figures (:func:`twin.store.queries.grid_table` at the grid level, every micro-grid's figures counted
  afresh from the 1.127 M residents) on the DuckDB file, and on PostgreSQL through the chosen route (DuckDB
  attaching the database, the same SQL); goal ≤ 1 s;
- the same figures' core aggregate (residents, households, buildings, cameras per micro-grid) run by PostgreSQL
  itself over psycopg 3: what the other route, a dialect seam over psycopg, would cost at best;
- a building's card (:func:`twin.inspector.building_card`: the building, its residents counted, its grid path,
  its cameras) on each backend, and one residents lookup by building run by PostgreSQL itself.

Medians of five runs (twenty for the card). Timings on this shared 2-core machine wander; rerun on a quiet one.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from tests.pgcluster import start_cluster  # noqa: E402
from twin.inspector import building_card  # noqa: E402
from twin.store.copy import copy_store  # noqa: E402
from twin.store.queries import grid_table  # noqa: E402
from twin.store.store import Store  # noqa: E402

DEFAULT_DB = ROOT / "data" / "demo.duckdb"
GOAL_GRID_FIGURES_S = 1.0
# The core of twin.store.queries.micro_figures, in PostgreSQL's own dialect (camera coverage left out).
NATIVE_MICRO_FIGURES = """
    WITH b AS (SELECT grid_id, count(*) AS buildings FROM buildings GROUP BY grid_id),
         r AS (SELECT bl.grid_id, count(*) AS residents, count(DISTINCT r.household_id) AS households
               FROM residents r JOIN buildings bl USING (building_id) GROUP BY bl.grid_id),
         k AS (SELECT grid_id, count(*) AS cameras FROM cameras GROUP BY grid_id)
    SELECT g.grid_id, coalesce(b.buildings, 0), coalesce(r.residents, 0), coalesce(r.households, 0),
           coalesce(k.cameras, 0)
    FROM grids g LEFT JOIN b USING (grid_id) LEFT JOIN r USING (grid_id) LEFT JOIN k USING (grid_id)
    WHERE g.level = 'micro' AND g.valid_to IS NULL"""


def _median_s(call, runs: int) -> dict:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(times), 4), "runs_s": [round(t, 4) for t in times]}


def _timed_once(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return round(time.perf_counter() - started, 3), result


def run(*, db: str | None = None, quick: bool = False) -> dict:
    import psycopg

    source = Path(db) if db else DEFAULT_DB
    if not source.exists():
        raise FileNotFoundError(f"{source}: build the demo first (make demo)")
    runs, card_runs = (1, 3) if quick else (5, 20)
    cluster = start_cluster()
    try:
        url = cluster.create_database("bench")
        to_pg_s, copied = _timed_once(lambda: copy_store(source, url))
        with tempfile.TemporaryDirectory(prefix="twin-bench-backends-") as tmp:
            back_s, _ = _timed_once(lambda: copy_store(url, Path(tmp) / "back.duckdb"))
        with psycopg.connect(url) as native:
            native.execute("ANALYZE")
            native.commit()
        figures, cards = {}, {}
        for name, where in (("duckdb_file", str(source)), ("postgres_attached", url)):
            with Store(where, read_only=True) as store:
                con = store.con.cursor()
                building = con.execute("SELECT building_id FROM residents GROUP BY 1 ORDER BY count(*) DESC "
                                       "LIMIT 1").fetchall()[0][0]
                grid_table(con, level="grid")  # warm: the first read of a cold store is not what a session sees
                figures[name] = _median_s(lambda: grid_table(con, level="grid"), runs)
                cards[name] = _median_s(lambda: building_card(con, building), card_runs)
        with psycopg.connect(url) as native:
            figures["postgres_native_core_aggregate"] = _median_s(
                lambda: native.execute(NATIVE_MICRO_FIGURES).fetchall(), runs)
            cards["postgres_native_residents_lookup"] = _median_s(
                lambda: native.execute("SELECT count(*), count(DISTINCT household_id) FROM residents "
                                       "WHERE building_id = %s", [building]).fetchall(), card_runs)
            version = native.execute("SHOW server_version").fetchall()[0][0]
    finally:
        cluster.stop()
    attached = figures["postgres_attached"]["median_s"]
    return write_result("backends", {
        "store": str(source), "residents": copied["tables"]["residents"], "postgres": version,
        "copy_s": {"file_to_postgres": to_pg_s, "postgres_to_file": back_s},
        "grid_figures": figures, "goal_grid_figures_s": GOAL_GRID_FIGURES_S,
        "grid_figures_goal_met": attached <= GOAL_GRID_FIGURES_S, "building_card": cards,
    }, quick=quick)


if __name__ == "__main__":
    import json

    print(json.dumps(run(db=sys.argv[1] if len(sys.argv) > 1 else None), indent=2))
