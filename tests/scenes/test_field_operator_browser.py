"""The operator sees the field in Chromium: a grid worker on patrol on the map with their open load, their card on
a click, and a case given to another worker with a reason (which the first worker's phone then follows)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from playwright.sync_api import expect

from bench.browser import ServedURL, as_user, chromium, served, sign_in
from tests.scenes.test_field_api import PASSWORD, Phone
from twin.access.access import Principal, add_user
from twin.access.policy import Gate
from twin.cases.cases import create_case, load_taxonomy
from twin.field.patrol import check_in, set_patrol
from twin.store.clock import store_now
from twin.store.store import open_for_command

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def district(small_demo, tmp_path_factory) -> dict:
    db = tmp_path_factory.mktemp("field-operator") / "demo.duckdb"
    shutil.copy(small_demo, db)
    with open_for_command(db, create=False) as store:
        con = store.con
        micro, parent = con.execute("SELECT grid_id, parent_id FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                                    "AND grid_id IN (SELECT grid_id FROM buildings) ORDER BY grid_id LIMIT 1"
                                    ).fetchone()
        x, y = con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id = ? ORDER BY building_id LIMIT 1",
                           [micro]).fetchone()
        case = create_case(con, subcategory_code=load_taxonomy()["subcategories"][0]["code"], source="patrol",
                           x=x, y=y)["case_id"]
        for name, role, grids in (("w1", "worker", [micro]), ("w2", "worker", [micro]), ("op", "operator", [parent])):
            add_user(con, name, PASSWORD, role=role, grids=grids, lang="en", actor="test")
        w1 = Gate(con, Principal("w1", "worker", (micro,)))
        now = store_now(con, unit="us")
        set_patrol(w1, key="op-test-on", on=True, at=now - pd.Timedelta(minutes=5))
        check_in(w1, key="op-test-pos", x=x + 3, y=y, at=now - pd.Timedelta(minutes=1))
        ox, oy, _ = store.district.origin
    with served(db) as url:
        yield {"url": url, "root": url.rsplit("/", 1)[0], "case": case, "at": (x + 3 - ox, y - oy)}


def test_the_operator_sees_a_worker_on_patrol_and_gives_a_case_to_another_worker(district):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, as_user(ServedURL(f"{district['url']}?lang=en"), "op", PASSWORD))
        page.wait_for_function("window.twinFirstFrame !== undefined", timeout=90_000)
        page.wait_for_function("window.twinWorkersDrawn === 1", timeout=30_000)
        expect(page.locator(".twin-marker-legend")).to_contain_text("Grid workers on patrol")
        page.wait_for_timeout(2500)  # the opening flight to the operator's grids
        x, y = page.evaluate("([x, y]) => window.twinView.worldToPage(x, y, 1.5)", list(district["at"]))
        page.mouse.click(x, y)
        card = page.locator(".twin-inspector")
        expect(card).to_contain_text("Grid worker w1", timeout=15_000)
        expect(card).to_contain_text(district["case"])
        page.get_by_placeholder("Search address, building or case id").fill(district["case"])
        page.keyboard.press("Enter")
        expect(card.locator(".twin-title")).to_have_text(f"Case {district['case']}", timeout=15_000)
        page.locator(".twin-assign-to select").select_option("w2")
        page.locator(".twin-assign-reason input").fill("no")
        page.get_by_role("button", name="Give to this worker").click()
        expect(page.get_by_text("needs a reason")).to_be_visible(timeout=15_000)
        page.locator(".twin-assign-reason input").fill("w2 is on the next street")
        page.get_by_role("button", name="Give to this worker").click()
        expect(card).to_contain_text("reassigned from - to w2: w2 is on the next street", timeout=15_000)
        expect(card.locator("tr", has_text="grid worker")).to_contain_text("w2")
        assert errors == []
    listed = {c["case_id"]: c for c in Phone(district["root"], "w1").json("GET", "/api/field/cases")[1]["cases"]}
    assert listed[district["case"]]["assigned_worker"] == "w2" and listed[district["case"]]["steps"] == []
    mine = {c["case_id"]: c for c in Phone(district["root"], "w2").json("GET", "/api/field/cases")[1]["cases"]}
    assert mine[district["case"]]["mine"] and mine[district["case"]]["steps"] == ["accept"]
