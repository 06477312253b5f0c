"""Mesh ingest: glTF made here with trimesh, Y-up and Z-up, in local and in map coordinates; bad input."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import trimesh

from ingest.mesh import ingest_mesh
from tests.conftest import file_digest
from twin.errors import InputError
from twin.store.store import Store, open_for_command

E0, N0 = 474_000.0, 3_848_000.0  # Zhengzhou in EPSG:4547


def campus(path, *, up: str, offset=(0.0, 0.0, 0.0)):
    """Two nodes: a 30 m tower 10x20 m and a 4 m kiosk, written with the given up axis."""
    scene = trimesh.Scene()
    for name, extents, at in (("tower", (10, 20, 30), (5, 10, 15)), ("kiosk", (4, 4, 4), (40, 0, 2))):
        box = trimesh.creation.box(extents)
        position = np.add(at, offset)
        matrix = trimesh.transformations.translation_matrix(position)
        if up == "y":  # z-up model -> y-up file: (x, y, z) -> (x, z, -y)
            matrix = trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]) @ matrix
        scene.add_geometry(box, node_name=name, transform=matrix)
    scene.export(path)
    return path


def stored(db):
    with Store(db, read_only=True) as store:
        blob, tris, owner = store.con.execute("SELECT vertices, triangles, element_ids FROM meshes "
                                              "WHERE lod = 'mesh'").fetchone()
        origin = np.array(store.district.origin)
        crs = store.district.crs
        names = [r[0] for r in store.con.execute("SELECT name FROM elements ORDER BY element_index").fetchall()]
    return np.frombuffer(blob, "<f4").reshape(-1, 3) + origin, np.frombuffer(owner, "<u4"), names, crs


@pytest.mark.parametrize("up", ["y", "z"])
def test_a_local_gltf_is_anchored_upright(tmp_path, up):
    path = campus(tmp_path / f"campus-{up}.glb", up=up)
    db = tmp_path / "s.duckdb"
    with open_for_command(db) as store:
        summary = ingest_mesh(store, path, anchor="113.72,34.76,100,0", up=up)
    verts, owner, names, crs = stored(db)
    assert summary["elements"] == 2 and sorted(names) == ["kiosk", "tower"]
    assert verts[:, 2].min() == pytest.approx(100.0, abs=1e-3) and verts[:, 2].max() == pytest.approx(130.0, abs=1e-3)
    assert len(owner) == summary["triangles"] == 24
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*verts[:, :2].min(axis=0))
    assert abs(lon - 113.72) < 1e-4 and abs(lat - 34.76) < 1e-4


def test_gltf_defaults_to_y_up(tmp_path):
    path = campus(tmp_path / "campus.glb", up="y")
    db = tmp_path / "s.duckdb"
    with open_for_command(db) as store:
        ingest_mesh(store, path, anchor="113.72,34.76,0,0")
    verts, *_ = stored(db)
    assert np.ptp(verts[:, 2]) == pytest.approx(30.0, abs=1e-3)  # the tower stands up


def test_a_mesh_in_map_coordinates_keeps_them_to_the_millimetre(tmp_path):
    path = campus(tmp_path / "campus.glb", up="z", offset=(E0, N0, 0.0))
    db = tmp_path / "s.duckdb"
    with open_for_command(db) as store:
        summary = ingest_mesh(store, path, crs="EPSG:4547", up="z")
    verts, _, _, crs = stored(db)
    assert crs == "EPSG:4547" and summary["georef"]["source"] == "crs"
    corner = verts[np.argmin(verts.sum(axis=1))]
    assert np.allclose(corner, [E0, N0, 0.0], atol=1e-3)
    with Store(db, read_only=True) as store:
        assert store.con.execute("SELECT height_source FROM buildings").fetchall() == [("mesh",)]


def test_obj_and_ply_in_centimetres(tmp_path):
    box = trimesh.creation.box((1000, 2000, 3000))  # centimetres
    box.apply_translation([500, 1000, 1500])
    for suffix in (".obj", ".ply"):
        path = tmp_path / f"box{suffix}"
        box.export(path)
        db = tmp_path / f"{suffix[1:]}.duckdb"
        with open_for_command(db) as store:
            ingest_mesh(store, path, anchor="113.72,34.76,0,0", units="cm")
        verts, *_ = stored(db)
        assert np.ptp(verts[:, 2]) == pytest.approx(30.0, abs=1e-3)


def test_bad_input_is_refused_and_the_store_is_unchanged(lujiazui_copy, tmp_path):
    digest = file_digest(lujiazui_copy)
    empty = tmp_path / "empty.ply"
    empty.write_text("ply\nformat ascii 1.0\nelement vertex 0\nelement face 0\nproperty list uchar int vertex_indices\n"
                     "end_header\n")
    path = campus(tmp_path / "c.glb", up="z")
    (tmp_path / "x.fbx").write_bytes(b"Kaydara FBX Binary")
    cases = [
        (dict(path=empty, anchor="121.5,31.23,0,0"), "no triangles|cannot read"),
        (dict(path=path), "either --crs"),
        (dict(path=path, anchor="121.5,31.23,0,0", crs="EPSG:32651"), "either --crs"),
        (dict(path=path, anchor="north,31,0,0"), "four numbers"),
        (dict(path=path, anchor="113.72,34.76,0,0"), "km from the district origin"),  # Zhengzhou, Shanghai store
        (dict(path=tmp_path / "x.fbx", anchor="121.5,31.23,0,0"), "unknown mesh format"),
    ]
    for options, message in cases:
        with pytest.raises(InputError, match=message), open_for_command(lujiazui_copy) as store:
            ingest_mesh(store, options.pop("path"), **options)
    assert file_digest(lujiazui_copy) == digest
