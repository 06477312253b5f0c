"""Clicks while grids are saved (``twin bench concurrency --db data/demo.duckdb --json``).

One ``twin serve`` on a copy of the store, two signed-in browser sessions in
two Chromium processes:

- a **planner** drags a vertex shared by micro-grids of the grid the editor
  opens on, gives a reason and presses Save (the real planner save path:
  the grid engine on the server, through the store's writer, with its
  CHECKPOINT), then drags it back and saves again, again and again;
- an **operator** clicks buildings in the 3D view. Each click is timed from
  the pointer's release to the inspector card holding the building's id
  (the residents' page, audited through the writer, follows it).

The operator's clicks are measured first with no saves running (the baseline)
and then while the planner saves, in the same run. Goal: click → filled
inspector ≤ 300 ms at p95 while saves run.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.browser import ServedURL, browser_user, chromium, served, sign_in  # noqa: E402
from bench.common import store_copy, write_result  # noqa: E402
from bench.view import WATCH_CARD, tall_buildings  # noqa: E402
from twin.errors import TwinError  # noqa: E402
from twin.grids.gridedit import move_vertex  # noqa: E402
from twin.grids.gridrules import errors  # noqa: E402
from twin.grids.gridversions import check_edit, current_grids  # noqa: E402
from twin.store.store import Store  # noqa: E402

GOALS = {"click_to_inspector_p95_ms_at_most": 300.0}
PARENT = "S01-C01-G1"  # the grid the planner's editor opens on
CLICK_TIMEOUT_MS = 10_000
SAVE_TIMEOUT_MS = 60_000
ANSWERS = ("Saved", "Refused", "Nothing differed")  # how the planner's screen answers a Save

# Page coordinates of a point of the plan (relative to the district origin), from the plot's own scales.
PLAN_TO_PAGE = """([x, y]) => {
  for (const doc of Bokeh.documents) {
    const plot = doc.get_model_by_name("twin-plan");
    if (plot == null) continue;
    const view = Bokeh.index.query_one((v) => v.model === plot);
    if (view == null) return null;
    const box = view.canvas_view.el.getBoundingClientRect();
    return [box.left + view.frame.x_scale.compute(x), box.top + view.frame.y_scale.compute(y)];
  }
  return null;
}"""
# The pointer's release, as the page sees it (capturing, before the view's own handlers).
CLICK_CLOCK = "document.addEventListener('pointerup', () => { window.__clickAt = performance.now(); }, true)"
WEBGL_RENDERER = """() => { const gl = document.createElement('canvas').getContext('webgl2');
  const info = gl && gl.getExtension('WEBGL_debug_renderer_info');
  return gl ? gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER) : null; }"""


def a_move(db: Path, *, breaks: bool = False) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    """A vertex shared by several micro-grids of ``PARENT`` and a move of it that breaks a grid rule
    (``breaks``) or none: ``(at, to, owners, a point inside the first owner, origin)``, read before the
    server holds the store."""
    steps = ([30.0, 25.0], [-30.0, 25.0], [30.0, -25.0]) if breaks else ([6.0, 4.0], [-6.0, 4.0], [6.0, -4.0])
    with Store(db, read_only=True) as store:
        con = store.con
        origin = np.array(store.district.origin[:2])
        shapes = current_grids(con, parent_id=PARENT).geometry
        parent = current_grids(con, grid_ids=[PARENT]).geometry.iloc[0]
        owners: dict[tuple, list[str]] = {}
        for g, geom in shapes.items():
            for xy in {tuple(p) for p in np.round(shapely.get_coordinates(geom), 3)}:
                owners.setdefault(xy, []).append(g)
        for xy, grids in sorted(owners.items(), key=lambda kv: -len(kv[1])):
            at = np.array(xy)
            for step in steps:
                try:
                    moved = move_vertex(shapes, at=at, to=at + step, tolerance_m=0.05, parent=parent,
                                        parent_id=PARENT)
                except TwinError:  # on the parent's outline: the editor refuses it
                    continue
                if bool(errors(check_edit(con, PARENT, moved))) == breaks:
                    inside = np.array(shapes[grids[0]].representative_point().coords[0])
                    return at, at + step, grids, inside, origin
    raise RuntimeError(f"no vertex of {PARENT} has a move that {'breaks' if breaks else 'keeps'} the grid rules")


def on_plan(page, xy: np.ndarray, origin: np.ndarray) -> tuple[float, float]:
    """Page coordinates of a point of the planner's plan."""
    found = page.evaluate(PLAN_TO_PAGE, (np.asarray(xy) - origin).tolist())
    if found is None:
        raise RuntimeError("the planner's plan is not on the page")
    return found


def drag_vertex(page, at, to, inside, origin) -> float:
    """Drag a vertex with Bokeh's PolyEditTool as a person does; returns the time of the drop."""
    page.get_by_role("button", name="Move vertex", exact=True).click()  # the mode stays on when pressed again
    page.mouse.move(*on_plan(page, inside, origin))  # a long press on a grid shows its vertices
    page.mouse.down()
    page.wait_for_timeout(900)
    page.mouse.up()
    page.wait_for_timeout(300)
    (x0, y0), (x1, y1) = on_plan(page, at, origin), on_plan(page, to, origin)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3, steps=3)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    return time.perf_counter()


class Planner(threading.Thread):
    """Saves a grid edit through the planner's screen in its own Chromium until told to stop."""

    def __init__(self, url: ServedURL, move: tuple) -> None:
        super().__init__(name="bench-planner", daemon=True)
        self.url, self.move = url, move
        self.ready, self.go, self.stop = threading.Event(), threading.Event(), threading.Event()
        self.save_s: list[float] = []
        self.refused: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with chromium() as browser:
                page = browser.new_page(viewport={"width": 1700, "height": 1000})
                sign_in(page, self.url)
                page.locator(".twin-before-after").filter(has_text="No change yet").wait_for(timeout=120_000)
                page.wait_for_function("window.Bokeh && Bokeh.documents.length > 0", timeout=60_000)
                page.wait_for_timeout(1000)  # the plan's first layout
                self.ready.set()
                self.go.wait()
                at, to, _, inside, origin = self.move
                while not self.stop.is_set():
                    self._save(page, at, to, inside, origin)
                    at, to = to, at  # and back again
                page.close()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.ready.set()

    def _save(self, page, at, to, inside, origin) -> None:
        drag_vertex(page, at, to, inside, origin)
        page.locator(".twin-before-after").filter(has_text="→").wait_for(timeout=30_000)
        reason = page.get_by_placeholder("why (required to save)")
        reason.fill("bench: the compound's gate moved")
        reason.press("Tab")
        message = page.locator(".twin-planner-message")

        def shown() -> str:  # the pane's own text, in its shadow root
            return message.evaluate("el => { const r = el.shadowRoot || el; const t = r.querySelector('div, p, span');"
                                    " return (t || r).innerText || ''; }")
        before = shown()
        started = time.perf_counter()
        page.get_by_role("button", name="Save", exact=True).click()
        while (text := shown()) == before or not any(w in text for w in ANSWERS):
            if time.perf_counter() - started > SAVE_TIMEOUT_MS / 1000:
                raise TimeoutError(f"no answer to Save after {SAVE_TIMEOUT_MS / 1000:.0f} s; the message: {text!r}")
            page.wait_for_timeout(100)
        if "Saved" in text:
            self.save_s.append(time.perf_counter() - started)
        else:
            self.refused.append(text[:200])
            page.get_by_role("button", name="Undo").click()


def click_times(page, origin: tuple, targets: list[tuple], *, clicks: int) -> dict:
    """Click buildings in turn (never the same twice running); each click's ms to the card holding its id."""
    times, failures, missed = [], 0, set()
    k = 0
    while len(times) + failures < clicks and len(missed) < len(targets):
        building_id, x, y, top = targets[k % len(targets)]
        k += 1
        if building_id in missed:
            continue
        px, py = page.evaluate(f"window.twinView.worldToPage({x - origin[0]}, {y - origin[1]}, {top - 0.5})")
        page.evaluate("window.__cardFilled = undefined; window.__clickAt = undefined")
        page.evaluate(WATCH_CARD, building_id)
        page.mouse.click(px, py)
        try:
            page.wait_for_function("window.__cardFilled !== undefined", timeout=CLICK_TIMEOUT_MS)
        except Exception:  # no card for it: another building in front (baseline), or too slow (counted)
            page.evaluate("window.__cardWatch && window.__cardWatch.disconnect()")
            failures += 1
            continue
        times.append(page.evaluate("window.__cardFilled - window.__clickAt"))
        page.wait_for_timeout(150)  # a person looks at the card before the next click
    if not times:
        return {"clicks": 0, "failures": failures}
    return {"clicks": len(times), "failures": failures, "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1), "max_ms": round(max(times), 1),
            "first_ms": round(times[0], 1), "worst_ms": round(max(times), 1), "all_ms": [round(t, 1) for t in times]}


def clickable(page, origin: tuple, targets: list[tuple]) -> list[tuple]:
    """The targets whose click fills the card with themselves (none in front of them from the top)."""
    found = []
    for row in targets:
        if click_times(page, origin, [row], clicks=1)["clicks"]:
            found.append(row)
    return found


def run(*, db: str | None = None, quick: bool = False) -> dict:
    source = Path(db or ROOT / "data" / "demo.duckdb")
    if not source.exists():
        raise FileNotFoundError(f"{source}: build the demo first (make demo)")
    copy = store_copy(source)
    Store(copy).close()  # upgrades an older store before the read-only looks below
    move = a_move(copy)
    origin, targets = tall_buildings(copy, 24)
    operator = browser_user(copy, role="operator")
    clicks = 12 if quick else 40
    with served(copy, role="planner") as planner_url:
        operator_url = ServedURL(planner_url)
        operator_url.user, operator_url.password = operator
        planner = Planner(planner_url, move)
        planner.start()
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.add_init_script(CLICK_CLOCK)
            sign_in(page, operator_url)
            page.wait_for_function("window.twinFirstFrame !== undefined", timeout=120_000)
            renderer = page.evaluate(WEBGL_RENDERER)
            page.wait_for_timeout(1500)
            page.get_by_role("button", name="Top").click()
            page.wait_for_timeout(1500)
            targets = clickable(page, origin, targets)
            if len(targets) < 2:
                raise RuntimeError("fewer than two of the tallest buildings can be clicked from the top")
            baseline = click_times(page, origin, targets, clicks=clicks)
            planner.ready.wait(timeout=300)
            if planner.error is not None:
                raise RuntimeError(f"the planner's session failed: {planner.error}") from planner.error
            planner.go.set()
            while not planner.save_s and not planner.refused and planner.is_alive():
                time.sleep(0.2)  # the loaded phase starts with the first save done
            saves_before = len(planner.save_s)
            loaded = click_times(page, origin, targets, clicks=clicks)
            saves_during = len(planner.save_s) - saves_before
            planner.stop.set()
            page.close()
        planner.join(timeout=SAVE_TIMEOUT_MS / 1000 + 30)
    if planner.error is not None:
        raise RuntimeError(f"the planner's session failed: {planner.error}") from planner.error
    result = {
        "benchmark": "concurrency",
        "db": str(source),
        "clicking_role": "operator (residents shown, each page audited through the writer)",
        "click_to_inspector_ms": {"no_saves": baseline, "while_saving": loaded},
        "grid_saves": {"during_loaded_clicks": saves_during, "total": len(planner.save_s),
                       "refused": len(planner.refused),
                       "save_to_saved_message_s_median": round(statistics.median(planner.save_s), 2)
                       if planner.save_s else None},
        "clickable_targets": len(targets),
    }
    p95 = loaded.get("p95_ms")
    result["goals"] = {**GOALS, "met": p95 is not None and loaded["failures"] == 0
                       and p95 <= GOALS["click_to_inspector_p95_ms_at_most"] and saves_during > 0}
    return write_result("concurrency", result, webgl_renderer=renderer)


if __name__ == "__main__":
    db_arg = sys.argv[sys.argv.index("--db") + 1] if "--db" in sys.argv else None
    print(json.dumps(run(db=db_arg, quick="--quick" in sys.argv), indent=2))
