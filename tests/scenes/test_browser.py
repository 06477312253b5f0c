"""What a person sees and clicks, in Debian's Chromium against `twin serve` on a small demo store."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import shapely
from PIL import Image
from playwright.sync_api import expect

from bench.browser import POST_AND_WAIT_FOR_MARKER, WebSocketMeter, chromium, served, sign_in
from scenes.colours import BASEMAP_COLOURS
from scenes.i18n import case_kind_name, translations
from twin.access.access import SIGNIN_REFUSED
from twin.geo.basemap import load_basemap
from twin.store.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(small_demo, tmp_path_factory):
    # The server holds its store for writing, so it serves a copy and the tests read the original.
    served_copy = tmp_path_factory.mktemp("served") / "demo.duckdb"
    shutil.copy(small_demo, served_copy)
    with served(served_copy) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def watched_page(browser):
    """A new page that keeps its console errors (``page.console_errors``) and counts its websocket bytes
    (``page.meter``)."""
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(f"{m.text} at {m.location}"))
    page.on("pageerror", lambda e: page.console_errors.append(f"{e}: {e.stack}"))
    page.meter = WebSocketMeter(page)
    return page


@pytest.fixture
def page(browser, app_url):
    page = watched_page(browser)
    page.requests = []
    sign_in(page, app_url)
    page.on("request", lambda r: page.requests.append(r.url))
    page.wait_for_function("window.twinFirstFrame !== undefined", timeout=60_000)
    page.wait_for_function("window.twinCameras > 0", timeout=30_000)  # cameras follow the first frame
    page.wait_for_timeout(800)  # the opening camera move
    yield page
    page.close()


# Every text node and form value on the page, Panel's shadow roots included (page.content() sees none of them).
SEEN_TEXT = """() => {
  const parts = [];
  const walk = (root) => {
    const nodes = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
    for (let n = nodes.currentNode; n; n = nodes.nextNode()) {
      if (n.nodeType === Node.TEXT_NODE) { parts.push(n.nodeValue); continue; }
      if (n.shadowRoot) walk(n.shadowRoot);
      if (typeof n.value === 'string') parts.push(n.value);
      if (n.title) parts.push(n.title);
    }
  };
  walk(document.body);
  return parts.join('\\n');
}"""


def seen_text(page) -> str:
    """What a person can read on the page, through every shadow root."""
    return page.evaluate(SEEN_TEXT)


def canvas_pixels(page) -> np.ndarray:
    box = page.locator(".twin-view canvas").first.bounding_box()
    png = page.screenshot(clip=box)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])


def building_share(pixels: np.ndarray) -> float:
    """The share of the canvas's pixels that are neither the background nor the ground (nor roads, water or
    green space): buildings."""
    grounds = [np.array([15, 23, 36]), np.array([27, 42, 73])]
    unlit = [rgb(c) for c in BASEMAP_COLOURS.values()]  # drawn without lighting: exactly their colour
    return float(np.all([np.abs(pixels - g).sum(axis=2) > 40 for g in grounds] +
                        [np.abs(pixels - g).sum(axis=2) > 6 for g in unlit], axis=0).mean())


def test_the_canvas_draws_the_district_and_nothing_comes_from_outside(page):
    pixels = canvas_pixels(page)
    assert building_share(pixels) > 0.1, "buildings cover part of the canvas"
    assert len(np.unique(pixels.reshape(-1, 3) // 16, axis=0)) > 20, "shaded, coloured buildings"
    host = page.url.split("/")[2]
    assert all(r.split("/")[2] == host for r in page.requests if r.startswith("http")), "no CDN"
    assert page.console_errors == []


def inside_points(shape, *, inset: float, avoid=None, n: int = 12) -> list[tuple[float, float]]:
    """Up to ``n`` points spread over ``shape`` at least ``inset`` m from its edge (and from ``avoid``)."""
    inner = shape.buffer(-inset)
    if avoid is not None:
        inner = inner.difference(avoid)
    xmin, ymin, xmax, ymax = inner.bounds
    grid = shapely.points(*np.meshgrid(np.linspace(xmin, xmax, 40), np.linspace(ymin, ymax, 40)))
    inside = grid.ravel()[shapely.contains(inner, grid.ravel())]
    return [(p.x, p.y) for p in inside[:: max(1, len(inside) // n)]]


UNCHECK_ALL = """() => {
  const boxes = [];
  const walk = (root) => { for (const e of root.querySelectorAll("*")) {
    if (e.shadowRoot) walk(e.shadowRoot);
    if (e.tagName === "INPUT" && e.type === "checkbox") boxes.push(e);
  } };
  walk(document);
  for (const b of boxes) if (b.checked) b.click();
  return boxes.length;
}"""


def test_roads_and_the_river_are_drawn_under_the_buildings_after_the_first_frame(page, small_demo):
    page.wait_for_function("window.twinBasemap > 0", timeout=30_000)
    # The camera fans and case dots are drawn over everything, the ground included: switched off (the view's
    # checkboxes, "cameras" and "cases", the page's only ones with "party", which starts off).
    assert page.evaluate(UNCHECK_ALL) == 3
    page.wait_for_timeout(500)
    page.locator(".twin-nav-top").click()  # the whole district from above
    page.wait_for_timeout(1500)
    box = page.locator(".twin-view canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 400)  # a little further out, for the river south of the district
    page.wait_for_timeout(1500)
    legends = [page.locator(f".twin-view {c}").first.bounding_box() for c in (".twin-legend", ".twin-marker-legend")]
    with Store(small_demo, read_only=True) as store:
        ground, (ox, oy, _) = load_basemap(store.con), store.district.origin
        grid_lines = store.con.execute("SELECT ST_AsWKB(ST_Union_Agg(ST_Boundary(boundary))) FROM grids").fetchone()[0]
    avoid = shapely.from_wkb(bytes(grid_lines)).buffer(3.0)  # grid outlines run along the street centrelines
    pixels = canvas_pixels(page)
    def under_a_legend(px, py):
        return any(b and b["x"] <= px <= b["x"] + b["width"] and b["y"] <= py <= b["y"] + b["height"] for b in legends)

    for kind, inset, n in (("road", 2.0, 6), ("water", 8.0, 60)):
        shapes = ground[ground["kind"] == kind].geometry
        points = [p for shape in shapes for p in inside_points(shape, inset=inset, avoid=avoid, n=n)]
        seen = []
        for x, y in points:
            px, py = page.evaluate(f"window.twinView.worldToPage({x - ox}, {y - oy}, 0)")
            col, row = int(px - box["x"]), int(py - box["y"])
            if 0 <= row < pixels.shape[0] and 0 <= col < pixels.shape[1] and not under_a_legend(px, py):
                seen.append(np.abs(pixels[row, col] - rgb(BASEMAP_COLOURS[kind])).sum() <= 24)
        assert len(seen) >= 6, f"the {kind} lies in the view"
        assert np.mean(seen) >= 0.8, f"{kind} pixels have the {kind} colour ({np.mean(seen):.0%} of {len(seen)})"
    marks = page.evaluate("[window.twinMarks.basemap, window.twinFirstFrame]")
    assert marks[0] > marks[1], "the ground came after the first frame"
    assert page.console_errors == []


def test_clicking_a_building_fills_the_inspector(page, small_demo):
    with Store(small_demo, read_only=True) as store:
        building_id, x, y, top, residents = store.con.execute("""
            SELECT b.building_id, b.label_x - m.value::DOUBLE, b.label_y - n.value::DOUBLE, b.base_z + b.height,
                   count(*) AS people
            FROM buildings b JOIN residents r USING (building_id), meta m, meta n
            WHERE m.key = 'origin_x' AND n.key = 'origin_y'
            GROUP BY ALL ORDER BY people DESC LIMIT 1""").fetchone()
        first_name, = store.con.execute("SELECT name FROM residents WHERE building_id = ? "
                                        "ORDER BY unit, household_id, room, resident_id LIMIT 1", [building_id]).fetchone()
    page.get_by_role("button", name="Operator").click()
    page.get_by_role("button", name="Top").click()
    page.wait_for_timeout(1200)
    expect(page.get_by_text("Click a building, a case or a camera.")).to_be_visible()
    # Where its roof lands on screen, from the view's own camera.
    px, py = page.evaluate(f"window.twinView.worldToPage({x}, {y}, {top - 0.5})")
    page.mouse.click(px, py)
    expect(page.get_by_text(building_id, exact=True)).to_be_visible(timeout=10_000)
    expect(page.get_by_text(f"{residents:,} in ")).to_be_visible()
    expect(page.get_by_text(first_name, exact=True).first).to_be_visible(timeout=10_000)
    expect(page.get_by_text(f"residents 1–50 of {residents:,}")).to_be_visible()
    assert page.console_errors == []


def test_recolouring_changes_pixels_without_resending_geometry(page):
    loaded = page.meter.received  # everything so far: geometry, overlays, cameras
    before = canvas_pixels(page)
    page.locator(".twin-colour-by select").select_option(label="height")
    expect(page.locator(".twin-legend")).to_contain_text("Height", timeout=10_000)
    page.wait_for_timeout(500)
    after = canvas_pixels(page)
    sent = page.meter.received - loaded
    assert np.abs(after - before).sum(axis=2).mean() > 5, "the colours changed on screen"
    assert sent < 0.2 * loaded, f"{sent:,} bytes after {loaded:,}: a colour change must not resend the geometry"
    assert page.console_errors == []


def test_search_flies_to_a_building_and_opens_its_card(page, small_demo):
    with Store(small_demo, read_only=True) as store:
        building_id, name = store.con.execute("SELECT building_id, name FROM buildings WHERE name IS NOT NULL "
                                              "ORDER BY height DESC LIMIT 1").fetchone()
    page.get_by_placeholder("Search address, building or case id").fill(building_id)
    page.keyboard.press("Enter")
    expect(page.get_by_text(building_id, exact=True)).to_be_visible(timeout=10_000)
    expect(page.locator(".twin-inspector .twin-title")).to_have_text(name)


@pytest.mark.parametrize("view", ["buffer", "tiles"])
def test_a_bim_model_stands_in_for_its_block_and_its_parts_are_clickable(browser, bim_demo, view):
    path, building_id = bim_demo
    with Store(path, read_only=True) as store:
        ox, oy, _ = store.district.origin
        x, y, z = store.con.execute("SELECT (bbox_xmin + bbox_xmax) / 2, (bbox_ymin + bbox_ymax) / 2, bbox_zmax "
                                    "FROM meshes WHERE lod = 'bim'").fetchone()
        x, y = x - ox, y - oy
    with served(path, args=("--view", view)) as url:  # tiles: exported by the server, the model in a leaf
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, url)
        page.wait_for_function("window.twinFirstFrame !== undefined", timeout=60_000)
        page.evaluate("window.__flyStart = performance.now()")
        page.get_by_placeholder("Search address, building or case id").fill(building_id)
        page.keyboard.press("Enter")
        expect(page.get_by_text(building_id, exact=True)).to_be_visible(timeout=10_000)
        page.wait_for_function("window.twinFlightEnd > window.__flyStart", timeout=30_000)
        if view == "tiles":
            page.wait_for_function("window.twinTilesSettled > window.twinFlightEnd", timeout=30_000)
        px, py = page.evaluate(f"window.twinView.worldToPage({x}, {y}, {z - 0.3})")  # the roof of the model
        page.mouse.click(px, py)
        expect(page.locator(".twin-element")).to_be_visible(timeout=10_000)
        assert page.locator(".twin-element .twin-title").inner_text().startswith("Ifc")
        assert errors == []
        page.close()





def _tallest(small_demo) -> tuple[float, float, float]:
    """The tallest building's label point and roof, relative to the district origin."""
    with Store(small_demo, read_only=True) as store:
        ox, oy, _ = store.district.origin
        x, y, roof = store.con.execute("SELECT label_x, label_y, base_z + height FROM buildings "
                                       "ORDER BY height DESC LIMIT 1").fetchone()
    return x - ox, y - oy, roof


def _report_form(small_demo, *, service_code: str = "sanitation.garbage_overflow") -> dict:
    import pyproj

    with Store(small_demo, read_only=True) as store:
        x, y = store.con.execute("SELECT label_x, label_y FROM buildings ORDER BY height DESC LIMIT 1").fetchone()
    lon, lat = pyproj.Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True).transform(x, y)
    key = small_demo.with_suffix(".key").read_text().strip()
    return {"service_code": service_code, "lat": f"{lat:.7f}", "long": f"{lon:.7f}", "api_key": key,
            "description": "bins overflowing at the tower's gate"}


def open_cases_figure(page) -> int:
    # The district's figure comes last (an operator's own grids' figure stands before it).
    text = page.locator(".twin-figure", has_text="Open cases").locator(".value").last.inner_text()
    return int(text.replace(",", ""))


def test_a_posted_case_is_drawn_within_a_second_and_the_figures_follow(page, small_demo):
    before = open_cases_figure(page)
    result = page.evaluate(POST_AND_WAIT_FOR_MARKER, [_report_form(small_demo), 5000])
    assert result["status"] == 201, result
    assert result["ms"] is not None and result["ms"] <= 1000, result
    figures = page.locator(".twin-figure", has_text="Open cases").locator(".value")
    expect(figures.last).to_have_text(f"{before + 1:,}", timeout=5_000)
    expect(figures.first).to_have_text(f"{before + 1:,}")  # the operator's grids are every street
    kind = case_kind_name("sanitation.garbage_overflow")  # the user's language, English (see bench.browser.served)
    expect(page.get_by_role("button", name=f"{result['id']} · {kind} · Reported")).to_be_visible()
    assert page.console_errors == []


def test_a_case_on_open_ground_is_drawn_there_and_clicking_it_opens_its_card(page, small_demo):
    import pyproj

    with Store(small_demo, read_only=True) as store:
        ox, oy, _ = store.district.origin
        x, y = store.con.execute("""
            SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(boundary) AS c FROM grids
            WHERE level = 'micro' AND kind = 'street' ORDER BY grid_id) g
            WHERE NOT EXISTS (SELECT 1 FROM buildings b WHERE ST_DWithin(b.footprint, g.c, 40))
              AND NOT EXISTS (SELECT 1 FROM cases k WHERE ST_DWithin(k.location, g.c, 40)) LIMIT 1""").fetchone()
    lon, lat = pyproj.Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True).transform(x, y)
    form = {**_report_form(small_demo), "lat": f"{lat:.7f}", "long": f"{lon:.7f}"}
    result = page.evaluate(POST_AND_WAIT_FOR_MARKER, [form, 5000])
    assert result["ms"] is not None, result
    page.get_by_role("button", name="Top").click()
    page.wait_for_timeout(1500)
    expect(page.get_by_text("Click a building, a case or a camera.")).to_be_visible()
    page.mouse.click(*page.evaluate(f"window.twinView.worldToPage({x - ox}, {y - oy}, 6)"))  # on the ground
    expect(page.locator(".twin-inspector .twin-title")).to_have_text(f"Case {result['id']}", timeout=10_000)
    assert page.console_errors == []


def test_the_operator_moves_a_case_along_the_loop_from_its_card(page, small_demo):
    form = _report_form(small_demo, service_code="municipal.streetlight_out")
    posted = page.evaluate(POST_AND_WAIT_FOR_MARKER, [form, 5000])
    case_id = posted["id"]
    page.get_by_role("button", name="Operator").click()
    page.get_by_role("button", name=f"{case_id} · {case_kind_name('municipal.streetlight_out')} · Reported").click()
    expect(page.locator(".twin-inspector .twin-title")).to_have_text(f"Case {case_id}", timeout=10_000)
    page.get_by_placeholder("note for the next step (optional)").fill("sent to the lighting crew")
    page.get_by_role("button", name="→ Dispatched").click()
    expect(page.locator(".twin-history")).to_contain_text("Dispatched · browser.operator · sent to the lighting crew",
                                                          timeout=10_000)
    page.get_by_role("button", name="→ In progress").click()
    expect(page.locator(".twin-history")).to_contain_text("In progress · browser.operator", timeout=10_000)
    status = page.evaluate(f"fetch('/open311/v2/requests/{case_id}.json?api_key={form['api_key']}')"
                           ".then(r => r.json())")
    assert status[0]["status_notes"] == "in_progress", "the change is in the store"
    expect(page.get_by_role("button", name="→ Resolved")).to_be_visible()
    assert page.get_by_role("button", name="→ Closed").count() == 0, "only allowed steps are offered"
    assert page.console_errors == []


def test_nothing_is_shown_before_sign_in_and_a_wrong_password_is_refused(browser, app_url):
    context = browser.new_context()
    page = context.new_page()
    page.goto(app_url)
    expect(page.locator("#signin")).to_be_visible()  # sent to the login form
    assert "/login" in page.url
    expect(page.locator(".twin-view")).to_have_count(0)  # locators look through Panel's shadow roots too
    page.fill("#username", app_url.user)
    page.fill("#password", "not the password")
    page.click("#signin")
    # The login page speaks the product's default, Chinese (the user is not known yet).
    expect(page.locator("#error-message")).to_contain_text(translations("zh").gettext(SIGNIN_REFUSED))
    page.fill("#username", app_url.user)
    page.fill("#password", app_url.password)
    page.click("#signin")
    page.goto(app_url)
    page.wait_for_function("window.twinFirstFrame !== undefined", timeout=60_000)
    expect(page.locator(".twin-user")).to_contain_text(f"{app_url.user} · Operator")
    expect(page.locator(".twin-view")).to_have_count(1)  # the same locator finds the view once signed in
    context.close()


def test_residents_are_masked_on_the_page_and_unmasking_needs_a_reason(page, small_demo):
    with Store(small_demo, read_only=True) as store:
        building_id, first_name, phone = store.con.execute(
            "SELECT b.building_id, r.name, r.phone FROM residents r JOIN buildings b USING (building_id) "
            "ORDER BY b.building_id, r.unit, r.household_id, r.room, r.resident_id LIMIT 1").fetchone()
    page.get_by_placeholder("Search address, building or case id").fill(building_id)
    page.keyboard.press("Enter")
    residents = page.locator(".twin-residents")
    expect(residents).to_contain_text(first_name, timeout=10_000)
    seen = seen_text(page)
    assert phone not in seen, "no phone number in clear anywhere on the page"
    assert phone[:3] + "****" + phone[-4:] in seen and first_name in seen, "(the text read is the residents' table)"
    page.locator(".twin-unmask button").click()
    expect(page.locator(".twin-unmasked")).to_contain_text("needs a reason")
    page.get_by_placeholder("reason (recorded)").fill("returning the resident's call")
    page.locator(".twin-unmask button").click()
    expect(page.locator(".twin-unmasked")).to_contain_text(phone, timeout=10_000)


def test_the_view_leaves_no_probes_in_a_persons_page(browser, demo_copy):
    """Without the test flag (TWIN_PROBES), the page draws the district and carries none of the view's marks."""
    with served(demo_copy, probes=False) as url:
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        sign_in(page, url)
        page.locator(".twin-view canvas").first.wait_for(timeout=60_000)
        for _ in range(120):  # drawn: buildings cover part of the canvas (pixels, since there is no mark to wait on)
            if building_share(canvas_pixels(page)) > 0.1:
                break
            page.wait_for_timeout(500)
        else:
            raise AssertionError("the district was never drawn")
        page.wait_for_timeout(1500)  # the overlays and cameras that follow the first frame
        probes = ["twinMarks", "twinGL", "twinFirstFrame", "twinCameras", "twinView", "twinCaseDrawn", "twinPickMs",
                  "twinLastClick", "twinBasemap"]
        assert page.evaluate(f"{probes}.filter((name) => name in window)") == []
        page.close()


def test_cameras_stay_visible_at_district_zoom_and_a_click_on_one_opens_its_card(page, small_demo):
    """From the opening view the 3D cameras are far below a pixel: each is drawn as a fan of a fixed size on
    screen, in its status colour; clicking one on open ground opens the camera's card, and clicking one on a
    building opens the building's."""
    with Store(small_demo, read_only=True) as store:
        ox, oy, _ = store.district.origin
        cams = store.con.execute("""SELECT camera_id, ST_X(position), ST_Y(position), z, status,
                   (SELECT min(building_id) FROM buildings b WHERE ST_DWithin(b.footprint, c.position, 1)) AS on_building
            FROM cameras c WHERE NOT EXISTS (SELECT 1 FROM cases k WHERE ST_DWithin(k.location, c.position, 60))
            ORDER BY camera_id""").fetchall()
    page.get_by_role("button", name="Top").click()
    page.wait_for_timeout(1500)
    box = page.locator(".twin-view canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):  # out to where the small demo looks as small as the full district does
        page.mouse.wheel(0, 400)
        page.wait_for_timeout(400)
    page.wait_for_timeout(1000)
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=np.int16)
    core = {"online": np.array([56, 189, 248]), "offline": np.array([100, 116, 139])}
    seen = []
    for camera_id, x, y, z, status, on_building in cams:
        px, py = page.evaluate(f"window.twinView.worldToPage({x - ox}, {y - oy}, {z})")
        if 0 <= px < shot.shape[1] and 0 <= py < shot.shape[0]:
            colour = core["online" if status == "online" else "offline"]
            seen.append((camera_id, on_building, px, py, np.abs(shot[round(py), round(px)] - colour).sum() < 40))
    world = {camera_id: (x - ox, y - oy, z) for camera_id, x, y, z, *_ in cams}
    assert len(seen) > 20 and sum(s[-1] for s in seen) > 0.8 * len(seen), \
        f"{sum(s[-1] for s in seen)} of {len(seen)} cameras in view show their status colour"
    # A camera on a wall: a click on its core, a step onto the roof, is meant for the building (first: a card
    # opened flies the view, and the positions on screen are from the opening view).
    with Store(small_demo, read_only=True) as store:
        for camera_id, building_id, px, py, drawn in seen:
            if building_id is None or not drawn:
                continue
            bx, by, top = store.con.execute("SELECT label_x, label_y, base_z + height FROM buildings "
                                            "WHERE building_id = ?", [building_id]).fetchone()
            rx, ry = page.evaluate(f"window.twinView.worldToPage({bx - ox}, {by - oy}, {top})")
            step = 2 / max(1e-9, float(np.hypot(rx - px, ry - py)))
            page.mouse.click(px + step * (rx - px), py + step * (ry - py))
            expect(page.locator(".twin-inspector")).to_contain_text(building_id, timeout=10_000)
            expect(page.locator(".twin-inspector")).not_to_contain_text(camera_id)  # (a camera's card names its building)
            break
        else:
            pytest.fail("no camera on a building in view")
    page.get_by_role("button", name="Reset").click()  # out again from the building the card flew to
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Top").click()
    page.wait_for_timeout(1500)
    camera_id = next(s[0] for s in seen if s[-1] and s[1] is None)
    page.mouse.click(*page.evaluate("(p) => window.twinView.worldToPage(...p)", list(world[camera_id])))
    expect(page.locator(".twin-inspector")).to_contain_text(camera_id, timeout=10_000)
    assert page.console_errors == []
