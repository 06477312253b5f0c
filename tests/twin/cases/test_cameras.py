"""Camera view sectors and the buildings they see."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import small_demo_in
from twin.cases.cameras import CameraSight, cameras_per_building, cameras_seeing, view_sectors
from twin.store.store import Store


@given(x=st.floats(-1e5, 1e5), y=st.floats(-1e5, 1e5), heading=st.floats(0, 360), fov=st.floats(5, 170),
       reach=st.floats(1, 300))
def test_a_sector_has_the_area_of_its_angle_and_points_along_its_heading(x, y, heading, fov, reach):
    sector, = view_sectors(np.array([x]), np.array([y]), heading_deg=np.array([heading]), fov_deg=np.array([fov]),
                           range_m=np.array([reach]))
    assert sector.is_valid
    exact = np.pi * reach ** 2 * fov / 360
    assert 0.97 * exact <= sector.area <= exact  # the arc is a polyline inside the circle
    ahead = shapely.Point(x + 0.5 * reach * np.sin(np.radians(heading)), y + 0.5 * reach * np.cos(np.radians(heading)))
    behind = shapely.Point(x - 0.5 * reach * np.sin(np.radians(heading)), y - 0.5 * reach * np.cos(np.radians(heading)))
    assert sector.covers(ahead) and not sector.covers(behind)


def test_the_cameras_that_see_a_building_agree_with_the_district_counts(small_demo):
    with Store(small_demo, read_only=True) as store:
        counts = cameras_per_building(store.con)
        assert len(counts) == store.count("buildings") and counts.sum() > 0
        for building_id in [counts.idxmax(), counts.index[0], counts[counts == 0].index[0]]:
            seeing = cameras_seeing(store.con, building_id)
            assert len(seeing) == counts[building_id]
            assert (np.diff(seeing["distance_m"].to_numpy()) >= 0).all(), "nearest first"
            mounted = store.con.execute("SELECT camera_id FROM cameras WHERE building_id = ?",
                                        [building_id]).df()["camera_id"]
            assert not set(mounted) & set(seeing["camera_id"]), "a camera does not count for its own wall"
        assert cameras_seeing(store.con, "no-such-building").empty


def test_the_cameras_held_in_memory_see_what_the_store_says_for_every_building(backend, request):
    # A served process on PostgreSQL answers a click's cameras from memory (scenes.shared.SharedDistrict.sight).
    with Store(small_demo_in(backend, request), read_only=True) as store:
        sight = CameraSight.read(store.con)
        counts = cameras_per_building(store.con)  # every footprint against every sector, another way
        rows = store.con.execute("SELECT building_id, ST_AsWKB(footprint) FROM buildings ORDER BY building_id").fetchall()
        seen = 0
        for building_id, wkb in rows:
            held = sight.seeing(building_id, shapely.from_wkb(bytes(wkb)))
            read = cameras_seeing(store.con, building_id)
            assert list(held.itertuples(index=False)) == list(read.itertuples(index=False)), building_id
            assert len(held) == counts[building_id], building_id
            seen += len(held)
        assert seen > 0
