"""Fuzz the API key check: whatever a JSON body or a header carries as a key, it is a client's or none."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.fuzzing.harness import SURROGATES, TALLIES, Tally, texts
from twin.access.keys import add_key, client_for
from twin.store.store import Store

EXAMPLES = 300

keys = st.one_of(texts(max_size=60, surrogates=True), st.sampled_from(SURROGATES), st.none(), st.booleans(),
                 st.integers(), st.floats(), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def test_any_key_is_a_clients_or_none(tmp_path):
    with Store(tmp_path / "keys.duckdb", create=True) as store:
        real = add_key(store.con, "camera-box")
        assert client_for(store.con, real) == "camera-box"
        tally = TALLIES["twin.access.keys.client_for"] = Tally("twin.access.keys.client_for")

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
        @given(keys)
        def check(key):
            tally.tried += 1
            assert client_for(store.con, key) is None
            tally.refused += 1

        check()
    print(f"\ntwin.keys.client_for: {tally.tried} examples")
