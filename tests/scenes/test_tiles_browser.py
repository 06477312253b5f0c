"""The view streaming 3D tiles (``twin serve --view tiles``), in Debian's Chromium on a small demo store.

The tileset is exported with a small vertex budget, so the small district is cut into several tiles of one or
a few 250 m cells, and a close view leaves the far ones out. Above the leaves, coarse tiles draw each building
as its LOD1 block or blocks that stand for several; one of them stands in while the leaves under it load.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from bench.browser import served, sign_in
from tests.scenes.test_browser import browser, canvas_pixels, watched_page  # noqa: F401 (a fixture)
from tests.twin.tiles.tileset_checks import content_features, tiles, to_district
from twin.store.store import Store
from twin.tiles.export import export_tiles
from twin.tiles.glb import property_column, read_glb

pytestmark = pytest.mark.browser

SMALL_BUDGET = 3000  # vertices per tile: the small demo's 500 buildings fall into 7 leaf tiles and 2 coarse ones


@pytest.fixture(scope="module")
def tileset(small_demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiles") / "tileset"
    with Store(small_demo, read_only=True) as store:
        export_tiles(store.con, store.district, out, max_vertices=SMALL_BUDGET, normals=False)  # as the app's own
    return out


@pytest.fixture(scope="module")
def tiled_url(small_demo, tileset, tmp_path_factory):
    served_copy = tmp_path_factory.mktemp("served") / "demo.duckdb"
    shutil.copy(small_demo, served_copy)
    # as a city is served: its tiles, and each view's cameras fetched for where it looks
    with served(served_copy, args=("--view", "tiles", "--tiles", str(tileset), "--cameras", "near")) as url:
        yield url


@pytest.fixture
def page(browser, tiled_url):
    page = watched_page(browser)
    page.tile_requests = []
    page.on("request", lambda r: "/tiles/" in r.url and page.tile_requests.append(r.url))
    page.camera_answers = []
    page.on("requestfinished", lambda r: "/cameras/near" in r.url and page.camera_answers.append(r.url))
    sign_in(page, tiled_url)
    page.wait_for_function("window.twinFirstFrame !== undefined", timeout=60_000)
    page.wait_for_function("window.twinTilesSettled !== undefined", timeout=60_000)
    page.wait_for_timeout(800)  # the opening camera move
    yield page
    page.close()


def tile_of(tileset: Path) -> dict[str, str]:
    """Each building's leaf tile uri, read from the leaves' property tables."""
    found = {}
    for node, _ in tiles(json.loads((tileset / "tileset.json").read_text())["root"]):
        if "children" not in node:
            document, binary = read_glb((tileset / node["content"]["uri"]).read_bytes())
            for building_id in property_column(document, binary, "building_id"):
                found[building_id] = node["content"]["uri"]
    return found


def roofs(db: Path) -> list[tuple[str, float, float, float]]:
    """Every building's id, label point (relative to the origin) and roof height, tallest first."""
    with Store(db, read_only=True) as store:
        return store.con.execute("""
            SELECT b.building_id, b.label_x - m.value::DOUBLE, b.label_y - n.value::DOUBLE, b.base_z + b.height
            FROM buildings b, meta m, meta n WHERE m.key = 'origin_x' AND n.key = 'origin_y'
            ORDER BY b.height DESC""").fetchall()


# Run in the page: when each tile's GLB was last asked for (ms, the page's clock), by its uri in the tileset.
ASKED_AT = """(() => Object.fromEntries(performance.getEntriesByType("resource")
  .map((e) => [new URL(e.name).pathname, e.startTime]).filter(([path]) => path.startsWith("/tiles/tiles/"))
  .map(([path, t]) => [path.slice("/tiles/".length), t])))()"""


def fly_by_search(page, building_id: str) -> None:
    """Search a building; wait until the flight has ended and every tile the new view wants is drawn."""
    page.evaluate("window.__flyStart = performance.now()")
    page.get_by_placeholder("Search address, building or case id").fill(building_id)
    page.keyboard.press("Enter")
    page.wait_for_function("window.twinFlightEnd > window.__flyStart && "
                           "window.twinTilesSettled > window.twinFlightEnd", timeout=30_000)
    page.wait_for_timeout(500)


def test_the_tiles_need_a_signed_in_user(tiled_url, tileset):
    base = tiled_url.rsplit("/", 1)[0]
    uri = next(tileset.glob("tiles/**/*.glb")).relative_to(tileset).as_posix()
    for path in ("/tiles/tileset.json", f"/tiles/{uri}", f"/tiles/ids/{uri}"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path, timeout=10)
        assert refused.value.code == 403, path


def test_the_buildings_come_as_tiles_and_a_click_on_one_fills_the_inspector(page, small_demo, tileset):
    assert page.evaluate("window.twinTiles.loaded.length") > 0
    assert any(u.endswith(".glb") for u in page.tile_requests), "the geometry came as tiles"
    assert page.evaluate("window.twinBufferBytes") is None, "no buffer of every building over the websocket"
    page.get_by_role("button", name="Top").click()
    page.wait_for_function("window.twinFlightEnd !== undefined")
    page.wait_for_timeout(1200)
    drawn = set(page.evaluate("window.twinTiles.drawn"))
    where = tile_of(tileset)
    building_id, x, y, top = next(r for r in roofs(small_demo) if where[r[0]] in drawn)
    px, py = page.evaluate(f"window.twinView.worldToPage({x}, {y}, {top - 0.5})")
    page.mouse.click(px, py)
    expect(page.locator(".twin-inspector")).to_contain_text(building_id, timeout=10_000)
    assert page.console_errors == []


def test_recolouring_tiles_changes_pixels_without_fetching_or_sending_geometry(page, tileset):
    tiles_before, received = len(page.tile_requests), page.meter.received
    before = canvas_pixels(page)
    page.locator(".twin-colour-by select").select_option(label="height")
    expect(page.locator(".twin-legend")).to_contain_text("Height", timeout=10_000)
    page.wait_for_timeout(800)
    after = canvas_pixels(page)
    geometry = sum(p.stat().st_size for p in tileset.glob("tiles/**/*.glb"))
    assert np.abs(after - before).sum(axis=2).mean() > 5, "the colours changed on screen"
    assert len(page.tile_requests) == tiles_before, "no tile fetched again"
    sent = page.meter.received - received
    assert sent < 0.05 * geometry, f"{sent:,} bytes over the websocket for a colour change ({geometry:,} of tiles)"
    assert page.console_errors == []


def test_a_fly_to_a_far_grid_loads_and_draws_its_tiles(page, small_demo, tileset):
    where = tile_of(tileset)
    rows = roofs(small_demo)
    north = max(rows, key=lambda r: r[2])  # the view looks north at what it flies to: the south is behind it
    far = min(rows, key=lambda r: r[2])
    assert where[north[0]] != where[far[0]]
    fly_by_search(page, north[0])
    assert where[north[0]] in page.evaluate("window.twinTiles.drawn")
    assert where[far[0]] not in page.evaluate("window.twinTiles.drawn"), "a close view leaves far tiles out"
    fly_by_search(page, far[0])
    assert where[far[0]] in page.evaluate("window.twinTiles.drawn"), "the far grid's tile is drawn"
    assert where[far[0]] in page.evaluate("window.twinTiles.loaded")
    building_id, x, y, top = far
    px, py = page.evaluate(f"window.twinView.worldToPage({x}, {y}, {top - 0.5})")
    page.mouse.click(px, py)
    expect(page.locator(".twin-inspector")).to_contain_text(building_id, timeout=10_000)
    assert page.console_errors == []


def cameras_in_square(db: Path, url: str) -> set[str]:
    """The store's cameras in the square a ``/cameras/near`` request asked for."""
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    x, y, r = (float(query[k][0]) for k in ("x", "y", "r"))
    with Store(db, read_only=True) as store:
        return {c for (c,) in store.con.execute(
            """SELECT camera_id FROM cameras, meta m, meta n WHERE m.key = 'origin_x' AND n.key = 'origin_y'
               AND abs(ST_X(position) - m.value::DOUBLE - ?) <= ? AND abs(ST_Y(position) - n.value::DOUBLE - ?) <= ?""",
            [x, r, y, r]).fetchall()}


def test_a_city_view_draws_the_cameras_near_where_it_looks_and_a_click_on_one_opens_its_card(page, small_demo):
    """``--cameras near``, as a city's cameras are served: no camera layer comes with the page; the view asks for
    the cameras around where it looks, draws those, asks again for where a flight lands, and a camera it drew is
    picked by its index in the server's layer."""
    page.wait_for_function("window.twinCameras > 0", timeout=30_000)
    assert page.camera_answers, "the cameras came from /cameras/near"
    assert page.evaluate("window.twinCameras") == len(cameras_in_square(small_demo, page.camera_answers[-1]))
    # The small district fits in the view's square: from here on it asks for a smaller one, as a city's view
    # holds a part of the city's cameras.
    page.route("**/cameras/near?*", lambda route: route.continue_(url=re.sub(r"r=[0-9.]+", "r=400", route.request.url)))
    rows = roofs(small_demo)
    north, south = max(rows, key=lambda r: r[2]), min(rows, key=lambda r: r[2])
    fly_by_search(page, north[0])
    fly_by_search(page, south[0])
    page.wait_for_timeout(500)
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.camera_answers[-1]).query)
    assert np.hypot(float(query["x"][0]) - south[1], float(query["y"][0]) - south[2]) < 50, \
        "the last cameras asked for are those around where the flight landed"
    near_south = cameras_in_square(small_demo, page.camera_answers[-1])
    with Store(small_demo, read_only=True) as store:
        every = store.count("cameras")
    assert page.evaluate("window.twinCameras") == len(near_south) and 0 < len(near_south) < 0.8 * every
    page.get_by_role("button", name="Top").click()
    page.wait_for_function("window.twinFlightEnd !== undefined")
    page.wait_for_timeout(1500)
    drawn = cameras_in_square(small_demo, page.camera_answers[-1])
    assert drawn != near_south and page.evaluate("window.twinCameras") == len(drawn)
    with Store(small_demo, read_only=True) as store:
        ox, oy, _ = store.district.origin
        cams = store.con.execute("""SELECT camera_id, ST_X(position), ST_Y(position), z FROM cameras c
            WHERE NOT EXISTS (SELECT 1 FROM cases k WHERE ST_DWithin(k.location, c.position, 60))
            AND NOT EXISTS (SELECT 1 FROM buildings b WHERE ST_DWithin(b.footprint, c.position, 3))
            ORDER BY camera_id""").fetchall()
    camera_id, x, y, z = next(c for c in cams if c[0] in drawn)
    page.mouse.click(*page.evaluate(f"window.twinView.worldToPage({x - ox}, {y - oy}, {z})"))
    expect(page.locator(".twin-inspector")).to_contain_text(camera_id, timeout=10_000)
    assert page.console_errors == []


def page_with_tiles_routed(browser, url: str, route: Callable) -> Page:
    """A signed-in page at its first frame, whose tile requests went through ``route`` (Playwright's handler)."""
    page = watched_page(browser)
    page.route("**/tiles/**", route)
    sign_in(page, url)
    page.wait_for_function("window.twinFirstFrame !== undefined", timeout=60_000)
    return page


def test_the_tiles_where_a_flight_lands_are_fetched_while_it_flies(browser, tiled_url, small_demo, tileset):
    where = tile_of(tileset)
    rows = roofs(small_demo)
    north, far = max(rows, key=lambda r: r[2]), min(rows, key=lambda r: r[2])
    blocked = {where[far[0]]}  # the far leaf fails until the flight there: the opening view does not load it

    def block(route):
        if any(route.request.url.endswith(uri) for uri in blocked):
            route.abort()
        else:
            route.continue_()

    page = page_with_tiles_routed(browser, tiled_url, block)
    fly_by_search(page, north[0])
    assert where[far[0]] not in page.evaluate("window.twinTiles.loaded")
    blocked.clear()
    page.console_errors.clear()  # the far leaf's failed requests
    fly_by_search(page, far[0])
    assert where[far[0]] in page.evaluate("window.twinTiles.drawn")
    asked, flight_end = page.evaluate(ASKED_AT), page.evaluate("window.twinFlightEnd")
    assert asked[where[far[0]]] < flight_end - 100, "asked for during the flight, not once it had landed"
    assert page.console_errors == []
    page.close()


def test_the_coarse_root_stands_in_until_its_leaves_come_and_answers_clicks_and_colours(browser, tiled_url, small_demo,
                                                                                         tileset):
    root = json.loads((tileset / "tileset.json").read_text())["root"]
    leaves = {node["content"]["uri"] for node, _ in tiles(root) if "children" not in node}
    held = []  # the leaves' requests, answered only at the end

    def hold_leaves(route):
        if any(route.request.url.endswith(uri) for uri in leaves):
            held.append(route)
        else:
            route.continue_()

    page = page_with_tiles_routed(browser, tiled_url, hold_leaves)
    page.get_by_role("button", name="Top").click()
    page.wait_for_function("window.twinFlightEnd !== undefined")
    page.wait_for_function(f"JSON.stringify(window.twinTiles.drawn) === '{json.dumps([root['content']['uri']])}'",
                           timeout=30_000)
    page.wait_for_timeout(800)
    assert held, "the leaves were asked for, and the root stands in for them meanwhile"

    # a building the root draws as its own LOD1 block answers a click
    enu, feature, columns = content_features(tileset, root["content"]["uri"])
    ids, stands = list(columns["building_id"]), np.asarray(columns["buildings"])
    singles = {ids[f] for f in np.flatnonzero(stands == 1)}
    building_id, x, y, top = next(r for r in roofs(small_demo) if r[0] in singles)
    px, py = page.evaluate(f"window.twinView.worldToPage({x}, {y}, {top - 0.5})")
    page.mouse.click(px, py)
    expect(page.locator(".twin-inspector")).to_contain_text(building_id, timeout=10_000)

    # colours go through the coarse tile: blocks take their main building's
    before = canvas_pixels(page)
    page.locator(".twin-colour-by select").select_option(label="height")
    expect(page.locator(".twin-legend")).to_contain_text("Height", timeout=10_000)
    page.wait_for_timeout(800)
    assert np.abs(canvas_pixels(page) - before).sum(axis=2).mean() > 5

    # a block (the largest) flies the camera to it and fills no inspector
    with Store(small_demo, read_only=True) as store:
        crs, origin = store.district.crs, np.asarray(store.district.origin)
    largest = max(np.flatnonzero(stands > 1), key=lambda f: np.ptp(enu[feature == f][:, :2], axis=0).prod())
    corners = to_district(tileset, enu[feature == largest], crs) - origin
    (x0, y0, _), (x1, y1, z1) = corners.min(axis=0), corners.max(axis=0)
    px, py = page.evaluate(f"window.twinView.worldToPage({(x0 + x1) / 2}, {(y0 + y1) / 2}, {z1})")
    flown = page.evaluate("window.twinFlightEnd")
    page.mouse.click(px, py)
    page.wait_for_function(f"window.twinFlightEnd > {flown}", timeout=10_000)
    expect(page.locator(".twin-inspector")).to_contain_text(building_id)  # still the building clicked before

    # the leaves come, and replace the root
    leaf_uris = set(leaves)
    leaves.clear()  # from now on every request goes through
    for route in held:
        route.continue_()
    page.wait_for_function(f"window.twinTiles.drawn.length && !window.twinTiles.drawn.includes("
                           f"'{root['content']['uri']}')", timeout=30_000)
    assert set(page.evaluate("window.twinTiles.drawn")) & leaf_uris
    assert page.console_errors == []
    page.close()
