"""Live intake benchmark (``twin bench feed --db data/demo.duckdb --json``): capacity, and what group commit buys.

On a copy of the full demo district:

- in-process, before serving, on the same copy, with the same code as the
  server's writer (:class:`twin.cases.live.IntakeWriter` taking Open311 forms,
  matched in memory by :class:`twin.cases.cases.LocationMatcher`):

  - matching alone: the matcher's build, and one match per form (and, for
    comparison, the store's SQL match, :func:`twin.cases.cases.match_location`);
  - baseline: one transaction per case (each form submitted once the one
    before is committed), the same parsing and matching;
  - group commit: the same forms submitted at once, committed in batches.

- capacity, over HTTP against ``twin serve`` (its per-key intake limit lifted,
  so that the server, not the limiter, is measured): Open311 requests at
  building points of every non-AI service, posted on schedule over
  ``CONNECTIONS`` kept-alive connections by a client in its own process, at
  offered rates ``RATES`` raised step by step, after ``SERVER_WARMUP_S`` at the
  lowest rate (checked for loss, not timed). Each step posts for ``WARMUP_S``
  + ``STEP_S`` seconds; latency runs from each request's scheduled time to its
  reply (a queue behind a slow reply counts), over the part after the warm-up.
  The steps stop at the first where p99 exceeds ``P99_MS`` or a request is not
  acknowledged (no 201). Afterwards the store is read: every acknowledged case
  must be there exactly once. The knee is the highest offered rate whose step
  held on all of these.
- a Chromium session is open on the app the whole time; every 2 s it posts a
  case of its own and measures, in the page's clock, the time from the reply to
  the frame in which that case's marker is first drawn (per step).

Goals: a knee of at least 500 cases per second; marker drawn at most 1 s after the reply.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.browser import POST_AND_WAIT_FOR_MARKER, chromium, served, sign_in  # noqa: E402
from bench.common import store_copy, webgl_renderer, write_result  # noqa: E402
from twin.access.keys import add_key  # noqa: E402
from twin.cases.cases import LocationMatcher, load_taxonomy, match_location  # noqa: E402
from twin.cases.detections import DEDUPE_WINDOW_S  # noqa: E402
from twin.cases.live import CaseFeed, IntakeWriter  # noqa: E402
from twin.cases.replay import encode, post_all  # noqa: E402
from twin.errors import TwinError  # noqa: E402
from twin.geo.crs import transform_xy  # noqa: E402
from twin.store.store import Store, open_for_command  # noqa: E402

RATES = (100, 200, 300, 400, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000)  # offered, per second
STEP_S, STEP_S_QUICK = 15.0, 5.0
WARMUP_S, WARMUP_S_QUICK = 3.0, 1.0  # each step's first seconds, not timed: the queue settles at the new rate
SERVER_WARMUP_S = 10.0  # before the steps, at the lowest rate: the server's first requests (caches, imports)
CONNECTIONS = 64
P99_MS = 200.0
PROBE_EVERY_MS = 2000
GOALS = {"knee_cases_per_s_at_least": 500.0, "p99_ms_at_most": P99_MS, "lost_or_duplicated": 0,
         "marker_ms_at_most": 1000.0}


def building_points(db: Path) -> tuple[np.ndarray, str]:
    """Every building's label point (district CRS, m) and the district's CRS."""
    with Store(db, read_only=True) as store:
        points = store.con.execute("SELECT label_x, label_y FROM buildings ORDER BY building_id").df().to_numpy()
        return points, store.district.crs


def report_forms(points: np.ndarray, crs: str, count: int, *, label: str, seed: int = 0) -> list[dict]:
    """``count`` Open311 forms at building points (jittered a few metres), of every non-AI service.

    Each form's description, ``bench <label> <k>``, is unique, so that the store can be checked for duplicates.
    """
    rng = np.random.default_rng(seed)
    picked = points[rng.integers(0, len(points), count)] + rng.normal(0, 3, (count, 2))
    lonlat = transform_xy(picked, crs, "EPSG:4326")
    codes = [s["code"] for s in load_taxonomy()["subcategories"] if not s.get("ai")]
    return [{"service_code": codes[k % len(codes)], "lat": f"{lat:.7f}", "long": f"{lon:.7f}",
             "description": f"bench {label} {k}"} for k, (lon, lat) in enumerate(lonlat)]


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def _taken(call) -> bool:
    """Run ``call``; False if it was refused (a :class:`TwinError`: a point outside the district, as served)."""
    try:
        call()
        return True
    except TwinError:
        return False


def in_process(db: Path, points: np.ndarray, crs: str, *, quick: bool) -> dict:
    """Matching alone, one transaction per case, and group commit: the same writer code, no HTTP."""
    matches, sql_matches = (2000, 100) if quick else (20000, 500)
    forms = report_forms(points, crs, matches, label="match", seed=1)
    xy = transform_xy(np.array([[float(f["long"]), float(f["lat"])] for f in forms]), "EPSG:4326", crs).tolist()
    with Store(db) as store:
        started = time.perf_counter()
        matcher = LocationMatcher(store.con)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        matched = sum(_taken(lambda: matcher.match(x, y)) for x, y in xy)
        match_s = (time.perf_counter() - started) / len(xy)
        started = time.perf_counter()
        sum(_taken(lambda: match_location(store.con, x, y)) for x, y in xy[:sql_matches])
        sql_s = (time.perf_counter() - started) / sql_matches

        writer = IntakeWriter(store.con, CaseFeed(), dedupe_window_s=DEDUPE_WINDOW_S)
        one_by_one = report_forms(points, crs, 100_000, label="one-by-one", seed=2)
        limit_s = 3.0 if quick else 10.0
        started, done = time.perf_counter(), 0
        while time.perf_counter() - started < limit_s and done < len(one_by_one):
            future = writer.take_request(one_by_one[done], district_crs=crs, client="bench")
            _taken(future.result)
            done += 1
        one_s = time.perf_counter() - started
        grouped = report_forms(points, crs, 1000 if quick else 5000, label="grouped", seed=3)
        started = time.perf_counter()
        futures: list[Future] = [writer.take_request(f, district_crs=crs, client="bench") for f in grouped]
        grouped_taken = sum(_taken(f.result) for f in futures)
        group_s = time.perf_counter() - started
    per_case = _rate(done, one_s)
    grouped_rate = _rate(len(grouped), group_s)
    return {
        "matcher_build_s": round(build_s, 3), "matched": matched, "match_points": len(xy),
        "match_in_memory_us": round(match_s * 1e6, 1), "match_in_memory_per_s": _rate(1, match_s),
        "match_sql_ms": round(sql_s * 1e3, 2), "match_sql_per_s": _rate(1, sql_s),
        "baseline_one_transaction_per_case": {"cases": done, "seconds": round(one_s, 2), "cases_per_s": per_case},
        "group_commit": {"cases": len(grouped), "taken": grouped_taken, "seconds": round(group_s, 2),
                         "cases_per_s": grouped_rate},
        "group_commit_speedup": round(grouped_rate / per_case, 1),
    }


def post_step(base: str, requests: list[tuple[str, str, bytes]], rate: float, work: Path, *,
              sources: tuple[str, ...] = ()) -> tuple[subprocess.Popen, Path]:
    """Post ``requests`` at ``rate`` from a client in its own process (so it shares no GIL with the browser's driver).

    ``sources``: loopback addresses the client's connections leave from, in turn (a proxy's ``ip_hash`` then
    spreads them as it spreads many clients); none: the system's choice.
    Returns the running client and the file where it writes ``posts`` (index, status, case id or None, scheduled
    and answered ``perf_counter`` times: the machine's monotonic clock, shared by processes) or ``error``.
    """
    todo, done = work / "requests.json", work / "posted.json"
    todo.write_text(json.dumps({"sources": list(sources), "requests": [[p, t, b.decode()] for p, t, b in requests]}))
    with open(work / "client.log", "w") as log:
        loader = subprocess.Popen([sys.executable, __file__, "--post", base, str(rate), str(todo), str(done)],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    return loader, done


def client(base: str, rate: float, todo: Path, done: Path) -> None:
    """The load client's process: post, then write what came back."""
    asked = json.loads(todo.read_text())
    requests = [(p, t, b.encode()) for p, t, b in asked["requests"]]
    try:
        posted = asyncio.run(post_all(base, iter(requests), rate=rate, connections=CONNECTIONS,
                                      sources=asked["sources"]))
        out = {"posts": [[p.index, p.status, p.reply[0].get("service_request_id") if p.status == 201 else None,
                          p.sent, p.answered] for p in posted]}
    except Exception as exc:  # a broken connection: the step is lost, and says why
        out = {"error": f"{type(exc).__name__}: {exc}"}
    done.write_text(json.dumps(out))


def step_figures(rate: float, posts: list[list], warmup_s: float, sent: int) -> dict:
    """Latency after the warm-up, and what was not acknowledged, for one step."""
    start = min(p[3] for p in posts) + warmup_s
    measured = [p for p in posts if p[3] >= start]
    latency_ms = np.array([(p[4] - p[3]) * 1000 for p in measured])
    seconds = max(p[4] for p in measured) - start
    statuses: dict[str, int] = {}
    for p in posts:
        if p[1] != 201:
            statuses[str(p[1])] = statuses.get(str(p[1]), 0) + 1
    return {"offered_per_s": rate, "posted": sent, "answered": len(posts),
            "accepted_per_s": _rate(sum(p[1] == 201 for p in measured), seconds),
            "p50_ms": round(float(np.percentile(latency_ms, 50)), 1),
            "p99_ms": round(float(np.percentile(latency_ms, 99)), 1), "max_ms": round(float(latency_ms.max()), 1),
            "not_acknowledged": sent - sum(p[1] == 201 for p in posts), "refused": statuses}


def post_phase(base: str, points: np.ndarray, crs: str, key: str, work: Path, *, label: str, rate: float,
               seconds: float, warmup: float, seed: int, sources: tuple[str, ...] = (),
               while_posting: Callable[[], None] = lambda: time.sleep(0.2)) -> tuple[dict, list[str]]:
    """Post Open311 forms labelled ``label`` at ``rate`` for ``seconds`` (the first ``warmup`` of them not timed),
    calling ``while_posting`` until the client is done; the step's figures and its acknowledged case ids."""
    forms = report_forms(points, crs, int(rate * seconds), label=label, seed=seed)
    requests = [encode({"kind": "open311", "form": f}, api_key=key) for f in forms]
    loader, done = post_step(base, requests, rate, work, sources=sources)
    while loader.poll() is None:
        while_posting()
    out = (json.loads(done.read_text()) if loader.returncode == 0
           else {"error": (work / "client.log").read_text()[-2000:]})
    if "error" in out:
        return {"offered_per_s": rate, "posted": len(requests), "client_error": out["error"],
                "not_acknowledged": len(requests)}, []
    return step_figures(rate, out["posts"], warmup, len(requests)), [p[2] for p in out["posts"] if p[1] == 201]


def raise_rate(post: Callable[..., tuple[dict, list[str]]], *, quick: bool, rates: tuple[float, ...] = RATES,
               step_s: tuple[float, float] = (STEP_S, STEP_S_QUICK),
               warmup_s: tuple[float, float] = (WARMUP_S, WARMUP_S_QUICK), server_warmup_s: float = SERVER_WARMUP_S,
               settle: Callable[[], None] = lambda: time.sleep(1.0)) -> tuple[dict, list[dict], dict[str, list[str]]]:
    """The server's warm-up at the lowest rate, then ``rates`` step by step until a step's p99 exceeds
    :data:`P99_MS` or a request is not acknowledged.

    ``post(label=, rate=, seconds=, warmup=, seed=)`` runs one step (:func:`post_phase` with its target);
    ``step_s`` and ``warmup_s`` are (full, quick) seconds. Returns the warm-up, the steps, and each one's
    acknowledged case ids by label (``warmup``, ``step0``...).
    """
    step, warmup = (step_s[1], warmup_s[1]) if quick else (step_s[0], warmup_s[0])
    acked: dict[str, list[str]] = {}
    warm, acked["warmup"] = post(label="warmup", rate=rates[0], seconds=server_warmup_s, warmup=0.0, seed=9)
    steps = []
    for n, rate in enumerate(rates):
        figures, acked[f"step{n}"] = post(label=f"step{n}", rate=rate, seconds=warmup + step, warmup=warmup,
                                          seed=10 + n)
        steps.append(figures)
        if figures.get("p99_ms", float("inf")) > P99_MS or figures["not_acknowledged"]:
            break
        settle()  # the server settles between steps
    return warm, steps, acked


def knee_of(steps: list[dict]) -> tuple[dict | None, list[dict]]:
    """The knee (the last of the steps that all held, from the first on; None if the first did not) and the
    steps up to it (each checked by :func:`check_store`)."""
    knee, held = None, []
    for step in steps:
        if not step["held"]:
            break
        knee = step
        held.append(step)
    return knee, held


def capacity(work: Path, points: np.ndarray, crs: str, key: str, *,
             quick: bool) -> tuple[dict, list[dict], dict, str | None]:
    """Offered rate raised step by step against ``twin serve`` on ``work`` (:func:`raise_rate`), a browser
    probing the marker of a case of its own every :data:`PROBE_EVERY_MS` meanwhile.

    Returns the warm-up (figures as a step's), the steps, each one's acknowledged case ids by label
    (``warmup``, ``step0``...), and the browser's WebGL renderer.
    """
    probe_forms = iter(report_forms(points, crs, 10_000, label="probe", seed=4))
    with chromium() as browser, served(work, args=("--intake-rate", "1000000")) as url:
        base = url.rsplit("/", 1)[0]
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        sign_in(page, url)
        page.wait_for_function("window.twinFirstFrame !== undefined", timeout=120_000)
        page.wait_for_function("window.twinCameras > 0", timeout=60_000)
        renderer = webgl_renderer(page)

        def post(**step) -> tuple[dict, list[str]]:
            probes: list[dict] = []

            def probe() -> None:
                probes.append(page.evaluate(POST_AND_WAIT_FOR_MARKER, [{**next(probe_forms), "api_key": key}, 5000]))
                page.wait_for_timeout(PROBE_EVERY_MS)
            figures, acked = post_phase(base, points, crs, key, work.parent, **step, while_posting=probe)
            marker_ms = [p["ms"] for p in probes if p.get("ms") is not None]
            figures["marker"] = {"probes": len(probes), "drawn": len(marker_ms),
                                 "median_ms": round(float(np.median(marker_ms)), 1) if marker_ms else None,
                                 "max_ms": round(float(max(marker_ms)), 1) if marker_ms else None}
            return figures, acked

        warm, steps, acked = raise_rate(post, quick=quick, settle=lambda: page.wait_for_timeout(1000))
        page.close()
    return warm, steps, acked, renderer


def check_store(db: Path | str, phases: dict[str, dict], acked: dict[str, list[str]]) -> None:
    """Per phase (by label): acknowledged cases missing from the store ``db`` (a file or a PostgreSQL URL), cases
    stored more than once (one form, two cases), and whether it held (p99 within :data:`P99_MS`, every request
    acknowledged, none lost or doubled)."""
    with Store(db, read_only=True) as store:
        rows = store.con.execute("SELECT description, list(case_id) FROM cases WHERE description LIKE 'bench %' "
                                 "AND description NOT LIKE 'bench probe %' GROUP BY description").fetchall()
    stored_ids = {case_id for _, ids in rows for case_id in ids}
    extra: dict[str, int] = {}  # per phase: cases beyond the first of one form
    for description, ids in rows:
        label = description.split()[1]
        extra[label] = extra.get(label, 0) + len(ids) - 1
    for label, step in phases.items():
        ids = acked.get(label, [])
        step["lost"] = len(set(ids) - stored_ids)
        step["duplicated"] = len(ids) - len(set(ids)) + extra.get(label, 0)
        step["held"] = (step.get("p99_ms", float("inf")) <= P99_MS and not step["not_acknowledged"]
                        and not step["lost"] and not step["duplicated"])


def run(*, db: str | None = None, quick: bool = False) -> dict:
    source = Path(db or ROOT / "data" / "demo.duckdb")
    if not source.exists():
        raise FileNotFoundError(f"{source}: build the demo first (make demo)")
    with tempfile.TemporaryDirectory(prefix="twin-bench-feed-") as tmp:
        work = store_copy(source, into=Path(tmp) / "store")
        with open_for_command(work) as store:
            key = add_key(store.con, "bench-feed")
        points, crs = building_points(work)
        writer = in_process(work, points, crs, quick=quick)
        warm, steps, acked, renderer = capacity(work, points, crs, key, quick=quick)
        check_store(work, {"warmup": warm, **{f"step{n}": step for n, step in enumerate(steps)}}, acked)
    knee, held = knee_of(steps)
    marker_ms = [s["marker"]["max_ms"] for s in held if s["marker"]["max_ms"] is not None]
    result = {
        "benchmark": "feed",
        "db": str(source),
        "connections": CONNECTIONS,
        "step_s": STEP_S_QUICK if quick else STEP_S, "warmup_s": WARMUP_S_QUICK if quick else WARMUP_S,
        "knee_offered_per_s": knee["offered_per_s"] if knee else None,
        "knee": knee,
        "first_failing_step": next((s for s in steps if not s["held"]), None),
        "steps": steps,
        "server_warmup": warm,
        "in_process": writer,
        "lost": sum(s["lost"] for s in [warm, *steps]), "duplicated": sum(s["duplicated"] for s in [warm, *steps]),
    }
    result["goals"] = {
        **GOALS,
        "knee_met": bool(knee) and knee["offered_per_s"] >= GOALS["knee_cases_per_s_at_least"],
        "lost_or_duplicated_met": result["lost"] == 0 and result["duplicated"] == 0,
        "marker_met": bool(marker_ms) and max(marker_ms) <= GOALS["marker_ms_at_most"],
    }
    return write_result("feed", result, webgl_renderer=renderer, quick=quick)


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--post" in args:
        at = args.index("--post")
        client(args[at + 1], float(args[at + 2]), Path(args[at + 3]), Path(args[at + 4]))
    else:
        db_arg = args[args.index("--db") + 1] if "--db" in args else None
        print(json.dumps(run(db=db_arg, quick="--quick" in args), indent=2))
