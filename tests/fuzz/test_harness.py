"""The harness itself: it catches a crash, and a store changed by a refused input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import strategies as st

from tests.conftest import copy_of
from bench.fuzzing.harness import INJECTIONS, TALLIES, Finding, Target, checksums, fuzz
from twin.errors import InputError
from twin.store.store import Store


def _target(run_one) -> Target:
    @contextlib.contextmanager
    def session(store_path, workdir):
        with Store(store_path) as store:
            yield store.con, lambda value: run_one(store, value)

    return Target("harness-self-test", st.sampled_from(INJECTIONS), ("cases",), session)


def _leaky(store, value):
    store.con.execute("DELETE FROM cases WHERE case_id = (SELECT min(case_id) FROM cases)")  # no transaction
    raise InputError(f"refused {value!r}")


def _crashing(store, value):
    raise KeyError(value)


def _careful(store, value):
    with store.transaction() as con:
        con.execute("DELETE FROM cases")
        raise InputError(f"refused {value!r}")


def test_a_change_after_a_refusal_is_found(small_demo, tmp_path):
    with pytest.raises(Finding, match="store changed"):
        fuzz(_target(_leaky), copy_of(small_demo, tmp_path), tmp_path, max_examples=5)
    tally = fuzz(_target(_leaky), copy_of(small_demo, tmp_path), tmp_path, max_examples=5, strict=False)
    assert tally.changed and tally.refused == tally.tried


def test_a_crash_is_found_and_a_rolled_back_refusal_passes(small_demo, tmp_path):
    with pytest.raises(KeyError):
        fuzz(_target(_crashing), copy_of(small_demo, tmp_path), tmp_path, max_examples=5)
    tally = fuzz(_target(_careful), copy_of(small_demo, tmp_path), tmp_path, max_examples=5)
    assert tally.refused == tally.tried == 5 and not tally.crashes and not tally.changed
    with Store(tmp_path / "store.duckdb", read_only=True) as store:
        assert checksums(store.con, ("cases",))["hashes"]["cases"][0] > 0
    TALLIES.pop("harness-self-test", None)  # not an entry point: keep it out of the summary
