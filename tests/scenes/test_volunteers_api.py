"""The volunteer pages' API over HTTP on `twin serve`: roles, 小杜拍 through the Open311 intake, and 50 residents
grabbing a 10-place task at once (threads, each signed in from its own loopback address), on both backends."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
import urllib.parse

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.browser import served
from tests.scenes.conftest import served_copy
from twin.access.access import Principal, add_user, verify_audit
from twin.access.policy import Gate
from twin.geo.crs import transform_xy
from twin.store.clock import store_now
from twin.store.store import Store, open_for_command
from twin.volunteers import ledger
from twin.volunteers.accounts import activate_account, add_merchant, create_resident_account
from twin.volunteers.rewards import add_reward
from twin.volunteers.tasks import publish_task

PASSWORD = "volunteer-api-password-1"
RESIDENTS = 50
PLACES = 10
POINTS = 7


class Client:
    """A signed-in user over HTTP, from a loopback address of its own (sign-ins are limited per address)."""

    def __init__(self, port: int, user: str, address: str = "127.0.0.1") -> None:
        self.port, self.address, self.cookie = port, address, ""
        form = urllib.parse.urlencode({"username": user, "password": PASSWORD}).encode()
        for _ in range(30):  # a PostgreSQL store's process answers 503 until its listeners are connected
            status, headers, _ = self.call("POST", "/login", form, content_type="application/x-www-form-urlencoded")
            if status != 503:
                break
            time.sleep(1)
        assert status == 302 and "error=" not in headers["Location"], f"{user} signs in ({status})"
        self.cookie = "; ".join(v.split(";")[0] for k, v in headers.items() if k.lower() == "set-cookie")

    def call(self, method: str, path: str, body: bytes | None = None, *,
             content_type: str = "application/json") -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120,
                                                source_address=(self.address, 0))
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            headers.update({"Content-Type": content_type, "X-Twin-Field": "1"})
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        status, _, data = self.call(method, path + ("&" if "?" in path else "?") + "lang=en",
                                    None if body is None else json.dumps(body).encode())
        return status, json.loads(data)


def activated_residents(con, count: int, *, prefix: str, password: str, actor: str) -> list[str]:
    """Accounts ``{prefix}00``... for the first ``count`` residents without one, activated with ``password``;
    those residents' ids, in the accounts' order."""
    residents = [r for r, in con.execute("SELECT resident_id FROM residents WHERE resident_id NOT IN (SELECT "
                                         "resident_id FROM resident_accounts) ORDER BY resident_id LIMIT ?",
                                         [count]).fetchall()]
    for k, rid in enumerate(residents):
        made = create_resident_account(con, rid, username=f"{prefix}{k:02d}", actor=actor)
        activate_account(con, made["username"], made["code"], password)
    return residents


def grab_at_once(phones: list[Client], task_id: str) -> tuple[list[tuple[int, dict, float]], float]:
    """Every phone grabs ``task_id`` at the same moment (a thread each, behind a barrier): each one's status,
    answer and milliseconds, in the phones' order, and the burst's seconds."""
    answers: list[tuple[int, dict, float] | None] = [None] * len(phones)
    start = threading.Barrier(len(phones))

    def grab(k: int) -> None:
        start.wait()
        began = time.perf_counter()
        status, body = phones[k].json("POST", "/api/v/grab", {"task_id": task_id})
        answers[k] = (status, body, (time.perf_counter() - began) * 1000)
    threads = [threading.Thread(target=grab, args=(k,)) for k in range(len(phones))]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers, time.perf_counter() - began


def prepare(db: str) -> dict:
    """50 residents with accounts set up, a grid worker, a merchant with a reward, and a 10-place task at a
    building of the worker's micro-grid."""
    with open_for_command(db, create=False) as store:
        con = store.con
        micro, x, y = con.execute("SELECT b.grid_id, b.label_x, b.label_y FROM buildings b JOIN grids g ON g.grid_id = "
                                  "b.grid_id AND g.valid_to IS NULL ORDER BY b.building_id LIMIT 1").fetchone()
        add_user(con, "vw1", PASSWORD, role="worker", grids=[micro], actor="test", lang="en")
        residents = activated_residents(con, RESIDENTS, prefix="res", password=PASSWORD, actor="test")
        shop = add_merchant(con, "shop1", "便民超市", actor="test")
        add_reward(con, "shop1", "一袋米", points=POINTS, stock=20, actor="test")
        add_user(con, "op-other", PASSWORD, role="operator",
                 grids=[con.execute("SELECT grid_id FROM grids WHERE level = 'street' AND valid_to IS NULL "
                                    "ORDER BY grid_id LIMIT 1").fetchone()[0]], actor="test")
        now = store_now(con)
        task = publish_task(Gate(con, Principal("vw1", "worker", (micro,))), title="清扫楼道", place="1号楼",
                            x=x, y=y, starts_at=now - pd.Timedelta(minutes=5), ends_at=now + pd.Timedelta(hours=3),
                            places=PLACES, points=POINTS)["task_id"]
        crs = store.district.crs
    lon, lat = transform_xy(np.array([[x, y]]), crs, "EPSG:4326")[0]
    return {"db": db, "task": task, "lon": float(lon), "lat": float(lat), "shop": shop["username"],
            "residents": residents,
            "shop_password": shop["password"]}


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), "brown").save(out, format="JPEG")
    return out.getvalue()


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_fifty_residents_grab_ten_places_at_once_and_the_ledger_balances(demo_copy_db, backend):
    found = prepare(demo_copy_db)
    with served(demo_copy_db) as url:
        port = int(url.split(":")[2].split("/")[0])
        phones = [Client(port, f"res{k:02d}", f"127.0.0.{2 + k % 10}") for k in range(RESIDENTS)]
        timed, seconds = grab_at_once(phones, found["task"])
        answers = [(status, body) for status, body, _ in timed]
        won = [k for k, (status, _) in enumerate(answers) if status == 200]
        lost = [body["error"]["message"] for status, body in answers if status != 200]
        assert len(won) == PLACES, answers
        assert sorted(answers[k][1]["place_no"] for k in won) == list(range(1, PLACES + 1))
        assert all("full" in m for m in lost) and len(lost) == RESIDENTS - PLACES
        print(f"\n{backend}: {RESIDENTS} grabs of {PLACES} places in {seconds:.2f} s")
        # The ten do the work; the worker confirms each; each redeems the reward.
        worker = Client(port, "vw1")
        where = {"lon": found["lon"], "lat": found["lat"]}
        for k in won:
            for out in (False, True):
                status, body = phones[k].json("POST", "/api/v/site", {"task_id": found["task"], "out": out, **where})
                assert status == 200, body
        status, listed = worker.json("GET", "/api/v/worker")
        places = [g["place_no"] for t in listed["tasks"] if t["task_id"] == found["task"] for g in t["grabs"]]
        assert sorted(places) == list(range(1, PLACES + 1))
        for place in places:
            status, body = worker.json("POST", "/api/v/worker/confirm", {"task_id": found["task"], "place_no": place})
            assert status == 200 and body["points"] == POINTS, body
        status, me = phones[won[0]].json("GET", "/api/v/me")
        assert me["balance"] == POINTS and me["ledger"][0]["reason"] == "task"
        # A resident sees no one else: their account only, and no names on the task list.
        assert set(me) == {"name", "balance", "ledger", "tasks", "codes", "reports"}
        status, tasks = phones[won[1]].json("GET", "/api/v/tasks")
        assert all("grabs" not in t and "username" not in t for t in tasks["tasks"])
        status, code = phones[won[0]].json("POST", "/api/v/redeem", {"reward_id": _reward(phones[0])})
        assert status == 200 and code["balance"] == 0
        status, again = phones[won[0]].json("POST", "/api/v/redeem", {"reward_id": _reward(phones[0])})
        assert status == 400 and "balance is 0" in again["error"]["message"]
        # Roles: a resident is refused the worker's and the merchant's API, a worker the resident's.
        for path in ("/api/v/worker", "/api/m/overview"):
            assert phones[0].json("GET", path)[0] == 403
        assert worker.json("GET", "/api/v/me")[0] == 403
    with Store(demo_copy_db, read_only=True) as store:
        con = store.con
        assert ledger.verify_ledger(con) is None and verify_audit(con) is None
        total, rows = con.execute("SELECT sum(amount), count(*) FROM points_ledger WHERE resident_id IN (SELECT "
                                  "unnest(?))", [found["residents"]]).fetchone()  # the demo's own month apart
        assert (total, rows) == (PLACES * POINTS - POINTS, PLACES + 1)
        assert con.execute("SELECT count(*) FROM volunteer_grabs WHERE task_id = ?", [found["task"]]).fetchone()[0] \
            == PLACES


def _reward(client: Client) -> str:
    """The test's reward (the demo's merchants offer theirs too)."""
    return next(r["reward_id"] for r in client.json("GET", "/api/v/rewards")[1]["rewards"] if r["title"] == "一袋米")


@pytest.fixture(scope="module")
def district(small_demo, tmp_path_factory) -> dict:
    with served_copy(small_demo, tmp_path_factory, "volunteers-api", prepare) as found:
        yield found


def test_a_photo_report_becomes_a_case_through_the_intake_and_earns_points_when_valid(district):
    port = district["port"]
    resident, worker = Client(port, "res00"), Client(port, "vw1")
    query = urllib.parse.urlencode({"service_code": "sanitation.garbage_overflow", "lon": district["lon"],
                                    "lat": district["lat"],
                                    "description": "垃圾桶满了", "lang": "en"})
    status, _, body = resident.call("POST", f"/api/v/reports?{query}", jpeg(), content_type="image/jpeg")
    report = json.loads(body)
    assert status == 200, report
    case_id = report["service_request_id"]
    status, _, body = resident.call("POST", f"/api/v/reports?{query}", b"not a photo", content_type="image/jpeg")
    assert status == 415
    status, listed = worker.json("GET", "/api/v/worker")
    assert [r["case_id"] for r in listed["reports"]] == [case_id] and listed["reports"][0]["photo_id"]
    assert worker.call("GET", f"/api/field/photos/{listed['reports'][0]['photo_id']}")[0] == 200
    status, body = resident.json("POST", "/api/v/worker/review", {"case_id": case_id, "verdict": "valid"})
    assert status == 403
    status, body = worker.json("POST", "/api/v/worker/review", {"case_id": case_id, "verdict": "valid"})
    assert status == 200 and body["points"] == 5
    status, body = worker.json("POST", "/api/v/worker/review", {"case_id": case_id, "verdict": "duplicate"})
    assert status == 400 and "reviewed already" in body["error"]["message"]
    status, _, body = resident.call("POST", f"/api/v/reports?{query}", jpeg(), content_type="image/jpeg")
    second = json.loads(body)["service_request_id"]
    status, body = worker.json("POST", "/api/v/worker/review", {"case_id": second, "verdict": "duplicate"})
    assert status == 200 and body["points"] == 0 and body["status"] == "rejected"
    status, me = resident.json("GET", "/api/v/me")
    assert me["balance"] == 5 and {r["verdict"] for r in me["reports"]} == {"valid", "duplicate"}
    status, case = Client(port, "op-other").json("GET", f"/open311/v2/requests/{case_id}.json")


def test_the_pages_are_each_roles_own(district):
    port = district["port"]
    anyone = Client.__new__(Client)
    anyone.port, anyone.address, anyone.cookie = port, "127.0.0.1", ""
    status, headers, _ = anyone.call("GET", "/v")
    assert status == 302 and headers["Location"].startswith("/login?next=")
    status, _, page = Client(port, "res01").call("GET", "/v?lang=zh")
    assert status == 200 and "抢任务" in page.decode() and len(page) < 100_000
    assert Client(port, "res01").call("GET", "/m")[0] == 403
    assert Client(port, "vw1").call("GET", "/worker/tasks?lang=zh")[0] == 200
    status, _, page = anyone.call("GET", "/v/activate?lang=zh")
    assert status == 200 and "一次性" in page.decode()
