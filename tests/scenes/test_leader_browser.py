"""The street leader's screen in Debian's Chromium against `twin serve` on a small demo store: the key figures'
drill-downs and the grid card. Text is read through Panel's shadow roots with locators."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from bench.browser import served, sign_in
from scenes.i18n import case_kind_name
from tests.scenes.test_browser import browser, page  # noqa: F401 (the same browser and page, on this module's app_url)
from twin.store.store import Store

pytestmark = pytest.mark.browser


OPEN = "('reported', 'dispatched', 'in_progress', 'reopened')"


@pytest.fixture(scope="module")
def served_store(small_demo, tmp_path_factory):
    """A copy of the small demo where three more open cases are overdue, the later the id the longer overdue
    (so that oldest first is not id order), and the cases overdue in it, oldest first."""
    served_copy = tmp_path_factory.mktemp("served") / "demo.duckdb"
    shutil.copy(small_demo, served_copy)
    with Store(served_copy) as store:
        later = store.con.execute(f"SELECT case_id FROM cases WHERE status IN {OPEN} ORDER BY case_id DESC "
                                  "LIMIT 3").df()["case_id"].tolist()
        for days, case_id in enumerate(later):
            store.con.execute("UPDATE cases SET due_at = (SELECT value FROM meta WHERE key = 'now')::TIMESTAMP "
                              "- INTERVAL (60 - ?) DAY WHERE case_id = ?", [days, case_id])
        overdue = store.con.execute(f"SELECT case_id FROM cases WHERE status IN {OPEN} AND due_at < "
                                    "(SELECT value FROM meta WHERE key = 'now')::TIMESTAMP ORDER BY due_at, case_id"
                                    ).df()["case_id"].tolist()
    assert overdue != sorted(overdue)
    return served_copy, overdue


@pytest.fixture(scope="module")
def app_url(served_store):
    with served(served_store[0], role="leader") as url:
        yield url


# Whether the view looks at the ground point (x, y) from close by: it lies in the middle half of the view, and
# 20 m there spans more than 100 px (the whole district's view gives them about 15).
LOOKS_AT = """([x, y]) => {
  const view = window.twinView, box = view.getBoundingClientRect();
  const [px, py] = view.worldToPage(x, y, 0), [ax, ay] = view.worldToPage(x - 10, y, 0);
  const [bx, by] = view.worldToPage(x + 10, y, 0);
  return Math.abs(px - box.left - box.width / 2) < box.width / 4 && Math.abs(py - box.top - box.height / 2) <
    box.height / 4 && Math.hypot(bx - ax, by - ay) > 100;
}"""


def test_overdue_cases_open_the_overdue_list_oldest_first_and_a_row_flies_to_its_case(page, served_store, small_demo):
    oldest = served_store[1][:4]
    with Store(small_demo, read_only=True) as store:  # the served copy differs from it only in due dates
        ox, oy, _z = store.district.origin
        x, y = store.con.execute("SELECT ST_X(location), ST_Y(location) FROM cases WHERE case_id = ?",
                                 [oldest[-1]]).fetchone()
    page.locator(".twin-door", has_text="Overdue cases").click()
    rows = page.locator(".twin-drill-table tbody tr")
    expect(rows.first).to_be_visible(timeout=10_000)
    expect(rows.nth(len(oldest) - 1).locator("td").first).to_have_text(oldest[-1])
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(len(oldest))] == oldest
    assert not page.evaluate(LOOKS_AT, [x - ox, y - oy]), "the view does not start at the case"
    rows.nth(len(oldest) - 1).click()  # not the first row: the row's own case
    expect(page.locator(".twin-inspector .twin-title")).to_have_text(f"Case {oldest[-1]}", timeout=10_000)
    expect(page.locator(".twin-inspector .twin-overdue-banner")).to_contain_text("Overdue by")
    page.wait_for_function(LOOKS_AT, arg=[x - ox, y - oy], timeout=10_000)  # the flight takes 650 ms
    assert page.console_errors == []


def test_open_cases_filter_by_category_and_grid_and_cameras_online_list_the_offline(page, small_demo):
    with Store(small_demo, read_only=True) as store:
        category, = store.con.execute(
            f"SELECT category FROM cases WHERE status IN {OPEN} GROUP BY 1 "
            "ORDER BY count(*) DESC LIMIT 1").fetchone()
        in_category, open_cases = store.con.execute(
            f"SELECT count(*) FILTER (WHERE category = ?), count(*) FROM cases WHERE status IN {OPEN}",
            [category]).fetchone()
        assert in_category < open_cases, "the category filter narrows the list"
        grid_id, grid_name = store.con.execute(
            f"SELECT g.grid_id, g.name FROM grids g JOIN cases c ON c.grid_id LIKE g.grid_id || '-%' "
            f"WHERE g.level = 'grid' AND g.valid_to IS NULL AND c.status IN {OPEN} AND c.category = ? "
            "GROUP BY ALL ORDER BY count(*) DESC LIMIT 1", [category]).fetchone()
        expected, = store.con.execute(f"SELECT count(*) FROM cases WHERE status IN {OPEN} AND category = ? "
                                      "AND grid_id LIKE ? || '-%'", [category, grid_id]).fetchone()
        offline = store.con.execute("SELECT camera_id FROM cameras WHERE status <> 'online' "
                                    "ORDER BY camera_id").df()["camera_id"].tolist()
    page.locator(".twin-door", has_text="Open cases").click()
    drill = page.locator(".twin-drill")
    expect(drill.locator(".twin-title")).to_contain_text("Open cases", timeout=10_000)
    drill.locator("select").nth(1).select_option(label=case_kind_name(category))
    expect(drill.locator(".twin-title")).to_have_text(f"Open cases: {in_category:,}", timeout=10_000)
    drill.locator("select").nth(2).select_option(label=f"{grid_name} · {grid_id}")
    expect(drill.locator(".twin-title")).to_have_text(f"Open cases: {expected:,}", timeout=10_000)
    expect(drill.locator(".twin-drill-table .pager")).to_contain_text(f"{expected:,} rows")
    categories = drill.locator(".twin-drill-table tbody tr td:nth-child(2)").all_inner_texts()
    assert set(categories) == {case_kind_name(category)}

    page.locator(".twin-door", has_text="Cameras online").click()
    expect(drill.locator(".twin-title")).to_have_text(f"Cameras not online: {len(offline):,}", timeout=10_000)
    rows = drill.locator(".twin-drill-table tbody tr")
    expect(rows.first.locator("td").first).to_have_text(offline[0])
    rows.nth(1).click()  # not the first row: the row's own camera
    expect(page.locator(".twin-inspector .twin-title")).to_have_text(f"Camera {offline[1]}", timeout=10_000)
    assert page.console_errors == []


def test_a_grid_row_opens_its_card(page, small_demo):
    with Store(small_demo, read_only=True) as store:
        # Of the first page of the table (sorted by id), the grid with the most open cases.
        grid_id, name, worker = store.con.execute(f"""
            SELECT g.grid_id, g.name, g.worker FROM (SELECT * FROM grids WHERE level = 'grid' AND valid_to IS NULL
                                                    ORDER BY grid_id LIMIT 15) g
            LEFT JOIN cases c ON c.grid_id LIKE g.grid_id || '-%' AND c.status IN {OPEN}
            GROUP BY ALL ORDER BY count(c.case_id) DESC, g.grid_id LIMIT 1""").fetchone()
        residents, = store.con.execute("SELECT count(*) FROM residents r JOIN buildings b USING (building_id) "
                                       "WHERE b.grid_id LIKE ? || '-%'", [grid_id]).fetchone()
        orgs = store.con.execute("SELECT name FROM party_orgs WHERE grid_id = ? OR grid_id LIKE ? || '-%' "
                                 "ORDER BY members DESC", [grid_id, grid_id]).df()["name"].tolist()
    page.locator(f".twin-grid-table tbody tr[title='{grid_id}']").click()
    card = page.locator(".twin-inspector")
    expect(card.locator(".twin-title")).to_have_text(name, timeout=10_000)
    expect(card).to_contain_text(f"{grid_id} · Grid")  # the user reads English (bench.browser.served)
    expect(card).to_contain_text(worker)
    expect(card).to_contain_text(f"{residents:,} in ")
    expect(card).to_contain_text("open cases by category")
    if orgs:
        expect(card).to_contain_text(orgs[0])
    else:
        expect(card).to_contain_text("none recorded")
    assert page.console_errors == []


# Where each point (x, y, z relative to the origin) falls on the case markers' canvas and the colour drawn there:
# [column, row, r, g, b, a], or null off the view.
MARKER_PIXELS = """(points) => {
  const view = window.twinView, canvas = view.querySelector("canvas.twin-cases");
  const box = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1, ctx = canvas.getContext("2d");
  return points.map(([x, y, z]) => {
    const [px, py] = view.worldToPage(x, y, z);
    const cx = Math.round((px - box.left) * dpr), cy = Math.round((py - box.top) * dpr);
    return cx < 0 || cy < 0 || cx >= canvas.width || cy >= canvas.height ? null
      : [cx, cy, ...ctx.getImageData(cx, cy, 1, 1).data];
  });
}"""
STATUS_NAMES = {"reported": "Reported", "dispatched": "Dispatched", "in_progress": "In progress",
                "reopened": "Reopened", "accepted": "Accepted", "on_site": "On site", "handed_up": "Handed up"}


def test_the_markers_have_a_legend_of_case_statuses_and_cameras(page, small_demo):
    legend = page.locator(".twin-marker-legend")
    for text in ("Open cases", *STATUS_NAMES.values(), "Cameras", "online", "offline", "field of view"):
        expect(legend).to_contain_text(text)
    statuses = legend.locator(".twin-marker-status")
    colours = statuses.locator("span").evaluate_all("spans => spans.map(s => s.style.background)")
    assert len(colours) == len(set(colours)) == len(STATUS_NAMES), f"each open status its colour: {colours}"
    colour_of = dict(zip(statuses.all_inner_texts(), colours))
    cameras = legend.locator("div", has_text="line").locator("span").evaluate_all(
        "spans => spans.map(s => s.style.background)")
    assert len(cameras) == 2 and cameras[0] != cameras[1], f"online and offline cameras differ: {cameras}"
    # Each case's marker is drawn in its status's colour in the legend (markers stand 6 m above their roofs).
    with Store(small_demo, read_only=True) as store:
        ox, oy, _z = store.district.origin
        cases = store.con.execute(f"""
            SELECT c.status, ST_X(c.location) - ? AS x, ST_Y(c.location) - ? AS y,
                   coalesce(b.base_z + b.height, 0) + 6 AS z
            FROM cases c LEFT JOIN buildings b USING (building_id) WHERE c.status IN {OPEN}""", [ox, oy]).df()
    points = cases[["x", "y", "z"]].to_numpy().tolist()
    page.wait_for_function(f"(points) => ({MARKER_PIXELS})(points).filter((p) => p && p[5] === 255).length > 1",
                           arg=points, timeout=10_000)  # the markers are drawn
    pixels = page.evaluate(MARKER_PIXELS, points)
    on_view = [(status, p) for status, p in zip(cases["status"], pixels) if p is not None]
    alone = [(status, p) for status, p in on_view  # no other marker drawn over it (a dot is 10 px across)
             if sum(abs(p[0] - q[0]) < 24 and abs(p[1] - q[1]) < 24 for _s, q in on_view) == 1]
    drawn = {(STATUS_NAMES[status], f"rgb({r}, {g}, {b})") for status, (_x, _y, r, g, b, a) in alone if a == 255}
    assert len(drawn) >= 2, f"markers of several statuses are on the view: {drawn}"
    assert all(colour == colour_of[name] for name, colour in drawn), f"markers {drawn}, legend {colour_of}"


@pytest.mark.parametrize("width", [1280, 1920])
def test_the_grid_table_shows_open_and_overdue_cases_whole_without_sideways_scrolling(browser, app_url, width):
    page = browser.new_page(viewport={"width": width, "height": 800})
    sign_in(page, app_url)
    page.wait_for_function("window.twinFirstFrame !== undefined", timeout=60_000)
    table = page.locator(".twin-grid-table .twin-table-box")
    expect(table.locator("thead")).to_contain_text("Open cases", timeout=10_000)
    expect(table.locator("thead")).to_contain_text("Overdue")
    fits = table.evaluate("box => box.scrollWidth <= box.clientWidth + 1")
    assert fits, "the table is no wider than its box"
    cut = table.locator("th, tbody tr:first-child td").evaluate_all(
        "cells => cells.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)")
    assert cut == [], f"titles or cells cut short: {cut}"
    # The departments' figures below it keep every column the leader needs, their titles wrapped.
    departments = page.locator(".twin-department-table .twin-table-box")
    departments.scroll_into_view_if_needed()
    expect(departments.locator("th")).to_have_text(["Department", "Open", "Overdue", "Escalated",
                                                    "Median hours to handle", "Reopened %", "Satisfaction %"])
    assert departments.evaluate("box => box.scrollWidth <= box.clientWidth + 1")
    page.close()


def test_micro_grid_labels_never_overlap_on_screen(page):
    page.locator("select").filter(has_text="Micro-grid").first.select_option(label="Micro-grid")
    labels = page.locator(".twin-label")
    expect(labels.first).to_be_attached(timeout=10_000)
    page.wait_for_timeout(1500)
    boxes = labels.evaluate_all("ls => ls.filter(l => l.style.display !== 'none').map(l => {"
                                "const r = l.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })")
    assert len(boxes) > 10, "micro-grids are labelled"
    given = int(page.locator(".twin-label").first.evaluate("l => l.parentElement.dataset.given"))
    assert given > len(boxes), "some labels gave way"
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], f"labels overlap: {a} {b}"
