"""Fuzz the footprint reader and ingest: GeoJSON text and feature properties written to files, into a store copy."""

from __future__ import annotations

import json
import math

from bench.fuzzing.footprints import TARGET
from bench.fuzzing.harness import fuzz_a_copy, replay
from tests.conftest import copy_of
from twin.store.store import Store

EXAMPLES = 200


def test_footprint_files_are_ingested_or_refused_without_a_trace(small_demo, tmp_path):
    tally = fuzz_a_copy(TARGET, small_demo, tmp_path, max_examples=EXAMPLES)
    assert tally.ok > 0 and tally.refused > 0 and not math.isnan(tally.seconds)


def _fc(geometry, **props) -> str:
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": geometry, "properties": props}]}, allow_nan=True)


SQUARE = {"type": "Polygon", "coordinates": [[[113.72, 34.76], [113.7203, 34.76], [113.7203, 34.7603],
                                              [113.72, 34.7603], [113.72, 34.76]]]}
FOUND = [  # inputs fuzzing found that crashed (a GEOS or pandas error instead of an InputError)
    _fc({"type": "Polygon", "coordinates": [[[float("nan"), 1], [2, 3], [4, 5], [float("nan"), 1]]]}),
    _fc({"type": "Polygon", "coordinates": [[[113.72, 34.76]]]}),
    _fc({"type": "Polygon", "coordinates": [[], [[113.72, 34.76], [113.73, 34.76], [113.72, 34.77], [113.72, 34.76]]]}),
    _fc({"type": "MultiPolygon", "coordinates": [[[[113.72, 34.76], [113.72, 34.76]]]]}),
    _fc(SQUARE, **{"building:levels": 1e300}),
    _fc(SQUARE, id=1e19, height=20),
    _fc(SQUARE, min_height=1e300, **{"building:levels": 2}),
    # Half the globe: projected into the district's CRS, its points are infinite.
    _fc({"type": "Polygon", "coordinates": [[[0.0, -89.0], [-76.37, 26.3], [-169.82, -0.33], [0.0, -89.0]]]}),
]


def test_what_fuzzing_found_is_refused_or_taken_sensibly(small_demo, tmp_path):
    values = [{"text": text, "suffix": ".geojson", "default_height": 10.0, "source": "found"} for text in FOUND]
    tally = replay(TARGET, copy_of(small_demo, tmp_path), tmp_path, values)
    assert tally.refused == 5 and tally.ok == 3
    with Store(tmp_path / "store.duckdb", read_only=True) as store:
        rows = store.con.execute("SELECT source_id, height, floors FROM buildings WHERE source = 'found' "
                                 "ORDER BY source_id").fetchall()
    # Implausible levels and bases are ignored (and reported) like implausible heights; a huge id stays text.
    assert rows == [("1e+19", 20.0, 7), ("feature-1", 6.0, 2)]  # the last of three features numbered feature-1
