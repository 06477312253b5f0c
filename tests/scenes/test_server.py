"""The Open311 intake of `twin serve`, as a real client calls it over HTTP, and its durability under SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from scenes.browser import free_port, served
from tests.conftest import ROOT
from twin.cases import load_taxonomy
from twin.crs import transform_xy
from twin.keys import add_key
from twin.store import Store, open_for_command


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
        status, body = call(f"{base}/requests/{request_id}.json")
        assert status == 200 and json.loads(body)[0]["status"] == "open"
        status, body = call(f"{base}/requests.json?status=open&service_code={form['service_code']}")
        assert status == 200 and request_id in body
        for changes, code, words in (({"api_key": "wrong"}, 403, "api_key"), ({"lat": ""}, 400, "lat is required"),
                                     ({"service_code": "nope"}, 404, "nope")):
            status, body = call(f"{base}/requests.json", {**form, **changes})
            assert status == code and json.loads(body)[0]["code"] == code and words in json.loads(body)[0]["description"]
        status, body = call(f"{base}/requests.json", form, content_type="application/json")
        assert status == 400 and "form-encoded" in body
        status, body = call(f"{base}/requests/nope.json")
        assert status == 404


def test_no_acknowledged_case_is_lost_when_the_server_is_killed(intake, tmp_path):
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
    acknowledged = []
    try:
        for _ in range(40):
            status, body = call(f"{base}/requests.json", form)
            assert status == 201
            acknowledged.append(json.loads(body)[0]["service_request_id"])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    with Store(copy) as store:
        stored = {r[0] for r in store.con.execute("SELECT case_id FROM cases WHERE source = 'open311'").fetchall()}
    assert len(acknowledged) == 40 and set(acknowledged) <= stored


def _up(base: str) -> bool:
    try:
        return call(f"{base}/services.json")[0] == 200
    except OSError:
        return False
