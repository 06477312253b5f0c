"""The planner's live rule check is the save's check: no sequence of edits passes the one and fails the other.

Random edits (vertex moves, splits, merges, deletes) on a community's grids and on a grid's micro-grids of the
small demo; after each edit, when the live check (what the plan shows before Save) finds no error, the save
itself must not refuse. The save runs in a transaction that is rolled back, so every example starts from the
demo as built.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenes.planner.session import ParentEdit
from twin.errors import GridRuleError, TwinError
from twin.grids.gridrules import errors
from twin.grids.gridversions import save_partition
from twin.store.store import Store

PARENTS = ("S01-C01", "S01-C01-G1")  # a community (its grids: the redraw of micro-grids) and a grid
EDITS = ("move", "move", "move", "split", "merge", "delete")


@pytest.fixture(scope="module")
def con(small_demo, tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "store.duckdb"
    shutil.copy(small_demo, path)
    with Store(path) as store:
        yield store.con


def apply(edit: ParentEdit, kind: str, pick: int, dx: float, dy: float, angle: float) -> None:
    """One edit of ``kind`` on the grid (and vertex) ``pick`` chooses; raises TwinError when the engine refuses."""
    shapes = edit.shapes
    grid_id = str(shapes.index[pick % len(shapes)])
    geom = shapes[grid_id]
    if kind == "move":
        corners = shapely.get_coordinates(geom)[:-1]
        at = corners[pick % len(corners)]
        edit.move_vertex(at, at + (dx, dy))
    elif kind == "split":
        c = np.array(geom.representative_point().coords[0])
        reach = math.hypot(*np.ptp(shapely.get_coordinates(geom), axis=0))
        d = np.array([math.cos(angle), math.sin(angle)]) * reach
        edit.split(shapely.LineString([c - d, c + d]), grid_id)
    elif kind == "merge":
        touching = [str(g) for g, s in shapes.items() if g != grid_id and s.intersection(geom).length > 1.0]
        if touching:
            edit.merge([grid_id, touching[pick % len(touching)]])
    else:
        edit.delete(grid_id, to=None)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parent=st.sampled_from(PARENTS),
       edits=st.lists(st.tuples(st.sampled_from(EDITS), st.integers(0, 10_000), st.floats(-40, 40),
                                st.floats(-40, 40), st.floats(0, math.pi)), min_size=1, max_size=4))
def test_the_live_check_passes_only_what_the_save_takes(con, parent, edits):
    edit = ParentEdit(con, parent)
    for step in edits:
        try:
            apply(edit, *step)
        except TwinError:
            continue  # the engine refused the edit: nothing changed
        edit.recheck(con)
        if errors(edit.violations) or edit.reassignment is None:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            save_partition(con, parent, edit.shapes, actor="planner.check", reason="property test",
                           level=edit.level)
        except GridRuleError as exc:
            pytest.fail(f"the live check found no error after {edits}, but the save refused: {exc}")
        finally:
            con.execute("ROLLBACK")
