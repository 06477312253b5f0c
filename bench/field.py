"""The grid workers' field benchmark (``twin bench field --db data/demo.duckdb --json``).

On a copy of the store, served by ``twin serve``:

- **First load on a phone.** Chromium as a phone (390×844, touch, device scale 3) with Chrome's own
  emulation through the DevTools protocol: the CPU slowed 4× (``Emulation.setCPUThrottlingRate``) and a
  "Slow 4G" network (150 ms round trip, 1.6 Mbit/s down, 750 kbit/s up,
  ``Network.emulateNetworkConditions``), the cache empty, the worker signed in. Timed from the navigation's
  start to the worker's list painted: the largest contentful paint (the browser's own record of pixels on
  screen) once the page's script has drawn the list; the bytes are every response's bytes on the wire
  (``Network.loadingFinished``). The list and a case are saved to ``bench/out/worker.png`` and
  ``worker-case.png`` (and the department figures on the leader's screen to ``departments.png``). The
  baseline, in the same run and the same emulation: the same list in a Panel document
  (``bench/worker_panel_baseline_app.py``, served by ``panel serve``), as a fair Panel user would build it,
  timed to its list painted. Median of ``LOADS`` loads each.
- **Positions under intake.** ``WORKERS`` grid workers (users made on the copy, one per micro-grid), each
  signed in and on patrol, check in every ``CHECK_IN_S`` seconds from their micro-grid (times staggered), over
  kept-alive connections from addresses of their own (127.0.0.x: the sign-in limit per address holds), for
  ``PHASE_S`` seconds: first alone (the baseline), then while Open311 intake posts ``INTAKE_RATE`` cases a
  second (a client in its own process, ``bench.feed``). A check-in's latency runs from its scheduled time to
  its reply. Afterwards the store is read: every acknowledged check-in and case is there exactly once.

Goals: first load ≤ 3 s and ≤ 500 KB; check-in p99 ≤ 300 ms under intake, nothing lost.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.browser import CHROMIUM, CHROMIUM_FLAGS, served  # noqa: E402
from bench.common import OUT, store_copy, write_result  # noqa: E402
from bench.feed import building_points, post_step, report_forms  # noqa: E402
from twin.access.access import add_user  # noqa: E402
from twin.access.keys import add_key  # noqa: E402
from twin.cases.replay import encode  # noqa: E402
from twin.geo.crs import transform_xy  # noqa: E402
from twin.store.store import Store, open_for_command  # noqa: E402

GOALS = {"first_load_s_at_most": 3.0, "first_load_kb_at_most": 500.0, "position_p99_ms_at_most": 300.0,
         "lost": 0}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 3}
CPU_SLOWDOWN = 4
SLOW_4G = {"offline": False, "latency": 150, "downloadThroughput": 1.6e6 / 8, "uploadThroughput": 750e3 / 8}
LOADS, LOADS_QUICK = 5, 2
WORKERS, CHECK_IN_S = 200, 30.0
PHASE_S, PHASE_S_QUICK = 120.0, 45.0
INTAKE_RATE = 100.0
PASSWORD = "bench-field-password-1"
SOURCES = 20  # client addresses 127.0.0.2 ... (the sign-in limit is 20 a minute per address)
BASELINE_APP = Path(__file__).with_name("worker_panel_baseline_app.py")

# In the page: whether the baseline's list is in the document (Bokeh puts each pane in shadow roots, nested).
IN_SHADOW_JS = """() => {
  const find = (root) => !!root.querySelector(".twin-baseline-case") ||
    [...root.querySelectorAll("*")].some((e) => e.shadowRoot && find(e.shadowRoot));
  return find(document);
}"""

# In the page: the largest contentful paint so far (ms from the navigation's start), once there is one.
LCP_JS = """() => new Promise((resolve) => {
  new PerformanceObserver((list) => { const e = list.getEntries(); resolve(e[e.length - 1].startTime); })
    .observe({ type: "largest-contentful-paint", buffered: true });
})"""


def phone_load(browser, url: str, *, ready_js: str, cookies: list[dict] | None = None) -> dict:
    """One cold load of ``url`` on the emulated phone: ms to the list painted, and the bytes on the wire."""
    context = browser.new_context(**PHONE)
    if cookies:
        context.add_cookies(cookies)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    cdp.send("Network.emulateNetworkConditions", SLOW_4G)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": CPU_SLOWDOWN})
    wire = {"bytes": 0, "requests": 0}

    def finished(event: dict) -> None:
        wire["bytes"] += event.get("encodedDataLength", 0)
        wire["requests"] += 1
    cdp.on("Network.loadingFinished", finished)
    page.goto(url, wait_until="commit", timeout=120_000)
    page.wait_for_function(ready_js, timeout=120_000, polling=100)
    painted = page.evaluate(LCP_JS)
    page.wait_for_timeout(1500)  # what the list brought in after it (none expected) counts in the bytes
    result = {"ms": round(float(painted), 1), "kb": round(wire["bytes"] / 1024, 1), "requests": wire["requests"]}
    context.close()
    return result


def first_loads(work: Path, *, quick: bool) -> dict:
    """The phone page and the Panel baseline, each loaded cold ``LOADS`` times on the emulated phone."""
    from playwright.sync_api import sync_playwright

    loads = LOADS_QUICK if quick else LOADS
    with open_for_command(work, create=False) as store:
        # the micro-grid with the most cases on a worker's list (not those a department holds)
        micro, = store.con.execute("SELECT grid_id FROM cases WHERE status IN ('reported', 'dispatched') AND "
                                   "department IS NULL GROUP BY grid_id ORDER BY count(*) DESC, grid_id "
                                   "LIMIT 1").fetchone()
        add_user(store.con, "bench.phone", PASSWORD, role="worker", grids=[micro], lang="zh", actor="bench")
    out: dict = {"micro_grid": micro}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            with served(work, probes=False) as url:
                base = url.rsplit("/", 1)[0]
                cookie = _sign_in(base, "bench.phone", source="127.0.0.1")
                cookies = [{"name": k, "value": v, "url": base} for k, v in
                           (c.split("=", 1) for c in cookie.split("; "))]
                runs = [phone_load(browser, f"{base}/worker?lang=zh", cookies=cookies,
                                   ready_js="window.twinWorkerReady === true") for _ in range(loads)]
                out["worker_page"] = _median(runs)
                out["screenshots"] = phone_screenshots(browser, f"{base}/worker?lang=zh", cookies)
            with served(work, app=str(BASELINE_APP), probes=False) as url:
                runs = [phone_load(browser, f"{url}?worker=bench.phone", ready_js=IN_SHADOW_JS)
                        for _ in range(loads)]
                out["panel_baseline"] = _median(runs)
        finally:
            browser.close()
    return out


def phone_screenshots(browser, url: str, cookies: list[dict]) -> list[str]:
    """The worker's list and its first case, as the README shows them (``bench/out/worker*.png``)."""
    context = browser.new_context(**PHONE, locale="zh-CN")
    context.add_cookies(cookies)
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.twinWorkerReady === true", timeout=120_000)
    OUT.mkdir(exist_ok=True)
    shots = [OUT / "worker.png", OUT / "worker-case.png"]
    page.screenshot(path=str(shots[0]))
    if page.locator("button.case").count():
        page.locator("button.case").first.tap()
        page.locator("#map path").first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots[1]))
    context.close()
    return [str(s.relative_to(ROOT)) for s in shots if s.exists()]


def departments_screenshot(work: Path, path: Path = OUT / "departments.png") -> str:
    """The department figures on the leader's screen, as the README shows them (``bench/out/departments.png``):
    the leader signed in, in Chinese, at 1920×1080, the left panel scrolled to the departments' table and the 满意率
    below it, photographed with a strip of the 3D view beside it."""
    from bench.browser import chromium, sign_in

    with served(work, role="leader", lang=None) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        sign_in(page, url, open_app=False)
        page.goto(f"{url}?lang=zh")
        page.wait_for_function("window.twinFirstFrame !== undefined", timeout=180_000)
        page.locator(".twin-department-table tr").nth(3).wait_for(timeout=60_000)
        page.wait_for_timeout(2500)  # the opening camera move
        page.locator(".twin-satisfaction-table").scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        loop = page.locator(".twin-loop").bounding_box()
        top = max(0.0, loop["y"] - 8)
        OUT.mkdir(exist_ok=True)
        page.screenshot(path=str(path), clip={"x": 0, "y": top, "width": 900,
                                              "height": min(1080 - top, loop["y"] + loop["height"] + 8 - top)})
        page.close()
    return str(path.relative_to(ROOT))


def _median(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["ms"])
    return {**ordered[len(ordered) // 2], "runs_ms": [r["ms"] for r in runs], "runs_kb": [r["kb"] for r in runs]}


class Worker:
    """One signed-in worker's phone: a kept-alive connection from an address of its own, posting check-ins."""

    def __init__(self, base: str, name: str, source: str, lonlat: tuple[float, float]) -> None:
        self.name, self.source, self.lonlat = name, source, lonlat
        parsed = urllib.parse.urlsplit(base)
        self.host, self.port = parsed.hostname, parsed.port
        self.cookie = _sign_in(base, name, source=source)
        self.connection: http.client.HTTPConnection | None = None
        self.lock = threading.Lock()

    def post(self, body: dict) -> tuple[int, dict]:
        with self.lock:
            for attempt in (0, 1):  # a connection the server closed meanwhile is opened again, once
                if self.connection is None:
                    self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30,
                                                                 source_address=(self.source, 0))
                try:
                    self.connection.request("POST", "/api/field/actions", json.dumps(body),
                                            {"Cookie": self.cookie, "X-Twin-Field": "1",
                                             "Content-Type": "application/json"})
                    response = self.connection.getresponse()
                    return response.status, json.loads(response.read() or b"{}")
                except (http.client.HTTPException, OSError):
                    self.connection.close()
                    self.connection = None
                    if attempt:
                        raise
        raise AssertionError("unreachable")


def _sign_in(base: str, name: str, *, source: str) -> str:
    parsed = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60, source_address=(source, 0))
    connection.request("POST", "/login", urllib.parse.urlencode({"username": name, "password": PASSWORD}),
                       {"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    response.read()
    if response.status != 302 or "error=" in (response.getheader("Location") or ""):
        raise RuntimeError(f"{name} could not sign in from {source}: HTTP {response.status}")
    cookies = "; ".join(c.split(";")[0] for c in response.msg.get_all("Set-Cookie"))
    connection.close()
    return cookies


def make_workers(work: Path, count: int) -> list[tuple[str, tuple[float, float]]]:
    """``count`` worker users, one per micro-grid holding buildings, each with a building's place in it (lon, lat)."""
    with open_for_command(work, create=False) as store:
        rows = store.con.execute("SELECT grid_id, any_value(label_x), any_value(label_y) FROM buildings WHERE grid_id "
                                 "IN (SELECT grid_id FROM grids WHERE level = 'micro' AND valid_to IS NULL) GROUP BY 1 "
                                 "ORDER BY 1 LIMIT ?", [count]).fetchall()
        for k, (grid_id, _, _) in enumerate(rows):
            add_user(store.con, f"bench.w{k:03d}", PASSWORD, role="worker", grids=[grid_id], actor="bench")
        crs = store.district.crs
    lonlat = transform_xy(np.array([[x, y] for _, x, y in rows]), crs, "EPSG:4326")
    return [(f"bench.w{k:03d}", (float(lon), float(lat))) for k, (lon, lat) in enumerate(lonlat)]


def check_ins(workers: list[Worker], *, label: str, seconds: float) -> dict:
    """Each worker checks in every ``CHECK_IN_S`` (staggered) for ``seconds``; latency from the scheduled time."""
    schedule = sorted((start + k * CHECK_IN_S, w) for i, w in enumerate(workers)
                      for start in [i * CHECK_IN_S / len(workers)] for k in range(int(seconds // CHECK_IN_S) + 1)
                      if start + k * CHECK_IN_S < seconds)
    results: list[tuple[float, int, str]] = []
    began = time.perf_counter()

    def one(due: float, worker: Worker, n: int) -> None:
        wait = began + due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        lon, lat = worker.lonlat
        key = f"{label}-{worker.name}-{n}".replace(".", "-")
        try:
            status, body = worker.post({"kind": "position", "key": key, "lon": lon + 1e-6 * (n % 7), "lat": lat})
        except OSError:
            status, body = 0, {}
        results.append(((time.perf_counter() - began - due) * 1000, status, key if status == 200 else ""))

    with ThreadPoolExecutor(max_workers=32) as pool:
        for n, (due, worker) in enumerate(schedule):
            pool.submit(one, due, worker, n)
    latency = np.array([r[0] for r in results])
    return {"check_ins": len(schedule), "answered": len(results), "acknowledged": sum(r[1] == 200 for r in results),
            "refused": {str(s): sum(r[1] == s for r in results) for s in {r[1] for r in results if r[1] != 200}},
            "p50_ms": round(float(np.percentile(latency, 50)), 1),
            "p99_ms": round(float(np.percentile(latency, 99)), 1),
            "max_ms": round(float(latency.max()), 1), "keys": [r[2] for r in results if r[2]]}


def positions_under_intake(work: Path, *, quick: bool) -> dict:
    """The workers' check-ins alone, then with intake at ``INTAKE_RATE``; then the store checked for losses."""
    seconds = PHASE_S_QUICK if quick else PHASE_S
    people = make_workers(work, WORKERS)
    with open_for_command(work, create=False) as store:
        key = add_key(store.con, "bench-field")
    points, crs = building_points(work)
    forms = report_forms(points, crs, int(INTAKE_RATE * seconds), label="field", seed=17)
    requests = [encode({"kind": "open311", "form": f}, api_key=key) for f in forms]
    with served(work, args=("--intake-rate", "1000000"), probes=False) as url:
        base = url.rsplit("/", 1)[0]
        with ThreadPoolExecutor(max_workers=8) as pool:  # 200 sign-ins of ~50 ms of scrypt each
            workers = list(pool.map(lambda k: Worker(base, people[k][0], f"127.0.0.{2 + k % SOURCES}",
                                                     people[k][1]), range(len(people))))
        for w in workers:
            status, _ = w.post({"kind": "patrol", "key": f"on-{w.name}".replace(".", "-"), "on": True, "age_ms": 5000})
            assert status == 200, f"{w.name} could not switch patrol on: {status}"
        alone = check_ins(workers, label="alone", seconds=seconds)
        loader, done = post_step(base, requests, INTAKE_RATE, work.parent)
        loaded = check_ins(workers, label="loaded", seconds=seconds)
        try:  # an intake slower than offered (a loaded machine) is a finding, not a crash that leaves it running
            loader.wait(timeout=3 * seconds + 120)
        except subprocess.TimeoutExpired:
            loader.kill()
            loader.wait()
        posted = json.loads(done.read_text()) if loader.returncode == 0 and done.exists() else {
            "error": f"the intake client failed or did not finish within {3 * seconds + 120:.0f} s"}
    intake_acked = [p[2] for p in posted.get("posts", []) if p[1] == 201]
    with Store(work, read_only=True) as store:
        stored_keys = {k for k, in store.con.execute("SELECT key FROM patrol_checkins").fetchall()}
        checkins, distinct = store.con.execute("SELECT count(*), count(DISTINCT key) FROM patrol_checkins").fetchone()
        cases = {c for c, in store.con.execute("SELECT case_id FROM cases WHERE description LIKE 'bench field %'")
                 .fetchall()}
    acked_keys = alone["keys"] + loaded["keys"]
    intake = {"offered_per_s": INTAKE_RATE, "posted": len(requests), "acknowledged": len(intake_acked),
              "error": posted.get("error")}
    return {"workers": len(workers), "check_in_every_s": CHECK_IN_S, "phase_s": seconds,
            "alone": {k: v for k, v in alone.items() if k != "keys"},
            "under_intake": {k: v for k, v in loaded.items() if k != "keys"}, "intake": intake,
            "lost_check_ins": len(set(acked_keys) - stored_keys), "duplicated_check_ins": checkins - distinct,
            "lost_cases": len(set(intake_acked) - cases)}


def run(*, db: str | None = None, quick: bool = False) -> dict:
    source = Path(db or ROOT / "data" / "demo.duckdb")
    if not source.exists():
        raise FileNotFoundError(f"{source}: build the demo first (make demo)")
    with tempfile.TemporaryDirectory(prefix="twin-bench-field-") as tmp:
        work = store_copy(source, into=Path(tmp) / "store")
        Store(work).close()  # upgraded to this program's schema once, before anything is timed
        loads = first_loads(work, quick=quick)
        loads["screenshots"].append(departments_screenshot(work))
        positions = positions_under_intake(work, quick=quick)
    page = loads["worker_page"]
    loaded = positions["under_intake"]
    result = {"benchmark": "field", "db": str(source),
              "phone": {"viewport": PHONE["viewport"], "cpu_slowdown": CPU_SLOWDOWN, "network": SLOW_4G},
              "first_load": loads, "positions": positions}
    result["goals"] = {
        **GOALS,
        "first_load_met": page["ms"] / 1000 <= GOALS["first_load_s_at_most"]
        and page["kb"] <= GOALS["first_load_kb_at_most"],
        "position_p99_met": loaded["p99_ms"] <= GOALS["position_p99_ms_at_most"],
        "nothing_lost_met": positions["lost_check_ins"] == 0 and positions["lost_cases"] == 0
        and positions["duplicated_check_ins"] == 0 and loaded["acknowledged"] == loaded["check_ins"]
        and positions["intake"]["acknowledged"] == positions["intake"]["posted"],
    }
    return write_result("field", result, quick=quick)


if __name__ == "__main__":
    db_arg = sys.argv[sys.argv.index("--db") + 1] if "--db" in sys.argv else None
    print(json.dumps(run(db=db_arg, quick="--quick" in sys.argv), indent=2))
