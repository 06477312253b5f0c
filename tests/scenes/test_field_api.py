"""The phone page's API as the phone calls it over HTTP, on `twin serve`: sign-in, the worker's role and cases,
photos by content and size, the idempotency keys, conflicts, check-ins; and what the store keeps afterwards."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image

from bench.browser import served
from tests.scenes.conftest import served_copy
from twin.access.access import add_user, verify_audit
from twin.cases.cases import create_case, load_taxonomy
from twin.field.photos import MAX_PHOTO_BYTES
from twin.geo.crs import transform_xy
from twin.store.store import Store, open_for_command

PASSWORD = "field-api-password-1"


class Phone:
    """A signed-in phone: the app's cookie, and the page's header on what it posts."""

    def __init__(self, root: str, user: str | None) -> None:
        self.root, self.cookie = root, ""
        if user is not None:
            status, headers, _ = self.call("POST", "/login", urllib.parse.urlencode(
                {"username": user, "password": PASSWORD}).encode(), content_type="application/x-www-form-urlencoded")
            assert status == 302 and "error=" not in headers["Location"], f"{user} signs in"
            self.cookie = "; ".join(c.split(";")[0] for c in headers.get_all("Set-Cookie"))

    def call(self, method: str, path: str, body: bytes | None = None, *, content_type: str = "application/json",
             field_header: bool = True) -> tuple[int, object, bytes]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = content_type
            if field_header and path.startswith("/api/"):
                headers["X-Twin-Field"] = "1"
        request = urllib.request.Request(self.root + path, data=body, method=method, headers=headers)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=60) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def json(self, method: str, path: str, body: object = None, **kw) -> tuple[int, dict]:
        status, _, data = self.call(method, path, None if body is None else json.dumps(body).encode(), **kw)
        return status, json.loads(data)

    def photo(self, case_id: str, data: bytes, *, kind: str, key: str) -> tuple[int, dict]:
        status, _, body = self.call("POST", f"/api/field/cases/{case_id}/photos?kind={kind}&key={key}&lang=en", data,
                                    content_type="image/jpeg")
        return status, json.loads(body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def phone_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (34.0, 46.0, 0.0), 3: "E", 4: (113.0, 43.0, 0.0)}
    out = io.BytesIO()
    Image.new("RGB", (48, 32), "orange").save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def prepare(db) -> dict:
    """A fresh case (three) in a micro-grid, its worker w1, a worker w2 of another micro-grid and an operator of
    the first one's community; the case's place in longitude and latitude."""
    with open_for_command(db, create=False) as store:
        con = store.con
        micro, other, community = con.execute(
            "SELECT a.grid_id, b.grid_id, p.parent_id FROM grids a JOIN grids b ON b.parent_id = a.parent_id AND "
            "b.grid_id > a.grid_id AND b.level = 'micro' AND b.valid_to IS NULL JOIN grids p ON p.grid_id = "
            "a.parent_id AND p.valid_to IS NULL WHERE a.level = 'micro' AND a.valid_to IS NULL AND "
            "(SELECT count(*) FROM buildings WHERE grid_id = a.grid_id) > 0 ORDER BY a.grid_id LIMIT 1").fetchone()
        x, y = con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id = ? ORDER BY building_id LIMIT 1",
                           [micro]).fetchone()
        code = load_taxonomy()["subcategories"][0]["code"]
        cases = [create_case(con, subcategory_code=code, source="patrol", x=x, y=y)["case_id"] for _ in range(3)]
        for name, role, grids in (("w1", "worker", [micro]), ("w2", "worker", [other]),
                                  ("op1", "operator", [community])):
            add_user(con, name, PASSWORD, role=role, grids=grids, lang="en", actor="test")
        crs = store.district.crs
    lon, lat = transform_xy(np.array([[x, y]]), crs, "EPSG:4326")[0]
    return {"db": db, "cases": cases, "micro": micro, "lon": lon, "lat": lat, "x": x, "y": y}


@pytest.fixture(scope="module")
def district(small_demo, tmp_path_factory) -> dict:
    """A served copy of the small demo, :func:`prepare`d."""
    with served_copy(small_demo, tmp_path_factory, "field-api", prepare) as found:
        yield found


def test_the_page_signs_in_first_and_is_the_grid_workers(district):
    root = district["root"]
    status, headers, _ = Phone(root, None).call("GET", "/worker?lang=en")
    assert status == 302 and headers["Location"].startswith("/login?next=")
    assert urllib.parse.unquote(headers["Location"].split("next=")[1]).startswith("/worker?lang=en")
    for path in ("/api/field/cases", f"/api/field/cases/{district['cases'][0]}"):
        status, body = Phone(root, None).json("GET", path)
        assert status == 401 and body["error"]["kind"] == "signed_out"
    status, _, page = Phone(root, "w1").call("GET", "/worker?lang=zh")
    text = page.decode()
    assert status == 200 and "我的案件" in text and '"user":"w1"' in text and len(page) < 100_000
    status, _, page = Phone(root, "op1").call("GET", "/worker?lang=en")
    assert status == 403 and "This page is for grid workers" in page.decode()
    status, body = Phone(root, "op1").json("GET", "/api/field/cases?lang=en")
    assert status == 403 and "may not see the grid worker's page" in body["error"]["message"]


def test_the_worker_lists_their_cases_and_takes_steps_once_per_key(district):
    root, case = district["root"], district["cases"][0]
    w1, w2 = Phone(root, "w1"), Phone(root, "w2")
    status, body = w1.json("GET", "/api/field/cases")
    listed = {c["case_id"]: c for c in body["cases"]}
    assert status == 200 and set(district["cases"]) <= set(listed)
    assert abs(listed[case]["lon"] - district["lon"]) < 1e-5 and abs(listed[case]["lat"] - district["lat"]) < 1e-5
    assert case not in {c["case_id"] for c in w2.json("GET", "/api/field/cases")[1]["cases"]}
    status, body = w2.json("GET", f"/api/field/cases/{case}?lang=en")
    assert status == 403 and "outside w2's micro-grids" in body["error"]["message"]
    accept = {"kind": "step", "key": "api-accept-01", "case_id": case, "step": "accept", "seen_status": "reported",
              "age_ms": 90_000}
    status, _, body = w1.call("POST", "/api/field/actions", json.dumps(accept).encode(), field_header=False)
    assert status == 403, "a post without the page's header (another site's form) is refused"
    status, first = w1.json("POST", "/api/field/actions", accept)
    assert status == 200 and first["status"] == "accepted" and not first["replayed"]
    assert first["at"].endswith("+08:00")
    status, again = w1.json("POST", "/api/field/actions", {**accept, "age_ms": 95_000})
    assert status == 200 and again == {**first, "replayed": True}
    status, conflict = w1.json("POST", "/api/field/actions?lang=en", {**accept, "key": "api-accept-02"})
    assert status == 409 and conflict["error"]["kind"] == "conflict"
    assert conflict["error"]["current"]["status"] == "accepted" and "moved on" in conflict["error"]["message"]
    status, zh = w1.json("POST", "/api/field/actions?lang=zh", {**accept, "key": "api-accept-03"})
    assert status == 409 and "在手机等待期间已有变化" in zh["error"]["message"], "the worker's language"
    status, card = w1.json("GET", f"/api/field/cases/{case}")
    assert status == 200 and card["status"] == "accepted" and card["steps"] == ["on_site", "hand_up"]
    assert card["map"]["frame"]["lon0"] and card["map"]["grid"]


def test_photos_are_checked_by_content_and_size_and_kept_without_their_place(district):
    root, case = district["root"], district["cases"][1]
    w1 = Phone(root, "w1")
    for step, seen, key in (("accept", "reported", "ph-accept-1"), ("on_site", "accepted", "ph-onsite-1")):
        assert w1.json("POST", "/api/field/actions", {"kind": "step", "key": key, "case_id": case, "step": step,
                                                      "seen_status": seen})[0] == 200
    status, body = w1.photo(case, b"%PDF-1.4 not a photo" * 50, kind="before", key="ph-pdf-001")
    assert status == 415 and "not an image" in body["error"]["message"]
    status, body = w1.photo(case, b"\xff\xd8" + b"\0" * MAX_PHOTO_BYTES, kind="before", key="ph-big-001")
    assert status == 413 and body["error"]["kind"] == "too_large" and "at most 10 MB" in body["error"]["message"]
    status, body = w1.json("POST", "/api/field/actions?lang=en", {"kind": "step", "key": "ph-handled1",
                                                                  "case_id": case, "step": "handled",
                                                                  "seen_status": "on_site"})
    assert status == 400 and "photo taken after the work" in body["error"]["message"]
    sent = phone_jpeg()
    status, shot = w1.photo(case, sent, kind="after", key="ph-after-01")
    assert status == 200 and not shot["replayed"]
    assert w1.photo(case, sent, kind="after", key="ph-after-01") == (200, {**shot, "replayed": True})
    status, headers, stored = w1.call("GET", f"/api/field/photos/{shot['photo_id']}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert hashlib.sha256(stored).hexdigest() == shot["sha256"] and not Image.open(io.BytesIO(stored)).getexif()
    assert Phone(root, "op1").call("GET", f"/api/field/photos/{shot['photo_id']}")[0] == 200, "the operator sees it"
    assert Phone(root, "w2").call("GET", f"/api/field/photos/{shot['photo_id']}")[0] == 403
    status, done = w1.json("POST", "/api/field/actions", {"kind": "step", "key": "ph-handled1", "case_id": case,
                                                          "step": "handled", "seen_status": "on_site"})
    assert status == 200 and done["status"] == "resolved"


def test_check_ins_need_patrol_on_and_a_place_in_the_district(district):
    w1 = Phone(district["root"], "w1")
    where = {"lon": district["lon"], "lat": district["lat"], "accuracy": 6}
    status, body = w1.json("POST", "/api/field/actions?lang=en", {"kind": "position", "key": "pos-api-01", **where})
    assert status == 400 and "patrol was off" in body["error"]["message"]
    patrol = {"kind": "patrol", "key": "pat-api-01", "on": True, "age_ms": 60_000}  # on a minute ago, then queued
    assert w1.json("POST", "/api/field/actions", patrol)[0] == 200
    status, body = w1.json("POST", "/api/field/actions?lang=en", {"kind": "position", "key": "pos-api-02",
                                                                  "lon": 2.35, "lat": 48.85})
    assert status == 400 and "outside every grid" in body["error"]["message"]
    status, body = w1.json("POST", "/api/field/actions", {"kind": "position", "key": "pos-api-03", **where,
                                                          "age_ms": 20_000})
    assert status == 200 and body["grid_id"] == district["micro"]
    assert w1.json("POST", "/api/field/actions", {"kind": "position", "key": "pos-api-03", **where})[1]["replayed"]


def test_the_store_keeps_each_action_once_with_its_audit_rows_and_no_place_in_the_trail(small_demo, tmp_path):
    db = tmp_path / "demo.duckdb"
    shutil.copy(small_demo, db)
    found = prepare(db)
    case = found["cases"][0]
    with served(db) as url:
        w1 = Phone(url.rsplit("/", 1)[0], "w1")
        accept = {"kind": "step", "key": "once-accept", "case_id": case, "step": "accept", "seen_status": "reported"}
        onsite = {"kind": "step", "key": "once-onsite", "case_id": case, "step": "on_site", "seen_status": "accepted"}
        patrol = {"kind": "patrol", "key": "once-patrol", "on": True}
        where = {"kind": "position", "key": "once-where", "lon": found["lon"], "lat": found["lat"]}
        for action in (accept, accept, onsite, patrol, where, onsite, patrol, where):
            assert w1.json("POST", "/api/field/actions", action)[0] == 200
        for _ in range(2):
            assert w1.photo(case, phone_jpeg(), kind="after", key="once-photo")[0] == 200
        assert Phone(url.rsplit("/", 1)[0], "w2").json("GET", f"/api/field/cases/{case}")[0] == 403
    with Store(db, read_only=True) as store:
        con = store.con
        events = [s for s, in con.execute("SELECT to_status FROM case_events WHERE case_id = ? ORDER BY \"at\"",
                                          [case]).fetchall()]
        photos, = con.execute("SELECT count(*) FROM case_photos WHERE case_id = ?", [case]).fetchone()
        checkins = con.execute("SELECT worker, grid_id FROM patrol_checkins WHERE worker = 'w1'").fetchall()
        trail = con.execute("SELECT action, actor, target, detail FROM audit WHERE actor IN ('w1', 'w2') "
                            "AND action NOT IN ('signin', 'session.open') ORDER BY seq").fetchall()
        assert verify_audit(con) is None
    assert events == ["reported", "accepted", "on_site"] and photos == 1
    assert checkins == [("w1", found["micro"])]
    assert [(a, who) for a, who, _, _ in trail] == [("case.transition", "w1"), ("case.transition", "w1"),
                                                    ("patrol.start", "w1"), ("patrol.position", "w1"),
                                                    ("case.photo", "w1"), ("access.refused", "w2")]
    position = trail[3][3]
    assert f"{found['x']:.0f}" not in position and f"{found['y']:.0f}" not in position
    assert f"{found['lon']:.3f}" not in position and f"{found['lat']:.3f}" not in position
