"""The grid bench's baseline counts what ours counts, and its cold runs work, on the small demo."""

from __future__ import annotations

import pandas as pd

from bench.grids import (BUILDINGS_WITH_COUNTS, grids_after, one_edit, point_frame, sjoin_figures, time_cold,
                         write_edit)
from twin.grids.gridversions import current_grids
from twin.grids.reassign import figures_by_sjoin, load_assets
from twin.store.store import Store


def test_the_baseline_with_residents_counted_per_building_gives_the_per_resident_figures(small_demo):
    with Store(small_demo, read_only=True) as store:
        con = store.con
        micro = current_grids(con, level="micro")
        assets = load_assets(con)
        _, _, changed = one_edit(con, micro, assets)
        buildings = con.execute(BUILDINGS_WITH_COUNTS).df()
        residents = con.execute("SELECT building_id, household_id FROM residents").df()
    grids = grids_after(micro, changed)
    cameras, cases = point_frame(assets.cameras, "camera_id"), point_frame(assets.cases, "case_id")
    fair = sjoin_figures(grids, point_frame(buildings, "building_id", "households", "residents"), cameras, cases)
    _, per_resident = figures_by_sjoin(grids, point_frame(buildings, "building_id"), residents, cameras, cases)
    assert fair["residents"].sum() == len(residents)
    pd.testing.assert_frame_equal(fair, per_resident, check_names=False)


def test_the_cold_runs_follow_the_edit_in_fresh_processes(demo_copy, tmp_path):
    with Store(demo_copy, read_only=True) as store:
        micro = current_grids(store.con, level="micro")
        assets = load_assets(store.con)
        parent, after, changed = one_edit(store.con, micro, assets)
    edit = write_edit(tmp_path / "edit.json", parent, after, changed)
    ours = time_cold("ours", demo_copy, edit, 1)
    baseline = time_cold("baseline", demo_copy, edit, 1)
    assert ours["grids_affected"] >= len(changed) and ours["errors"] == 0
    assert baseline["grids"] == len(micro)
    assert ours["process_s"] > ours["open_s"] + ours["read_s"] + ours["compute_s"]
