"""PostgreSQL restarted under a serving process (PostgreSQL-only: a DuckDB file is the process's own and does not
restart under it). The tests stop and start the session's throwaway cluster; it is running again after each."""

from __future__ import annotations

import http.cookiejar
import json
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from bench.browser import served
from tests.conftest import SMALL_DEMO_TEMPLATE
from twin.access.keys import add_key
from twin.geo.crs import transform_xy
from twin.store.store import Store, open_for_command


@pytest.fixture
def demo_in_postgres(pg_cluster, small_demo_pg) -> str:
    return pg_cluster.create_database(template=SMALL_DEMO_TEMPLATE)


def _intake_form(db: str) -> dict[str, str]:
    """A valid Open311 request at a building of the store, with a new key."""
    with open_for_command(db, create=False) as store:
        key = add_key(store.con, f"restart-{time.monotonic_ns()}")
        x, y = store.con.execute("SELECT label_x, label_y FROM buildings ORDER BY building_id LIMIT 1").fetchone()
    (lon, lat), = transform_xy(np.array([[x, y]]), "EPSG:4547", "EPSG:4326")
    return {"service_code": "eco_environment.cooking_fumes", "lat": f"{lat:.7f}", "long": f"{lon:.7f}",
            "description": "posted while the database restarts", "api_key": key}


def _ask(opener, url: str, form: dict | None = None) -> tuple[int, dict, bytes]:
    """Status, headers and body of a GET (or a form POST), errors included; status 0 when nothing answered."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with opener.open(url, data=data, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except OSError:
        return 0, {}, b""


class Poster:
    """Posts the form again and again from a thread, keeping each answer: (time, status, Retry-After, case id).

    ``keyed``: as a careful client does, each request has an idempotency key of its own (also in its description),
    and a request not acknowledged (a 503, or no answer) is sent again with the same key until it is;
    :attr:`keys` holds each key's acknowledged case ids.
    """

    def __init__(self, url: str, form: dict[str, str], *, keyed: bool = False) -> None:
        self.answers: list[tuple[float, int, str | None, str | None]] = []
        self.keys: dict[str, list[str]] = {}
        self._url, self._form, self._keyed = url, form, keyed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        opener = urllib.request.build_opener()
        key, form = None, self._form
        while not self._stop.is_set():
            if self._keyed and key is None:
                key = f"restart-{len(self.keys):06d}-{time.monotonic_ns()}"
                form = {**self._form, "description": f"{self._form['description']} {key}"}
                self.keys[key] = []
            opener.addheaders = [("Idempotency-Key", key)] if key else []
            sent = time.monotonic()
            status, headers, body = _ask(opener, self._url, form)
            case_id = json.loads(body)[0]["service_request_id"] if status in (200, 201) else None
            self.answers.append((sent, status, headers.get("Retry-After"), case_id))
            if key is not None and case_id is not None:
                self.keys[key].append(case_id)
                key = None
            time.sleep(0.02)

    def acknowledged_after(self, moment: float) -> list[str]:
        return [a[3] for a in self.answers if a[1] == 201 and a[0] >= moment]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _wait(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_intake_answers_503_with_retry_after_while_postgres_restarts_loses_nothing_and_recovers(pg_cluster,
                                                                                              demo_in_postgres):
    db = demo_in_postgres
    form = _intake_form(db)
    with served(db, probes=False) as url:
        base = url.rsplit("/", 1)[0]
        signed_in = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        assert _ask(signed_in, f"{base}/login", {"username": url.user, "password": url.password})[0] == 200
        poster = Poster(f"{base}/open311/v2/requests.json", form)
        try:
            assert _wait(lambda: len(poster.acknowledged_after(0)) >= 5, 60), poster.answers[-3:]
            with pg_cluster.down():
                stopped = time.monotonic()
                # Intake: 503 with Retry-After (asserted over all answers below); the rest of the server alike.
                assert _wait(lambda: any(a[1] == 503 for a in poster.answers if a[0] >= stopped), 30)
                health = _ask(signed_in, f"{base}/health")
                assert (health[0], "Retry-After" in health[1]) == (503, True), health
                assert _wait(lambda: _ask(signed_in, f"{base}/app")[0] == 503, 5), "a page of a signed-in user"
                page = _ask(signed_in, f"{base}/app")
                assert (page[0], page[1].get("Retry-After")) == (503, "2"), page[:2]
                sign_in = _ask(urllib.request.build_opener(), f"{base}/login",
                               {"username": url.user, "password": url.password})
                assert (sign_in[0], "Retry-After" in sign_in[1]) == (503, True), sign_in[:2]
                time.sleep(1)
            started = time.monotonic()
            assert _wait(lambda: poster.acknowledged_after(started), 5), "intake works again within 5 s"
            assert _ask(signed_in, f"{base}/health")[0] == 200
            assert _wait(lambda: _ask(signed_in, f"{base}/app")[0] == 200, 10), "pages open again"
        finally:
            poster.stop()
        log = (Path(tempfile.gettempdir()) / f"twin-serve-{base.rsplit(':', 1)[1]}.log").read_text()
    answered = {(status, retry_after) for _, status, retry_after, _ in poster.answers}
    assert answered <= {(201, None), (503, "2")}, answered  # never a 500, and every 503 says when to come back
    acknowledged = poster.acknowledged_after(0)
    with Store(db, read_only=True) as store:
        kept = {r[0] for r in store.con.execute("SELECT case_id FROM cases WHERE case_id IN (SELECT unnest(?))",
                                                [acknowledged]).fetchall()}
    assert kept == set(acknowledged), "every acknowledged case is in the store"
    assert "Traceback" not in log, log[log.find("Traceback") - 500:][:3000]


def test_the_cases_another_process_wrote_while_listening_was_down_reach_the_feed_once_it_listens(
        pg_cluster, demo_in_postgres, monkeypatch):
    from twin.cases.live import CaseFeed, IntakeWriter, follow_other_processes
    from twin.store import notices

    monkeypatch.setattr(notices, "RECONNECT_S", 4.0)  # a window in which the listener is still away
    db = demo_in_postgres
    form = _intake_form(db)
    feed = CaseFeed()
    with Store(db) as here, Store(db) as elsewhere:
        listener = follow_other_processes(db, here.con.cursor(), feed)
        other = IntakeWriter(elsewhere.con, CaseFeed(), dedupe_window_s=600)
        try:
            assert listener.wait_listening(30)
            with pg_cluster.down():
                assert _wait(lambda: not listener.listening, 10)
            case_id = other.take_request(form, district_crs="EPSG:4547").result(timeout=30)["service_request_id"]
            assert not listener.listening, "the case was written while this process was not listening"
            assert _wait(lambda: case_id in {r["case_id"] for r in feed.since(0)[1]}, 15), \
                "the case reaches this process's feed after it listens again"
        finally:
            other.close()
            listener.close()


def test_a_request_sent_again_after_a_503_with_its_key_is_kept_once(pg_cluster, demo_in_postgres):
    """A client that sends each request with an idempotency key, and sends it again with the same key until it is
    acknowledged, gets each kept exactly once across a restart of PostgreSQL, even when a 503's COMMIT was kept."""
    db = demo_in_postgres
    form = _intake_form(db)
    with served(db, probes=False) as url:
        base = url.rsplit("/", 1)[0]
        poster = Poster(f"{base}/open311/v2/requests.json", form, keyed=True)
        try:
            assert _wait(lambda: len(poster.keys) >= 5, 60), poster.answers[-3:]
            with pg_cluster.down():
                stopped = time.monotonic()
                assert _wait(lambda: any(a[1] == 503 for a in poster.answers if a[0] >= stopped), 30)
                time.sleep(1)
            started = time.monotonic()
            assert _wait(lambda: poster.acknowledged_after(started) or any(
                a[1] == 200 and a[0] >= started for a in poster.answers), 5), "intake works again within 5 s"
            time.sleep(1)
        finally:
            poster.stop()
    acknowledged = {key: ids for key, ids in poster.keys.items() if ids}
    assert len(acknowledged) >= 5 and all(len(set(ids)) == 1 for ids in acknowledged.values())
    with Store(db, read_only=True) as store:
        kept = dict(store.con.execute(
            "SELECT split_part(description, ' ', -1), list(case_id) FROM cases WHERE description LIKE ? GROUP BY 1",
            [form["description"] + " restart-%"]).fetchall())
    assert all(len(ids) == 1 for ids in kept.values()), {k: v for k, v in kept.items() if len(v) > 1}
    assert {key: ids[0] for key, ids in acknowledged.items()} == {key: kept[key][0] for key in acknowledged}
    assert set(kept) <= set(poster.keys), "nothing but what was sent"
