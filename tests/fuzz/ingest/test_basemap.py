"""Fuzz the basemap reader and ingest: OSM-tagged GeoJSON written to files, into a store copy."""

from __future__ import annotations

import math

from bench.fuzzing.basemap import TARGET
from bench.fuzzing.harness import fuzz_a_copy

EXAMPLES = 150


def test_basemap_files_are_ingested_or_refused_without_a_trace(small_demo, tmp_path):
    tally = fuzz_a_copy(TARGET, small_demo, tmp_path, max_examples=EXAMPLES)
    assert tally.ok > 0 and tally.refused > 0 and not math.isnan(tally.seconds)
