"""``twin demo --scale city``: stream the city's districts (:mod:`data.city`) into a new store.

Districts are generated and written one at a time, so memory stays that of one district plus DuckDB's
buffers, capped at ``CITY_MEMORY_LIMIT``. Measured for the 81 full districts (1,037,853 buildings) on 2
shared cores: see the README ("The city demo") for build time, store size and peak memory.

**Resumable, not one transaction.** The store is built in ``.<name>.building`` next to the target, one
transaction per district; ``meta.city_copies_done`` counts the districts written. A build that stops
(an error, Ctrl-C, a reboot) leaves that file, and the same command run again goes on from the next
district; a different plan (copies, base scale or seed) starts afresh. Only a whole city is moved to
the target path, so the target is never a partial city and a failed build leaves it as it was.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

from data.build import check_target, demo_extras, set_demo_meta, write_extras, write_tables
from data.city import CITY_COPIES, CityPlan, city_district
from twin.cases.cameras import keep_camera_sight
from twin.store.queries import RESIDENTS_COUNTED, population
from twin.store.schema import GRID_LEVELS
from twin.store.store import Store, create_indexes, drop_indexes

log = logging.getLogger(__name__)

CITY_MEMORY_LIMIT = "2GB"  # DuckDB's buffer pool while building (its default is 80 % of the machine's memory)
CITY_TABLES = ("buildings", "meshes", "grids", "compounds", "residents", "cameras", "cases", "case_events",
               "party_orgs")


def build_city_store(path: str | os.PathLike, *, copies: int = CITY_COPIES, base: str = "full", seed: int = 0,
                     force: bool = False, progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    """Build (or resume building) the city demo store at ``path``.

    Parameters
    ----------
    copies : int
        Districts in the city (81: 1,037,853 buildings at ``base="full"``).
    base : {"full", "small"}
        The scale each district is generated at ("small": 500 buildings, for tests).
    seed : int
        District ``k`` is generated from ``seed + k``.
    force : bool
        Replace a store already at ``path``.
    progress : callable(done, total)
        Called once with the districts already written (when resuming), then after each district.

    Returns
    -------
    dict
        JSON-ready: counts per table and grid level, ``residents`` and ``households`` (counted),
        ``store_bytes``, ``peak_rss_mb`` (this process's peak resident memory), ``resumed_from`` (districts
        found written) and ``timings_s`` (``generate`` and ``write`` summed over districts, ``finish``, ``total``).
    """
    path = Path(path)
    check_target(path, force=force)
    plan = CityPlan(copies=copies, base=base, seed=seed)
    partial = path.with_name(f".{path.name}.building")  # a fixed name, so that a rerun finds it and resumes
    started = time.perf_counter()
    timings = {"generate": 0.0, "write": 0.0}
    store = _open_partial(partial, plan)
    try:
        store.con.execute(f"SET memory_limit = '{CITY_MEMORY_LIMIT}'")
        done = int(store.meta()["city_copies_done"])
        if done:
            log.info("%s: resuming the city after %d of %d districts", partial, done, plan.copies)
        progress(done, plan.copies)
        for k in range(done, plan.copies):
            t0 = time.perf_counter()
            district = city_district(plan, k)
            t1 = time.perf_counter()
            with store.transaction():
                write_tables(store, district, lap=lambda _: None)
                store.set_meta(city_copies_done=k + 1)
            timings["generate"] += t1 - t0
            timings["write"] += time.perf_counter() - t1
            progress(k + 1, plan.copies)
        t0 = time.perf_counter()
        with store.transaction():
            create_indexes(store.con)
            keep_camera_sight(store.con)  # 20-40 s for the city's 1.5 million cameras, once rather than each start
            extras = demo_extras(store.con, seed=seed, small=base != "full")
        store.con.execute("CHECKPOINT")
        counts = {t: store.count(t) for t in CITY_TABLES}
        counts["residents"], counts["households"] = population(store.con)
        levels = dict(store.con.execute("SELECT level, count(*) FROM grids GROUP BY level").fetchall())
        timings["finish"] = time.perf_counter() - t0
    except BaseException:
        store.close()
        log.error("%s: the city stopped after %s of %d districts; run the same command again to go on",
                  partial, _done(partial), plan.copies)
        raise
    store.close()
    os.replace(partial, path)
    timings["total"] = time.perf_counter() - started
    return {"db": str(path), "scale": "city", "seed": seed, "copies": plan.copies, "base": base,
            "residents_mode": RESIDENTS_COUNTED, **counts, "grid_levels": {lv: levels.get(lv, 0) for lv in GRID_LEVELS},
            **write_extras(path, *extras), "store_bytes": path.stat().st_size,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "resumed_from": done, "timings_s": {k: round(v, 1) for k, v in timings.items()}}


def _open_partial(partial: Path, plan: CityPlan) -> Store:
    """The half-built city of this plan, or a new one (a half-built city of another plan is removed)."""
    if partial.exists():
        store = Store(partial)
        meta = store.meta()
        if meta.get("city_plan") == plan.key and "city_copies_done" in meta:
            return store
        store.close()
        log.info("%s: a half-built city of another plan (%s); starting afresh", partial, meta.get("city_plan"))
        for p in (partial, Path(f"{partial}.wal")):
            p.unlink(missing_ok=True)
    store = Store(partial, create=True)
    with store.transaction():
        drop_indexes(store.con)
        set_demo_meta(store, plan.bounds(), name="郑州市 (demo city)", scale="city", seed=plan.seed)
        store.set_meta(residents=RESIDENTS_COUNTED, city_plan=plan.key, city_copies_done=0)
    return store


def _done(partial: Path) -> str:
    try:
        with Store(partial, read_only=True) as store:
            return store.meta().get("city_copies_done", "0")
    except Exception:  # only for the message: the error being raised matters more
        return "?"
