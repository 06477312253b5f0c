"""The volunteer scheme in Chromium at 390×844 (touch, Chinese): a grid worker publishes a task, a resident grabs
it, checks in and out on site, the worker confirms, the points are credited, and the resident redeems them at a
merchant, who takes the code on their own page. And before all that, the resident's account: the operator makes it
on a building card and hands over the code, with which the resident sets a password on the phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from bench.browser import ServedURL, as_user, chromium, sign_in
from tests.scenes.conftest import PHONE, served_copy
from tests.scenes.test_volunteers_api import PASSWORD, POINTS, prepare
from twin.inspector import residents_page
from twin.store.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def district(small_demo, tmp_path_factory) -> dict:
    with served_copy(small_demo, tmp_path_factory, "volunteers-browser", prepare_with_newcomer) as found:
        yield found  # and its operator (of every street)


def prepare_with_newcomer(db) -> dict:
    """:func:`prepare`, and a building with residents who have no account, and its first such resident."""
    found = prepare(db)
    with Store(db, read_only=True) as store:
        con = store.con
        found["building"], = con.execute("SELECT building_id FROM residents WHERE resident_id NOT IN (SELECT "
                                         "resident_id FROM resident_accounts) GROUP BY ALL ORDER BY count(*) DESC, "
                                         "building_id LIMIT 1").fetchone()
        found["newcomer"] = next(f"{r.room} {r.name} · {r.resident_id[-4:]}" for r in residents_page(
            con, found["building"], page_size=50).itertuples() if not con.execute(
                "SELECT 1 FROM resident_accounts WHERE resident_id = ?", [r.resident_id]).fetchone())
    return found


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


def test_the_operator_makes_a_residents_account_on_the_building_card_and_its_code_sets_the_password(district):
    url = district["url"]
    with chromium() as browser:
        operator = browser.new_page(viewport={"width": 1600, "height": 900})
        sign_in(operator, as_user(ServedURL(f"{url}?lang=zh"), url.user, url.password))
        operator.wait_for_function("window.twinFirstFrame !== undefined", timeout=90_000)
        operator.get_by_placeholder("搜索地址、建筑或案件编号").fill(district["building"])
        operator.keyboard.press("Enter")
        block = operator.locator(".twin-account-block")
        expect(block).to_contain_text("志愿者账号（文明小杜）", timeout=30_000)
        block.locator("select").select_option(label=district["newcomer"])
        expect(block).to_contain_text("尚未开通志愿者账号", timeout=30_000)
        block.get_by_role("button", name="开通志愿者账号").click()
        expect(block.locator(".twin-account-issued")).to_contain_text("志愿者账号已开通", timeout=30_000)
        expect(block.locator(".twin-account-issued")).to_contain_text("/v/activate")
        username = block.locator(".twin-account-username").inner_text().strip()
        code = block.locator(".twin-account-code").inner_text().strip()
        assert re.fullmatch(r"[A-Z2-9]{10}", code) and username

        context = browser.new_context(**PHONE, locale="zh-CN")
        resident = context.new_page()
        resident.goto(f"{district['root']}/v/activate?lang=zh")
        resident.fill("#username", username)
        resident.fill("#code", code)
        resident.fill("#password", PASSWORD)
        resident.fill("#password2", PASSWORD)
        resident.get_by_role("button", name="设置密码").tap()
        expect(resident.locator("#activated")).to_be_visible(timeout=30_000)
        context.close()
        _, signed_in = phone(browser, district, "/v", username)
        expect(signed_in.locator("#balance")).to_have_text("0")
        assert signed_in.errors_seen == []
