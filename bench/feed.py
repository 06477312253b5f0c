"""Live intake benchmark (``twin bench feed --db data/demo.duckdb --json``).

On a copy of the full demo district served by ``twin serve``:

- load: Open311 requests (form-encoded, at building points across the district,
  of every non-AI service) posted over loopback on schedule at ``OFFERED_RATE``
  per second, over 64 kept-alive connections (clients: cameras, apps, worker
  phones): a warm-up of ``WARMUP_S``, then 60 s measured. Latency runs from each
  request's scheduled time to its reply, so a queue behind a slow reply counts.
  Loss and duplicates are counted over every request, warm-up included.
- a Chromium session is open on the app the whole time; every 2 s it posts a
  case of its own and measures, in the page's clock, the time from the reply to
  the frame in which that case's marker is first drawn.
- afterwards the store is read: every acknowledged case must be there once
  (lost and duplicated cases are counted).
- baseline, in the same run: the straightforward intake, one transaction per
  case with matching in SQL, timed in-process on the same store for 10 s.

Goals: at least 500 accepted cases per second; p99 latency at most 200 ms;
0 lost or duplicated; marker drawn at most 1 s after the reply.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from bench.browser import POST_AND_WAIT_FOR_MARKER, chromium, served, sign_in  # noqa: E402
from twin.cases.cases import create_case, load_taxonomy  # noqa: E402
from twin.geo.crs import transform_xy  # noqa: E402
from twin.access.keys import add_key  # noqa: E402
from twin.cases.replay import encode, post_all  # noqa: E402
from twin.store.store import Store, open_for_command  # noqa: E402

OFFERED_RATE = 600.0
CONNECTIONS = 64
WARMUP_S = 5.0
GOALS = {"cases_per_s_at_least": 500.0, "p99_ms_at_most": 200.0, "lost_or_duplicated": 0, "marker_ms_at_most": 1000.0}



def report_forms(db: Path, count: int, *, seed: int = 0) -> list[dict]:
    """``count`` Open311 forms at building points (jittered a few metres), of every non-AI service."""
    rng = np.random.default_rng(seed)
    with Store(db, read_only=True) as store:
        points = store.con.execute("SELECT label_x, label_y FROM buildings ORDER BY building_id").df().to_numpy()
        crs = store.district.crs
    picked = points[rng.integers(0, len(points), count)] + rng.normal(0, 3, (count, 2))
    lonlat = transform_xy(picked, crs, "EPSG:4326")
    codes = [s["code"] for s in load_taxonomy()["subcategories"] if not s.get("ai")]
    return [{"service_code": codes[k % len(codes)], "lat": f"{lat:.7f}", "long": f"{lon:.7f}",
             "description": f"bench report {k}"} for k, (lon, lat) in enumerate(lonlat)]


def baseline_cases_per_s(db: Path, forms: list[dict], *, seconds: float) -> float:
    """One transaction per case, matching in SQL: the intake without batching or memory."""
    with Store(db) as store:
        crs = store.district.crs
        xy = transform_xy(np.array([[float(f["long"]), float(f["lat"])] for f in forms]), "EPSG:4326", crs)
        started, done = time.perf_counter(), 0
        while time.perf_counter() - started < seconds and done < len(forms):
            with store.transaction() as con:
                create_case(con, subcategory_code=forms[done]["service_code"], source="bench-baseline",
                            x=float(xy[done][0]), y=float(xy[done][1]))
            done += 1
        return done / (time.perf_counter() - started)


def run_load(base: str, requests: list[tuple[str, str, bytes]], out: dict) -> None:
    started = time.perf_counter()
    out["posted"] = asyncio.run(post_all(base, iter(requests), rate=OFFERED_RATE, connections=CONNECTIONS))
    out["seconds"] = time.perf_counter() - started


def run(*, db: str | None = None, quick: bool = False) -> dict:
    source = Path(db or ROOT / "data" / "demo.duckdb")
    if not source.exists():
        raise FileNotFoundError(f"{source}: build the demo first (make demo)")
    seconds = 10.0 if quick else 60.0
    with tempfile.TemporaryDirectory(prefix="twin-bench-feed-") as tmp:
        work = Path(tmp) / "feed.duckdb"
        shutil.copy(source, work)
        with open_for_command(work) as store:
            key = add_key(store.con, "bench-feed")
        forms = report_forms(work, int(OFFERED_RATE * (seconds + WARMUP_S)) + 200)
        baseline = baseline_cases_per_s(work, forms[-200:], seconds=10.0 if not quick else 3.0)
        with Store(work, read_only=True) as store:
            before = {r[0] for r in store.con.execute("SELECT case_id FROM cases").fetchall()}
        probes: list[dict] = []
        load: dict = {}
        with chromium() as browser, served(work) as url:
            base = url.rsplit("/", 1)[0]
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            sign_in(page, url)
            page.wait_for_function("window.twinFirstFrame !== undefined", timeout=120_000)
            page.wait_for_function("window.twinCameras > 0", timeout=60_000)
            requests = [encode({"kind": "open311", "form": f}, api_key=key) for f in forms[:-200]]  # ready before
            loader = threading.Thread(target=run_load, args=(base, requests, load))
            loader.start()
            k = 0
            while loader.is_alive():
                probe = {**forms[-(k % 200) - 1], "api_key": key}
                probes.append(page.evaluate(POST_AND_WAIT_FOR_MARKER, [probe, 5000]))
                k += 1
                page.wait_for_timeout(2000)
            loader.join()
            page.close()
        with Store(work, read_only=True) as store:
            rows = store.con.execute("SELECT case_id FROM cases").fetchall()
    everything = load["posted"]
    acked = [p.reply[0]["service_request_id"] for p in everything if p.status == 201]
    start = everything[0].sent + WARMUP_S
    posted = [p for p in everything if p.sent >= start]  # the measured part
    latency_ms = np.array([(p.answered - p.sent) * 1000 for p in posted])
    measured_s = max(p.answered for p in posted) - start
    stored_new = [r[0] for r in rows if r[0] not in before]
    probe_ids = {p["id"] for p in probes if p.get("id")}
    stored_set = set(stored_new)
    lost = len(set(acked) - stored_set)
    duplicated = (len(acked) - len(set(acked))) + len(stored_set - set(acked) - probe_ids)
    marker_ms = [p["ms"] for p in probes if p.get("ms") is not None]
    rate = sum(p.status == 201 for p in posted) / measured_s
    result = {
        "benchmark": "feed",
        "db": str(source),
        "seconds": round(measured_s, 1),
        "warmup_s": WARMUP_S,
        "offered_per_s": OFFERED_RATE,
        "posted": len(posted),
        "accepted": sum(p.status == 201 for p in posted),
        "posted_with_warmup": len(everything),
        "refused": {str(s): int(n) for s, n in zip(*np.unique([p.status for p in posted if p.status != 201],
                                                               return_counts=True))},
        "accepted_cases_per_s": round(rate, 1),
        "latency_ms": {"p50": round(float(np.percentile(latency_ms, 50)), 1),
                       "p99": round(float(np.percentile(latency_ms, 99)), 1),
                       "max": round(float(latency_ms.max()), 1)},
        "lost": lost,
        "duplicated": duplicated,
        "marker_after_reply_ms": {"probes": len(probes), "drawn": len(marker_ms),
                                  "median": round(float(np.median(marker_ms)), 1) if marker_ms else None,
                                  "max": round(float(max(marker_ms)), 1) if marker_ms else None},
        "baseline_per_request_commit_cases_per_s": round(baseline, 1),
        "speedup_over_baseline": round(rate / baseline, 1),
    }
    result["goals"] = {
        **GOALS,
        "rate_met": rate >= GOALS["cases_per_s_at_least"],
        "p99_met": result["latency_ms"]["p99"] <= GOALS["p99_ms_at_most"],
        "lost_or_duplicated_met": lost == 0 and duplicated == 0,
        "marker_met": bool(marker_ms) and len(marker_ms) == len(probes) and max(marker_ms) <= GOALS["marker_ms_at_most"],
    }
    return write_result("feed", result)


if __name__ == "__main__":
    db_arg = sys.argv[sys.argv.index("--db") + 1] if "--db" in sys.argv else None
    print(json.dumps(run(db=db_arg, quick="--quick" in sys.argv), indent=2))
