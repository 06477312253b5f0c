"""The served app's threads: who owns which cursor, what runs off the event loop, and what a refusal leaves."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request

import pytest
import tornado.httpserver
import tornado.web

import scenes.server
from bench.browser import free_port, served
from scenes.screens import DistrictApp
from scenes.shared import Cursors, OffLoop, SharedDistrict
from scenes.server import intake_routes
from tests.twin.access.test_policy import a_case_in, two_grids
from twin.access.access import Principal, add_user
from twin.access.keys import add_key
from twin.access.policy import Gate
from twin.cases.live import CaseFeed, IntakeWriter
from twin.errors import AccessError
from twin.store.store import Store, open_for_command


def get(url: str, *, timeout: float = 60) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def refusals(con, target: str) -> list[tuple]:
    return con.execute("SELECT actor, target, source, detail FROM audit WHERE action = 'access.refused' "
                       "AND target = ? ORDER BY seq", [target]).fetchall()


def test_each_thread_reads_on_its_own_cursor(demo_copy):
    with Store(demo_copy, read_only=True) as store:
        cursors = Cursors(store.con)
        mine = cursors()
        theirs = []
        worker = threading.Thread(target=lambda: theirs.extend([cursors(), cursors()]))
        worker.start()
        worker.join()
        assert cursors() is mine and theirs[0] is theirs[1] and theirs[0] is not mine
        assert mine is not store.con


def test_an_open311_get_reads_only_the_keys_grids_and_a_refusal_is_audited(demo_copy):
    with open_for_command(demo_copy) as store:
        grid_a, _, grid_b, _ = two_grids(store.con)
        case_a, case_b = a_case_in(store.con, grid_a), a_case_in(store.con, grid_b)
        scoped, city = add_key(store.con, "grid-a-app"), add_key(store.con, "city-app")
        # the key's client reads as the user of its name: a leader of grid A
        add_user(store.con, "grid-a-app", "a long enough password", role="leader", grids=[grid_a], actor="test")
        in_a = {r[0] for r in store.con.execute(
            "WITH RECURSIVE down(g) AS (SELECT ?::VARCHAR UNION ALL SELECT grid_id FROM grids, down "
            "WHERE parent_id = down.g AND valid_to IS NULL) SELECT g FROM down", [grid_a]).fetchall()}
    with served(demo_copy) as url:
        base = url.rsplit("/", 1)[0] + "/open311/v2"
        status, found = get(f"{base}/requests.json?api_key={scoped}")
        assert status == 200 and found and {r["agency_responsible"] for r in found} <= in_a
        assert case_b not in {r["service_request_id"] for r in found}
        assert get(f"{base}/requests/{case_a}.json?api_key={scoped}")[0] == 200
        status, body = get(f"{base}/requests/{case_b}.json?api_key={scoped}")
        assert status == 403 and body[0]["code"] == 403 and "outside grid-a-app's grids" in body[0]["description"]
        status, body = get(f"{base}/requests.json?service_request_id={case_a},{case_b}&api_key={scoped}")
        assert status == 403
        status, found = get(f"{base}/requests/{case_b}.json?api_key={city}")  # a key of no user: the whole district
        assert status == 200 and found[0]["service_request_id"] == case_b
    with Store(demo_copy, read_only=True) as store:
        rows = refusals(store.con, case_b)
    assert len(rows) == 1, "asked twice within the minute: one row"
    actor, target, source, detail = rows[0]
    assert (actor, target, source) == ("grid-a-app", case_b, "127.0.0.1") and json.loads(detail)["what"] == \
        f"case {case_b}"


def test_a_refused_inspector_look_search_or_export_leaves_one_audit_row(demo_copy):
    with Store(demo_copy) as store:
        con = store.con
        grid_a, _, grid_b, building_b = two_grids(con)
        case_b = a_case_in(con, grid_b)
        other_b = con.execute("SELECT case_id FROM cases WHERE grid_id IN (SELECT grid_id FROM grids WHERE "
                              "parent_id = ?) AND case_id <> ? LIMIT 1", [grid_b, case_b]).fetchone()[0]
        app = DistrictApp(con.cursor(), SharedDistrict(con.cursor()),
                          principal=Principal("op.a", "operator", (grid_a,), source="10.0.0.7"))
        for _ in range(5):  # clicking another grid's case marker, again and again
            app.inspector.show_case(case_b)
        assert "outside op.a" in app.inspector.card.object and app.inspector.case_id is None
        app.search_box.value = other_b  # a case asked for by its id
        app._search(None)
        with pytest.raises(AccessError):
            app.gate.export_residents(building_b)
        assert [(a, s) for a, _, s, _ in refusals(con, case_b)] == [("op.a", "10.0.0.7")]
        assert len(refusals(con, other_b)) == 1 and len(refusals(con, building_b)) == 1


def test_a_served_look_runs_off_the_loop_and_its_refusal_is_committed_before_it_returns(demo_copy):
    with Store(demo_copy) as store:
        grid_a, _, grid_b, _ = two_grids(store.con)
        case_b = a_case_in(store.con, grid_b)
        writer = IntakeWriter(store.con, CaseFeed(), dedupe_window_s=60)
        off_loop = OffLoop(Cursors(store.con), writer)
        gate = Gate(store.con.cursor(), Principal("op.a", "operator", (grid_a,), source="10.0.0.8"))
        threads = []

        def read(g: Gate) -> dict:
            threads.append(threading.get_ident())
            return g.case_card(case_b)

        async def look() -> None:
            with pytest.raises(AccessError):
                await off_loop.look(gate, read)
            threads.append(threading.get_ident())
            # committed before the look returned: a fresh cursor sees it at once
            assert len(refusals(store.con.cursor(), case_b)) == 1
        asyncio.run(look())
        assert threads[0] != threads[1], "the read ran on a reader thread, not the event loop's"


def test_the_loop_answers_while_an_open311_read_is_held(demo_copy, monkeypatch):
    """A real Tornado server with the real routes; one GET's read is held on its reader thread until the
    loop has answered another request. Were the read on the loop, that request would never be answered."""
    with open_for_command(demo_copy) as store:
        key = add_key(store.con, "slow-reader")
    entered, release = threading.Event(), threading.Event()
    find_requests = scenes.server.find_requests

    def held(*args, **kwargs):
        entered.set()
        release.wait(timeout=120)
        return find_requests(*args, **kwargs)
    monkeypatch.setattr(scenes.server, "find_requests", held)
    port = free_port()
    started, loop_box = threading.Event(), []
    with Store(demo_copy) as store:
        writer = IntakeWriter(store.con, CaseFeed(), dedupe_window_s=60)

        def serve() -> None:
            async def main() -> None:
                server = tornado.httpserver.HTTPServer(tornado.web.Application(intake_routes(store, writer)))
                server.listen(port, address="127.0.0.1")
                loop_box.append((asyncio.get_running_loop(), stop := asyncio.Event()))
                started.set()
                await stop.wait()
                server.stop()
            asyncio.run(main())
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        assert started.wait(timeout=30)
        base = f"http://127.0.0.1:{port}/open311/v2"
        slow: list = []
        client = threading.Thread(target=lambda: slow.append(get(f"{base}/requests.json?api_key={key}")))
        client.start()
        try:
            assert entered.wait(timeout=60), "the read started"
            status, services = get(f"{base}/services.json", timeout=20)  # answered while the read is held
            assert status == 200 and services and not slow
        finally:
            release.set()
            client.join(timeout=60)
            loop, stop = loop_box[0]
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)
        assert slow and slow[0][0] == 200


def test_a_served_building_look_reads_the_same_card_with_the_grid_path_from_the_servers_tree(demo_copy_db, backend):
    """The grid path comes from the server's grid tree (no read of the grids per click), the head counts and tags
    from one read of the building's residents, the cameras from the server's: the card is the store's, on both
    backends."""
    from twin.cases.cameras import cameras_per_building
    from twin.inspector import building_card, grid_path

    with Store(demo_copy_db) as store:
        con = store.con.cursor()
        shared = SharedDistrict(store.con.cursor(), writer=IntakeWriter(store.con, CaseFeed(), dedupe_window_s=60))
        grids = con.execute("SELECT grid_id FROM grids WHERE valid_to IS NULL ORDER BY grid_id").fetchall()
        for grid_id, in grids[::max(1, len(grids) // 40)] + [("no-such-grid",)]:
            assert shared.grid_path(grid_id) == grid_path(con, grid_id)
        assert shared.grid_path(None) == []
        building_id, tag = con.execute(
            "SELECT building_id, any_value(tags[1]) FROM residents WHERE len(tags) > 0 "
            "GROUP BY building_id ORDER BY count(*) DESC, building_id LIMIT 1").fetchone()
        residents, households, tagged = con.execute(
            "SELECT count(*), count(DISTINCT household_id), count(*) FILTER (WHERE list_contains(tags, ?)) "
            "FROM residents WHERE building_id = ?", [tag, building_id]).fetchone()
        gate = Gate(store.con.cursor(), Principal("op", "operator", (), source=None))
        served = asyncio.run(shared.off_loop.look(gate, lambda g: g.building_card(building_id)))
        read = building_card(con, building_id)
        assert (served["residents"], served["households"], served["tags"][tag]) == (residents, households, tagged)
        assert list(served["tags"].values()) == sorted(served["tags"].values(), reverse=True)
        assert served["grid_path"] == read["grid_path"] and len(served["grid_path"]) == 4
        assert {k: v for k, v in served.items() if k not in ("cameras", "grid_path")} == {
            k: v for k, v in read.items() if k not in ("cameras", "grid_path")} | {
            k: served[k] for k in ("may_see_residents", "may_see_cases")}
        # The cameras that see it: from the server's cameras on PostgreSQL (no read of every camera per click).
        assert (shared.sight is not None) == (backend == "postgres")
        watched = cameras_per_building(con).idxmax()
        served = asyncio.run(shared.off_loop.look(gate, lambda g: g.building_card(watched)))["cameras"]
        assert len(served) > 0
        assert served.to_dict("list") == building_card(con, watched)["cameras"].to_dict("list")
        shared.writer.close()


def test_an_operators_own_figures_are_computed_once_for_all_their_sessions_and_follow_the_cases(demo_copy_db):
    """An operator's figures (their grids' residents counted: a second on PostgreSQL) are the server's, shared by
    every session of operators of those grids; the case figures among them follow the case feed."""
    from twin.cases.cases import OPEN_STATUSES
    from twin.grids.grids import grids_under
    from twin.store.queries import key_figures

    with Store(demo_copy_db) as store:
        con = store.con.cursor()
        feed = CaseFeed()
        shared = SharedDistrict(store.con.cursor(), feed=feed)
        street, = con.execute("SELECT grid_id FROM grids WHERE level = 'street' AND valid_to IS NULL "
                              "ORDER BY grid_id LIMIT 1").fetchone()
        mine = grids_under(con, [street])
        first = shared.key_figures(grids=mine)
        assert first == key_figures(con, grids=mine) and first != shared.key_figures()
        assert shared.key_figures(grids=frozenset(mine)) is first, "another session of the same grids: no read"
        case_id, status = con.execute("SELECT case_id, status FROM cases WHERE grid_id IN (SELECT unnest(?)) AND "
                                      "status IN (SELECT unnest(?)) ORDER BY case_id LIMIT 1",
                                      [sorted(mine), list(OPEN_STATUSES)]).fetchone()
        con.execute("UPDATE cases SET status = 'closed' WHERE case_id = ?", [case_id])
        feed.publish([{"case_id": case_id, "status": "closed"}])
        after = shared.key_figures(grids=mine)
        assert after["open_cases"][status] == first["open_cases"][status] - 1
        assert after == key_figures(con, grids=mine)
