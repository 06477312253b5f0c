"""The view streaming 3D tiles (``twin serve --view tiles``), in Debian's Chromium on a small demo store.

The tileset is exported with a small vertex budget, so the small district is cut into several tiles of one or
a few 250 m cells, and a close view leaves the far ones out.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from bench.browser import served, sign_in
from tests.scenes.test_browser import browser, canvas_pixels, watched_page  # noqa: F401 (a fixture)
from twin.store.store import Store
from twin.tiles.export import export_tiles
from twin.tiles.glb import property_column, read_glb

pytestmark = pytest.mark.browser

SMALL_BUDGET = 3000  # vertices per tile: the small demo's 500 buildings fall into 7 leaf tiles


@pytest.fixture(scope="module")
def tileset(small_demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiles") / "tileset"
    with Store(small_demo, read_only=True) as store:
        export_tiles(store.con, store.district, out, max_vertices=SMALL_BUDGET)
    return out


@pytest.fixture(scope="module")
def tiled_url(small_demo, tileset, tmp_path_factory):
    served_copy = tmp_path_factory.mktemp("served") / "demo.duckdb"
    shutil.copy(small_demo, served_copy)
    with served(served_copy, args=("--view", "tiles", "--tiles", str(tileset))) as url:
        yield url


@pytest.fixture
def page(browser, tiled_url):
    page = watched_page(browser)
    page.tile_requests = []
    page.on("request", lambda r: "/tiles/" in r.url and page.tile_requests.append(r.url))
    sign_in(page, tiled_url)
    page.wait_for_function("window.twinFirstFrame !== undefined", timeout=60_000)
    page.wait_for_function("window.twinTilesSettled !== undefined", timeout=60_000)
    page.wait_for_timeout(800)  # the opening camera move
    yield page
    page.close()


def tile_of(tileset: Path) -> dict[str, str]:
    """Each building's tile uri, read from the GLBs' property tables."""
    found = {}
    for path in tileset.glob("tiles/**/*.glb"):
        document, binary = read_glb(path.read_bytes())
        for building_id in property_column(document, binary, "building_id"):
            found[building_id] = str(path.relative_to(tileset))
    return found


def roofs(db: Path) -> list[tuple[str, float, float, float]]:
    """Every building's id, label point (relative to the origin) and roof height, tallest first."""
    with Store(db, read_only=True) as store:
        return store.con.execute("""
            SELECT b.building_id, b.label_x - m.value::DOUBLE, b.label_y - n.value::DOUBLE, b.base_z + b.height
            FROM buildings b, meta m, meta n WHERE m.key = 'origin_x' AND n.key = 'origin_y'
            ORDER BY b.height DESC""").fetchall()


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
    assert page.meter.received < 0.5 * sum(p.stat().st_size for p in tileset.glob("tiles/**/*.glb")), \
        "no buffer of every building over the websocket"
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
