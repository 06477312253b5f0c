"""The simulated operator sessions of `twin bench scale` (bench/sessions.py): they open the app and drive it over
Bokeh's protocol as the browser does, and their loopback addresses reach the workers nginx's ip_hash says."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import time
import urllib.parse

import pytest

from bench.browser import free_ports, served
from bench.feed import building_points, report_forms
from bench.scale import command_centre
from bench.sessions import OperatorSession, balanced_sources, ip_hash_worker
from scenes.workers import nginx_binary, nginx_main_config, proxy_config
from twin.access.keys import add_key
from twin.store.store import Store, open_for_command


def _answer_with_port(port: int):
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = str(port).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()
    return answer


def test_nginx_sends_each_address_to_the_worker_ip_hash_is_computed_to(tmp_path):
    """The generated configuration in a real nginx, two servers behind it that answer with their port."""
    try:
        nginx = nginx_binary()
    except Exception:
        pytest.skip("nginx is not installed (make test installs it)")
    port = free_ports(4)
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / kind).mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(nginx_main_config(proxy_config(address="127.0.0.1", port=port, workers=3), prefix=tmp_path))
    addresses, expected = balanced_sources(12, 3, first=40)
    addresses, expected = addresses + [a[:-1] + "77" for a in addresses[:3]], expected + expected[:3]  # one /24

    async def run() -> list[int]:
        servers = [await asyncio.start_server(_answer_with_port(p), "127.0.0.1", p) for p in range(port + 1, port + 4)]
        proxy = subprocess.Popen([nginx, "-c", str(config), "-p", str(tmp_path)])
        try:
            def get(source: str) -> int:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        con = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
                        con.request("GET", "/")
                        return int(con.getresponse().read())
                    except (OSError, ValueError):
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
            return [await asyncio.to_thread(get, a) for a in addresses]
        finally:
            proxy.terminate()
            proxy.wait(timeout=30)
            for server in servers:
                server.close()
    reached = asyncio.run(run())
    assert reached == [port + 1 + w for w in expected]
    assert expected[:12].count(0) == expected[:12].count(1) == expected[:12].count(2) == 4
    assert [ip_hash_worker(a, 3) for a in addresses] == expected


def test_a_simulated_session_opens_the_app_picks_a_building_and_sees_a_live_case(demo_copy):
    with open_for_command(demo_copy) as store:
        key = add_key(store.con, "sessions-test")
    with Store(demo_copy, read_only=True) as store:
        ids = [r[0] for r in store.con.execute("SELECT building_id FROM buildings ORDER BY building_id").fetchall()]
    points, crs = building_points(demo_copy)
    form = report_forms(points, crs, 1, label="sessions", seed=3)[0]

    with served(demo_copy, role="operator", probes=False) as url:
        base = url.rsplit("/", 1)[0]

        async def run() -> tuple[float, float, str, OperatorSession]:
            from tornado.httpclient import AsyncHTTPClient

            session = OperatorSession(base, url.user, url.password, source="127.0.0.1")
            await session.open()
            try:
                first = await session.pick(3, ids[3], timeout=60)
                last = await session.pick(len(ids) - 1, ids[-1], timeout=60)
                answer = await AsyncHTTPClient().fetch(base + "/open311/v2/requests.json", method="POST",
                                                       body=urllib.parse.urlencode({**form, "api_key": key}))
                case_id = json.loads(answer.body)[0]["service_request_id"]
                await asyncio.wait_for(session.case_arrival(case_id), 30)
                return first, last, case_id, session
            finally:
                await session.close()
        first, last, case_id, session = asyncio.run(run())
    assert 0 < first < 60 and 0 < last < 60
    assert session.card_id and session.view_id and session.opened_bytes > 100_000  # the district's buffers came
    assert case_id in session.case_seen


def test_a_pick_that_names_another_building_is_not_taken_for_this_one(demo_copy):
    """The card must name the clicked building: a card of another (an older click's) does not end the wait."""
    with Store(demo_copy, read_only=True) as store:
        ids = [r[0] for r in store.con.execute("SELECT building_id FROM buildings ORDER BY building_id").fetchall()]
    with served(demo_copy, role="operator", probes=False) as url:
        async def run() -> None:
            session = OperatorSession(url.rsplit("/", 1)[0], url.user, url.password, source="127.0.0.1")
            await session.open()
            try:
                with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                    await session.pick(3, ids[4], timeout=5)  # index 3's card never names building 4
            finally:
                await session.close()
        asyncio.run(run())


def test_the_command_centre_grows_with_its_sessions_and_cases():
    sessions = {"cpu": {"idle_ms_per_session_second": 5.0, "workers_per_pick_ms": 50.0, "postgres_per_pick_ms": 10.0},
                "memory": {"workers_rss_baseline_bytes": [400e6, 400e6], "per_session_after_picks_bytes": 4e6},
                "postgres_client_connections": 12, "machine_load": {"before_idle": 1.0, "after_picks": 1.5}}
    postgres = {"app_and_proxy_cpu_ms_per_case": 20.0, "postgres_cpu_ms_per_case": 2.0, "database_bytes_per_case": 2000,
                "intake": {"knee_offered_per_s": 100}}
    small = command_centre(sessions, postgres, database_bytes_now=10**9, sessions_target=100, cases_per_min=600)
    big = command_centre(sessions, postgres, database_bytes_now=10**9, sessions_target=500, cases_per_min=2000)
    # 100 sessions: 0.5 core idle + 20 clicks/s x 50 ms = 1 core + 10 cases/s x 20 ms = 0.2 core -> 1.7 cores
    assert small["app_cores"] == pytest.approx(1.7) and small["workers"] == 4
    assert big["workers"] > small["workers"] and big["app_memory_bytes"] > small["app_memory_bytes"]
    assert small["database_growth_bytes_per_day"] == 2000 * 600 * 60 * 24
    assert small["intake_headroom"] == 10.0 and small["postgres_connections"] == 4 * 6
    assert not small["measured_on_a_busy_machine"]
    busy = command_centre({**sessions, "machine_load": {"before_idle": 1.0, "after_picks": 30.0}}, postgres,
                          database_bytes_now=10**9)
    assert busy["measured_on_a_busy_machine"]
