"""The operator's screen as its users found it, and the layout of every role's screen at three sizes, in Chromium.

On a copy of the small demo served by ``twin serve``: operators bound to a few grids, and a leader, a
planner and an admin. What a person sees is read through Panel's shadow roots (locators and element walks).
"""

from __future__ import annotations

import re
import secrets
import shutil

import pytest
from playwright.sync_api import expect

from bench.browser import ServedURL, as_user, chromium, served, sign_in
from twin.access.access import add_user, set_lang
from twin.access.policy import grids_under
from twin.store.store import Store

pytestmark = pytest.mark.browser

SIZES = [(1280, 720), (1920, 1080), (3840, 2160)]
ROLES = ("leader", "operator", "planner", "admin")
SEARCH = "Search address, building or case id"
LEADER = "a.leader.of.the.whole.district"  # a long name: it must not push the header apart


@pytest.fixture(scope="module")
def district(small_demo, tmp_path_factory) -> dict:
    """A served copy of the small demo with its users, and what the tests look for in it.

    ``op.cases`` works on the grid of a case that may be rejected and on the grid of a case in progress;
    ``op.frame`` on the first of those grids alone. The leader's long name must not push the header apart.
    """
    path = tmp_path_factory.mktemp("operator") / "demo.duckdb"
    shutil.copy(small_demo, path)
    found = {"password": secrets.token_urlsafe(12)}
    with Store(path) as store:
        con = store.con
        in_grid = ("SELECT c.case_id, g.parent_id FROM cases c JOIN grids g ON g.grid_id = c.grid_id "
                   "AND g.valid_to IS NULL WHERE c.status IN ({}) AND g.parent_id <> ? ORDER BY c.case_id LIMIT 1")
        found["rejectable"], reject_grid = con.execute(in_grid.format("'reported', 'dispatched'"), [""]).fetchone()
        found["moving"], moving_grid = con.execute(in_grid.format("'in_progress'"), [reject_grid]).fetchone()
        mine = sorted(grids_under(con, [reject_grid, moving_grid]))
        with_residents = ("SELECT b.building_id FROM buildings b JOIN residents USING (building_id) "
                          "WHERE {} b.grid_id IN (SELECT unnest(?)) GROUP BY ALL ORDER BY count(*) DESC LIMIT 1")
        found["inside"], = con.execute(with_residents.format(""), [mine]).fetchone()
        found["outside"], = con.execute(with_residents.format("NOT"), [mine]).fetchone()
        found["outside_grid_name"], = con.execute("SELECT g.name FROM buildings b JOIN grids g USING (grid_id) "
                                                  "WHERE b.building_id = ? AND g.valid_to IS NULL",
                                                  [found["outside"]]).fetchone()
        found["hidden_case"], = con.execute("SELECT case_id FROM cases WHERE grid_id NOT IN (SELECT unnest(?)) "
                                            "ORDER BY case_id LIMIT 1", [mine]).fetchone()
        ox, oy, _ = store.district.origin
        xmin, ymin, xmax, ymax = con.execute(
            "SELECT ST_XMin(boundary), ST_YMin(boundary), ST_XMax(boundary), ST_YMax(boundary) FROM grids "
            "WHERE grid_id = ? AND valid_to IS NULL", [reject_grid]).fetchone()
        found["frame_box"] = (xmin - ox, ymin - oy, xmax - ox, ymax - oy)
        found["frame_buildings"], = con.execute("SELECT count(*) FROM buildings WHERE grid_id IN (SELECT unnest(?))",
                                                [sorted(grids_under(con, [reject_grid]))]).fetchone()
        for user, role, grids in [("op.cases", "operator", [reject_grid, moving_grid]),
                                  ("op.frame", "operator", [reject_grid]), (LEADER, "leader", []),
                                  ("a.planner", "planner", []), ("an.admin", "admin", [])]:
            add_user(con, user, found["password"], role=role, grids=grids, actor="test")
            set_lang(con, user, "en")  # the tests read English labels
    with served(path) as url:
        found["url"] = url
        yield found


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def open_as(browser, district: dict, user: str, *, size: tuple[int, int] = (1600, 900), lang: str = "en"):
    """A page signed in as ``user``, in ``lang``, once its screen is drawn (the 3D view's first frame where it has
    one)."""
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.errors_seen = []
    page.on("pageerror", lambda e: page.errors_seen.append(str(e)))
    url = as_user(district["url"], user, district["password"])
    sign_in(page, as_user(ServedURL(f"{url}?lang={lang}"), user, district["password"]))
    if user in ("a.planner",):
        expect(page.locator(".twin-before-after")).to_be_visible(timeout=60_000)
    elif user == "an.admin":
        expect(page.locator(".twin-audit-rows")).to_be_visible(timeout=60_000)
    else:
        page.wait_for_function("window.twinFirstFrame !== undefined", timeout=60_000)
        expect(page.locator(".twin-bottom button").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1200)  # the opening camera move, the panels' layout
    return page


def search(page, text: str) -> None:
    page.get_by_placeholder(SEARCH).fill(text)
    page.keyboard.press("Enter")


@pytest.fixture
def operator_page(browser, district):
    page = open_as(browser, district, "op.cases")
    yield page
    page.close()


def test_a_building_card_after_a_case_card_shows_no_case_buttons(operator_page, district):
    page = operator_page
    search(page, district["moving"])
    expect(page.locator(".twin-inspector .twin-title")).to_have_text(f"Case {district['moving']}", timeout=10_000)
    expect(page.get_by_role("button", name="→ Resolved")).to_be_visible()
    expect(page.get_by_placeholder("note for the next step (optional)")).to_be_visible()
    search(page, district["inside"])
    expect(page.locator(".twin-inspector")).to_contain_text(district["inside"], timeout=10_000)
    expect(page.get_by_role("button", name=re.compile("^→"))).to_have_count(0)
    expect(page.get_by_placeholder("note for the next step (optional)")).to_be_hidden()
    assert page.errors_seen == []


def test_rejecting_a_case_asks_for_confirmation_and_a_reason(operator_page, district):
    page, case_id = operator_page, district["rejectable"]
    search(page, case_id)
    card = page.locator(".twin-inspector")
    expect(card.locator(".twin-title")).to_have_text(f"Case {case_id}", timeout=10_000)
    page.get_by_role("button", name="→ Rejected").click()
    expect(page.get_by_text("Reject this case? Say why")).to_be_visible(timeout=10_000)
    expect(page.get_by_role("button", name="→ Rejected")).to_have_count(0)  # the choice waits for an answer
    page.get_by_role("button", name="Reject this case").click()
    expect(page.get_by_text("A rejection needs a reason")).to_be_visible(timeout=10_000)
    expect(card).not_to_contain_text("Rejected")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Reject this case? Say why")).to_be_hidden()
    page.get_by_role("button", name="→ Rejected").click()
    page.get_by_placeholder("reason for rejecting (recorded)").fill("a duplicate of an earlier report")
    page.get_by_role("button", name="Reject this case").click()
    expect(card.locator("table")).to_contain_text("Rejected", timeout=10_000)
    expect(card.locator(".twin-history")).to_contain_text("a duplicate of an earlier report")
    expect(page.get_by_role("button", name=re.compile("^→"))).to_have_count(0)
    assert page.errors_seen == []


def test_a_building_outside_the_operators_grids_says_why_no_residents_are_listed(operator_page, district):
    page = operator_page
    search(page, district["outside"])
    expect(page.locator(".twin-inspector")).to_contain_text(district["outside"], timeout=10_000)
    why = page.locator(".twin-not-listed")
    expect(why).to_contain_text("No residents listed", timeout=10_000)
    expect(why).to_contain_text(district["outside_grid_name"])
    expect(why).to_contain_text("outside your grids")
    expect(page.get_by_role("button", name="Unmask")).to_have_count(0)
    search(page, district["inside"])  # and one inside lists them
    expect(page.get_by_text(re.compile(r"residents 1–\d+ of"))).to_be_visible(timeout=10_000)
    expect(why).to_be_hidden()


def test_search_finds_the_operators_cases_and_says_why_not_others(operator_page, district):
    page = operator_page
    search(page, district["moving"])
    expect(page.locator(".twin-inspector .twin-title")).to_have_text(f"Case {district['moving']}", timeout=10_000)
    search(page, district["hidden_case"])
    message = page.locator(".twin-search-message")
    expect(message).to_contain_text(f"case {district['hidden_case']}", timeout=10_000)
    expect(message).to_contain_text("outside op.cases's grids")


def test_an_operator_starts_framed_on_their_own_grids_with_their_figures_beside_the_districts(browser, district):
    page = open_as(browser, district, "op.frame")
    try:
        figures = page.locator(".twin-figure")
        expect(figures.first.locator(".twin-mine")).to_contain_text("my grids")
        expect(figures.first.locator(".twin-mine .value")).to_have_text(f"{district['frame_buildings']:,}")
        expect(figures.first.locator(".twin-district")).to_contain_text("district")
        canvas = page.locator(".twin-view canvas").first.bounding_box()
        xmin, ymin, xmax, ymax = district["frame_box"]
        corners = [page.evaluate(f"window.twinView.worldToPage({x}, {y}, 0)")
                   for x, y in [(xmin, ymin), (xmin, ymax), (xmax, ymin), (xmax, ymax)]]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        assert min(xs) >= canvas["x"] and max(xs) <= canvas["x"] + canvas["width"], f"{corners} in {canvas}"
        assert min(ys) >= canvas["y"] and max(ys) <= canvas["y"] + canvas["height"], f"{corners} in {canvas}"
        share = max((max(xs) - min(xs)) / canvas["width"], (max(ys) - min(ys)) / canvas["height"])
        assert share > 0.4, f"the grid fills the view ({share:.0%} of it), not a corner of the district"
        assert page.errors_seen == []
    finally:
        page.close()


# Through every shadow root: each visible element's box, cut by the boxes of the ancestors that clip it, must lie
# within the viewport's width and within its panel (nothing spills over a neighbour); no box may scroll sideways;
# and the screen's panels, the header's items and the toolbar's items must not overlap one another.
LAYOUT = """() => {
  const W = window.innerWidth, outside = [], scrolling = [], spilling = [];
  const PANEL = /\\btwin-(header|left|centre|right|bottom)\\b/;
  const clips = (s) => s.overflowX !== 'visible' || s.overflowY !== 'visible';
  const name = (el) => `${el.tagName.toLowerCase()}.${String(el.className || '').split(' ').join('.')} `
                       + `"${(el.innerText || el.value || el.title || '').trim().slice(0, 40)}"`;
  const visit = (el, clip, panel) => {
    const s = getComputedStyle(el);
    if (s.display === 'none') return;
    const r = el.getBoundingClientRect();
    const seen = {left: Math.max(r.left, clip.left), right: Math.min(r.right, clip.right),
                  top: Math.max(r.top, clip.top), bottom: Math.min(r.bottom, clip.bottom)};
    const shown = s.visibility !== 'hidden' && seen.right > seen.left && seen.bottom > seen.top;
    if (shown && (seen.left < -1 || seen.right > W + 1))
      outside.push(`${name(el)} spans ${Math.round(seen.left)}–${Math.round(seen.right)} px`);
    if (shown && panel && (seen.left < panel.left - 1 || seen.right > panel.right + 1 || seen.top < panel.top - 1
                           || seen.bottom > panel.bottom + 1))
      spilling.push(`${name(el)} spills out of its panel`);
    if (PANEL.test(String(el.className))) panel = r;
    if (['auto', 'scroll'].includes(s.overflowX) && el.scrollWidth > el.clientWidth + 1)
      scrolling.push(`${name(el)} scrolls sideways: ${el.scrollWidth} px in ${el.clientWidth}`);
    if (clips(s)) clip = {left: Math.max(clip.left, r.left), right: Math.min(clip.right, r.right),
                          top: Math.max(clip.top, r.top), bottom: Math.min(clip.bottom, r.bottom)};
    for (const child of el.children) visit(child, clip, panel);
    if (el.shadowRoot) for (const child of el.shadowRoot.children) visit(child, clip, panel);
  };
  visit(document.documentElement, {left: -Infinity, right: Infinity, top: -Infinity, bottom: Infinity}, null);
  if (document.documentElement.scrollWidth > W) scrolling.push(`the page: ${document.documentElement.scrollWidth} px`);
  const hosts = [];
  const find = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) find(el.shadowRoot);
      if (String(el.className).match(/\\btwin-(header|left|centre|right|bottom|toolbar)\\b/)) hosts.push(el);
    }
  };
  find(document);
  const box = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0 ? r : null; };
  const groups = [hosts.filter((h) => !h.className.includes('twin-toolbar'))];
  for (const h of hosts) if (h.className.match(/twin-(header|toolbar)/) && h.shadowRoot)
    groups.push([...h.shadowRoot.children].filter((c) => !['STYLE', 'LINK'].includes(c.tagName)));
  const overlaps = [];
  for (const group of groups) {
    const shown = group.map((el) => [el, box(el)]).filter(([, r]) => r);
    for (let i = 0; i < shown.length; i++) for (let j = i + 1; j < shown.length; j++) {
      const [a, p] = shown[i], [b, q] = shown[j];
      const w = Math.min(p.right, q.right) - Math.max(p.left, q.left);
      const h = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
      if (w > 1 && h > 1) overlaps.push(`${name(a)} and ${name(b)} overlap by ${Math.round(w)}×${Math.round(h)} px`);
    }
  }
  return {outside, scrolling, spilling, overlaps, panels: hosts.length};
}"""


# After a resize: the viewport has its new size, and the screen's panels, their children and the 3D view's canvas have
# kept their boxes for QUIET_MS (Bokeh's and the view's resize observers have run).
QUIET_MS = 600
SETTLED = """([w, h, quietMs]) => {
  if (window.innerWidth !== w || window.innerHeight !== h) return false;
  const boxes = [];
  const walk = (root) => { for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) walk(el.shadowRoot);
    if (el.tagName === 'CANVAS' || String(el.className).match(/\\btwin-/)) {
      const r = el.getBoundingClientRect(); boxes.push(r.left, r.top, r.width, r.height); } } };
  walk(document);
  const seen = `${document.documentElement.scrollWidth} ${boxes.map(Math.round).join(' ')}`, now = performance.now();
  if (window.__twinLayout !== seen) { window.__twinLayout = seen; window.__twinLayoutSince = now; return false; }
  return now - window.__twinLayoutSince >= quietMs;
}"""
SCREENS = [(lang, role) for lang in ("zh", "en") for role in ROLES]


def resized(page, size: tuple[int, int]) -> None:
    """The page at viewport ``size``, once its layout has settled there."""
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.wait_for_function(SETTLED, arg=[*size, QUIET_MS], polling=100, timeout=30_000)


@pytest.mark.parametrize(("lang", "role"), SCREENS, ids=[f"{lang}-{role}" for lang, role in SCREENS])
def test_every_screen_fits_without_sideways_scrolling_or_overlaps(browser, district, lang, role):
    """Each screen at each of SIZES: one page per screen and language, opened at one size and resized to the
    others (each size is the opening one of some screens, and each screen opens at two sizes over its two
    languages: a layout made at load and one made on a resize are both checked)."""
    user = {"leader": LEADER, "operator": "op.cases", "planner": "a.planner", "admin": "an.admin"}[role]
    first = SCREENS.index((lang, role)) % len(SIZES)
    sizes = SIZES[first:] + SIZES[:first]
    page = open_as(browser, district, user, size=sizes[0], lang=lang)
    problems = []
    try:
        expect(page.locator(".twin-user b")).to_have_text({"zh": "中文", "en": "English"}[lang])  # the page's language
        if role == "operator":  # a building open: its residents, their pager, Unmask and Export CSV
            page.locator(".twin-search input").fill(district["inside"])
            page.keyboard.press("Enter")
            expect(page.locator(".twin-residents table")).to_be_visible(timeout=10_000)
        for n, size in enumerate(sizes):
            if n:
                resized(page, size)
            where = f"{role} in {lang} at {size} ({'resized to' if n else 'opened at'})"
            if role == "operator":
                for control in (".twin-unmask", ".twin-export", ".twin-next"):
                    expect(page.locator(control).get_by_role("button")).to_be_in_viewport()
            found = page.evaluate(LAYOUT)
            if found["panels"] < 3:
                problems.append(f"{where}: the header, the body's panels and the ticker are not all found")
            for kind, what in (("outside", "elements beyond the viewport's width"), ("scrolling", "sideways scrolling"),
                               ("overlaps", "overlapping panels"), ("spilling", "elements over a neighbouring panel")):
                if found[kind]:
                    problems.append(f"{where}: {what}: {found[kind]}")
        assert not problems, "\n".join(problems)
        assert page.errors_seen == []
    finally:
        page.close()
