"""What every session of one server shares: a building card's cameras found from the camera layer held in memory;
the server's heap given back as it grows; a grid's path found in a few bytes a grid."""

from __future__ import annotations

import time

import pytest

from scenes.shared import HeapTrimmer, SharedDistrict, _resident_bytes, release_memory
from twin.access.access import Principal
from twin.access.policy import Gate
from twin.cases.cameras import cameras_per_building, cameras_seeing
from tests.conftest import BACKENDS, small_demo_in
from twin.store.store import Store


@pytest.fixture(scope="module", params=BACKENDS)
def store(request):
    with Store(small_demo_in(request.param, request), read_only=True) as s:
        yield s


def test_a_cards_cameras_from_the_layer_held_are_those_the_store_finds(store):
    shared = SharedDistrict(store.con.cursor())
    counts = cameras_per_building(store.con)
    seen, unseen = counts[counts > 0].index, counts[counts == 0].index
    assert len(seen) >= 10 and len(unseen)
    for building_id in [*seen[:: max(1, len(seen) // 10)], unseen[0]]:
        from_layer = cameras_seeing(store.con, building_id, near=shared.cameras_near)
        assert from_layer.equals(cameras_seeing(store.con, building_id)), building_id
        assert len(from_layer) == counts[building_id]
    # the camera layer is what is read: cameras it does not hold are not looked for
    assert cameras_seeing(store.con, seen[0], near=lambda *box: []).empty
    # a session's look reads the card through the shared layer
    asked = []
    gate = Gate(store.con.cursor(), Principal("street.leader", "leader"))
    bound = gate.bound(store.con.cursor(), audit_sink=lambda **row: None,
                       cameras_near=lambda *box: asked.append(box) or shared.cameras_near(*box))
    card = bound.building_card(seen[0])
    assert len(asked) == 1
    assert list(card["cameras"]["camera_id"]) == list(cameras_seeing(store.con, seen[0])["camera_id"])


def _grow_heap(mb: int) -> list[bytearray]:
    """Allocate ``mb`` MB of the C heap in small blocks and free all but one in 64: the heap keeps the freed
    memory (holes between the kept blocks) until it is trimmed. Returns the blocks kept."""
    blocks = [bytearray(2000) for _ in range(mb * 2 ** 20 // 2000)]
    return blocks[::64]


def test_the_heap_trimmer_gives_freed_memory_back_once_the_process_grew():
    release_memory()  # what earlier tests left free is given back
    before = _resident_bytes()
    trimmer = HeapTrimmer(period_s=0.1, grown_bytes=32 * 2 ** 20)
    try:
        kept = _grow_heap(400)  # freed but for one block in 64: kept by the heap until trimmed
        time.sleep(1.0)
        assert _resident_bytes() < before + 100 * 2 ** 20, "the trimmer gave most of it back"
    finally:
        trimmer.close()
    assert kept


def test_a_grids_path_is_found_in_the_trees_ids_held_in_a_few_bytes_a_grid(store):
    """The server finds a clicked grid's path in its grid tree: held as the tree's ids (tens of bytes a grid), not as
    a dict of every grid (350 bytes a grid: 250 MB for a city's 700,000, held for the server's life)."""
    import tracemalloc

    from twin.inspector import grid_path

    warm = SharedDistrict(store.con.cursor())  # the first of each read and conversion, out of the count
    micro = str(warm._tree["grid_id"].iloc[-1])
    warm.grid_path(micro)
    shared = SharedDistrict(store.con.cursor())
    grids = len(shared._tree)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        path = shared.grid_path(micro)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert path == grid_path(store.con, micro) and len(path) == 4
    assert grids > 200 and held < 60 * grids, f"{held / grids:.0f} bytes a grid"


def test_the_blocks_start_up_read_are_given_back_and_the_servers_limit_set_again(store):
    """``twin serve`` reads every building at start; DuckDB keeps the blocks it read (70 MB of a city's store) until
    a query needs the room. Once the layers are made they are given back, and the serving limit holds again."""
    from scenes.server import SERVER_DUCKDB_SETTINGS, drop_cached_blocks

    con = store.con.cursor()

    def cached() -> int:
        return con.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                           "WHERE tag = 'BASE_TABLE'").fetchone()[0]

    def limit() -> str:
        return con.execute("SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'").fetchone()[0]

    con.execute(f"SET memory_limit = '{SERVER_DUCKDB_SETTINGS['memory_limit']}'")
    serving = limit()
    try:
        SharedDistrict(store.con.cursor()).warm()  # what twin serve reads at start
        held = cached()
        drop_cached_blocks(store.con)
        assert limit() == serving
        if not store.postgres:  # a PostgreSQL store's blocks are its server's
            assert held > 2 ** 20 and cached() < held / 4
    finally:
        con.execute("RESET memory_limit")
