"""Fuzz the search box: twin.inspector.search and the principal's Gate.search, on a store copy.

Beyond 'a result or a TwinError, and the store unchanged': the wildcards ``%`` and ``_`` and the
escape ``\\`` match only themselves, and an operator finds no case outside their grids.
"""

from __future__ import annotations

import pytest

from bench.fuzzing.harness import SURROGATES, fuzz_a_copy
from bench.fuzzing.search import TARGET, inspector_search
from twin.access.access import Principal
from twin.access.policy import Gate
from twin.store.store import Store

EXAMPLES = 600


def test_search_finds_literally_or_refuses_without_a_trace(small_demo, tmp_path):
    tally = fuzz_a_copy(TARGET, small_demo, tmp_path, max_examples=EXAMPLES)
    assert tally.ok > 0


@pytest.mark.parametrize("text", SURROGATES)
def test_search_refuses_text_that_is_not_unicode(small_demo, text):
    from twin.errors import InputError

    with Store(small_demo, read_only=True) as store:
        for who in ("inspector", "leader"):
            with pytest.raises(InputError):
                (inspector_search(store.con, text, limit=10) if who == "inspector"
                 else Gate(store.con, Principal("fuzz-leader", "leader")).search(text, limit=10))
