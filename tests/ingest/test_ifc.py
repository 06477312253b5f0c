"""IFC ingest on real files: the four georeferencing cases, element counts, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyproj
import pytest

from ingest.ifc import ingest_ifc, open_ifc, products_with_geometry
from tests.conftest import ROOT, TESTS, file_digest
from twin.errors import InputError
from twin.store.store import Store, open_for_command

IFC = TESTS / "data" / "ifc"
UTM_EXAMPLE = IFC / "ifc4x3-geographic-referencing-utm" / "geographic-referencing-utm.ifc"
FZK = IFC / "fzk-haus-ifc4" / "AC20-FZK-Haus.ifc"
DUPLEX = IFC / "duplex-georef-luxembourg-ifc2x3" / "Duplex_A_20110907_georeferenced.ifc"
OPENHOUSE = IFC / "ifcopenhouse-ifc4" / "IfcOpenHouse_IFC4.ifc"


def ingest(path, db, **options):
    with open_for_command(db) as store:
        return ingest_ifc(store, path, **options)


def mesh_vertices(db, building_id):
    with Store(db, read_only=True) as store:
        blob, elements = store.con.execute("SELECT vertices, element_ids FROM meshes WHERE building_id = ? "
                                           "AND lod = 'bim'", [building_id]).fetchone()
        origin = np.array(store.district.origin)
    return np.frombuffer(blob, "<f4").reshape(-1, 3).astype(float) + origin, np.frombuffer(elements, "<u4")


def test_the_ifc4x3_map_conversion_puts_the_marker_tip_on_its_coordinates(tmp_path):
    db = tmp_path / "s.duckdb"
    summary = ingest(UTM_EXAMPLE, db, crs="EPSG:25832")
    g = summary["georef"]
    assert g["source"] == "map_conversion" and g["crs"] == "EPSG:25832"
    assert (g["eastings"], g["northings"], g["height"]) == (458657.3, 5438232.25, 113.7)
    assert g["rotation_deg"] == pytest.approx(np.degrees(np.arctan2(0.962691746426, 0.270600445976)), abs=1e-4)
    assert g["scale"] == 1.0  # Scale 1000 with millimetre units is the unit conversion, already applied
    verts, _ = mesh_vertices(db, summary["building_id"])
    tip = np.linalg.norm(verts - [458657.30, 5438232.25, 113.7], axis=1).min()
    assert tip <= 0.01


def test_fzk_haus_is_placed_from_ref_latitude(tmp_path):
    db = tmp_path / "s.duckdb"
    summary = ingest(FZK, db)
    g = summary["georef"]
    assert g["source"] == "ref_latitude" and g["rotation_deg"] == pytest.approx(50.0, abs=0.01)  # TrueNorth
    lon, lat = pyproj.Transformer.from_crs(g["crs"], "EPSG:4326", always_xy=True).transform(g["eastings"],
                                                                                           g["northings"])
    assert pyproj.Geod(ellps="WGS84").inv(lon, lat, 8.4365, 49.1004)[2] < 10
    assert pyproj.Geod(ellps="WGS84").inv(lon, lat, 8 + 26 / 60 + 11.5404 / 3600, 49 + 6 / 60 + 1.566 / 3600)[2] < 1
    assert summary["elements"] == len(products_with_geometry(open_ifc(FZK)))
    assert summary["elements_by_class"]["IfcWallStandardCase"] == 13 and summary["hidden_elements"] == 7
    with Store(db, read_only=True) as store:
        height_source, = store.con.execute("SELECT height_source FROM buildings WHERE building_id = ?",
                                           [summary["building_id"]]).fetchone()
        wall = store.con.execute("SELECT ifc_class, name, storey, psets FROM elements WHERE ifc_class = "
                                 "'IfcWallStandardCase' LIMIT 1").fetchone()
    assert height_source == "bim"
    assert wall[2] in ("Erdgeschoss", "Dachgeschoss") and "Pset_WallCommon" in json.loads(wall[3])
    _, element_ids = mesh_vertices(db, summary["building_id"])
    assert len(element_ids) == summary["triangles"] and element_ids.max() == summary["elements"] - 1


def test_the_duplex_uses_its_epset_and_reports_chicago(tmp_path):
    summary = ingest(DUPLEX, tmp_path / "s.duckdb")
    g = summary["georef"]
    assert g["source"] == "epset_map_conversion" and g["crs"] == "EPSG:2169"  # horizontal part of EPSG:9897
    assert (g["eastings"], g["northings"]) == (76670.0, 77179.0)
    (conflict,) = g["conflicts"]
    assert conflict["source"] == "ref_latitude" and 6_700_000 < conflict["distance_m"] < 6_950_000
    assert summary["elements"] == len(products_with_geometry(open_ifc(DUPLEX)))


def test_ifcopenhouse_needs_an_anchor(tmp_path):
    db = tmp_path / "s.duckdb"
    with pytest.raises(InputError, match=r"no georeferencing.*--anchor LON,LAT,H,ROT_DEG"):
        ingest(OPENHOUSE, db)
    assert not db.exists()
    summary = ingest(OPENHOUSE, db, anchor="113.72,34.76,80,30")
    assert summary["georef"]["source"] == "anchor" and summary["georef"]["rotation_deg"] == 30.0
    verts, _ = mesh_vertices(db, summary["building_id"])
    lon, lat = pyproj.Transformer.from_crs(Store(db, read_only=True).district.crs, "EPSG:4326",
                                           always_xy=True).transform(*verts[:, :2].mean(axis=0))
    assert abs(lon - 113.72) < 0.001 and abs(lat - 34.76) < 0.001


def test_a_model_on_a_footprint_joins_that_building(small_demo, tmp_path):
    import shutil

    db = tmp_path / "demo.duckdb"
    shutil.copy(small_demo, db)
    with Store(db, read_only=True) as store:
        building_id, x, y = store.con.execute("SELECT building_id, label_x, label_y FROM buildings "
                                              "ORDER BY ST_Area(footprint) DESC LIMIT 1").fetchone()
    lon, lat = pyproj.Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True).transform(x, y)
    summary = ingest(OPENHOUSE, db, anchor=f"{lon},{lat},0,0")
    assert summary["building_id"] == building_id and summary["linked_by"].startswith("footprint overlap")
    with Store(db, read_only=True) as store:
        assert store.con.execute("SELECT height_source FROM buildings WHERE building_id = ?",
                                 [building_id]).fetchone() == ("bim",)
    again = ingest(OPENHOUSE, db, anchor=f"{lon},{lat},0,0")  # re-ingest replaces, never duplicates
    with Store(db, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM meshes WHERE lod = 'bim'").fetchone() == (1,)
        assert store.con.execute("SELECT count(*) FROM elements").fetchone() == (again["elements"],)


@pytest.mark.parametrize("content, message", [
    (b"ISO-10303-21;\nHEADER;\nFILE_DESCRIPTION((''),'2;1');\nDATA;\n#1=IFCWALL(", "cannot read this IFC file"),
    (b"ISO-10303-21;\nHEADER;\nFILE_SCHEMA(('IFC2X2_FINAL'));\nENDSEC;\nDATA;\nENDSEC;\nEND-ISO-10303-21;\n",
     "IFC2X2_FINAL is not supported"),
    (b"solid cube\nfacet normal 0 0 1\n", "not an IFC file"),
])
def test_bad_files_are_refused_and_the_store_is_unchanged(lujiazui_copy, tmp_path, content, message):
    bad = tmp_path / "bad.ifc"
    bad.write_bytes(content)
    digest = file_digest(lujiazui_copy)
    with pytest.raises(InputError, match=message):
        ingest(bad, lujiazui_copy, anchor="121.5,31.23,0,0")
    assert file_digest(lujiazui_copy) == digest


def test_a_model_far_from_the_district_is_refused(lujiazui_copy):
    digest = file_digest(lujiazui_copy)
    with pytest.raises(InputError, match="km from the district origin"):
        ingest(FZK, lujiazui_copy)  # Karlsruhe into a Shanghai store
    assert file_digest(lujiazui_copy) == digest


def test_cli_prints_the_georef_summary(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "ingest", "ifc", str(DUPLEX), "--db",
                           str(tmp_path / "d.duckdb"), "--json"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    georef = json.loads(done.stdout)["georef"]
    assert georef["source"] == "epset_map_conversion" and georef["conflicts"][0]["source"] == "ref_latitude"
    bad = subprocess.run([sys.executable, str(ROOT / "cli.py"), "ingest", "ifc", str(OPENHOUSE), "--db",
                          str(tmp_path / "o.duckdb")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "--anchor" in bad.stderr and str(OPENHOUSE) in bad.stderr


def test_a_doubly_georeferenced_file_is_called_out(tmp_path):
    import ifcopenshell

    model = ifcopenshell.open(str(UTM_EXAMPLE))
    site = model.by_type("IfcSite")[0]
    site.ObjectPlacement.RelativePlacement.Location.Coordinates = (458657300.0, 5438232250.0, 0.0)  # mm, on the map
    doubled = tmp_path / "doubled.ifc"
    model.write(str(doubled))
    summary = ingest(doubled, tmp_path / "s.duckdb", crs="EPSG:25832")
    assert any("doubly georeferenced" in w for w in summary["georef"]["warnings"])
    assert summary["georef"]["source"] == "map_conversion"
