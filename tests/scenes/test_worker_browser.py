"""The grid worker's phone page in Chromium at 390×844 (touch, Chinese first): a case from accepted to handled
with photos before and after, patrol said on screen, and the offline queue with the network cut and restored."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from playwright.sync_api import expect

from bench.browser import chromium
from tests.scenes.conftest import PHONE, served_copy
from tests.scenes.test_field_api import PASSWORD, Phone, prepare

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def district(small_demo, tmp_path_factory) -> dict:
    with served_copy(small_demo, tmp_path_factory, "worker-browser", prepare) as found:
        yield found


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def phone(browser, district, *, lang: str):
    """A phone where the worker stands at the first case, signed in through the login form the page sends it to."""
    context = browser.new_context(**PHONE, locale="zh-CN" if lang == "zh" else "en-GB", permissions=["geolocation"],
                                  geolocation={"latitude": district["lat"], "longitude": district["lon"]})
    page = context.new_page()
    page.errors_seen = []
    page.on("pageerror", lambda e: page.errors_seen.append(str(e)))
    page.goto(f"{district['root']}/worker?lang={lang}")
    page.fill("#username", "w1")
    page.fill("#password", PASSWORD)
    page.click("#signin")
    page.wait_for_function("window.twinWorkerReady === true", timeout=30_000)
    return context, page


def photo(colour: str) -> dict:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), colour).save(out, format="JPEG")
    return {"name": f"{colour}.jpg", "mimeType": "image/jpeg", "buffer": out.getvalue()}


def case_on_server(district, case_id: str) -> dict:
    return Phone(district["root"], "w1").json("GET", f"/api/field/cases/{case_id}")[1]


def test_a_worker_accepts_goes_on_site_and_handles_a_case_with_photos_in_chinese(browser, district):
    case = district["cases"][0]
    context, page = phone(browser, district, lang="zh")
    expect(page.get_by_role("heading", name="我的案件")).to_be_visible()
    item = page.locator(f"button.case[data-case-id='{case}']")
    expect(item).to_contain_text("已上报")
    expect(item.locator(".distance")).to_have_text("0 米")  # the worker stands at the case
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing wider than the phone"
    item.tap()
    expect(page.locator("#case-title")).to_contain_text(case)
    expect(page.locator("#map .map-case")).to_have_count(1)
    expect(page.locator("#map .map-me")).to_have_count(1)
    page.get_by_role("button", name="接单").tap()
    expect(page.locator("#case-status")).to_contain_text("已接单")
    page.get_by_role("button", name="到达现场").tap()
    expect(page.locator("#case-status")).to_contain_text("已到场")
    page.set_input_files("#photo-before", files=[photo("orange")])
    handled = page.get_by_role("button", name="处置完毕")
    expect(handled).to_be_disabled()
    expect(page.locator("#steps .hint")).to_have_text("请先拍摄处置后照片。")
    page.set_input_files("#photo-after", files=[photo("green")])
    expect(handled).to_be_enabled()
    page.fill("#note", "已清理完毕")
    handled.tap()
    expect(page.locator("#pending")).to_have_text("已全部发送", timeout=20_000)
    expect(page.locator("#list-view")).to_be_visible()
    expect(page.locator(f"button.case[data-case-id='{case}']")).to_have_count(0, timeout=20_000)
    # Patrol: said on screen while on.
    page.locator("#patrol-switch").check()
    expect(page.locator("#patrol-state")).to_have_text("巡查中：每 30 秒记录一次您的位置。")
    expect(page.locator("#pending")).to_have_text("已全部发送", timeout=20_000)
    page.locator("#patrol-switch").uncheck()
    expect(page.locator("#patrol-state")).to_have_text("巡查未开启：不记录您的位置。")
    assert page.locator("#notices .notice").all_inner_texts() == []
    card = case_on_server(district, case)
    assert card["status"] == "resolved" and card["assigned_worker"] == "w1"
    assert [p["kind"] for p in card["photos"]] == ["before", "after"]
    assert [e["to_status"] for e in card["history"]][-3:] == ["accepted", "on_site", "resolved"]
    assert card["history"][-1]["note"] == "已清理完毕"
    assert page.errors_seen == []
    context.close()


def test_actions_taken_offline_are_sent_once_when_the_network_returns_and_a_conflict_is_shown(browser, district):
    mine, contested = district["cases"][1], district["cases"][2]
    context, page = phone(browser, district, lang="en")
    lost, cut = [], [True]

    def lose_the_first_answer(route):
        if cut[0]:  # Playwright's routing would reach the server past the offline emulation: cut it here too
            route.abort("internetdisconnected")
        elif not lost and "/actions" in route.request.url:  # back online, the first step reaches the server and
            lost.append(None)                                  # its answer never reaches the phone
            lost[0] = route.fetch().status
            route.abort("connectionreset")
        else:
            route.continue_()
    page.route("**/api/field/**", lose_the_first_answer)
    context.set_offline(True)
    expect(page.locator("#net")).to_have_text("offline")
    page.locator(f"button.case[data-case-id='{mine}']").tap()
    page.get_by_role("button", name="Accept the case").tap()
    expect(page.locator("#case-status")).to_have_text("Accepted · waiting to send")
    page.get_by_role("button", name="I am on site").tap()
    expect(page.locator("#pending")).to_have_text("2 waiting to send")
    page.locator("#back").tap()
    page.locator(f"button.case[data-case-id='{contested}']").tap()
    page.get_by_role("button", name="Accept the case").tap()
    expect(page.locator("#pending")).to_have_text("3 waiting to send")
    page.wait_for_timeout(1000)
    assert case_on_server(district, mine)["status"] == "reported", "nothing reached the server while offline"
    # Meanwhile w2 took the contested case: the moved-on case is shown to w1, not forced.
    w2 = Phone(district["root"], None)
    w2.cookie = _cookie_of(district, "w2", district["micro"])
    assert w2.json("POST", "/api/field/actions", {"kind": "step", "key": "w2-takes-it", "case_id": contested,
                                                  "step": "accept", "seen_status": "reported"})[0] == 200
    cut[0] = False
    context.set_offline(False)
    expect(page.locator("#pending")).to_have_text("all sent", timeout=30_000)
    expect(page.locator("#notices .notice.conflict")).to_have_count(1)
    expect(page.locator("#notices .notice.conflict")).to_contain_text(f"{contested} · Accept the case: case "
                                                                      f"{contested} moved on")
    assert lost == [200], "the first answer was lost after the server applied the step"
    card = case_on_server(district, mine)
    assert card["status"] == "on_site"
    assert [e["to_status"] for e in card["history"]].count("accepted") == 1, "the step sent again was applied once"
    assert Phone(district["root"], None).json("GET", "/api/field/cases")[0] == 401
    assert page.errors_seen == []
    context.close()


def _cookie_of(district, user: str, micro: str) -> str:
    """w2, a worker of the same micro-grid as w1 (made here, while serving, through the running server)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    subprocess.run([sys.executable, str(ROOT / "cli.py"), "users", "grants", user, "--role", "worker", "--grids",
                    micro, "--db", str(district["db"])], check=True, capture_output=True, cwd=ROOT, timeout=120)
    signed = Phone(district["root"], user)
    return signed.cookie
