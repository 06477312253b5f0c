"""Fuzz target: the search box (twin.inspector.search and a principal's Gate.search).

Beyond 'a result or a TwinError, and the store unchanged': the wildcards ``%`` and ``_`` and the
escape ``\\`` match only themselves, and an operator finds no case outside their grids.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import strategies as st

from bench.fuzzing.harness import Target, texts
from twin import inspector
from twin.access.access import Principal
from twin.access.policy import Gate
from twin.store.store import Store


inputs = st.fixed_dictionaries({
    "text": st.one_of(texts(max_size=30), st.sampled_from(["C2026", "c2026%", "_", "%", "路", " 号",
                                                                            "x" * 201, "demo:", "C"]),
                      st.text(max_size=300)),
    "limit": st.sampled_from([1, 10, 50]),
    "who": st.sampled_from(["inspector", "leader", "operator"]),
})


def inspector_search(con, text: str, *, limit: int) -> list[dict]:
    """``inspector.search``; with a principal when its signature wants one."""
    try:
        return inspector.search(con, text, limit=limit)
    except TypeError as exc:
        if "principal" not in str(exc):
            raise
        return inspector.search(con, text, limit=limit, principal=Principal("fuzz", "leader"))


def _matches(text: str, item: dict, con) -> bool:
    """The result holds the search text literally (its name, address or case id), or is the building of that id."""
    needle = text.strip().lower()
    if item["kind"] == "case":
        return needle in item["id"].lower()
    name, address = con.execute("SELECT coalesce(name, ''), coalesce(address, '') FROM buildings "
                                "WHERE building_id = ?", [item["id"]]).fetchone()
    return needle in name.lower() or needle in address.lower() or item["id"] == text.strip()


@contextlib.contextmanager
def session(store_path: Path, workdir: Path):
    with Store(store_path) as store:
        grid, = store.con.execute("SELECT grid_id FROM grids WHERE level = 'micro' AND valid_to IS NULL "
                                  "AND grid_id IN (SELECT grid_id FROM cases) ORDER BY grid_id LIMIT 1").fetchone()
        gates = {"leader": Gate(store.con, Principal("fuzz-leader", "leader")),
                 "operator": Gate(store.con, Principal("fuzz-operator", "operator", (grid,)))}
        case_grids = dict(store.con.execute("SELECT case_id, grid_id FROM cases").fetchall())

        def run(value: dict) -> None:
            text, limit, who = value["text"], value["limit"], value["who"]
            found = (inspector_search(store.con, text, limit=limit) if who == "inspector"
                     else gates[who].search(text, limit=limit))
            assert len(found) <= limit
            if text.isascii():  # DuckDB's ILIKE and Python's lower() agree on ASCII
                wrong = [item for item in found if not _matches(text, item, store.con)]
                assert not wrong, f"search {text!r} found {wrong} that do not contain it"
            if who == "operator":
                outside = [r["id"] for r in found if r["kind"] == "case" and r["id"] in case_grids
                           and case_grids[r["id"]] not in gates["operator"].scope]
                assert not outside, f"operator of {grid} found cases of other grids: {outside}"

        yield store.con, run


TARGET = Target("twin.inspector.search", inputs, ("cases", "buildings", "audit"), session)
