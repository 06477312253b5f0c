"""Many users on one shared store (``twin bench scale --db data/demo.duckdb --json``): PostgreSQL behind
several app processes, against one process on the DuckDB file, in one run.

On a copy of the full demo district (12,813 buildings, 1.127 M residents), moved with ``twin store copy`` into
a throwaway PostgreSQL 15/PostGIS 3 cluster that the bench starts (tests/pgcluster.py) and stops, served by
``twin serve --workers 2`` (two app processes behind Debian's nginx, ``ip_hash``):

- **Intake capacity**: Open311 requests at offered rates raised step by step, as ``twin bench feed`` does
  (:func:`bench.feed.raise_rate`: p99 ≤ 200 ms, every request acknowledged, every acknowledged case stored
  once), through the proxy to the two workers (the load client's connections leave from several loopback
  addresses, so ``ip_hash`` spreads them as it spreads many clients), and, as the baseline, straight to one
  ``twin serve`` on the DuckDB file. No browser is open in either. CPU time per case (app processes, nginx,
  PostgreSQL) and the database's growth per case are measured over the steps.
- **Interactive sessions**: ``SESSIONS`` simulated operator sessions (:mod:`bench.sessions`: Bokeh's websocket
  protocol, as BokehJS speaks it, not browsers), each signed in from its own loopback address through the proxy,
  half on each worker. Each clicks a random building every ``THINK_S`` seconds (uniform) for ``PICK_S``: the
  ``pick`` the 3D view sets, timed to the inspector card's text naming the building in the session's document.
  The baseline, in the same run: ``CALIBRATION_PICKS`` clicks one at a time, the same sessions open.
  Memory per session: the app processes' resident memory with the sessions open, over their baseline with none
  (each worker having served one session first, so that what a process loads once is in the baseline).
  CPU: the app processes' and PostgreSQL's over an idle stretch (sessions open, nobody clicking) and over the
  clicks one at a time; a click's cost is the difference per click.
- **Live across processes**: cases posted to worker A's port one every ``LIVE_EVERY_S``; from each post (the
  intake's commit included) to the case's marker update arriving in each session: on worker B (the case came
  by PostgreSQL's NOTIFY) and, as the baseline, on worker A itself.

Then the README's command centre, on paper (:func:`command_centre`): the app processes, memory, cores and
database that ``TARGET_SESSIONS`` sessions and ``TARGET_CASES_PER_MIN`` cases a minute need, from the measured
per-session, per-click and per-case costs.

Goals: pick → inspector p95 ≤ 300 ms with the sessions open; cross-process p95 ≤ 1 s.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.browser import browser_user, served, served_workers  # noqa: E402
from bench.common import store_copy, write_result  # noqa: E402
from bench.feed import P99_MS, building_points, check_store, knee_of, post_phase, raise_rate, report_forms  # noqa: E402
from bench.sessions import OperatorSession, balanced_sources  # noqa: E402
from tests.pgcluster import Cluster, start_cluster  # noqa: E402
from twin.access.keys import add_key  # noqa: E402
from twin.store.copy import copy_store  # noqa: E402
from twin.store.store import Store, open_for_command  # noqa: E402

WORKERS = 2
SESSIONS, SESSIONS_QUICK = 50, 10
OPEN_AT_ONCE = 4  # sessions being opened at the same time (people arrive over minutes, not all in one second)
THINK_S = (3.0, 7.0)  # an operator reads the card between clicks: uniform, seconds
PICK_S, PICK_S_QUICK = 45.0, 12.0
IDLE_S, IDLE_S_QUICK = 10.0, 4.0
SETTLE_S = 5.0
LIVE_PROBES, LIVE_PROBES_QUICK = 20, 6
LIVE_EVERY_S = 0.75
LIVE_TIMEOUT_S = 5.0
PICK_TIMEOUT_S = 30.0
CALIBRATION_PICKS, CALIBRATION_PICKS_QUICK = 30, 8
RATES = (10, 20, 30, 50, 100, 200, 300, 400, 600, 800, 1000, 1500)  # cases a second offered (a knee below 50 too)
STEP_S = (6.0, 3.0)  # measured seconds of a step (full, quick)
WARMUP_S = (2.0, 1.0)
SERVER_WARMUP_S = 5.0
LOAD_SOURCES = 16  # loopback addresses the intake's load client spreads its connections over
WORKER_BUSY_AT_MOST = 0.5  # of one core per app process, on paper: one Python process, and room for bursts
BUSY_LOAD = 1.5 * (os.cpu_count() or 2)  # a load average above this: the machine was busy with other work
TARGET_SESSIONS = 500
TARGET_CASES_PER_MIN = 2000
GOALS = {"pick_p95_ms_at_most": 300.0, "cross_process_p95_ms_at_most": 1000.0, "intake_p99_ms_at_most": P99_MS}


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ms = np.array(values) * 1000
    return {"count": len(values), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "max_ms": round(float(ms.max()), 1)}


class CPU:
    """CPU seconds (user + system) that processes spent between :meth:`start` and :meth:`seconds`; processes
    born in between count whole, those that ended are lost (the servers' connections live for the run)."""

    def __init__(self, pids: list[int]) -> None:
        import psutil

        self._processes = [psutil.Process(p) for p in pids]
        self._start: dict[int, float] = {}

    @staticmethod
    def _with_children(processes) -> dict[int, float]:
        import psutil

        seen: dict[int, float] = {}
        for process in processes:
            try:
                for p in (process, *process.children(recursive=True)):
                    times = p.cpu_times()
                    seen[p.pid] = times.user + times.system
            except psutil.Error:
                continue
        return seen

    def start(self) -> CPU:
        self._start = self._with_children(self._processes)
        return self

    def seconds(self) -> float:
        now = self._with_children(self._processes)
        return sum(t - self._start.get(pid, 0.0) for pid, t in now.items())


def postmaster_pid(cluster: Cluster) -> int:
    return int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])


def database_bytes(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as con:
        return con.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def transactions(url: str) -> tuple[int, int]:
    """The database's transactions so far: (committed, rolled back). Rolled back are mostly writers that lost
    the race for the audit chain's head to another process and ran again."""
    import psycopg

    with psycopg.connect(url) as con:
        return con.execute("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()


def client_connections(url: str) -> int:
    """Connections of clients to the cluster (the app processes' and their listeners'), this one's apart."""
    import psycopg

    with psycopg.connect(url) as con:
        return con.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                           "AND pid <> pg_backend_pid()").fetchone()[0]


def rss_bytes(pids: list[int]) -> list[int]:
    import psutil

    return [psutil.Process(p).memory_info().rss for p in pids]


def intake(base: str, work: Path, points: np.ndarray, crs: str, key: str, *, quick: bool, cpu: CPU,
           sources: tuple[str, ...] = ()) -> tuple[dict, list[dict], dict[str, list[str]], float, list[float]]:
    """Offered rate raised step by step against ``base``: the warm-up, the steps, their acknowledged case ids,
    the CPU seconds ``cpu``'s processes spent meanwhile, and the machine's load before and after.
    :func:`intake_figures` checks the store afterwards."""
    def post(**step) -> tuple[dict, list[str]]:
        return post_phase(base, points, crs, key, work, **step, sources=sources)
    load = [_load()]
    cpu.start()
    warm, steps, acked = raise_rate(post, quick=quick, rates=RATES, step_s=STEP_S, warmup_s=WARMUP_S,
                                    server_warmup_s=SERVER_WARMUP_S)
    return warm, steps, acked, cpu.seconds(), [*load, _load()]


def intake_figures(db: str | Path, warm: dict, steps: list[dict], acked: dict[str, list[str]], cpu_s: float,
                   load: list[float]) -> dict:
    """The knee, the steps and what was lost, once every acknowledged case is looked for in the store ``db``
    (a file only once its server stopped); CPU per acknowledged case."""
    check_store(db, {"warmup": warm, **{f"step{n}": step for n, step in enumerate(steps)}}, acked)
    knee, _ = knee_of(steps)
    cases = sum(len(ids) for ids in acked.values())
    return {"knee_offered_per_s": knee["offered_per_s"] if knee else None, "knee": knee,
            "first_failing_step": next((s for s in steps if not s["held"]), None), "steps": steps,
            "server_warmup": warm, "lost": sum(s["lost"] for s in [warm, *steps]),
            "duplicated": sum(s["duplicated"] for s in [warm, *steps]), "cases_acknowledged": cases,
            "cpu_ms_per_case": round(1000 * cpu_s / cases, 2) if cases else None, "machine_load": load}


async def _open_all(base: str, user: tuple[str, str], sources: list[str]) -> list[OperatorSession]:
    limit = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one(source: str) -> OperatorSession:
        async with limit:
            session = OperatorSession(base, *user, source=source)
            await session.open()
            return session
    return list(await asyncio.gather(*(one(s) for s in sources)))


WARM_PICKS = 6  # clicks of a warm-up session, whose CPU shows which worker serves it


async def _warm_up(workers, user: tuple[str, str], sources: list[str], building_ids: list[str]) -> None:
    """One session per worker through the proxy, closed again: what a process loads once goes into the baseline.
    Each checks that the proxy sent it where ``ip_hash`` was computed to: its clicks cost CPU in that worker, and
    hardly any in the others (the workers share the sign-in cookies' secret, so a cookie no longer tells)."""
    for worker, source in enumerate(sources):
        session = OperatorSession(workers.base, *user, source=source)
        await session.open()
        await session.pick(0, building_ids[0], timeout=PICK_TIMEOUT_S)
        cpu = [CPU([pid]).start() for pid in workers.pids]
        for k in range(1, WARM_PICKS + 1):
            await session.pick(k, building_ids[k], timeout=PICK_TIMEOUT_S)
        spent = [c.seconds() for c in cpu]
        await session.close()
        others = max((t for k, t in enumerate(spent) if k != worker), default=0.0)
        if spent[worker] < 2 * others:
            raise RuntimeError(f"{source} was computed to reach worker {worker} through nginx's ip_hash, but its "
                               f"clicks cost the workers {[round(t, 2) for t in spent]} CPU seconds")


async def _picks(sessions: list[OperatorSession], building_ids: list[str], seconds: float) -> tuple[list, int]:
    """Every session clicks random buildings for ``seconds``, reading each card ``THINK_S``; (session index,
    seconds to the card) per click, and the clicks whose card never came."""
    times: list[tuple[int, float]] = []
    failed = 0
    until = time.perf_counter() + seconds

    async def operator(k: int, session: OperatorSession) -> None:
        nonlocal failed
        rng = np.random.default_rng(100 + k)
        await asyncio.sleep(rng.uniform(0, THINK_S[1]))  # people do not click in step
        while time.perf_counter() < until:
            index = int(rng.integers(len(building_ids)))
            try:
                times.append((k, await session.pick(index, building_ids[index], timeout=PICK_TIMEOUT_S)))
            except (TimeoutError, asyncio.TimeoutError):
                failed += 1
            await asyncio.sleep(rng.uniform(*THINK_S))
    await asyncio.gather(*(operator(k, s) for k, s in enumerate(sessions)))
    return times, failed


async def _one_at_a_time(sessions: list[OperatorSession], building_ids: list[str], clicks: int, workers_cpu: CPU,
                         postgres_cpu: CPU) -> tuple[list[float], int, float, float, float]:
    """``clicks`` clicks one after the other, by the sessions in turn (both processes), the others open and idle:
    each click's seconds, the failed ones, and the stretch's seconds and CPU seconds of the app processes and of
    PostgreSQL."""
    rng = np.random.default_rng(7)
    times, failed = [], 0
    workers_cpu.start()
    postgres_cpu.start()
    started = time.perf_counter()
    for k in range(clicks):
        index = int(rng.integers(len(building_ids)))
        try:
            times.append(await sessions[k % len(sessions)].pick(index, building_ids[index], timeout=PICK_TIMEOUT_S))
        except (TimeoutError, asyncio.TimeoutError):
            failed += 1
    return times, failed, time.perf_counter() - started, workers_cpu.seconds(), postgres_cpu.seconds()


async def _live(sessions: list[OperatorSession], worker_of: list[int], post_to: str, forms: list[dict],
                key: str) -> tuple[dict[int, list[float]], dict[int, int]]:
    """Post ``forms`` to ``post_to`` one every ``LIVE_EVERY_S``; per worker, each session's seconds from the post
    (the intake's commit included: the reply may reach this client after the update, whose loop serves every
    session) to the case's marker update, and the updates that never came within ``LIVE_TIMEOUT_S``."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    http = AsyncHTTPClient()
    arrived: dict[int, list[float]] = {w: [] for w in set(worker_of)}
    missed: dict[int, int] = {w: 0 for w in set(worker_of)}

    async def probe(form: dict) -> None:
        posted = time.perf_counter()
        answer = await http.fetch(HTTPRequest(post_to + "/open311/v2/requests.json", method="POST",
                                              body=urllib.parse.urlencode({**form, "api_key": key})))
        case_id = json.loads(answer.body)[0]["service_request_id"]
        futures = [s.case_arrival(case_id) for s in sessions]
        await asyncio.wait(futures, timeout=LIVE_TIMEOUT_S)
        for worker, future in zip(worker_of, futures):
            if future.done():
                arrived[worker].append(future.result() - posted)
            else:
                missed[worker] += 1
                future.cancel()
    probes = []
    for form in forms:
        probes.append(asyncio.create_task(probe(form)))
        await asyncio.sleep(LIVE_EVERY_S)
    await asyncio.gather(*probes)
    return arrived, missed


def interactive(workers, cluster: Cluster, url: str, user: tuple[str, str], building_ids: list[str],
                live_forms: list[dict], key: str, *, quick: bool) -> dict:
    """The sessions, their clicks and the live cases across processes, on the served workers (one event loop)."""
    count = SESSIONS_QUICK if quick else SESSIONS
    sources, worker_of = balanced_sources(count + WORKERS, WORKERS)
    warm_sources = [next(s for s, w in zip(sources, worker_of) if w == k) for k in range(WORKERS)]
    session_sources = [s for s in sources if s not in warm_sources]
    worker_of = [w for s, w in zip(sources, worker_of) if s not in warm_sources]
    workers_cpu = CPU(workers.pids)

    async def run() -> dict:
        await _warm_up(workers, user, warm_sources, building_ids)
        await asyncio.sleep(2.0)
        baseline = rss_bytes(workers.pids)
        started = time.perf_counter()
        sessions = await _open_all(workers.base, user, session_sources)
        opened_s = time.perf_counter() - started
        await asyncio.sleep(SETTLE_S)  # the last sessions' first frame (ground, cameras, framing) is served
        with_sessions = rss_bytes(workers.pids)
        connections = client_connections(url)
        idle_s = IDLE_S_QUICK if quick else IDLE_S
        load = {"before_idle": _load()}
        workers_cpu.start()
        await asyncio.sleep(idle_s)
        idle_cpu = workers_cpu.seconds()
        calibration = await _one_at_a_time(sessions, building_ids, CALIBRATION_PICKS_QUICK if quick
                                           else CALIBRATION_PICKS, workers_cpu, CPU([postmaster_pid(cluster)]))
        load["before_picks"] = _load()
        pick_s = PICK_S_QUICK if quick else PICK_S
        workers_cpu.start()
        postgres_cpu = CPU([postmaster_pid(cluster)]).start()
        before = transactions(url)
        started, client_started = time.perf_counter(), time.process_time()
        times, failed = await _picks(sessions, building_ids, pick_s)
        picking_s = time.perf_counter() - started
        client_cpu = time.process_time() - client_started
        pick_cpu, pick_pg_cpu = workers_cpu.seconds(), postgres_cpu.seconds()
        after = transactions(url)
        load["after_picks"] = _load()
        after_picks = rss_bytes(workers.pids)
        arrived, missed = await _live(sessions, worker_of, f"http://127.0.0.1:{workers.ports[0]}", live_forms, key)
        errors = [repr(s.error) for s in sessions if s.error is not None]
        for s in sessions:
            await s.close()
        return {"baseline": baseline, "with_sessions": with_sessions, "after_picks": after_picks,
                "connections": connections, "opened_s": opened_s, "open_s": [s.open_s for s in sessions],
                "open_bytes": [s.opened_bytes for s in sessions], "idle": (idle_s, idle_cpu),
                "calibration": calibration,
                "picking": (picking_s, pick_cpu, pick_pg_cpu, client_cpu), "times": times, "failed": failed,
                "arrived": arrived, "missed": missed, "errors": errors, "load": load,
                "transactions": {"committed": after[0] - before[0], "rolled_back": after[1] - before[1]}}
    got = asyncio.run(run())
    n = len(session_sources)
    idle_s, idle_cpu = got["idle"]
    picking_s, pick_cpu, pick_pg_cpu, client_cpu = got["picking"]
    picks = len(got["times"])
    per_worker = {f"worker_{w}": _percentiles([t for k, t in got["times"] if worker_of[k] == w])
                  for w in range(WORKERS)}
    idle_per_session_ms_s = 1000 * idle_cpu / idle_s / n
    # a click's own CPU: a stretch's less what the open sessions cost meanwhile when nobody clicked; taken from
    # the clicks one at a time (with fifty at once the processes may get less CPU than they want)
    cal_times, cal_failed, cal_s, cal_cpu, cal_pg_cpu = got["calibration"]
    pick_ms = (1000 * (cal_cpu - idle_cpu / idle_s * cal_s) / len(cal_times)) if cal_times else None
    concurrent_pick_ms = (1000 * (pick_cpu - idle_cpu / idle_s * picking_s) / picks) if picks else None
    return {
        "sessions": n, "sessions_per_worker": [worker_of.count(w) for w in range(WORKERS)],
        "opening": {"all_s": round(got["opened_s"], 1), "at_once": OPEN_AT_ONCE,
                    "per_session_s": {part: round(statistics.median(o[part] for o in got["open_s"]), 3)
                                      for part in ("sign_in", "page", "document", "panels", "total")},
                    "bytes_per_session_median": int(statistics.median(got["open_bytes"]))},
        "memory": {"workers_rss_baseline_bytes": got["baseline"],
                   "workers_rss_with_sessions_bytes": got["with_sessions"],
                   "workers_rss_after_picks_bytes": got["after_picks"],
                   "per_session_bytes": int((sum(got["with_sessions"]) - sum(got["baseline"])) / n),
                   "per_session_after_picks_bytes": int((sum(got["after_picks"]) - sum(got["baseline"])) / n)},
        "postgres_client_connections": got["connections"],
        "pick_to_inspector": {**_percentiles([t for _, t in got["times"]]), "failed": got["failed"],
                              "by_worker": per_worker, "seconds": round(picking_s, 1),
                              "picks_per_s": round(picks / picking_s, 2), "think_s": list(THINK_S)},
        "one_click_at_a_time": {**_percentiles(cal_times), "failed": cal_failed},
        "cpu": {"idle_ms_per_session_second": round(idle_per_session_ms_s, 3),
                "workers_per_pick_ms": round(pick_ms, 1) if pick_ms is not None else None,
                "postgres_per_pick_ms": round(1000 * cal_pg_cpu / len(cal_times), 1) if cal_times else None,
                "workers_per_pick_ms_all_at_once": round(concurrent_pick_ms, 1) if concurrent_pick_ms else None,
                "postgres_per_pick_ms_all_at_once": round(1000 * pick_pg_cpu / picks, 1) if picks else None,
                "workers_busy_while_picking_cores": round(pick_cpu / picking_s, 2),
                # the sessions' client (this process) shares the machine: a client starved of CPU reads late
                "client_busy_while_picking_cores": round(client_cpu / picking_s, 2)},
        "postgres_transactions_while_picking": got["transactions"],
        "live": {"posted_to": "worker_0", "probes": len(live_forms), "every_s": LIVE_EVERY_S,
                 "cross_process": {**_percentiles(got["arrived"][1]), "missed": got["missed"][1],
                                   "sessions": worker_of.count(1)},
                 "same_process": {**_percentiles(got["arrived"][0]), "missed": got["missed"][0],
                                  "sessions": worker_of.count(0)}},
        "session_errors": got["errors"],
        # one-minute load averages of the machine (2 cores): far above 2, every process here waited for a core
        "machine_load": got["load"],
    }


def command_centre(sessions: dict, postgres: dict, *, database_bytes_now: int, sessions_target: int = TARGET_SESSIONS,
                   cases_per_min: int = TARGET_CASES_PER_MIN) -> dict:
    """On paper: the app processes, memory, cores and database that ``sessions_target`` operators clicking as the
    bench's did and ``cases_per_min`` cases a minute need, from the measured costs.

    - CPU per app process is kept at most :data:`WORKER_BUSY_AT_MOST` of a core (one Python process each);
    - the load: every session's idle cost, its clicks (one per mean ``THINK_S``) and the cases' CPU;
    - memory: each process's baseline and every session's share;
    - the database: today's size and its growth per day at the case rate, from the bytes per stored case.
    """
    cpu = sessions["cpu"]
    clicks_per_s = sessions_target / (sum(THINK_S) / 2)
    cases_per_s = cases_per_min / 60
    app_cores = (sessions_target * cpu["idle_ms_per_session_second"] / 1000 + clicks_per_s * cpu["workers_per_pick_ms"]
                 / 1000 + cases_per_s * postgres["app_and_proxy_cpu_ms_per_case"] / 1000)
    workers = max(2, math.ceil(app_cores / WORKER_BUSY_AT_MOST))
    baseline = statistics.mean(sessions["memory"]["workers_rss_baseline_bytes"])
    memory = workers * baseline + sessions_target * sessions["memory"]["per_session_after_picks_bytes"]
    pg_cores = (clicks_per_s * cpu["postgres_per_pick_ms"] + cases_per_s * postgres["postgres_cpu_ms_per_case"]) / 1000
    per_day = postgres["database_bytes_per_case"] * cases_per_min * 60 * 24
    knee = postgres["intake"]["knee_offered_per_s"] or 0
    return {
        "sessions": sessions_target, "cases_per_min": cases_per_min, "clicks_per_s": round(clicks_per_s, 1),
        "cases_per_s": round(cases_per_s, 1), "app_cores": round(app_cores, 2), "workers": workers,
        "sessions_per_worker": math.ceil(sessions_target / workers), "app_memory_bytes": int(memory),
        "postgres_cores": round(pg_cores, 2), "cores": math.ceil(app_cores + pg_cores + 1),  # + nginx and the OS
        "postgres_connections": workers * math.ceil(sessions["postgres_client_connections"] / WORKERS),
        "database_bytes_now": database_bytes_now, "database_growth_bytes_per_day": int(per_day),
        "database_bytes_after_a_year": int(database_bytes_now + 365 * per_day),
        # the intake knee measured with two processes over the case rate (writes meet in one database: more
        # processes are not assumed to take more)
        "intake_headroom": round(knee / cases_per_s, 1) if knee else None,
        "worker_busy_at_most": WORKER_BUSY_AT_MOST,
        # on a machine busy with other work the processes here waited for the cores: the latencies are the
        # load's, and the CPU costs less sure (rerun on a quiet one)
        "measured_on_a_busy_machine": max(sessions["machine_load"].values()) > BUSY_LOAD,
    }


def run(*, db: str | None = None, quick: bool = False) -> dict:
    source = Path(db or ROOT / "data" / "demo.duckdb")
    if not source.exists():
        raise FileNotFoundError(f"{source}: build the demo first (make demo)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="twin-bench-scale-") as tmp:
        work = Path(tmp)
        copy = store_copy(source, into=work / "file")
        with open_for_command(copy) as store:
            key = add_key(store.con, "bench-scale")
        user = browser_user(copy, role="operator")
        points, crs = building_points(copy)
        with Store(copy, read_only=True) as store:
            building_ids = [r[0] for r in store.con.execute("SELECT building_id FROM buildings "
                                                            "ORDER BY building_id").fetchall()]
        cluster = start_cluster(durable=True)  # commits flushed, as on a real server (and as the file's are)
        try:
            url = cluster.create_database("scale")
            copied_at = time.perf_counter()
            copy_store(copy, url)
            copy_s = time.perf_counter() - copied_at
            size_before = database_bytes(url)
            with served(copy, args=("--intake-rate", "1000000"), probes=False) as app:
                file_steps = intake(app.rsplit("/", 1)[0], work, points, crs, key, quick=quick, cpu=CPU([app.pid]))
            file_intake = intake_figures(copy, *file_steps)
            with served_workers(url, workers=WORKERS, args=("--intake-rate", "1000000"), log_dir=work) as workers:
                loaders, _ = balanced_sources(LOAD_SOURCES, WORKERS, first=100)
                postgres_cpu = CPU([postmaster_pid(cluster)])
                app_cpu = CPU([*workers.pids, *workers.proxy_pids])
                postgres_cpu.start()
                before = transactions(url)
                pg_steps = intake(workers.base, work, points, crs, key, quick=quick, cpu=app_cpu,
                                  sources=tuple(loaders))
                pg_cpu_s = postgres_cpu.seconds()
                after = transactions(url)
                pg_intake = intake_figures(url, *pg_steps)
                size_after = database_bytes(url)
                live_forms = report_forms(points, crs, LIVE_PROBES_QUICK if quick else LIVE_PROBES, label="live",
                                          seed=77)
                sessions = interactive(workers, cluster, url, user, building_ids, live_forms, key, quick=quick)
        finally:
            cluster.stop()
    cases = pg_intake["cases_acknowledged"]
    postgres = {"intake": pg_intake, "app_and_proxy_cpu_ms_per_case": pg_intake["cpu_ms_per_case"],
                "postgres_cpu_ms_per_case": round(1000 * pg_cpu_s / cases, 2) if cases else None,
                "database_bytes_before_intake": size_before, "database_bytes_after_intake": size_after,
                "database_bytes_per_case": round((size_after - size_before) / cases) if cases else None,
                "transactions_during_intake": {"committed": after[0] - before[0],
                                               "rolled_back": after[1] - before[1]}}
    picks, live = sessions["pick_to_inspector"], sessions["live"]["cross_process"]
    result = {
        "benchmark": "scale", "db": str(source), "workers": WORKERS, "copy_to_postgres_s": round(copy_s, 1),
        "intake": {"postgres_workers_behind_nginx": postgres, "duckdb_file_one_process": file_intake},
        "sessions": sessions,
        "command_centre": command_centre(sessions, postgres, database_bytes_now=size_after),
        "seconds": round(time.perf_counter() - started, 1),
    }
    result["goals"] = {
        **GOALS,
        "pick_met": picks.get("p95_ms") is not None and picks["p95_ms"] <= GOALS["pick_p95_ms_at_most"]
        and not picks["failed"],
        "cross_process_met": live.get("p95_ms") is not None and live["p95_ms"] <= GOALS["cross_process_p95_ms_at_most"]
        and not live["missed"],
        "intake_lost_or_duplicated_met": pg_intake["lost"] == 0 and pg_intake["duplicated"] == 0,
    }
    return write_result("scale", result, quick=quick)


if __name__ == "__main__":
    db_arg = sys.argv[sys.argv.index("--db") + 1] if "--db" in sys.argv else None
    print(json.dumps(run(db=db_arg, quick="--quick" in sys.argv), indent=2))
