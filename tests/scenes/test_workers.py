"""Several app processes on one PostgreSQL store behind Debian's nginx (`twin serve --workers N`)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from playwright.sync_api import expect

from bench.browser import free_ports
from scenes.workers import check_config, nginx_main_config, proxy_config
from tests.conftest import ROOT
from twin.access.keys import add_key
from twin.geo.crs import transform_xy
from twin.store.store import open_for_command


def test_the_generated_configuration_is_one_nginx_accepts(tmp_path):
    http = proxy_config(address="127.0.0.1", port=8080, workers=3)
    assert "ip_hash;" in http and "proxy_set_header Upgrade $http_upgrade;" in http
    assert [line.split()[1] for line in http.splitlines() if line.strip().startswith("server 127")] == [
        "127.0.0.1:8081;", "127.0.0.1:8082;", "127.0.0.1:8083;"]
    check_config(nginx_main_config(http, prefix=tmp_path))  # nginx -t


def _get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


@pytest.fixture(scope="module")
def two_workers(pg_cluster, small_demo_pg, tmp_path_factory):
    """`twin serve --workers 2` on a copy of the small demo in PostgreSQL, with the pages' probes on; yields the
    store's URL, the proxy's and each worker's port, an API key, a signed-in operator, a place to report at, and
    the process group. PostgreSQL-only: a DuckDB file has one writing process, and `--workers` refuses it."""
    import os

    from bench.browser import browser_user
    from scenes.view3d import PROBES_ENV
    from tests.conftest import SMALL_DEMO_TEMPLATE

    db = pg_cluster.create_database(template=SMALL_DEMO_TEMPLATE)
    with open_for_command(db, create=False) as store:
        key = add_key(store.con, "workers-test")
        x, y = store.con.execute("SELECT label_x, label_y FROM buildings ORDER BY height DESC LIMIT 1").fetchone()
    user, password = browser_user(db, role="operator")
    (lon, lat), = transform_xy(np.array([[x, y]]), "EPSG:4547", "EPSG:4326")
    port = free_ports(3)
    log = tmp_path_factory.mktemp("workers") / "serve.log"
    with log.open("w") as out:
        group = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--db", db, "--port", str(port),
                                  "--workers", "2"], cwd=ROOT, start_new_session=True, stdout=out,
                                 stderr=subprocess.STDOUT, env={**os.environ, PROBES_ENV: "1"})
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(
                _get(f"http://127.0.0.1:{p}/open311/v2/services.json")[0] == 200 for p in (port, port + 1, port + 2)):
            assert group.poll() is None, f"twin serve --workers ended: see {log}"
            time.sleep(1)
        yield {"db": db, "port": port, "workers": [port + 1, port + 2], "key": key, "user": user,
               "password": password, "lat": lat, "lon": lon, "group": group, "log": log}
    finally:
        group.send_signal(signal.SIGTERM)
        group.wait(timeout=60)
    assert group.returncode == 0
    for p in (port, port + 1, port + 2):
        assert _get(f"http://127.0.0.1:{p}/open311/v2/services.json")[0] == 0, "nothing is left listening"


def _report(workers: dict, port: int, text: str) -> tuple[int, str | None]:
    """Post an Open311 request to ``port`` (the proxy or one worker): the status and, when acknowledged, the case."""
    form = urllib.parse.urlencode({"service_code": "sanitation.garbage_overflow", "lat": f"{workers['lat']:.7f}",
                                   "long": f"{workers['lon']:.7f}", "description": text, "api_key": workers["key"]})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/open311/v2/requests.json", data=form.encode(),
                                    timeout=60) as response:
            return response.status, json.loads(response.read())[0]["service_request_id"]
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def _app_process(workers: dict, port: int):
    """The app process listening on ``port`` (a child of `twin serve --workers`)."""
    import psutil

    for child in psutil.Process(workers["group"].pid).children():
        if child.cmdline()[child.cmdline().index("--port") + 1] == str(port):
            return child
    raise AssertionError(f"no app process on port {port}")


def _holding_a_websocket(workers: dict) -> int:
    """The worker's port that nginx holds a connection to (a browser's websocket through the proxy)."""
    for p in workers["workers"]:
        if any(c.status == "ESTABLISHED" and c.laddr.port == p
               for c in _app_process(workers, p).net_connections(kind="tcp")):
            return p
    raise AssertionError("no worker holds a websocket from the proxy")


def test_two_workers_behind_nginx_take_intake_and_read_one_store_each_with_its_own_control_socket(two_workers):
    from cli import writing_commands
    from twin.store.control import ask_server, server_sockets, socket_path

    status, case_id = _report(two_workers, two_workers["port"], "through the proxy")
    assert status == 201
    for worker in two_workers["workers"]:  # each process reads the case from the one store
        status, found = _get(f"http://127.0.0.1:{worker}/open311/v2/requests/{case_id}.json?"
                             f"api_key={two_workers['key']}")
        assert status == 200 and found[0]["service_request_id"] == case_id, worker
    db = two_workers["db"]  # the workers run as this user, with its folder for the sockets
    pids = [_app_process(two_workers, p).pid for p in two_workers["workers"]]
    assert sorted(server_sockets(db)) == sorted(socket_path(db, pid=pid) for pid in pids), "a socket per process"
    listed = ask_server(db, "keys.list", writing_commands()["keys.list"].check("keys.list", {}))
    assert "workers-test" in [k["name"] for k in listed["keys"]], "a command reaches one of them"


def _signed_in_page(browser, workers: dict, port: int):
    """A page of the app at ``port`` (the proxy or a worker), signed in, once its view has drawn."""
    from bench.browser import ServedURL, sign_in

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    url = ServedURL(f"http://127.0.0.1:{port}/app")
    url.user, url.password = workers["user"], workers["password"]
    sign_in(page, url)
    page.wait_for_function("window.twinFirstFrame !== undefined", timeout=90_000)
    return page


def _drawn_at_ms(page, case_id: str, timeout_ms: float) -> float:
    """When (ms since the epoch, by the page's clock) the page drew the case's marker."""
    page.wait_for_function(f"window.twinCaseDrawn && {json.dumps(case_id)} in window.twinCaseDrawn",
                           timeout=timeout_ms)
    return page.evaluate(f"performance.timeOrigin + window.twinCaseDrawn[{json.dumps(case_id)}]")


@pytest.fixture(scope="module")
def pages(two_workers):
    """Chromium with two signed-in pages: ``proxied`` through nginx (on the worker ``its_worker``, where ip_hash
    sends this machine), and ``direct`` on the other worker's own port (``other_worker``)."""
    from bench.browser import chromium

    with chromium() as browser:
        proxied = _signed_in_page(browser, two_workers, two_workers["port"])
        its_worker = _holding_a_websocket(two_workers)
        other_worker, = set(two_workers["workers"]) - {its_worker}
        direct = _signed_in_page(browser, two_workers, other_worker)
        yield {"proxied": proxied, "its_worker": its_worker, "direct": direct, "other_worker": other_worker}


@pytest.mark.browser
def test_a_case_posted_to_one_process_is_drawn_in_a_session_on_another_within_a_second(two_workers, pages):
    from scenes.i18n import case_kind_name

    for posted_to, page in ((pages["its_worker"], pages["direct"]), (pages["other_worker"], pages["proxied"])):
        status, case_id = _report(two_workers, posted_to, "the first since the page opened")
        assert status == 201 and _drawn_at_ms(page, case_id, 10_000), "warmed up: the figures' first queries"
        status, case_id = _report(two_workers, posted_to, "drawn on the other process")
        acknowledged_ms = time.time() * 1000
        assert status == 201
        latency_ms = _drawn_at_ms(page, case_id, 10_000) - acknowledged_ms
        assert latency_ms <= 1000, (posted_to, latency_ms)
        name = f"{case_id} · {case_kind_name('sanitation.garbage_overflow')} · Reported"
        expect(page.get_by_role("button", name=name)).to_be_visible(timeout=5_000)  # the ticker's row


@pytest.mark.browser
def test_kill_9_of_one_process_loses_no_acknowledged_case_and_its_browser_reconnects_to_another(two_workers, pages):
    """The process behind the proxied page is killed (SIGKILL) while cases are posted through the proxy: every
    acknowledged case is in the store, the other process serves on, and the page reloads through the proxy onto a
    live process within 10 s (`twin serve --workers` also starts a new process in the killed one's place)."""
    from cli import writing_commands
    from twin.store.control import ask_server, server_sockets, socket_path
    from twin.store.store import Store

    proxied, direct = pages["proxied"], pages["direct"]
    killed = _app_process(two_workers, pages["its_worker"])
    sockets_opened: list[tuple[float, object]] = []
    proxied.on("websocket", lambda ws: sockets_opened.append((time.monotonic(), ws)))
    proxied.evaluate("window.twinBeforeTheKill = true")
    answers: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def post() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            answers.append((sent, *_report(two_workers, two_workers["port"], "posted around a kill")))
            time.sleep(0.05)
    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    try:
        deadline = time.monotonic() + 60
        while sum(a[1] == 201 for a in answers) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        killed.kill()  # SIGKILL: no clean-up of any kind
        killed_at = time.monotonic()
        proxied.wait_for_function("window.twinBeforeTheKill === undefined && window.twinFirstFrame !== undefined",
                                  timeout=60_000, polling=100)
        while time.monotonic() < killed_at + 3:  # the posts go on through the proxy
            time.sleep(0.1)
    finally:
        stop.set()
        poster.join()
    reconnected = [at for at, ws in sockets_opened if at > killed_at and "/ws" in ws.url]
    assert reconnected and reconnected[0] - killed_at <= 10, "a new session's websocket within 10 s of the kill"
    assert any(status == 201 for sent, status, _ in answers if sent > killed_at + 1), "intake goes on"
    acknowledged = [case_id for _, status, case_id in answers if status == 201]
    with Store(two_workers["db"], read_only=True) as store:
        kept = {r[0] for r in store.con.execute("SELECT case_id FROM cases WHERE case_id IN (SELECT unnest(?))",
                                                [acknowledged]).fetchall()}
    assert kept == set(acknowledged), "every acknowledged case is in the store"
    # The other process's session carries on: a case posted to it is drawn there at once.
    status, case_id = _report(two_workers, pages["other_worker"], "after the kill")
    acknowledged_ms = time.time() * 1000
    assert status == 201 and _drawn_at_ms(direct, case_id, 10_000) - acknowledged_ms <= 1000
    # The reloaded page is a live session: what is posted through the proxy is drawn there.
    status, case_id = _report(two_workers, two_workers["port"], "after the reload")
    assert status == 201 and _drawn_at_ms(proxied, case_id, 30_000)
    # The commands of the command line reach a live process; the killed one's socket is cleared away on the way.
    db = two_workers["db"]
    assert socket_path(db, pid=_app_process(two_workers, pages["other_worker"]).pid) in server_sockets(db)
    assert not socket_path(db, pid=killed.pid).exists()
    listed = ask_server(db, "keys.list", writing_commands()["keys.list"].check("keys.list", {}))
    assert "workers-test" in [k["name"] for k in listed["keys"]]


def test_a_key_revoked_by_another_process_is_refused_here_at_once(demo_copy_db, backend):
    """PostgreSQL-only: a key revoked anywhere (here: another connection, as another process or the command
    line) is forgotten by this process as the revocation commits, not when its key cache lapses."""
    if backend == "duckdb":
        pytest.skip("a DuckDB file has one writing process, whose commands reach the server's own writer")
    from scenes.auth import Remembered, SignIns
    from scenes.server import follow_store_changes
    from scenes.shared import Cursors
    from twin.access.keys import client_for, revoke_key
    from twin.cases.live import CaseFeed, IntakeWriter
    from twin.store.store import Store

    with open_for_command(demo_copy_db, create=False) as store:
        key = add_key(store.con, "camera-9")
    with Store(demo_copy_db) as here:
        writer = IntakeWriter(here.con, CaseFeed(), dedupe_window_s=600)
        cursors = Cursors(here.con)
        clients = Remembered(lambda k: client_for(cursors(), k), ttl_s=3600)  # only a notice makes it look again
        listener = follow_store_changes(demo_copy_db, clients=clients, signins=SignIns(here.con.cursor(), writer),
                                        shared=None, writer=writer)
        try:
            assert listener.wait_listening(30) and clients(key) == "camera-9"
            with open_for_command(demo_copy_db, create=False) as elsewhere:
                revoke_key(elsewhere.con, "camera-9")
            deadline = time.monotonic() + 30
            while clients(key) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert clients(key) is None, "the revoked key is refused here"
        finally:
            listener.close()
            writer.close()


def test_a_process_follows_its_own_grid_save_once_and_another_processs_as_it_commits(demo_copy_db, backend, caplog):
    """PostgreSQL-only: the change triggers' notices name the writing process, which skips its own grid saves
    (its writer re-matched the intake to the new grids at the save already); another process's save is followed."""
    if backend == "duckdb":
        pytest.skip("a DuckDB file has one writing process: no notices")
    from scenes.auth import Remembered, SignIns
    from scenes.server import follow_store_changes
    from scenes.shared import Cursors
    from twin.access.keys import client_for, revoke_key
    from twin.cases.live import CaseFeed, IntakeWriter
    from twin.store.store import Store

    caplog.set_level(logging.INFO, logger="twin.cases.live")
    with open_for_command(demo_copy_db, create=False) as store:
        key = add_key(store.con, "sentinel")
        grid_id, = store.con.execute("SELECT grid_id FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                                     "ORDER BY grid_id LIMIT 1").fetchone()
    rename = "UPDATE grids SET name = name || ' (renamed)' WHERE grid_id = ?"

    def rematched() -> int:
        return sum("matching follows the new grids" in r.getMessage() for r in caplog.records)

    with Store(demo_copy_db) as here:
        writer = IntakeWriter(here.con, CaseFeed(), dedupe_window_s=600)
        clients = Remembered(lambda k: client_for(Cursors(here.con)(), k), ttl_s=3600)
        listener = follow_store_changes(demo_copy_db, clients=clients, signins=SignIns(here.con.cursor(), writer),
                                        shared=None, writer=writer)
        try:
            assert listener.wait_listening(30) and clients(key) == "sentinel"
            writer.command(lambda con: con.execute(rename, [grid_id]).fetchall() and {}, grids_changed=True).result()
            deadline = time.monotonic() + 30
            while rematched() < 1 and time.monotonic() < deadline:  # after the answer, the writer re-matches
                time.sleep(0.05)
            assert rematched() == 1, "the save itself re-matches"
            with open_for_command(demo_copy_db, create=False) as elsewhere:  # its notice comes after the save's
                revoke_key(elsewhere.con, "sentinel")
            while clients(key) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert clients(key) is None, "the notices up to the revocation were handled"
            assert rematched() == 1, "this process's own save is not followed a second time"
            with open_for_command(demo_copy_db, create=False) as elsewhere:
                elsewhere.con.execute(rename, [grid_id])
            while rematched() < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert rematched() == 2, "another process's save is followed"
        finally:
            listener.close()
            writer.close()


def test_a_time_zone_changed_by_another_process_is_read_afresh_here(demo_copy_db, backend):
    """PostgreSQL-only: a process remembers its store's meta (the time zone is read for every case), and reads it
    afresh when another process (here: another connection) changes it."""
    if backend == "duckdb":
        pytest.skip("a DuckDB file's meta is read afresh each time: nothing remembered")
    from scenes.auth import Remembered, SignIns
    from scenes.server import follow_store_changes
    from twin.cases.live import CaseFeed, IntakeWriter
    from twin.store.clock import store_timezone
    from twin.store.store import Store

    with Store(demo_copy_db) as here:
        writer = IntakeWriter(here.con, CaseFeed(), dedupe_window_s=600)
        listener = follow_store_changes(demo_copy_db, clients=Remembered(lambda k: None, ttl_s=3600),
                                        signins=SignIns(here.con.cursor(), writer), shared=None, writer=writer)
        reader = here.con.cursor()
        try:
            assert listener.wait_listening(30) and str(store_timezone(reader)) == "Asia/Shanghai"
            with open_for_command(demo_copy_db, create=False) as elsewhere:
                elsewhere.con.execute("UPDATE meta SET value = 'Europe/Berlin' WHERE key = 'timezone'")
            deadline = time.monotonic() + 30
            while str(store_timezone(reader)) != "Europe/Berlin" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert str(store_timezone(reader)) == "Europe/Berlin", "the new zone is read once it is committed"
            assert str(store_timezone(here.con)) == "Europe/Berlin", "by every cursor of the process's connection"
        finally:
            listener.close()
            writer.close()
