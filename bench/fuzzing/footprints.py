"""Fuzz target: the footprint reader and ingest (GeoJSON text and feature properties written to files)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import strategies as st

from bench.fuzzing.harness import INJECTIONS, SANE_BUILDINGS, Target, file_session, texts
from ingest.footprints import ingest_footprints, read_footprints
from twin.store.store import Store

CENTRE = (113.72, 34.76)  # the small demo's origin, longitude and latitude

numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False), st.floats(-5, 300),
                    st.sampled_from([0, -1, 1e308, -1e308, 1e-320, 2**63, -(2**63) - 1]))
values = st.one_of(st.none(), st.booleans(), numbers, texts(max_size=20),
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
PROPERTY_NAMES = ("id", "osm_id", "@id", "building_id", "fid", "height", "building:levels", "levels", "min_height",
                  "name", "name:zh", "addr:street", "addr:housenumber", "address")
properties = st.dictionaries(st.one_of(st.sampled_from(PROPERTY_NAMES), st.sampled_from(INJECTIONS[:12]),
                                       st.text(min_size=1, max_size=10)), values, max_size=6)


@st.composite
def rings(draw) -> list:
    """A ring near the district (a square, a bow-tie, a sliver, a few random points), or a far or broken one."""
    kind = draw(st.sampled_from(["square", "bowtie", "random", "far", "tiny", "open"]))
    lon = CENTRE[0] + draw(st.floats(-0.02, 0.02))
    lat = CENTRE[1] + draw(st.floats(-0.02, 0.02))
    d = draw(st.floats(1e-5, 5e-4))
    if kind == "square":
        pts = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d]]
    elif kind == "bowtie":
        pts = [[lon, lat], [lon + d, lat + d], [lon + d, lat], [lon, lat + d]]
    elif kind == "tiny":
        pts = [[lon, lat], [lon + 1e-12, lat], [lon, lat + 1e-12]]
    elif kind == "far":
        pts = [[draw(st.floats(-180, 180)), draw(st.floats(-90, 90))] for _ in range(3)]
    else:
        pts = [[lon + draw(st.floats(-d, d)), lat + draw(st.floats(-d, d))] for _ in range(draw(st.integers(0, 6)))]
    if kind != "open" and pts:
        pts.append(pts[0])
    return pts


coords_junk = st.one_of(st.none(), st.just([]), st.just([[]]), values,
                        st.lists(st.lists(numbers, max_size=4), max_size=4))
geometries = st.one_of(
    st.builds(lambda r: {"type": "Polygon", "coordinates": [r]}, rings()),
    st.builds(lambda a, b: {"type": "Polygon", "coordinates": [a, b]}, rings(), rings()),
    st.builds(lambda a, b: {"type": "MultiPolygon", "coordinates": [[a], [b]]}, rings(), rings()),
    st.builds(lambda r: {"type": "LineString", "coordinates": r}, rings()),
    st.builds(lambda r: {"type": "Point", "coordinates": r[0] if r else []}, rings()),
    st.builds(lambda r: {"type": "GeometryCollection", "geometries": [{"type": "Polygon", "coordinates": [r]}]},
              rings()),
    st.builds(lambda t, c: {"type": t, "coordinates": c},
              st.one_of(st.sampled_from(["Polygon", "MultiPolygon", "Point", "Circle", ""]), texts(max_size=8)),
              coords_junk),
    st.none(),
)
features = st.builds(lambda g, p: {"type": "Feature", "geometry": g, "properties": p}, geometries, properties)
collections = st.builds(lambda fs, crs: {"type": "FeatureCollection", "features": fs, **crs},
                        st.lists(features, max_size=5),
                        st.sampled_from([{}, {"crs": {"type": "name", "properties": {"name": "EPSG:4547"}}},
                                         {"crs": {"type": "name",
                                                  "properties": {"name": "'; DROP TABLE residents; --"}}},
                                         {"crs": None}]))


@st.composite
def good_collections(draw) -> dict:
    """Squares near the district with fuzzed ids, names, addresses and heights: mostly taken in."""
    feats = []
    for _ in range(draw(st.integers(1, 3))):
        lon, lat = CENTRE[0] + draw(st.floats(-0.01, 0.01)), CENTRE[1] + draw(st.floats(-0.01, 0.01))
        d = draw(st.floats(5e-5, 3e-4))
        ring = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
        props = {"height": draw(st.one_of(st.floats(1, 200), values)), "name": draw(texts(max_size=20)),
                 "id": draw(st.one_of(texts(max_size=20), st.integers(), st.floats(allow_nan=False))),
                 "addr:street": draw(texts(max_size=20)), **draw(properties)}
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props})
    return {"type": "FeatureCollection", "features": feats}


def _text(doc, cut: int | None) -> str:
    text = json.dumps(doc, ensure_ascii=False, allow_nan=True)
    return text if cut is None else text[:cut]


documents = st.one_of(
    st.builds(_text, good_collections(), st.none()),
    st.builds(_text, good_collections(), st.none()),
    st.builds(_text, collections, st.none()),
    st.builds(_text, collections, st.integers(0, 400)),  # truncated files
    texts(max_size=200),
    st.builds(json.dumps, st.one_of(st.lists(st.integers()), st.dictionaries(st.text(max_size=5), values))),
    st.sampled_from(['{"type": "FeatureCollection"}', '{"type": "FeatureCollection", "features": null}',
                     '{"type": "Feature"}', "[]", "{}", "", "\x00\x00", '{"type": "FeatureCollection", "features": '
                     '[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[NaN, 1], [2, 3], '
                     '[4, 5], [NaN, 1]]]}, "properties": {}}]}']),
)
inputs = st.fixed_dictionaries({"text": documents, "suffix": st.sampled_from([".geojson", ".json"]),
                                "default_height": st.sampled_from([None, 10.0, 3.0]),
                                "source": st.sampled_from(["fuzz", "fuzz'; DROP TABLE buildings; --", "fuzz%_"])})


def _ingest(store: Store, path: Path, value: dict) -> None:
    """Read the file, and ingest it in one transaction on the store."""
    features = read_footprints(path)
    with store.transaction():
        ingest_footprints(store, features, source=value["source"], where=str(path),
                          default_height=value["default_height"])


session = file_session(lambda value: "footprints" + value["suffix"],
                       lambda path, value: path.write_text(value["text"], encoding="utf-8", errors="surrogatepass"),
                       _ingest)


TARGET = Target("ingest.footprints", inputs, ("buildings", "meshes", "meta", "elements"), session, sane=SANE_BUILDINGS)
