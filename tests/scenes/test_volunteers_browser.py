"""The volunteer scheme in Chromium at 390×844 (touch, Chinese): a grid worker publishes a task, a resident grabs
it, checks in and out on site, the worker confirms, the points are credited, and the resident redeems them at a
merchant, who takes the code on their own page."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect

from bench.browser import chromium, served
from tests.scenes.test_volunteers_api import PASSWORD, POINTS, prepare

pytestmark = pytest.mark.browser
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@pytest.fixture(scope="module")
def district(small_demo, tmp_path_factory) -> dict:
    db = tmp_path_factory.mktemp("volunteers-browser") / "demo.duckdb"
    shutil.copy(small_demo, db)
    found = prepare(str(db))
    with served(db) as url:
        yield {**found, "root": url.rsplit("/", 1)[0]}


def phone(browser, district, path: str, user: str, password: str = PASSWORD):
    """A phone standing at the task's building, signed in through the login form the page sends it to."""
    context = browser.new_context(**PHONE, locale="zh-CN", permissions=["geolocation"],
                                  geolocation={"latitude": district["lat"], "longitude": district["lon"]})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{district['root']}{path}?lang=zh")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#signin")
    page.wait_for_function("window.twinVolunteerReady === true", timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing wider than the phone"
    page.errors_seen = errors
    return context, page


def test_publish_grab_check_in_confirm_and_redeem_at_a_merchant(district):
    with chromium() as browser:
        _, worker = phone(browser, district, "/worker/tasks", "vw1")
        worker.fill("#t-title", "给花坛浇水")
        worker.fill("#t-place", "3号楼花坛")
        worker.fill("#t-points", "10")
        worker.get_by_role("button", name="发布").tap()
        expect(worker.locator(".notice.ok")).to_contain_text("已发布：给花坛浇水")
        task = worker.locator("#w-tasks li", has_text="给花坛浇水")
        expect(task).to_contain_text("剩余名额 5/5")

        _, resident = phone(browser, district, "/v", "res03")
        expect(resident.locator("#balance")).to_have_text("0")
        item = resident.locator("#tasks li", has_text="给花坛浇水")
        expect(item).to_contain_text("10 积分")
        expect(item).to_contain_text("0 米")  # the resident stands at the task's place
        item.get_by_role("button", name="抢任务").tap()
        expect(resident.locator(".notice.ok")).to_contain_text("第 1 个名额")
        expect(item.get_by_role("button")).to_have_text("已报名")
        resident.get_by_role("button", name="我的").tap()
        mine = resident.locator("#my-tasks li", has_text="给花坛浇水")
        mine.get_by_role("button", name="签到").tap()
        expect(mine).to_contain_text("已签到")
        mine.get_by_role("button", name="签退").tap()
        expect(mine).to_contain_text("已签退，等待网格员确认")

        worker.reload()
        worker.wait_for_function("window.twinVolunteerReady === true")
        task = worker.locator("#w-tasks li", has_text="给花坛浇水")
        task.get_by_role("button", name="确认完成").tap()
        expect(worker.locator(".notice.ok")).to_contain_text("10 积分已到账")
        expect(task).to_contain_text("已确认")

        resident.reload()
        resident.wait_for_function("window.twinVolunteerReady === true")
        expect(resident.locator("#balance")).to_have_text("10")
        resident.get_by_role("button", name="积分兑换").tap()
        reward = resident.locator("#rewards li", has_text="一袋米")
        expect(reward).to_contain_text(f"{POINTS} 积分")
        reward.get_by_role("button", name="兑换").tap()
        expect(resident.locator("#code-shown")).to_have_text(re.compile(r"^\d{8}$"))
        code = resident.locator("#code-shown").inner_text()
        expect(resident.locator("#balance")).to_have_text(str(10 - POINTS))

        _, merchant = phone(browser, district, "/m", "m-shop1", district["shop_password"])
        expect(merchant.locator("#shop")).to_have_text("便民超市")
        merchant.fill("#code-input", code)
        merchant.get_by_role("button", name="核验兑换码").tap()
        expect(merchant.locator("#code-result")).to_contain_text("一袋米")
        merchant.get_by_role("button", name="核销并交付").tap()
        expect(merchant.locator(".notice.ok")).to_contain_text(f"兑换码 {code} 已核销")
        expect(merchant.locator("#taken")).to_contain_text(code)
        merchant.fill("#code-input", code)  # a second time: refused
        merchant.get_by_role("button", name="核验兑换码").tap()
        expect(merchant.locator("#code-result")).to_contain_text("已于")
        for page in (worker, resident, merchant):
            assert page.errors_seen == []
