"""The party layer on the street leader's screen, in Debian's Chromium against `twin serve` on a small demo store:
the toggle shows every organisation's mark with its legend and the table comparing grids, and a mark opens its
grid's card with the organisation. Text is read through locators."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from bench.browser import served
from tests.scenes.test_browser import browser, page  # noqa: F401 (the same browser and page, on this module's app_url)
from twin.party.orgs import org_places
from twin.store.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(small_demo, tmp_path_factory):
    served_copy = tmp_path_factory.mktemp("served") / "demo.duckdb"  # the server writes its looks' audit rows
    shutil.copy(small_demo, served_copy)
    with served(served_copy, role="leader") as url:
        yield url


# The marks drawn on the view that no other mark covers, by their titles.
CLEAR_MARKS = """() => [...window.twinView.querySelectorAll(".twin-party-mark")].filter((m) => {
  if (m.style.display === "none") return false;
  const r = m.getBoundingClientRect();  // the marks are in Panel's shadow root: ask it, not the document
  const hit = m.getRootNode().elementsFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return hit.find((e) => e.classList && e.classList.contains("twin-party-mark")) === m;
}).map((m) => m.title)"""


def test_the_leader_turns_on_the_party_layer_and_a_mark_opens_its_grids_card_with_the_organisation(page, small_demo):
    with Store(small_demo, read_only=True) as store:
        places = org_places(store.con)
        grids = dict(store.con.execute("SELECT grid_id, name FROM grids WHERE valid_to IS NULL").fetchall())
    marks = page.locator(".twin-party-mark")
    expect(marks.first).to_be_hidden()  # nothing of the layer before it is asked for
    legend = page.locator(".twin-marker-legend")
    expect(legend).not_to_contain_text("Party organisations")
    page.locator(".twin-party-toggle input").check()
    page.wait_for_function(f"window.twinPartyMarks >= {len(places) // 2}", timeout=20_000)  # most on the view
    assert marks.count() == len(places)
    for text in ("Party organisations", "Party committee", "General party branch", "Party branch",
                 "Joint party branch", "buildings the picked one covers"):
        expect(legend).to_contain_text(text)
    kinds = legend.locator(".twin-party-kind span").evaluate_all("spans => spans.map(s => s.style.background)")
    assert len(set(kinds)) == 5, f"each kind its own colour: {kinds}"

    table = page.locator(".twin-party-table")
    for title in ("Name", "Reporting", "Active", "Services"):  # the columns that matter most fit the panel
        expect(table.locator("thead")).to_contain_text(title, timeout=10_000)
    expect(table.locator(".pager")).to_contain_text("16 rows")
    expect(page.locator(".twin-party-title")).to_contain_text("205 reporting to grids")

    clear = page.evaluate(CLEAR_MARKS)
    assert clear, "some mark stands clear of the others"
    org = next(o for o in places.itertuples() if any(t.startswith(f"{o.name} · ") for t in clear))
    page.locator(f".twin-party-mark[title^='{org.name} · ']").click()
    card = page.locator(".twin-inspector")
    expect(card.locator(".twin-title")).to_have_text(grids[org.grid_id], timeout=10_000)
    picked = card.locator(".twin-party-org.twin-picked")
    expect(picked).to_contain_text(org.name)
    expect(picked).to_contain_text(f"secretary {org.secretary} · {org.members:,} members · {org.buildings:,} "
                                   "buildings covered")
    expect(card.locator(".twin-party-figures")).to_contain_text("party members reported here:")

    page.locator(".twin-party-toggle input").uncheck()
    page.wait_for_function("window.twinPartyMarks === 0", timeout=10_000)
    expect(legend).not_to_contain_text("Party organisations")
    expect(table).to_be_hidden()
    assert page.console_errors == []
