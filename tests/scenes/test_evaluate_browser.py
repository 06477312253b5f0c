"""The resident's page ``/r/{token}`` on a phone (390×844, touch) in Chromium, served by ``twin serve``: the
question once the case is handled, a refused answer, not satisfied reopening the case, the link used once, a
case not yet handled, a wrong link; Chinese first, English on request."""

from __future__ import annotations

import json
import shutil
import urllib.request

import numpy as np
import pandas as pd
import pytest

from bench.browser import chromium, served
from twin.cases.cases import record_transition
from twin.cases.open311 import submit_request
from twin.geo.crs import transform_xy
from twin.store.store import Store

pytestmark = pytest.mark.browser
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def district(small_demo, tmp_path_factory) -> dict:
    """A served copy of the small demo with two residents' Open311 reports: one handled (asked), one not yet."""
    path = tmp_path_factory.mktemp("evaluate") / "demo.duckdb"
    shutil.copy(small_demo, path)
    found = {"db": path, "key": small_demo.with_suffix(".key").read_text().strip()}
    with Store(path) as store, store.transaction():
        con = store.con
        now = pd.Timestamp(con.execute("SELECT value FROM meta WHERE key = 'now'").fetchone()[0])
        x, y = con.execute("SELECT label_x, label_y FROM buildings ORDER BY building_id LIMIT 1").fetchone()
        lon, lat = transform_xy(np.array([[x, y]]), "EPSG:4547", "EPSG:4326")[0]
        form = {"service_code": "sanitation.garbage_overflow", "lat": f"{lat:.7f}", "long": f"{lon:.7f}",
                "description": "小区门口垃圾桶满了"}
        found["form"] = form
        for name in ("handled", "waiting"):
            reply = submit_request(con, form, district_crs="EPSG:4547", reported_at=now - pd.Timedelta(hours=5))
            found[name], found[f"{name}_token"] = reply["service_request_id"], reply["evaluation_token"]
        for hours, step in ((4, "accepted"), (3, "on_site"), (1, "resolved")):  # within the 3 days: not swept
            record_transition(con, found["handled"], step, actor="worker1", at=now - pd.Timedelta(hours=hours))
    with served(path) as url:
        found["base"] = url.rsplit("/", 1)[0]
        yield found


@pytest.fixture(scope="module")
def phone(district):
    with chromium() as browser:
        context = browser.new_context(**PHONE)
        yield context.new_page()
        context.close()


def test_the_reporter_answers_once_on_the_phone_page(district, phone):
    page, base = phone, district["base"]
    asked = page.goto(f"{base}/r/{district['handled_token']}")
    assert asked.status == 200 and asked.headers["referrer-policy"] == "no-referrer"
    assert page.locator("p.question").inner_text() == "您反映的问题解决了吗？", "Chinese first"
    assert page.locator("#case-id").inner_text() == district["handled"]
    assert page.locator("#status").inner_text() == "已办结"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling on a phone"
    for choice in ("label.choice >> nth=0", "label.choice >> nth=1", "#send"):
        assert page.locator(choice).bounding_box()["height"] >= 44, f"{choice}: a touch target"

    page.locator("label.choice >> nth=1").tap()  # 不满意, without a note
    page.locator("#send").tap()
    page.wait_for_load_state()
    assert "请在备注中说明还有什么问题" in page.locator("#error").inner_text()
    assert page.locator("p.question").is_visible(), "the question is asked again; nothing was recorded"

    page.locator("label.choice >> nth=1").tap()
    page.locator("#note").fill("垃圾还在，没人来清")
    page.locator("#send").tap()
    page.wait_for_load_state()
    assert "案件已按您的意见重新启动" in page.locator("#done").inner_text()
    assert page.locator("#status").inner_text() == "已重启"
    next_link = page.locator("#next-link").get_attribute("href")
    assert next_link.startswith("/r/") and district["handled_token"] not in next_link

    again = page.goto(f"{base}/r/{district['handled_token']}")
    assert again.status == 200 and "此链接已使用过" in page.locator("#over").inner_text()
    refused = page.request.post(f"{base}/r/{district['handled_token']}", form={"answer": "satisfied"})
    assert refused.status == 410
    with urllib.request.urlopen(f"{base}/open311/v2/requests/{district['handled']}.json") as answer:
        record = json.loads(answer.read())[0]
    assert record["status"] == "open" and record["status_notes"] == "reopened"


def test_a_case_not_yet_handled_and_a_wrong_link(district, phone):
    page, base = phone, district["base"]
    waiting = page.goto(f"{base}/r/{district['waiting_token']}")
    assert waiting.status == 200 and "案件正在处置中" in page.locator("#wait").inner_text()
    assert page.locator("#answer").count() == 0, "nothing to answer yet"
    wrong = page.goto(f"{base}/r/{district['waiting_token'][:-2]}xx")
    assert wrong.status == 404 and "无法识别此链接" in page.locator("#error").inner_text()
    page.goto(f"{base}/r/{district['waiting_token']}?lang=en")
    assert "Once it is, you will be asked here" in page.locator("#wait").inner_text()
    assert page.locator(".lang a").inner_text() == "中文"


def test_an_open311_receipt_carries_the_link_to_the_page(district, phone):
    page, base = phone, district["base"]
    posted = page.request.post(f"{base}/open311/v2/requests.json",
                               form={**district["form"], "api_key": district["key"]})
    assert posted.status == 201
    receipt = posted.json()[0]
    assert "evaluation_token" not in receipt and receipt["evaluation_url"].startswith(f"{base}/r/")
    opened = page.goto(receipt["evaluation_url"])
    assert opened.status == 200 and page.locator("#case-id").inner_text() == receipt["service_request_id"]
    assert "案件正在处置中" in page.locator("#wait").inner_text()
