"""Cleaning footprints: ids, repairs, merges, splits, skips and heights."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from twin.errors import InputError
from twin.geo.footprints import parse_lengths, prepare_footprints


def frame(rows: list[dict]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs="EPSG:32651")


def test_pieces_sharing_an_id_become_one_building():
    f = frame([
        {"id": 7, "height": 30.0, "geometry": shapely.box(0, 0, 10, 10)},
        {"id": 7, "height": None, "geometry": shapely.box(10, 0, 20, 10)},
        {"id": 8, "height": 12.0, "geometry": shapely.box(40, 0, 50, 10)},
    ])
    b, report = prepare_footprints(f, where="t")
    assert sorted(b.source_id) == ["7", "8"]
    merged = b[b.source_id == "7"].iloc[0]
    assert merged.geometry.area == pytest.approx(200.0)
    assert merged.height == 30.0 and merged.height_source == "height"
    assert report.merged == [{"source_id": "7", "pieces": 2, "reason": "2 features share this id; merged into one building"}]


def test_each_part_of_a_multipolygon_is_its_own_building():
    multi = shapely.MultiPolygon([shapely.box(0, 0, 5, 5), shapely.box(20, 0, 25, 5)])
    b, report = prepare_footprints(frame([{"id": "w1", "height": 9.0, "geometry": multi}]), where="t")
    assert sorted(b.source_id) == ["w1-1", "w1-2"]
    assert report.split[0]["source_id"] == "w1" and report.split[0]["parts"] == ["w1-1", "w1-2"]


def test_invalid_rings_are_repaired_and_reported():
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    b, report = prepare_footprints(frame([{"id": 1, "height": 5.0, "geometry": bowtie}]), where="t")
    assert b.geometry.is_valid.all() and len(b) == 2  # the two triangles of the bow tie
    assert report.repaired[0]["source_id"] == "1" and "Self-intersection" in report.repaired[0]["reason"]
    assert b.geometry.area.sum() == pytest.approx(50.0)


def test_empty_point_and_line_geometries_are_skipped_with_reasons():
    f = frame([
        {"id": 1, "height": 5.0, "geometry": shapely.Point(0, 0)},
        {"id": 2, "height": 5.0, "geometry": shapely.LineString([(0, 0), (1, 1)])},
        {"id": 3, "height": 5.0, "geometry": None},
        {"id": 4, "height": 5.0, "geometry": shapely.box(0, 0, 3, 3)},
    ])
    b, report = prepare_footprints(f, where="t")
    assert list(b.source_id) == ["4"]
    assert {s["source_id"]: s["reason"] for s in report.skipped} == {
        "1": "Point is not a polygon", "2": "LineString is not a polygon", "3": "empty geometry"}


def test_height_levels_and_default_in_that_order():
    f = frame([
        {"id": 1, "height": "21 m", "building:levels": 4, "geometry": shapely.box(0, 0, 5, 5)},
        {"id": 2, "height": None, "building:levels": 4, "geometry": shapely.box(10, 0, 15, 5)},
        {"id": 3, "height": None, "building:levels": None, "geometry": shapely.box(20, 0, 25, 5)},
    ])
    b, report = prepare_footprints(f, where="t", storey_height=3.5, default_height=7.0)
    got = b.set_index("source_id")
    assert got.loc["1", ["height", "height_source"]].tolist() == [21.0, "height"]
    assert got.loc["2", ["height", "height_source", "floors"]].tolist() == [14.0, "levels", 4]
    assert got.loc["3", ["height", "height_source"]].tolist() == [7.0, "default"]
    assert report.height_sources == {"height": 1, "levels": 1, "default": 1}


def test_missing_heights_without_a_default_is_an_error_that_counts_them():
    f = frame([{"id": i, "height": 10.0 if i == 0 else None, "geometry": shapely.box(i * 10, 0, i * 10 + 5, 5)}
               for i in range(4)])
    with pytest.raises(InputError, match=r"3 of 4 buildings have no height.*--default-height"):
        prepare_footprints(f, where="t")


def test_min_height_lifts_the_part_off_the_ground():
    f = frame([{"id": 1, "height": 60.0, "min_height": 45.0, "geometry": shapely.box(0, 0, 5, 5)},
               {"id": 2, "height": None, "min_height": 45.0, "building:levels": 2, "geometry": shapely.box(9, 0, 14, 5)}])
    b, _ = prepare_footprints(f, where="t")
    got = b.set_index("source_id")
    assert got.loc["1", ["base_z", "height"]].tolist() == [45.0, 15.0]
    assert got.loc["2", ["base_z", "height"]].tolist() == [45.0, 6.0]


def test_unknown_attribute_names_the_available_ones():
    with pytest.raises(InputError, match=r"no attribute 'hoehe'.*id, height"):
        prepare_footprints(frame([{"id": 1, "height": 3.0, "geometry": shapely.box(0, 0, 1, 1)}]),
                           where="t", height_attr="hoehe")


def test_parse_lengths_reads_osm_text():
    got = parse_lengths(pd.Series(["12", "12.5 m", "7m", "tall", None, "-3", "0"], dtype="object"))
    np.testing.assert_array_equal(got.to_numpy(), [12.0, 12.5, 7.0, np.nan, np.nan, np.nan, np.nan])


def test_repeated_points_are_removed_as_geos_removes_them():
    from twin.geo.footprints import _without_repeated_points

    holed = shapely.Polygon([(0, 0), (9, 0), (9, 9), (0, 9)], [[(2, 2), (2, 2), (4, 2), (4, 4), (2, 4)]])
    geoms = np.array([
        shapely.box(0, 0, 5, 5),
        shapely.Polygon([(0, 0), (5, 0), (5, 0), (5, 5), (0, 5)]),  # repeated corner
        holed,  # repeated point in the hole
        shapely.Polygon([(5, 5), (8, 5), (8, 8)]),  # starts where the previous ring ends: not a repeat
        shapely.Polygon([(0, 0, 1), (5, 0, 1), (5, 0, 2), (5, 5, 1)]),  # equal in x and y only
        shapely.Polygon(),
        None,
        shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.Polygon([(2, 2), (3, 2), (3, 2), (3, 3)])]),
    ], dtype=object)
    got = _without_repeated_points(geoms)
    want = shapely.remove_repeated_points(geoms)
    assert [None if g is None else shapely.to_wkb(g) for g in got] == \
           [None if g is None else shapely.to_wkb(g) for g in want]
    assert got[0] is geoms[0]  # nothing to remove: the geometry is kept as it is
    assert shapely.get_num_coordinates(got[1]) == 5 and shapely.get_num_coordinates(got[2]) == 10
