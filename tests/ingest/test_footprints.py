"""Footprint ingest on real data: counts, heights, CRS, precision, idempotence, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyproj
import pytest
import shapely

from tests.conftest import BUBENEC, LUJIAZUI, file_digest
from ingest.footprints import ingest_footprints, read_footprints
from twin.errors import CRSError, InputError
from twin.store.store import Store, open_for_command


def ingest(path, db, **options):
    options.setdefault("source", path.stem)
    with open_for_command(db) as store:
        return ingest_footprints(store, read_footprints(path, layer=options.pop("layer", None)),
                                 where=str(path), **options)


def test_lujiazui_becomes_1450_buildings_with_shanghai_tower_intact(lujiazui_store):
    with Store(lujiazui_store, read_only=True) as store:
        assert store.count("buildings") == 1450
        assert store.count("meshes") == 1450
        assert store.district.crs == "EPSG:32651"  # the data's UTM zone
        tower = store.con.execute("SELECT height, base_z, height_source, name FROM buildings "
                                  "WHERE source_id = '165792123'").fetchone()
        assert tower == (632.0, 0.0, "height", "上海中心大厦")
        n_vertices, bbox_top = store.con.execute("SELECT n_vertices, bbox_zmax FROM meshes "
                                                 "WHERE building_id = 'lujiazui:165792123'").fetchone()
        assert bbox_top == pytest.approx(632.0, abs=1e-3) and n_vertices > 0


def test_summary_reports_merges_by_source_id(tmp_path):
    summary = ingest(LUJIAZUI, tmp_path / "s.duckdb", default_height=10.0)
    assert summary["features_read"] == 1572 and summary["buildings"] == 1450
    assert len(summary["merged"]) == 114 and all(m["pieces"] >= 2 for m in summary["merged"])
    assert summary["inserted"] == 1450 and summary["updated"] == 0
    json.dumps(summary)  # JSON-ready


def test_round_trip_to_the_source_crs_within_one_centimetre(lujiazui_store):
    source = read_footprints(LUJIAZUI)
    single = source[~source["id"].duplicated(keep=False)]
    geod = pyproj.Geod(ellps="WGS84")
    with Store(lujiazui_store, read_only=True) as store:
        district = store.district
        rows = store.con.execute("SELECT source_id, vertices FROM buildings JOIN meshes USING (building_id)").fetchall()
    back = pyproj.Transformer.from_crs(district.crs, "EPSG:4326", always_xy=True)
    worst = 0.0
    for source_id, blob in rows:
        match = single[single["id"].astype(str) == source_id]
        if match.empty:
            continue
        verts = np.frombuffer(blob, dtype="<f4").reshape(-1, 3).astype(np.float64)
        lon, lat = back.transform(verts[:, 0] + district.origin[0], verts[:, 1] + district.origin[1])
        src = shapely.get_coordinates(match.geometry.iloc[0])
        # distance from each source vertex to the nearest round-tripped mesh vertex, in metres
        _, _, d = geod.inv(np.repeat(src[:, 0], len(lon)), np.repeat(src[:, 1], len(lon)),
                           np.tile(lon, len(src)), np.tile(lat, len(src)))
        worst = max(worst, d.reshape(len(src), len(lon)).min(axis=1).max())
    assert 0 < worst <= 0.01


def test_reingest_is_idempotent(lujiazui_copy):
    def snapshot():
        with Store(lujiazui_copy, read_only=True) as s:
            return s.con.execute("SELECT b.building_id, b.height, ST_AsText(b.footprint), m.vertices "
                                 "FROM buildings b JOIN meshes m USING (building_id) ORDER BY 1").fetchall()

    before = snapshot()
    summary = ingest(LUJIAZUI, lujiazui_copy, source="lujiazui", default_height=10.0)
    assert summary["inserted"] == 0 and summary["updated"] == 1450
    assert snapshot() == before


def test_bubenec_needs_a_default_height_and_ingests_with_it(tmp_path):
    db = tmp_path / "prague.duckdb"
    with pytest.raises(InputError, match=r"144 of 144 buildings have no height.*--default-height"):
        ingest(BUBENEC, db, layer="buildings")
    assert not db.exists()  # a failed first command creates no store
    summary = ingest(BUBENEC, db, layer="buildings", default_height=12.0)
    assert summary["buildings"] == 144 and summary["source_crs"] == "EPSG:3857"
    assert summary["crs"] == "EPSG:32633"  # Prague's UTM zone, not web mercator
    assert summary["height_sources"] == {"default": 144}


def test_geopackage_with_several_layers_picks_buildings(tmp_path):
    assert len(read_footprints(BUBENEC)) == 144


def test_shapefile_and_geoparquet_read_like_geojson(tmp_path):
    f = read_footprints(LUJIAZUI)[["id", "height", "geometry"]].head(50)
    f.to_file(tmp_path / "b.shp")
    f.to_parquet(tmp_path / "b.parquet")
    for path in (tmp_path / "b.shp", tmp_path / "b.parquet"):
        summary = ingest(path, tmp_path / f"{path.suffix[1:]}.duckdb", default_height=10.0)
        assert summary["buildings"] == f["id"].nunique()


def test_a_file_without_crs_needs_source_crs(tmp_path):
    features = read_footprints(LUJIAZUI).head(20)[["id", "height", "geometry"]].set_crs(None, allow_override=True)
    db = tmp_path / "x.duckdb"
    with pytest.raises(CRSError, match=r"no CRS.*--source-crs"), open_for_command(db) as store:
        ingest_footprints(store, features, source="x", where="nocrs.geojson", default_height=5.0)
    assert not db.exists()
    with open_for_command(db) as store:
        summary = ingest_footprints(store, features, source="x", where="nocrs.geojson", default_height=5.0,
                                    source_crs="EPSG:4326")
    assert summary["buildings"] == features["id"].nunique()


@pytest.mark.parametrize("content, message", [
    (b'{"type": "FeatureCollection", "features": [', "cannot read it as GeoJSON"),
    (b"PK\x03\x04 not really", "cannot read it as GeoPackage"),
])
def test_a_broken_file_is_an_error_and_leaves_the_store_unchanged(lujiazui_copy, tmp_path, content, message):
    suffix = ".geojson" if b"Feature" in content else ".gpkg"
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(content)
    digest = file_digest(lujiazui_copy)
    with pytest.raises(InputError, match=message) as err:
        ingest(broken, lujiazui_copy, default_height=10.0)
    assert str(broken) in str(err.value)
    assert file_digest(lujiazui_copy) == digest


def test_a_failure_after_writing_rolls_everything_back(lujiazui_copy, monkeypatch):
    import twin.buildings

    def fail(*args, **kwargs):
        raise OSError("disk full")

    digest = file_digest(lujiazui_copy)
    monkeypatch.setattr(twin.buildings, "insert_meshes", fail)  # the buildings are written, then this fails
    with pytest.raises(OSError, match="disk full"):
        ingest(LUJIAZUI, lujiazui_copy, source="again", default_height=10.0)
    assert file_digest(lujiazui_copy) == digest


def test_data_far_from_the_district_is_refused(lujiazui_copy, tmp_path):
    other = tmp_path / "other.duckdb"
    shutil.copy(lujiazui_copy, other)
    digest = file_digest(other)
    # Prague is 8,000 km from this Shanghai store's origin: refused after the cleaning.
    with pytest.raises(CRSError, match=r"km from the district origin"):
        ingest(BUBENEC, other, layer="buildings", default_height=10.0)
    assert file_digest(other) == digest
    with Store(other, read_only=True) as store:
        assert store.count("buildings") == 1450
