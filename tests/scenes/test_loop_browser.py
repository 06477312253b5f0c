"""The whole case loop in Chromium, each person on their own page: a camera's detection becomes a case; the grid
worker, on the phone at 390×844, accepts it, goes on site with photos before and after, and hands it up; the
operator dispatches it by the list of duties; the department handles it on its screen; the reporter, on the
token page at 390×844, is not satisfied; the case reopens on the worker's phone, the worker handles it again with
a photo after the work; the reporter is satisfied and the case closes. Then the store: the history in order,
the photos with their SHA-256, the two evaluations and the audit trail."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from bench.browser import ServedURL, as_user, chromium, served, sign_in
from tests.scenes.test_field_api import PASSWORD
from tests.scenes.conftest import PHONE
from tests.scenes.test_worker_browser import phone, photo
from twin.access.access import add_user, verify_audit
from twin.cases.cases import match_location
from twin.cases.detections import camera_target
from twin.geo.crs import transform_xy
from twin.store.store import Store, open_for_command

pytestmark = pytest.mark.browser
KIND = "sanitation.garbage_overflow"  # the list of duties gives it to 城市管理局 (cgj)


def _district(small_demo, tmp_path) -> dict:
    """A copy of the small demo; a camera whose target lies in a micro-grid, that micro-grid's worker w1, an
    operator of its community and a user of the department the list names for the kind."""
    db = tmp_path / "demo.duckdb"
    shutil.copy(small_demo, db)
    with open_for_command(db, create=False) as store:
        con = store.con
        for camera, x, y, z, heading, pitch, reach in con.execute(
                "SELECT camera_id, ST_X(position), ST_Y(position), coalesce(z, 4.0), coalesce(heading_deg, 0), "
                "coalesce(pitch_deg, -20), coalesce(range_m, 40) FROM cameras ORDER BY camera_id").fetchall():
            tx, ty = camera_target(x, y, z, heading_deg=heading, pitch_deg=pitch, range_m=reach)
            micro = match_location(con, tx, ty)["grid_id"]
            if micro is not None:
                break
        community, = con.execute("SELECT parent_id FROM grids WHERE grid_id = ? AND valid_to IS NULL",
                                 [micro]).fetchone()
        for name, role, grids, department in (("w1", "worker", [micro], None), ("op", "operator", [community], None),
                                              ("cgj1", "department", [], "cgj")):
            add_user(con, name, PASSWORD, role=role, grids=grids, lang="en", actor="test", department=department)
        lon, lat = transform_xy(np.array([[tx, ty]]), store.district.crs, "EPSG:4326")[0]
        zone = con.execute("SELECT value FROM meta WHERE key = 'timezone'").fetchone()[0]
    return {"db": db, "camera": camera, "micro": micro, "lon": lon, "lat": lat, "zone": zone,
            "key": small_demo.with_suffix(".key").read_text().strip()}


def _detect(root: str, district: dict) -> dict:
    """The camera's analytics box posts a detection, as the real client does (JSON, the key in X-API-Key)."""
    body = {"camera_id": district["camera"], "category": KIND, "confidence": 0.91,
            "detected_at": pd.Timestamp.now(tz=district["zone"]).isoformat(timespec="seconds")}
    request = urllib.request.Request(f"{root}/api/detections", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-API-Key": district["key"]})
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 201
        return json.loads(answer.read())


def _desk(browser, url: ServedURL, user: str):
    """A desktop page signed in as ``user`` on the app, its screen drawn."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.errors_seen = []
    page.on("pageerror", lambda e: page.errors_seen.append(str(e)))
    sign_in(page, as_user(ServedURL(f"{url}?lang=en"), user, PASSWORD))
    page.wait_for_function("window.twinFirstFrame !== undefined", timeout=120_000)
    return page


def _open_case(page, case_id: str):
    page.get_by_placeholder("Search address, building or case id").fill(case_id)
    page.keyboard.press("Enter")
    card = page.locator(".twin-inspector")
    expect(card.locator(".twin-title")).to_have_text(f"Case {case_id}", timeout=30_000)
    return card


def _evaluate(browser, url: str, *, satisfied: bool, note: str = ""):
    """The reporter on the token page, on a phone: the question, an answer; the page after it."""
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(url)
    expect(page.locator("p.question")).to_have_text("您反映的问题解决了吗？")
    expect(page.locator("#status")).to_have_text("已办结")
    page.locator("label.choice").nth(0 if satisfied else 1).tap()
    if note:
        page.locator("#note").fill(note)
    page.locator("#send").tap()
    expect(page.locator("#done")).to_be_visible(timeout=30_000)
    return context, page


def test_a_detection_goes_round_the_whole_loop_to_closed(small_demo, tmp_path):
    district = _district(small_demo, tmp_path)
    photos = {"orange": photo("orange"), "green": photo("green"), "lime": photo("lime")}
    with served(district["db"]) as url, chromium() as browser:
        root = district["root"] = url.rsplit("/", 1)[0]
        # 1. A detection becomes a case; its client, the reporter, gets the link to evaluate it.
        detected = _detect(root, district)
        case_id, first_link = detected["case_id"], detected["evaluation_url"]
        assert not detected["duplicate"] and first_link.startswith(f"{root}/r/")

        # 2. The worker accepts it, goes on site, photos before and after the work; 3. hands it up.
        worker, wpage = phone(browser, district, lang="zh")
        item = wpage.locator(f"button.case[data-case-id='{case_id}']")
        expect(item).to_contain_text("已上报")
        item.tap()
        wpage.get_by_role("button", name="接单").tap()
        expect(wpage.locator("#case-status")).to_contain_text("已接单")
        wpage.get_by_role("button", name="到达现场").tap()
        expect(wpage.locator("#case-status")).to_contain_text("已到场")
        wpage.set_input_files("#photo-before", files=[photos["orange"]])
        wpage.set_input_files("#photo-after", files=[photos["green"]])
        expect(wpage.get_by_role("button", name="处置完毕")).to_be_enabled()
        wpage.fill("#note", "垃圾桶满溢严重，需环卫车清运")
        wpage.get_by_role("button", name="上报").tap()
        expect(wpage.locator("#pending")).to_have_text("已全部发送", timeout=30_000)
        expect(item).to_have_count(0, timeout=30_000)  # off the worker's list while a department has it

        # The operator dispatches the handed-up case by the list of duties.
        desk = _desk(browser, url, "op")
        card = _open_case(desk, case_id)
        expect(card.locator("tr", has_text="status")).to_contain_text("Handed up")
        expect(desk.locator(".twin-dispatch-to select")).to_have_value("by the duties list")
        desk.get_by_role("button", name="→ Dispatched").click()
        expect(card.locator("tr", has_text="status")).to_contain_text("Dispatched", timeout=30_000)
        expect(card.locator("tr", has_text="department").first).to_contain_text("城市管理局")
        assert desk.errors_seen == []
        desk.close()
        wpage.reload()  # the department holds it now: not on the worker's phone, nor theirs to accept
        wpage.wait_for_function("window.twinWorkerReady === true", timeout=30_000)
        expect(wpage.locator(f"button.case[data-case-id='{case_id}']")).to_have_count(0)

        # 4. The department handles it on its own screen: in progress, then resolved.
        office = _desk(browser, url, "cgj1")
        card = _open_case(office, case_id)
        expect(card.locator(".twin-photo")).to_have_count(2)  # the worker's photos
        office.get_by_role("button", name="→ In progress").click()
        expect(card.locator("tr", has_text="status")).to_contain_text("In progress", timeout=30_000)
        office.get_by_placeholder("note for the next step (optional)").fill("环卫车已清运")
        office.get_by_role("button", name="→ Resolved").click()
        expect(card.locator("tr", has_text="status")).to_contain_text("Resolved", timeout=30_000)
        expect(office.get_by_role("button", name="→ Resolved")).to_have_count(0)
        assert office.errors_seen == []
        office.close()

        # 5. The reporter, on the token page, is not satisfied; 6. the case reopens.
        reporter, rpage = _evaluate(browser, first_link, satisfied=False, note="桶边还有散落垃圾")
        expect(rpage.locator("#done")).to_contain_text("案件已按您的意见重新启动")
        expect(rpage.locator("#status")).to_have_text("已重启")
        next_link = rpage.locator("#next-link").get_attribute("href")
        assert next_link.startswith("/r/") and next_link not in first_link
        reporter.close()

        # 7. The reopened case is back on the worker's phone, with the reporter's note; handled again.
        wpage.reload()
        wpage.wait_for_function("window.twinWorkerReady === true", timeout=30_000)
        item = wpage.locator(f"button.case[data-case-id='{case_id}']")
        expect(item).to_contain_text("已重启")
        item.tap()
        expect(wpage.locator("#history")).to_contain_text("桶边还有散落垃圾")
        wpage.get_by_role("button", name="接单").tap()
        wpage.get_by_role("button", name="到达现场").tap()
        handled = wpage.get_by_role("button", name="处置完毕")
        expect(handled).to_be_disabled()  # the photos after the first visit do not count: a new one
        wpage.set_input_files("#photo-after", files=[photos["lime"]])
        expect(handled).to_be_enabled()
        handled.tap()
        expect(wpage.locator("#pending")).to_have_text("已全部发送", timeout=30_000)
        expect(item).to_have_count(0, timeout=30_000)
        assert wpage.errors_seen == []
        worker.close()

        # 8. The reporter, at the link the first answer gave, is satisfied; 9. the case closes.
        reporter, rpage = _evaluate(browser, root + next_link, satisfied=True)
        expect(rpage.locator("#done")).to_contain_text("案件已结案")
        expect(rpage.locator("#status")).to_have_text("已结案")
        reporter.close()

    with Store(district["db"], read_only=True) as store:
        con = store.con
        status, department, worker_of = con.execute("SELECT status, department, assigned_worker FROM cases "
                                                    "WHERE case_id = ?", [case_id]).fetchone()
        steps = con.execute('SELECT to_status, actor FROM case_events WHERE case_id = ? ORDER BY "at", rowid',
                            [case_id]).fetchall()
        kept = con.execute('SELECT kind, sha256, taken_by FROM case_photos WHERE case_id = ? ORDER BY "at", '
                           "photo_id", [case_id]).fetchall()
        images = {sha: bytes(image) for sha, image in con.execute(
            "SELECT sha256, image FROM case_photos WHERE case_id = ?", [case_id]).fetchall()}
        answers = con.execute('SELECT result, note FROM evaluations WHERE case_id = ? ORDER BY "at"',
                              [case_id]).fetchall()
        audited = con.execute("SELECT action, actor FROM audit WHERE target = ? ORDER BY seq", [case_id]).fetchall()
        assert verify_audit(con) is None, "the audit chain is whole"
    assert (status, department, worker_of) == ("closed", "cgj", "w1")
    assert steps == [("reported", "ai"), ("accepted", "w1"), ("on_site", "w1"), ("handed_up", "w1"),
                     ("dispatched", "op"), ("in_progress", "cgj1"), ("resolved", "cgj1"), ("reopened", "reporter"),
                     ("accepted", "w1"), ("on_site", "w1"), ("resolved", "w1"), ("evaluated", "reporter"),
                     ("closed", "evaluation")]
    assert [(k, who) for k, _, who in kept] == [("before", "w1"), ("after", "w1"), ("after", "w1")]
    assert all(hashlib.sha256(images[sha]).hexdigest() == sha for _, sha, _ in kept)
    assert answers == [("not_satisfied", "桶边还有散落垃圾"), ("satisfied", None)]
    assert audited.count(("case.photo", "w1")) == 3 and audited.count(("case.evaluate", "reporter")) == 2
    assert [a for a in audited if a[0] == "case.transition"] == [
        ("case.transition", who) for who in ("w1", "w1", "w1", "op", "cgj1", "cgj1", "w1", "w1", "w1")]
