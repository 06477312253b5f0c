"""Basemap ingest: OSM-tagged GeoJSON, GeoPackage layers (real Bubenec streets), re-ingest, precision, bad input."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely

from ingest.basemap import ingest_basemap, read_basemap_layers
from tests.conftest import BUBENEC, file_digest
from tests.test_cli import twin
from twin.errors import CRSError, InputError
from twin.geo.basemap import load_basemap
from twin.store.store import Store, open_for_command

LON, LAT = 113.72, 34.76  # Zhengdong: the store's district is its UTM zone, 49N
M = 1 / 111_000  # about a metre of latitude, in degrees
MX = M / np.cos(np.radians(LAT))  # about a metre of longitude there


def ingest(path, db, **options):
    layers = read_basemap_layers(path, layers=options.pop("layers", None))
    with open_for_command(db) as store:
        return ingest_basemap(store, layers, source=options.pop("source", path.stem), where=str(path), **options)


def line(dx0, dy0, dx1, dy1):
    return shapely.LineString([(LON + dx0 * MX, LAT + dy0 * M), (LON + dx1 * MX, LAT + dy1 * M)])


def square(dx, dy, side):
    return shapely.box(LON + dx * MX, LAT + dy * M, LON + (dx + side) * MX, LAT + (dy + side) * M)


def osm_layer() -> gpd.GeoDataFrame:
    """OSM-style features: tags as columns, as an Overpass or QuickOSM export has them."""
    rows = [
        ("way/1", "Main Road", dict(highway="primary"), line(0, 0, 0, 400)),
        ("way/2", "Side Street", dict(highway="residential", width="9 m"), line(0, 100, 300, 100)),
        ("way/3", "Blue River", dict(waterway="river"), line(-200, 0, -200, 400)),
        ("way/4", "Pond", dict(natural="water"), square(100, 200, 40)),
        ("way/5", None, dict(landuse="reservoir"), square(200, 200, 30)),
        ("way/6", "People's Park", dict(leisure="park"), square(100, 300, 50)),
        ("way/7", None, dict(landuse="grass"), square(200, 300, 20)),
        ("way/8", None, dict(natural="wood"), square(300, 300, 20)),
        ("way/9", None, dict(landuse="forest", kind="road"), square(300, 0, 20)),  # the kind column wins
        ("way/10", None, dict(amenity="bench"), line(50, 50, 52, 50)),  # no ground tag: left out
        ("node/11", None, dict(highway="traffic_signals"), shapely.Point(LON, LAT)),  # a point: left out
    ]
    tags = sorted({k for _, _, t, _ in rows for k in t})
    frame = {"id": [r[0] for r in rows], "name": [r[1] for r in rows]}
    frame.update({k: [r[2].get(k) for r in rows] for k in tags})
    return gpd.GeoDataFrame(frame, geometry=[r[3] for r in rows], crs="EPSG:4326")


@pytest.fixture
def osm_geojson(tmp_path):
    path = tmp_path / "osm.geojson"
    osm_layer().to_file(path, driver="GeoJSON")
    return path


def rows_of(db):
    with Store(db, read_only=True) as store:
        return load_basemap(store.con).set_index("feature_id")


def test_osm_tags_give_each_feature_its_kind_and_lines_their_width(osm_geojson, tmp_path):
    db = tmp_path / "s.duckdb"
    summary = ingest(osm_geojson, db)
    assert summary["kinds"] == {"road": 3, "water": 3, "green": 3}
    assert summary["layers"]["osm"]["untagged"] == 1 and summary["layers"]["osm"]["points"] == 1
    json.dumps(summary)
    rows = rows_of(db)
    kinds = rows["kind"].rename(lambda f: f.rsplit(":", 1)[1]).to_dict()
    assert kinds == {"way/1": "road", "way/2": "road", "way/3": "water", "way/4": "water", "way/5": "water",
                     "way/6": "green", "way/7": "green", "way/8": "green", "way/9": "road"}
    assert rows.loc["osm:osm:way/6", "name"] == "People's Park"
    assert set(shapely.get_type_id(rows.geometry.values)) <= {3, 6}, "only polygons are stored"
    area = rows.geometry.area.rename(lambda f: f.rsplit(":", 1)[1])
    # A 400 m primary is buffered to 16 m; a residential street to its own 9 m; a river to 20 m (round caps add
    # a little): so the areas are the lengths times those widths, give or take a few per cent.
    assert area["way/1"] == pytest.approx(400 * 16 + np.pi * 8 ** 2, rel=0.03)
    assert area["way/2"] == pytest.approx(300 * 9 + np.pi * 4.5 ** 2, rel=0.03)
    assert area["way/3"] == pytest.approx(400 * 20 + np.pi * 10 ** 2, rel=0.03)
    assert area["way/6"] == pytest.approx(50 * 50, rel=0.03)


def test_coordinates_are_kept_to_the_centimetre(osm_geojson, tmp_path):
    db = tmp_path / "s.duckdb"
    ingest(osm_geojson, db)
    with Store(db, read_only=True) as store:
        crs = store.district.crs
    pond = rows_of(db).loc["osm:osm:way/4"].geometry
    expected = shapely.get_coordinates(square(100, 200, 40))
    x, y = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(expected[:, 0], expected[:, 1])
    got = shapely.get_coordinates(pond)
    # every corner of the source square is a vertex of the stored one, within a centimetre
    worst = max(np.min(np.hypot(got[:, 0] - px, got[:, 1] - py)) for px, py in zip(x, y))
    assert worst <= 0.01
    assert np.allclose(got, np.round(got, 2), rtol=0, atol=1e-6), "stored on the centimetre grid"


def test_a_geopackage_gives_all_its_layers_or_the_chosen_ones(tmp_path):
    layer = osm_layer()
    gpkg = tmp_path / "city.gpkg"
    layer[layer["highway"].notna()].to_file(gpkg, layer="roads", driver="GPKG")
    layer[layer["leisure"].notna() | layer["natural"].notna()].to_file(gpkg, layer="areas", driver="GPKG")
    all_layers = ingest(gpkg, tmp_path / "all.duckdb")
    assert set(all_layers["layers"]) == {"roads", "areas"}
    assert all_layers["kinds"] == {"road": 2, "water": 1, "green": 2}
    chosen = ingest(gpkg, tmp_path / "one.duckdb", layers=["areas"])
    assert set(chosen["layers"]) == {"areas"} and chosen["kinds"] == {"water": 1, "green": 2}


def test_real_bubenec_streets_lie_between_its_buildings(tmp_path):
    """The streets layer of momepy's Bubenec (Prague) GeoPackage: lines without tags, given --kind road."""
    db = tmp_path / "b.duckdb"
    assert twin("ingest", "footprints", str(BUBENEC), "--db", str(db), "--default-height", "9").returncode == 0
    done = twin("ingest", "basemap", str(BUBENEC), "--layer", "streets", "--kind", "road", "--db", str(db), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kinds"] == {"road": 35}
    with Store(db, read_only=True) as store:
        overlap, road_area = store.con.execute("""
            SELECT coalesce(sum(ST_Area(ST_Intersection(r.geometry, b.footprint))), 0), (SELECT sum(ST_Area(geometry))
            FROM basemap) FROM basemap r JOIN buildings b ON ST_Intersects(r.geometry, b.footprint)""").fetchone()
    # 6 m carriageways along the street centrelines: well clear of the buildings but for a few corners
    assert road_area > 35 * 50 * 6 and overlap < 0.01 * road_area


def test_reingesting_a_source_replaces_its_rows_and_keeps_the_others(osm_geojson, tmp_path):
    db = tmp_path / "s.duckdb"
    first = ingest(osm_geojson, db)
    other = tmp_path / "other.geojson"
    gpd.GeoDataFrame({"kind": ["green"]}, geometry=[square(500, 500, 30)], crs="EPSG:4326").to_file(other)
    ingest(other, db)
    before = rows_of(db)
    again = ingest(osm_geojson, db)
    after = rows_of(db)
    assert again["replaced"] == first["features"] == 9
    assert len(after) == len(before) == 10 and (after.index.sort_values() == before.index.sort_values()).all()
    assert after.geometry.geom_equals_exact(before.loc[after.index].geometry, tolerance=0).all()
    changed = osm_layer().iloc[:2]
    changed.to_file(osm_geojson, driver="GeoJSON")
    ingest(osm_geojson, db)
    assert sorted(rows_of(db)["kind"]) == ["green", "road", "road"], "the source's old rows are gone, the other kept"


@pytest.mark.parametrize("spoil, message", [
    (lambda f: f.assign(kind=["road"] * (len(f) - 1) + ["motorway"]), "has kind 'motorway'"),
    (lambda f: f.set_geometry([*f.geometry.iloc[:-1], None], crs=f.crs), "has no geometry"),
    (lambda f: f.iloc[:3].set_crs(None, allow_override=True), "has no CRS"),  # lines only: a Shapefile
])
def test_bad_input_is_named_and_leaves_the_store_unchanged(osm_geojson, tmp_path, spoil, message):
    db = tmp_path / "s.duckdb"
    ingest(osm_geojson, db)
    digest = file_digest(db)
    spoilt = spoil(osm_layer())
    if spoilt.crs is None:  # GeoJSON is WGS 84 by definition: a Shapefile without a .prj has no CRS
        bad = tmp_path / "osm.shp"
        with pytest.warns(UserWarning, match="crs"):
            spoilt.to_file(bad)
        assert not bad.with_suffix(".prj").exists()
    else:
        bad = tmp_path / "osm.geojson"
        spoilt.to_file(bad, driver="GeoJSON")
    with pytest.raises((InputError, CRSError), match=message) as caught:
        ingest(bad, db, source="osm")  # the same source: its rows would be replaced
    assert str(bad) in str(caught.value)
    assert file_digest(db) == digest
    assert len(rows_of(db)) == 9


def test_cli_names_the_feature_and_the_fix_and_writes_nothing(tmp_path):
    db = tmp_path / "s.duckdb"
    bad = tmp_path / "bad.geojson"
    osm_layer().assign(kind=[None] * 10 + ["lake"]).to_file(bad, driver="GeoJSON")
    done = twin("ingest", "basemap", str(bad), "--db", str(db), "--json")
    assert done.returncode == 2
    failure = json.loads(done.stdout)
    assert "feature 10 (id node/11) has kind 'lake'" in failure["error"] and "road, water, green" in failure["error"]
    assert not db.exists(), "a failed first command leaves no store behind"
    missing = twin("ingest", "basemap", str(tmp_path / "nope.gpkg"), "--db", str(db))
    assert missing.returncode == 2 and "nope.gpkg: no such file" in missing.stderr
    wrong_layer = twin("ingest", "basemap", str(BUBENEC), "--layer", "rivers", "--db", str(db))
    assert wrong_layer.returncode == 2 and "rivers" in wrong_layer.stderr and "streets" in wrong_layer.stderr
