"""Grid edits and rules on plain polygons: shared vertices, split, merge, draw, delete, undo/redo."""

from __future__ import annotations

from datetime import timedelta

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from twin.errors import GridEditError, GridRuleError, OptionError, TwinError
from twin.grids.gridedit import (
    EditSession,
    changed_grids,
    delete_grid,
    draw_grid,
    fresh_ids,
    merge_grids,
    move_vertex,
    neighbours,
    snap_point,
    split_grid,
)
from twin.grids.gridrules import check_partition, errors, raise_on_errors

PARENT = shapely.box(0, 0, 300, 200)


def tiling(cols: int = 3, rows: int = 2, width: float = 300, height: float = 200) -> gpd.GeoSeries:
    """A parent box cut into cols x rows rectangles, ids M001…"""
    xs, ys = np.linspace(0, width, cols + 1), np.linspace(0, height, rows + 1)
    shapes = {f"M{j * cols + i + 1:03d}": shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1])
              for j in range(rows) for i in range(cols)}
    return gpd.GeoSeries(list(shapes.values()), index=list(shapes))


def coverage_errors(shapes, parent=PARENT):
    return errors(check_partition(shapes, parent=parent, parent_id="P", level="grid"))


def test_tiling_is_clean():
    assert check_partition(tiling(), parent=PARENT, parent_id="P", level="grid") == []


def test_shared_vertex_moves_in_every_neighbour():
    shapes = tiling()  # (100, 100) is a corner of M001, M002, M004 and M005
    moved = move_vertex(shapes, at=(100, 100), to=(110, 95))
    for g in ("M001", "M002", "M004", "M005"):
        coords = shapely.get_coordinates(moved[g])
        assert np.isclose(coords, (110, 95)).all(axis=1).any(), g
        assert not np.isclose(coords, (100, 100)).all(axis=1).any(), g
    assert moved["M003"].equals(shapes["M003"])
    assert coverage_errors(moved) == []
    assert shapes["M001"].equals(shapely.box(0, 0, 100, 100))  # the input is unchanged


def test_t_junction_vertex_is_inserted_in_the_neighbour():
    shapes = gpd.GeoSeries([shapely.box(0, 0, 100, 200), shapely.box(100, 0, 300, 100),
                            shapely.box(100, 100, 300, 200)], index=["A", "B", "C"])
    parent = shapely.box(0, 0, 300, 200)
    moved = move_vertex(shapes, at=(100, 100), to=(90, 100))  # B and C's corner lies on A's edge
    assert coverage_errors(moved, parent) == []
    assert np.isclose(shapely.get_coordinates(moved["A"]), (90, 100)).all(axis=1).any()


def test_move_vertex_refusals():
    with pytest.raises(GridEditError, match="no grid has a vertex or edge within"):
        move_vertex(tiling(), at=(50, 50), to=(60, 60))
    with pytest.raises(GridEditError, match="cross itself"):
        move_vertex(tiling(), at=(100, 100), to=(250, 150))


def test_a_vertex_on_the_parent_outline_is_the_parents():
    shapes = tiling()  # (100, 0) is on the parent's bottom edge, shared by M001 and M002
    with pytest.raises(GridEditError, match=r"\(100.00, 0.00\).*outline of the parent P.*level above") as info:
        move_vertex(shapes, at=(100, 0), to=(105, 4), parent=PARENT, parent_id="P")
    assert "M001, M002" in str(info.value)
    slid = move_vertex(shapes, at=(100, 0), to=(105, 0), parent=PARENT, parent_id="P")  # along the outline: fine
    assert coverage_errors(slid) == [] and slid["M001"].area == pytest.approx(10250)
    inner = move_vertex(shapes, at=(100, 100), to=(103, 98), parent=PARENT, parent_id="P")
    assert coverage_errors(inner) == []


def test_a_move_sweeping_over_a_sibling_is_refused():
    # C lies 0.2 m above B and does not share the vertex (10, 10): moving it up sweeps B's edge over C
    shapes = gpd.GeoSeries([shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10), shapely.box(10.5, 10.2, 20, 11)],
                           index=["A", "B", "C"])
    with pytest.raises(GridEditError, match="makes grid B overlap grid C by .* m² \\(C does not share that vertex"):
        move_vertex(shapes, at=(10, 10), to=(12, 10.6))


def test_a_split_vertex_is_shared_with_the_neighbour_it_meets():
    # a slanted split puts its ends on the 1 mm grid, off the straight edge of the grid above
    shapes = split_grid(tiling(1, 1), "M001", [(-850, 139.0625), (1150, 139.0625 - 0.0003)])
    shapes = split_grid(shapes, "M001", [(75, -1000), (75, 1000)])
    corner = shapely.get_coordinates(shapes["M003"]).round(3)
    above = {tuple(c) for c in shapely.get_coordinates(shapes["M002"]).round(3)}
    assert any(tuple(c) in above and 0 < c[0] < 300 for c in corner)
    assert coverage_errors(shapes) == []


def test_snap_prefers_vertices_and_corners_then_edges():
    shapes = tiling()
    assert snap_point((100.4, 99.7), shapes=shapes, tolerance_m=1.0) == ((100.0, 100.0), "vertex")
    house = shapely.box(20, 20, 30, 30)
    assert snap_point((30.2, 29.9), shapes=shapes, footprints=[house], tolerance_m=1.0) == ((30.0, 30.0), "corner")
    (x, y), kind = snap_point((150.0, 100.6), shapes=shapes, tolerance_m=1.0)
    assert kind == "edge" and (x, y) == pytest.approx((150.0, 100.0))
    assert snap_point((150.0, 150.0), shapes=shapes, tolerance_m=1.0) == ((150.0, 150.0), None)


def test_split_merge_delete_keep_coverage():
    shapes = tiling()
    split = split_grid(shapes, "M001", [(40, -5), (40, 105)])
    assert len(split) == 7 and "M007" in split.index
    assert split["M001"].area == pytest.approx(6000) and split["M007"].area == pytest.approx(4000)
    assert coverage_errors(split) == []
    merged = merge_grids(split, ["M002", "M005"])
    assert len(merged) == 6 and merged["M002"].area == pytest.approx(20000)
    assert coverage_errors(merged) == []
    deleted = delete_grid(merged, "M007")  # shared: M001 along its 100 m edge, M004 along its 40 m edge
    assert "M007" not in deleted.index
    assert deleted["M001"].area + deleted["M004"].area == pytest.approx(6000 + 10000 + 4000)
    assert deleted["M001"].area > 6000 and deleted["M004"].area > 10000
    assert coverage_errors(deleted) == []


def test_delete_shares_the_area_among_the_nearest_neighbours():
    shapes = tiling()  # M002 (100-200 x 0-100) has M001 west, M003 east and M005 north
    out = delete_grid(shapes, "M002")
    assert "M002" not in out.index and coverage_errors(out) == []
    gained = {g: out[g].area - shapes[g].area for g in ("M001", "M003", "M005")}
    # each point goes to the nearest shared edge: two trapezoids of 3750 m² and a triangle of 2500 m²
    assert gained == pytest.approx({"M001": 3750, "M003": 3750, "M005": 2500})
    assert out["M001"].contains(shapely.Point(120, 20)) and out["M005"].contains(shapely.Point(150, 90))
    assert all(out[g].geom_type == "Polygon" for g in out.index)
    assert out["M004"].equals(shapes["M004"]) and out["M006"].equals(shapes["M006"])


def test_delete_keeps_footprints_whole():
    shapes = tiling()
    house = shapely.box(120, 60, 150, 80)  # straddles the cut between M001's share and M005's
    out = delete_grid(shapes, "M002", footprints=[house])
    assert coverage_errors(out) == []
    holders = [g for g in out.index if out[g].intersection(house).area > 0.01]
    assert len(holders) == 1 and out[holders[0]].contains(house.buffer(-0.01))


def test_delete_to_one_neighbour_or_refused():
    shapes = tiling()
    out = delete_grid(shapes, "M002", to="M003")
    assert out["M003"].area == pytest.approx(20000) and out["M001"].equals(shapes["M001"])
    with pytest.raises(GridEditError, match="not a neighbour"):
        delete_grid(shapes, "M001", to="M006")
    lonely = gpd.GeoSeries([shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 6)], index=["A", "B"])
    with pytest.raises(GridEditError, match="shares no edge"):
        delete_grid(lonely, "A")


def test_split_and_merge_refusals():
    with pytest.raises(GridEditError, match="does not cut grid M001 in two"):
        split_grid(tiling(), "M001", [(10, 10), (20, 20)])
    with pytest.raises(GridEditError, match="do not form one piece"):
        merge_grids(tiling(), ["M001", "M003"])
    with pytest.raises(GridEditError, match="no grid 'X'"):
        split_grid(tiling(), "X", [(0, 0), (1, 1)])


def test_draw_takes_area_from_siblings():
    shapes = tiling()
    drawn = draw_grid(shapes, shapely.box(50, 50, 150, 150), parent=PARENT, new_id="NEW")
    assert drawn["NEW"].area == pytest.approx(10000)
    assert drawn["M001"].area == pytest.approx(7500)
    assert coverage_errors(drawn) == []
    clipped = draw_grid(shapes, shapely.box(250, 150, 400, 300), parent=PARENT, new_id="EDGE")
    assert clipped["EDGE"].area == pytest.approx(2500)
    everything = draw_grid(shapes, shapely.box(-1, -1, 301, 201), parent=PARENT, new_id="ALL")
    assert list(everything.index) == ["ALL"]


def test_rules_name_the_grid_and_the_area():
    shapes = tiling()
    shapes["M001"] = shapely.box(0, 0, 110, 100)  # overlaps M002 by 1000 m²
    shapes["M006"] = shapely.box(200, 100, 290, 200)  # leaves a 1000 m² gap
    shapes["M003"] = shapely.box(200, 0, 310, 100)  # 1000 m² outside the parent
    found = {(v.rule, v.grid_id): v.area_m2 for v in check_partition(shapes, parent=PARENT, parent_id="P",
                                                                      level="grid")}
    assert found[("overlap", "M001")] == pytest.approx(1000)
    assert found[("gap", "P")] == pytest.approx(1000)
    assert found[("inside_parent", "M003")] == pytest.approx(1000)
    with pytest.raises(GridRuleError, match="overlap: grid M001") as info:
        raise_on_errors(check_partition(shapes, parent=PARENT, parent_id="P", level="grid"))
    assert isinstance(info.value, TwinError) and len(info.value.violations) == 3


def test_tiny_gaps_are_tolerated():
    shapes = tiling()
    shapes["M006"] = shapely.box(200, 100, 299.9999, 200)  # 0.01 m² gap
    assert coverage_errors(shapes) == []


def test_building_rules():
    shapes = tiling()
    buildings = gpd.GeoDataFrame({"building_id": ["cut", "whole", "tower"], "households": [40, 75, 120],
                                  "label_x": [98.0, 150.0, 250.0], "label_y": [50.0, 50.0, 50.0]},
                                 geometry=[shapely.box(95, 40, 105, 60), shapely.box(140, 40, 160, 60),
                                           shapely.box(240, 40, 260, 60)])
    found = check_partition(shapes, parent=PARENT, parent_id="P", level="micro", buildings=buildings,
                            kinds={g: "residential" for g in shapes.index})
    cuts = [v for v in found if v.rule == "building_cut"]
    assert {v.grid_id for v in cuts} == {"M001", "M002"} and all(v.other_id == "cut" for v in cuts)
    assert all(v.area_m2 == pytest.approx(100) for v in cuts)
    warn = {v.grid_id for v in found if v.rule == "households"}
    # M001: 40 households (warning); M002: 75 (fine); M003: one tower of 120 (fine); M004-6: none (warning)
    assert warn == {"M001", "M004", "M005", "M006"}
    assert all(v.severity == "warning" for v in found if v.rule == "households")


def test_edit_session_undo_redo():
    session = EditSession(tiling())
    session.apply("merge", ["M001", "M002"])
    session.apply("split", "M001", [(50, -1), (50, 101)], new_ids=["S"])
    assert "S" in session.shapes.index and len(session.shapes) == 6
    session.undo()
    assert "S" not in session.shapes.index and len(session.shapes) == 5
    session.undo()
    assert len(session.shapes) == 6 and session.shapes["M002"].area == pytest.approx(10000)
    with pytest.raises(GridEditError, match="nothing to undo"):
        session.undo()
    session.redo()
    session.redo()
    assert "S" in session.shapes.index
    with pytest.raises(GridEditError, match="nothing to redo"):
        session.redo()
    with pytest.raises(GridEditError):  # a refused edit changes nothing
        session.apply("merge", ["M003", "S"])
    assert "S" in session.shapes.index and session.can_undo
    with pytest.raises(OptionError, match="edit='rotate'"):
        session.apply("rotate")


def test_changed_and_fresh_ids():
    a = tiling()
    b = merge_grids(a, ["M001", "M002"])
    assert changed_grids(a, b) == (["M001"], [], ["M002"])
    assert fresh_ids(["S01-G1-M009", "S01-G1-M010"], "S01-G1-M009", 2) == ["S01-G1-M011", "S01-G1-M012"]
    assert fresh_ids(["A"], "A", 1) == ["A-2"]


# --------------------------------------------------------------------------- properties

edit_steps = st.lists(st.tuples(st.sampled_from(["split", "merge", "move", "delete", "draw"]),
                                st.integers(0, 10_000), st.floats(0.05, 0.95), st.floats(0.05, 0.95),
                                st.floats(-1.0, 1.0), st.floats(-1.0, 1.0)), min_size=1, max_size=6)


def run_edits(cols: int, rows: int, steps) -> gpd.GeoSeries:
    """Apply the steps of the property test to a tiling, checking every rule after each edit that was made."""
    shapes = tiling(cols, rows)
    for op, pick, u, v, dx, dy in steps:
        ids = list(shapes.index)
        g = ids[pick % len(ids)]
        x0, y0, x1, y1 = shapes[g].bounds
        px, py = x0 + u * (x1 - x0), y0 + v * (y1 - y0)
        try:
            if op == "split":
                angle = np.pi * (dx + 1) / 2
                d = np.array([np.cos(angle), np.sin(angle)]) * 1000
                shapes = split_grid(shapes, g, [(px - d[0], py - d[1]), (px + d[0], py + d[1])])
            elif op == "merge":
                near = list(neighbours(shapes, g))
                if near:
                    shapes = merge_grids(shapes, [g, near[pick % len(near)]])
            elif op == "move":
                xy = shapely.get_coordinates(shapes[g])
                at = xy[pick % len(xy)]
                shapes = move_vertex(shapes, at=at, to=at + np.array([dx, dy]) * 0.5, tolerance_m=0.001,
                                     parent=PARENT, parent_id="P")
            elif op == "delete" and len(shapes) > 1:
                house = shapely.box(px - 4, py - 3, px + 4 + 6 * abs(dy), py + 3)
                shapes = delete_grid(shapes, g, footprints=[house])
            elif op == "draw":
                shapes = draw_grid(shapes, shapely.box(px - 20, py - 15, px + 25 * abs(dx) + 5, py + 10),
                                   parent=PARENT, new_id=f"D{len(ids)}-{pick}")
        except GridEditError:
            continue
        bad = coverage_errors(shapes)
        assert bad == [], (op, [e.message for e in bad])
    return shapes


# Found by random runs: a split's new vertex, put on the 1 mm grid, lay up to 0.7 mm off the edge of the
# neighbour it met, which kept its straight edge: a 0.06 m² sliver of overlap along a 300 m edge.
@example(cols=1, rows=1, steps=[("split", 0, 0.5, 0.6953125, 1.0, 0.0), ("split", 0, 0.25, 0.5, 0.0, 0.0),
                                ("split", 0, 0.5, 0.5, 0.0, 0.0)])
@example(cols=3, rows=1, steps=[("merge", 0, 0.5, 0.5, 0.0, 0.0), ("split", 0, 0.5, 0.6953125, 0.875, 0.0),
                                ("split", 0, 0.25, 0.5, 0.0, 0.0), ("split", 0, 0.125, 0.5, 0.0, 0.0),
                                ("delete", 0, 0.5, 0.5, 0.0, 0.0), ("split", 1, 0.5, 0.5, 0.0, 0.0)])
@example(cols=1, rows=1, steps=[("split", 0, 0.5, 0.375, 0.75, 0.0), ("split", 1, 0.5, 0.5, 0.25, 0.0)])
@settings(max_examples=60, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
@given(cols=st.integers(1, 4), rows=st.integers(1, 3), steps=edit_steps)
def test_edits_keep_siblings_covering_the_parent(cols, rows, steps):
    """After any sequence of splits, merges, vertex moves, deletes and draws, the siblings still
    cover the parent without overlap or gap and lie inside it (an edit may be refused, which changes nothing).

    Random on every run, on a small budget; hunt with more examples by hand, e.g.
    ``pytest tests/twin/grids/test_gridedit.py -k covering --hypothesis-seed=7`` after raising ``max_examples``.
    """
    run_edits(cols, rows, steps)


def test_edit_session_knows_the_parent():
    session = EditSession(tiling(), parent=PARENT, parent_id="P")
    with pytest.raises(GridEditError, match="outline of the parent P"):
        session.apply("move_vertex", at=(100, 0), to=(100, 5))
    assert not session.can_undo
    session.apply("move_vertex", at=(100, 100), to=(101, 101))
    assert session.can_undo
