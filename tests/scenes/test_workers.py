"""Several app processes on one PostgreSQL store behind Debian's nginx (`twin serve --workers N`)."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

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


def _free_run(length: int) -> int:
    """A port P with P .. P+length-1 all free on 127.0.0.1 (for nginx and its workers)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + length > 65535:
            continue
        try:
            for p in range(first, first + length):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return first
        except OSError:
            continue
    raise RuntimeError("no run of free ports")


def _get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def test_two_workers_behind_nginx_take_intake_and_read_one_store(demo_copy_db, backend):
    """PostgreSQL-only: a DuckDB file has one writing process, and `--workers` refuses it."""
    if backend == "duckdb":
        pytest.skip("a DuckDB file has one writing process")
    with open_for_command(demo_copy_db, create=False) as store:
        key = add_key(store.con, "workers-test")
        x, y = store.con.execute("SELECT label_x, label_y FROM buildings ORDER BY building_id LIMIT 1").fetchone()
    (lon, lat), = transform_xy(np.array([[x, y]]), "EPSG:4547", "EPSG:4326")
    port = _free_run(3)
    group = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--db", demo_copy_db, "--port", str(port),
                              "--workers", "2"], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(
                _get(f"http://127.0.0.1:{p}/open311/v2/services.json")[0] == 200 for p in (port, port + 1, port + 2)):
            assert group.poll() is None, "twin serve --workers ended"
            time.sleep(1)
        form = urllib.parse.urlencode({"service_code": "eco_environment.cooking_fumes", "lat": f"{lat:.7f}",
                                       "long": f"{lon:.7f}", "description": "through the proxy", "api_key": key})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/open311/v2/requests.json", data=form.encode(),
                                    timeout=60) as response:
            case_id = json.loads(response.read())[0]["service_request_id"]
        for worker in (port + 1, port + 2):  # each process reads the case from the one store
            status, found = _get(f"http://127.0.0.1:{worker}/open311/v2/requests/{case_id}.json?api_key={key}")
            assert status == 200 and found[0]["service_request_id"] == case_id, worker
    finally:
        group.send_signal(signal.SIGTERM)
        group.wait(timeout=60)
    assert group.returncode == 0
    for p in (port, port + 1, port + 2):
        assert _get(f"http://127.0.0.1:{p}/open311/v2/services.json")[0] == 0, "nothing is left listening"


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
