"""Fuzz target: the basemap reader and ingest (GeoJSON with OSM-style tags written to files)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import strategies as st

from bench.fuzzing.footprints import CENTRE, documents, geometries, values
from bench.fuzzing.harness import INJECTIONS, Target, file_session
from ingest.basemap import ingest_basemap, read_basemap_layers
from twin.store.store import Store

TAGS = {"highway": ["primary", "residential", "footway", "", "yes"], "waterway": ["river", "stream", "x"],
        "natural": ["water", "wood", "tree"], "landuse": ["reservoir", "grass", "forest", "residential"],
        "leisure": ["park", "pitch"], "kind": ["road", "water", "green", "lake", ""]}
tags = st.dictionaries(st.sampled_from([*TAGS, "width", "name", "id", *INJECTIONS[:4]]),
                       st.one_of(st.sampled_from([v for vs in TAGS.values() for v in vs]), values,
                                 st.sampled_from(["7 m", "-3", "1e309", "0", "wide"])), max_size=4)


@st.composite
def lines(draw) -> dict:
    """A street-like line near the district, in longitude and latitude."""
    lon, lat = CENTRE[0] + draw(st.floats(-0.01, 0.01)), CENTRE[1] + draw(st.floats(-0.01, 0.01))
    d = draw(st.floats(-1e-3, 1e-3))
    return {"type": "LineString", "coordinates": [[lon, lat], [lon + d, lat + draw(st.floats(-1e-3, 1e-3))]]}


tagged = st.builds(lambda fs: json.dumps({"type": "FeatureCollection", "features": fs}, allow_nan=True),
                   st.lists(st.builds(lambda g, p: {"type": "Feature", "geometry": g, "properties": p},
                                      st.one_of(lines(), lines(), geometries), tags), max_size=5))
inputs = st.fixed_dictionaries({"text": st.one_of(tagged, tagged, documents),
                                "kind": st.sampled_from([None, "road", "green"]),
                                "source": st.sampled_from(["fuzz", "fuzz'; DROP TABLE basemap; --"])})


def _ingest(store: Store, path: Path, value: dict) -> None:
    """Read the file, and ingest it in one transaction on the store."""
    layers = read_basemap_layers(path)
    with store.transaction():
        ingest_basemap(store, layers, source=value["source"], where=str(path), kind=value["kind"])


session = file_session(lambda value: "ground.geojson",
                       lambda path, value: path.write_text(value["text"], encoding="utf-8", errors="surrogatepass"),
                       _ingest)

SANE_BASEMAP = """SELECT count(*) FROM basemap WHERE kind NOT IN ('road', 'water', 'green') OR ST_IsEmpty(geometry)
                  OR ST_GeometryType(geometry) NOT IN ('POLYGON', 'MULTIPOLYGON') OR NOT ST_IsValid(geometry)"""
TARGET = Target("ingest.basemap", inputs, ("basemap", "meta"), session, sane=SANE_BASEMAP)
