"""The admin's screen in Chromium, as an admin uses it while ``twin serve`` runs: users, the audit trail, the layout.

On a copy of the small demo with a few audit rows of earlier days (a refused sign-in ten days ago, a refused
access three days ago). What a person sees is read through Panel's shadow roots (locators).
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import shutil

import pandas as pd
import pytest
from playwright.sync_api import expect

from bench.browser import served
from tests.scenes.test_operator_browser import LAYOUT, browser, open_as  # noqa: F401 (browser: a fixture)
from tests.scenes.test_server import call
from tests.scenes.test_server import signs_in as signs_in_at
from twin.access import access
from twin.store.clock import store_now
from twin.store.store import Store

pytestmark = pytest.mark.browser
ADMIN = "an.admin"  # the name tests.scenes.test_operator_browser.open_as knows for an admin


@pytest.fixture(scope="module")
def district(small_demo, tmp_path_factory):
    """A served copy of the small demo, with two refused accesses of earlier days in its trail."""
    path = tmp_path_factory.mktemp("admin") / "demo.duckdb"
    shutil.copy(small_demo, path)
    found = {}
    with Store(path) as store:
        con = store.con
        now = store_now(con)
        found["today"] = now.date()
        for days, row in ((10, {"actor": "old.visitor", "action": "signin.failed", "source": "10.0.0.9",
                                "detail": {"reason": "wrong name or password"}}),
                          (3, {"actor": "planner", "action": "access.refused", "target": "R-000001",
                               "source": "10.0.0.7", "detail": {"what": "resident records"}})):
            # The trail's clock set back for this one row: its hash covers the earlier time, so the chain holds.
            at = now - pd.Timedelta(days=days)
            original, access.store_now = access.store_now, lambda con, unit="s", at=at: at
            try:
                access.audit(con, **row)
            finally:
                access.store_now = original
        found["micro"] = con.execute("SELECT grid_id, name FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                                     "ORDER BY grid_id LIMIT 2").fetchall()
        found["operator_grid"] = con.execute("SELECT g.grid_id, g.name FROM users u JOIN grids g ON g.grid_id = "
                                             "u.grids[1] AND g.valid_to IS NULL WHERE u.username = 'operator'"
                                             ).fetchone()
        found["password"] = secrets.token_urlsafe(12)
        access.add_user(con, ADMIN, found["password"], role="admin", actor="test")
        access.set_lang(con, ADMIN, "en")
        assert access.verify_audit(con) is None
    with served(path, role="admin") as url:
        found["url"] = url
        yield found


@pytest.fixture
def page(browser, district):
    page = open_as(browser, district, ADMIN)
    yield page
    page.close()


def signs_in(url: str, user: str, password: str) -> bool:
    """Whether the login form takes ``user`` and ``password`` (asked outside the admin's browser)."""
    return signs_in_at(url.rsplit("/", 1)[0], user, password)


def tab(page, name: str) -> None:
    page.locator(".twin-admin-tabs .bk-tab").filter(has_text=re.compile(f"^{re.escape(name)}$")).click()


def pick_grid(page, picker: str, grid_id: str) -> None:
    """Search the grid picker for ``grid_id`` as a person types it, and take the one match."""
    box = page.locator(f"{picker} input")
    box.click()
    box.press_sequentially(grid_id, delay=30)
    option = page.locator(f"{picker} .choices__item--choice", has_text=grid_id)
    expect(option).to_have_count(1, timeout=10_000)
    option.click()
    page.keyboard.press("Escape")


def pick_date(page, picker: str, day) -> None:
    """Open the date picker's calendar and click ``day``, going back or forward from this month as a person would."""
    page.locator(f"{picker} input.form-control").click()
    shown = page.evaluate("(() => { const d = new Date(); return d.getFullYear() * 12 + d.getMonth(); })()")
    steps = day.year * 12 + day.month - 1 - shown
    for _ in range(abs(steps)):
        page.locator(f"{picker} .flatpickr-{'next' if steps > 0 else 'prev'}-month").click()
    page.locator(f"{picker} .flatpickr-day:not(.prevMonthDay):not(.nextMonthDay)",
                 has_text=str(day.day)).get_by_text(str(day.day), exact=True).click()


def message(page):
    return page.locator(".twin-admin-message")


def test_an_admin_adds_binds_resets_and_disables_a_user_while_the_server_runs(page, district):
    url = district["url"]
    (first_grid, first_name), (second_grid, second_name) = district["micro"]
    tab(page, "Users")
    page.locator(".twin-new-user input").fill("clerk.zhou")
    page.locator(".twin-new-role select").select_option(label="Operator")
    pick_grid(page, ".twin-new-grids", first_grid)
    for weak, rule in (("clerk.zhou-2026", "to leave out the user name"), ("short1", "at least 10 characters"),
                       ("aaaabbbbaaaa", "at least 5 different characters")):
        page.locator(".twin-new-password input").fill(weak)
        page.locator(".twin-add-user button").click()
        expect(message(page)).to_have_text(f"Refused: a password needs {rule}.", timeout=10_000)
    expect(page.locator(".twin-users")).not_to_contain_text("clerk.zhou")
    page.locator(".twin-new-password input").fill("a sound passphrase 7")
    page.locator(".twin-add-user button").click()
    expect(message(page)).to_have_text("User clerk.zhou added.", timeout=10_000)
    row = page.locator(".twin-users tr", has_text="clerk.zhou")
    expect(row).to_contain_text(f"{first_name} ({first_grid})")
    expect(row).to_contain_text("Operator")
    assert signs_in(url, "clerk.zhou", "a sound passphrase 7"), "the new user signs in at once"

    page.locator(".twin-chosen-user select").select_option("clerk.zhou")
    chosen = page.locator(".twin-user-grids .choices__list--multiple .choices__item")
    expect(chosen).to_have_count(1, timeout=10_000)  # the chosen user's grids are shown: add one to them
    expect(chosen).to_contain_text(first_grid)
    pick_grid(page, ".twin-user-grids", second_grid)
    page.locator(".twin-save-grants button").click()
    expect(message(page)).to_contain_text("clerk.zhou is now Operator of", timeout=10_000)
    expect(row).to_contain_text(f"{second_name} ({second_grid})")

    page.locator(".twin-reset-password button").click()
    secret = page.locator(".twin-secret code")
    expect(secret).to_be_visible(timeout=10_000)
    password = secret.inner_text().strip()
    assert len(password) >= 10 and signs_in(url, "clerk.zhou", password), "the shown password is the new one"
    assert not signs_in(url, "clerk.zhou", "a sound passphrase 7"), "the old one is gone"
    tab(page, "API keys")
    expect(secret).to_have_count(0, timeout=10_000)  # shown once: gone once the admin moves on
    tab(page, "Users")
    expect(page.locator(".twin-users")).to_be_visible()
    expect(secret).to_have_count(0)
    page.reload()
    expect(page.locator(".twin-audit-rows")).to_be_visible(timeout=60_000)
    tab(page, "Users")
    expect(page.locator(".twin-users")).to_contain_text("clerk.zhou")
    expect(page.get_by_text(password)).to_have_count(0)

    page.locator(".twin-chosen-user select").select_option(ADMIN)
    page.locator(".twin-disable-user button").click()
    expect(message(page)).to_have_text("Refused: you cannot disable yourself; ask another admin.", timeout=10_000)
    page.locator(".twin-chosen-user select").select_option("clerk.zhou")
    page.locator(".twin-disable-user button").click()
    expect(message(page)).to_have_text("clerk.zhou is disabled: they can no longer sign in.", timeout=10_000)
    expect(page.locator(".twin-users tr", has_text="clerk.zhou")).to_contain_text("disabled")
    assert not signs_in(url, "clerk.zhou", password), "a disabled user is refused"

    tab(page, "Audit trail")
    page.locator(".twin-audit-rows").wait_for()
    trail = page.locator(".twin-audit-rows tr", has_text="clerk.zhou")
    for action in ("added a user", "bound a user to grids", "changed a password", "disabled a user"):
        expect(trail.filter(has_text=action).filter(has_text=ADMIN)).to_have_count(1, timeout=10_000)
    assert page.errors_seen == []


def test_the_trail_reads_as_words_filters_by_day_and_exports_what_it_shows(page, district):
    rows = page.locator(".twin-audit-rows tr")
    refused = rows.filter(has_text="old.visitor")
    expect(refused).to_contain_text("refused access")
    expect(refused).to_contain_text("sign-in refused")
    expect(refused).to_contain_text("reason: wrong name or password")
    assert "twin-refused" in refused.get_attribute("class"), "a refused access is marked as its own kind"
    table = page.locator(".twin-audit-rows").inner_text()
    assert "{" not in table and '"' not in table, "no raw JSON in the detail"
    grid_id, grid_name = district["operator_grid"]
    # The demo's patrols fill the trail's first pages (each position is audited): ask for the kind of act.
    what = page.get_by_role("combobox", name="what")
    what.select_option(label="added a user")
    operator = rows.filter(has_text="added a user").filter(has_text="demo").filter(has_text="operator")
    expect(operator).to_contain_text("role: Operator")
    expect(operator).to_contain_text(f"grids: {grid_name} ({grid_id})")  # a grid by its name, then its id

    today = district["today"]
    what.select_option(label="access refused")
    pick_date(page, ".twin-audit-since", today - pd.Timedelta(days=5))
    pick_date(page, ".twin-audit-until", today - pd.Timedelta(days=1))
    expect(rows).to_have_count(2, timeout=10_000)  # the head and the refused access of three days ago
    expect(rows.nth(1)).to_contain_text("access refused")
    expect(rows.nth(1)).to_contain_text("what was asked: resident records")

    with page.expect_download() as download:
        page.locator(".twin-audit-export button").click()
    exported = list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8-sig"))))
    assert [r["what"] for r in exported] == ["access refused"] and exported[0]["who"] == "planner"
    assert exported[0]["entry kind"] == "refused access" and exported[0]["detail"] == "what was asked: resident records"

    what.select_option(label="any")
    pick_date(page, ".twin-audit-until", today)  # up to today: the export's own row is there
    export_row = rows.filter(has_text="exported the audit trail")
    expect(export_row).to_have_count(1, timeout=10_000)
    expect(export_row).to_contain_text(ADMIN)
    expect(export_row).to_contain_text("rows: 1")

    page.locator(".twin-audit-clear button").click()  # every day again: the refused sign-in of ten days ago too
    expect(rows.filter(has_text="old.visitor")).to_have_count(1, timeout=10_000)
    expect(page.locator(".twin-audit-since input.form-control")).to_have_value("")

    # A sign-in elsewhere appears on its own: the trail refreshes without a click.
    signed_in = rows.filter(has_text="signed in")
    before = signed_in.count()
    assert signs_in(district["url"], ADMIN, district["password"])
    expect(signed_in).to_have_count(before + 1, timeout=15_000)
    assert page.errors_seen == []


def test_an_admin_adds_a_key_shown_once_sees_its_use_and_revokes_it(page, district):
    tab(page, "API keys")
    page.locator(".twin-new-key input").fill("field-app")
    page.locator(".twin-add-key button").click()
    secret = page.locator(".twin-secret code")
    expect(secret).to_be_visible(timeout=10_000)
    key = secret.inner_text().strip()
    row = page.locator(".twin-keys tr", has_text="field-app")
    expect(row).to_contain_text("never")
    for _ in range(2):
        assert call(f"{district['url'].rsplit('/', 1)[0]}/open311/v2/requests.json?api_key={key}")[0] == 200
    expect(row.locator("td").nth(4)).to_have_text("2", timeout=30_000)  # counted, written, shown by itself
    expect(row.locator("td").nth(3)).not_to_have_text("never")
    page.locator(".twin-chosen-key select").select_option("field-app")
    page.locator(".twin-revoke button").click()
    expect(message(page)).to_have_text("The key of field-app is revoked.", timeout=10_000)
    expect(row.locator("td").nth(2)).to_contain_text("revoked")
    expect(secret).to_have_count(0)
    tab(page, "Audit trail")
    trail = page.locator(".twin-audit-rows tr", has_text="field-app").filter(has_text=ADMIN)
    for action in ("added an API key", "revoked an API key"):
        expect(trail.filter(has_text=action)).to_have_count(1, timeout=10_000)
    assert page.errors_seen == []


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_admin_tab_fits_1280_by_720_without_sideways_scrolling(browser, district, lang):
    page = open_as(browser, district, ADMIN, size=(1280, 720), lang=lang)
    try:
        names = {"zh": ("审计日志", "用户", "接口密钥"), "en": ("Audit trail", "Users", "API keys")}[lang]
        for name in names:
            tab(page, name)
            page.wait_for_timeout(500)
            found = page.evaluate(LAYOUT)
            where = f"the {name} tab in {lang}"
            assert found["outside"] == [], f"{where}: elements beyond the viewport's width"
            assert found["scrolling"] == [], f"{where}: sideways scrolling"
            assert found["spilling"] == [], f"{where}: elements over a neighbouring panel"
        assert page.errors_seen == []
    finally:
        page.close()
