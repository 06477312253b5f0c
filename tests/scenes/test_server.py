"""The Open311 intake of `twin serve`, as a real client calls it over HTTP, and its durability under SIGKILL."""

from __future__ import annotations

import concurrent.futures
import getpass
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from bench.browser import free_port, served
from tests.conftest import ROOT
from twin.cases.cases import load_taxonomy
from twin.geo.crs import transform_xy
from twin.access.keys import add_key
from twin.store.store import Store, open_for_command


@pytest.fixture(scope="module")
def intake(small_demo, tmp_path_factory):
    db = tmp_path_factory.mktemp("intake") / "s.duckdb"
    shutil.copy(small_demo, db)
    with open_for_command(db) as store:
        key = add_key(store.con, "citizen-app")
        x, y = store.con.execute("SELECT label_x, label_y FROM buildings ORDER BY building_id LIMIT 1").fetchone()
    lon, lat = transform_xy(np.array([[x, y]]), "EPSG:4547", "EPSG:4326")[0]
    form = {"service_code": load_taxonomy()["subcategories"][0]["code"], "lat": f"{lat:.7f}", "long": f"{lon:.7f}",
            "description": "路边摊占道", "api_key": key}
    return db, form


def call(url, form=None, *, content_type="application/x-www-form-urlencoded"):
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_open311_as_a_client_sends_it(intake):
    db, form = intake
    with served(db) as url:
        base = url.rsplit("/", 1)[0] + "/open311/v2"
        status, body = call(f"{base}/services.json")
        assert status == 200 and len(json.loads(body)) == len(load_taxonomy()["subcategories"])
        status, body = call(f"{base}/services.xml")
        assert status == 200 and body.startswith("<?xml") and "<service_code>" in body
        status, body = call(f"{base}/requests.json", form)
        assert status == 201
        request_id = json.loads(body)[0]["service_request_id"]
        key = form["api_key"]
        status, body = call(f"{base}/requests/{request_id}.json?api_key={key}")
        assert status == 200 and json.loads(body)[0]["status"] == "open"
        status, body = call(f"{base}/requests.json?status=open&service_code={form['service_code']}&api_key={key}")
        assert status == 200 and request_id in body
        for changes, code, words in (({"api_key": "wrong"}, 403, "api_key"), ({"lat": ""}, 400, "lat is required"),
                                     ({"service_code": "nope"}, 404, "nope")):
            status, body = call(f"{base}/requests.json", {**form, **changes})
            assert status == code and json.loads(body)[0]["code"] == code and words in json.loads(body)[0]["description"]
        status, body = call(f"{base}/requests.json", form, content_type="application/json")
        assert status == 400 and "form-encoded" in body
        status, body = call(f"{base}/requests/nope.json?api_key={key}")
        assert status == 404
        # Sent again with its idempotency key (after a 503, say): the first answer, no second case.
        keyed, idem = {**form, "description": "sent twice with its key"}, "3f0c8a52-7d0e-4b8e-a1f2-5a6b7c8d9e0f"
        answers = [_post_form(f"{base}/requests.json", keyed, idempotency_key=idem) for _ in range(2)]
        assert [a[0] for a in answers] == [201, 200] and answers[1][2].get("Idempotent-Replayed") == "true"
        assert answers[0][1][0]["service_request_id"] == answers[1][1][0]["service_request_id"]
        assert "/r/" in answers[1][1][0]["evaluation_url"], "the resend's evaluation link works too"
        status, body, _ = _post_form(f"{base}/requests.json", form, idempotency_key=idem)
        assert status == 422 and "another request" in body[0]["description"]
        status, body, _ = _post_form(f"{base}/requests.json", keyed, idempotency_key="short")
        assert status == 400 and "idempotency key" in body[0]["description"]
    with Store(db, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM cases WHERE description = ?",
                                 [keyed["description"]]).fetchone()[0] == 1


def _post_form(url: str, form: dict, *, idempotency_key: str) -> tuple[int, object, dict]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": idempotency_key})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_no_acknowledged_case_is_lost_when_the_server_is_killed_under_load(intake, tmp_path):
    db, form = intake
    copy = tmp_path / "kill.duckdb"
    shutil.copy(db, copy)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--db", str(copy), "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}/open311/v2"
    deadline = time.monotonic() + 90
    while not _up(base):
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.3)
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client() -> None:  # posts until the server dies
        while True:
            try:
                status, body = call(f"{base}/requests.json", form)
            except OSError:
                return
            if status != 201:
                return
            with lock:
                acknowledged.append(json.loads(body)[0]["service_request_id"])

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    while len(acknowledged) < 150 and time.monotonic() < deadline + 60:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: requests are in flight
    proc.wait(timeout=30)
    for t in threads:
        t.join(timeout=60)
    with Store(copy) as store:
        stored = {r[0] for r in store.con.execute("SELECT case_id FROM cases WHERE source = 'open311'").fetchall()}
    assert len(acknowledged) >= 150 and set(acknowledged) <= stored


def _detection(camera_id: str, **changes) -> dict:
    return {"camera_id": camera_id, "category": "fire_safety.fire_lane_blocked", "confidence": 0.91,
            "detected_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "snapshot_url": "http://video.zd.local/snap/1.jpg",
            "bbox": [100, 120, 80, 60], **changes}


def post_json(url: str, body: object, *, key: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_detections_open_one_case_per_scene_and_bad_ones_store_nothing(intake, tmp_path):
    db, form = intake
    copy = tmp_path / "detections.duckdb"
    shutil.copy(db, copy)
    with Store(copy, read_only=True) as store:
        cameras = store.con.execute("SELECT camera_id FROM cameras WHERE grid_id IS NOT NULL ORDER BY camera_id "
                                    "LIMIT 30").df()["camera_id"].tolist()
        before = store.count("cases")
    with served(copy) as url:
        api = url.rsplit("/", 1)[0] + "/api/detections"
        answers = []
        for camera in cameras:
            status, first = post_json(api, _detection(camera), key=form["api_key"])
            if status != 201:  # a camera that looks out of the district
                assert status == 400 and first["error"]["field"] == "camera_id"
                continue
            repeats = [post_json(api, _detection(camera), key=form["api_key"]) for _ in range(4)]
            answers.append((first, repeats))
        assert len(answers) >= 5
        for first, repeats in answers:
            assert not first["duplicate"] and all(s == 201 and r["case_id"] == first["case_id"] and r["duplicate"]
                                                  for s, r in repeats)
        # A detection sent again with its own id (after a 503, say) is the first one: not a further sighting.
        sent = [post_json(api, _detection(cameras[0], source_id="vms-7:evt-000042"), key=form["api_key"])
                for _ in range(2)]
        assert [s for s, _ in sent] == [201, 200] and sent[0][1] == sent[1][1]
        for body, key, code, field in ((_detection(cameras[0], confidence=7), form["api_key"], 400, "confidence"),
                                       (_detection("CAM-NOPE"), form["api_key"], 400, "camera_id"),
                                       (_detection(cameras[0]), "wrong", 403, "api_key"),
                                       ([1, 2], form["api_key"], 400, "body")):
            status, reply = post_json(api, body, key=key)
            assert status == code and reply["error"]["field"] == field
    with Store(copy, read_only=True) as store:
        assert store.count("cases") == before + len(answers)
        assert store.count("detections") == 5 * len(answers) + 1


def test_feed_replay_posts_the_demo_day_to_a_running_server(intake, small_demo, tmp_path):
    db, _ = intake
    copy = tmp_path / "replay.duckdb"
    shutil.copy(db, copy)
    feed = small_demo.with_suffix(".feed.jsonl")
    lines = feed.read_text().count("\n")
    with Store(copy, read_only=True) as store:
        before = store.count("cases")
    with served(copy) as url:
        done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "feed", "replay", str(feed), "--rate", "200",
                               "--url", url.rsplit("/", 1)[0], "--json"], capture_output=True, text=True, cwd=ROOT,
                              timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["posted"] == lines and summary["accepted"] + sum(summary["refused"].values()) == lines
    assert summary["joined"] > 0 and summary["new_cases"] > 0
    assert set(summary["refused"]) <= {"400"}  # only targets outside the district, if any
    with Store(copy, read_only=True) as store:
        assert store.count("cases") - before == summary["new_cases"]
        assert store.count("detections") >= summary["joined"] > 0


def _up(base: str) -> bool:
    try:
        return call(f"{base}/services.json")[0] == 200
    except OSError:
        return False


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, form: dict | None = None, *, cookies: str | None = None) -> tuple[int, object, str]:
    """One request without following redirects: status, headers, body."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, headers={"Cookie": cookies} if cookies else {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def test_pages_and_data_need_sign_in_or_a_key_and_attempts_are_limited_and_audited(intake, tmp_path):
    db, form = intake
    copy = tmp_path / "access.duckdb"
    shutil.copy(db, copy)
    with served(copy, args=("--intake-rate", "5")) as url:
        root = url.rsplit("/", 1)[0]
        status, headers, _ = fetch(url)
        assert status == 302 and "/login" in headers["Location"], "the app sends strangers to the login form"
        status, headers, _ = fetch(root + "/app/autoload.js?bokeh-autoload-element=x&bokeh-absolute-url=" + root)
        assert status in (302, 401, 403), "no embedding the app without a sign-in either"
        status, _, body = fetch(f"{root}/open311/v2/requests.json")
        assert status == 200, "cases are read without a key, in their public view (tests/scenes/test_open311_clients)"
        status, _, body = fetch(f"{root}/open311/v2/requests.json?api_key=%27%20OR%20%271%27=%271")
        assert status == 403 and "api_key" in body, "a wrong key is refused, not read as the public"
        try:
            status = fetch(f"{root}/login", {"username": "x" * 2_000_000, "password": "y"})[0]
        except (urllib.error.URLError, ConnectionError):
            status = "closed"
        assert status in (400, 413, "closed"), "a 2 MB form is refused before anyone reads it"
        # A right password gets the signed cookie, and with it the app.
        status, headers, _ = fetch(f"{root}/login", {"username": url.user, "password": url.password})
        assert status == 302
        cookies = "; ".join(c.split(";")[0] for c in headers.get_all("Set-Cookie"))
        assert fetch(url, cookies=cookies)[0] == 200
        # Wrong passwords: five per name and address are checked, then 429 with Retry-After.
        answers = [fetch(f"{root}/login", {"username": url.user, "password": f"guess {i}"}) for i in range(8)]
        assert [a[0] for a in answers] == [302] * 5 + [429] * 3
        assert int(answers[-1][1]["Retry-After"]) >= 1
        # Intake at 5 a second (bursts of 10) per key: a burst of 25 gets some 429s, and nothing else is lost.
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(25) as pool:
            codes = list(pool.map(lambda _: call(f"{root}/open311/v2/requests.json", form)[0], range(25)))
        refilled = 5 * (time.monotonic() - started)  # what the bucket may have regained meanwhile
        assert set(codes) == {201, 429} and codes.count(201) <= 10 + refilled + 1
    with Store(copy, read_only=True) as store:
        actions = dict(store.con.execute("SELECT action, count(*) FROM audit GROUP BY 1").fetchall())
        from twin.access.access import verify_audit

        assert verify_audit(store.con) is None
    assert actions["signin"] == 1 and actions["signin.failed"] == 5 + 1, "5 checked, the burst after it once"
    assert actions["case.intake"] >= 1


def twin(*args: str, db, stdin: str | None = None) -> tuple[int, dict, str]:
    """Run a `twin` command with --json: its exit code, its JSON and its stderr."""
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args, "--db", str(db), "--json"], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    return done.returncode, json.loads(done.stdout.splitlines()[-1]), done.stderr


def signs_in(root: str, user: str, password: str) -> bool:
    status, headers, _ = fetch(f"{root}/login", {"username": user, "password": password})
    return status == 302 and "error=" not in headers["Location"]


def test_writing_commands_go_through_the_running_server(intake, tmp_path):
    from pyogrio import write_dataframe

    from tests.twin.cases.test_live import _merge_a_micro_grid_into_its_neighbour

    db, form = intake
    copy = tmp_path / "commands.duckdb"
    shutil.copy(db, copy)
    with Store(copy, read_only=True) as store:
        merged, (x, y), grid_id, worker = _merge_a_micro_grid_into_its_neighbour(store.con)
    grids_file = tmp_path / "merged.geojson"
    write_dataframe(merged, grids_file, driver="GeoJSON")
    lon, lat = transform_xy(np.array([[x, y]]), "EPSG:4547", "EPSG:4326")[0]
    at_the_building = {**form, "lat": f"{lat:.7f}", "long": f"{lon:.7f}"}
    sock = copy.with_name(copy.name + ".sock")
    stale = socket.socket(socket.AF_UNIX)  # the socket a killed server leaves: a file nobody listens at
    stale.bind(str(sock))
    stale.close()
    assert twin("keys", "add", "before-serving", db=copy)[0] == 0, "a dead server's socket confuses nobody"
    refusals = {}
    with served(copy) as url:
        root = url.rsplit("/", 1)[0]
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        code, added, _ = twin("keys", "add", "field-app", db=copy)
        assert code == 0 and added["name"] == "field-app"
        status, body = call(f"{root}/open311/v2/requests.json", {**form, "api_key": added["api_key"]})
        assert status == 201, "the new key is accepted at once"
        code, spare, _ = twin("keys", "add", "spare", db=copy)
        code, revoked, _ = twin("keys", "revoke", "spare", db=copy)
        assert code == 0 and revoked["revoked"] is True
        assert call(f"{root}/open311/v2/requests.json", {**form, "api_key": spare["api_key"]})[0] == 403
        assert twin("users", "add", "zhao.min", "--role", "leader", "--password-stdin", db=copy,
                    stdin="a long passphrase 1\n")[0] == 0
        assert signs_in(root, "zhao.min", "a long passphrase 1")
        assert twin("users", "passwd", "zhao.min", "--password-stdin", db=copy, stdin="a longer passphrase 2\n")[0] == 0
        assert signs_in(root, "zhao.min", "a longer passphrase 2")
        assert not signs_in(root, "zhao.min", "a long passphrase 1")
        code, answer, _ = twin("users", "add", "weak.one", "--role", "leader", "--password-stdin", db=copy,
                               stdin="weak.one-pass\n")
        assert code == 2 and "the rule it breaks: to leave out the user name" in answer["error"]
        assert twin("users", "grants", "zhao.min", "--role", "operator", "--grids", grid_id, db=copy)[0] == 0
        code, listed, _ = twin("users", "list", db=copy)
        assert code == 0 and {"username": "zhao.min", "role": "operator", "grids": [grid_id]}.items() <= {
            u["username"]: u for u in listed["users"]}["zhao.min"].items()
        assert "weak.one" not in {u["username"] for u in listed["users"]}
        assert twin("users", "disable", "zhao.min", db=copy)[0] == 0
        assert not signs_in(root, "zhao.min", "a longer passphrase 2"), "a disabled user is refused"
        deadline = time.monotonic() + 60
        while (used := {k["name"]: k for k in twin("keys", "list", db=copy)[1]["keys"]})["field-app"][
                "requests_today"] < 1 and time.monotonic() < deadline:  # written every few seconds
            time.sleep(1)
        assert used["field-app"]["requests_today"] == 1 and used["field-app"]["last_used"] is not None
        assert used["spare"]["revoked_at"] is not None and used["spare"]["requests_today"] == 0
        status, body = call(f"{root}/open311/v2/requests.json", at_the_building)
        assert status == 201 and worker not in json.loads(body)[0]["service_notice"]
        code, imported, _ = twin("grids", "import", str(grids_file), "--mode", "replace", "--actor", "planner.li",
                                 "--reason", "two micro-grids merged", db=copy)
        assert code == 0 and imported["changed"] == [grid_id] and len(imported["deleted"]) == 1
        status, body = call(f"{root}/open311/v2/requests.json", at_the_building)
        assert status == 201 and json.loads(body)[0]["service_notice"] == f"assigned to {worker}"
        case_id = json.loads(body)[0]["service_request_id"]
        status, body = call(f"{root}/open311/v2/requests/{case_id}.json?api_key={form['api_key']}")
        assert json.loads(body)[0]["agency_responsible"] == grid_id
        for bad in (("keys", "add", "field-app"), ("keys", "revoke", "nobody"), ("users", "disable", "nobody"),
                    ("grids", "import", str(tmp_path / "missing.geojson"), "--actor", "a", "--reason", "r")):
            refusals[bad] = twin(*bad, db=copy)
    assert not sock.exists(), "a server that stops removes its socket"
    for bad, (code, answer, stderr) in refusals.items():
        assert code == 2 and answer["ok"] is False
        assert twin(*bad, db=copy) == (code, answer, stderr), f"{bad}: the same answer offline"
    with Store(copy, read_only=True) as store:
        assert store.con.execute("SELECT disabled FROM users WHERE username = 'zhao.min'").fetchall() == [(True,)]
        by_cli = store.con.execute("SELECT DISTINCT actor, source FROM audit WHERE action IN ('user.add', "
                                   "'user.grants', 'user.disable', 'key.add', 'key.revoke') AND target IN "
                                   "('zhao.min', 'field-app', 'spare', 'before-serving')").fetchall()
        assert by_cli == [(getpass.getuser(), "cli")], "who ran the commands, and from where, is audited"
