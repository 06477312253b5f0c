"""Property tests of the LOD1 mesh builder: volume, watertightness, normals, translation."""

from __future__ import annotations

import numpy as np
import shapely
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.geo.mesh import extrude_footprints


@st.composite
def footprints(draw) -> shapely.Polygon:
    """Star-shaped (often concave) polygons, some convex, some with a courtyard."""
    kind = draw(st.sampled_from(["star", "box", "hull"]))
    cx = draw(st.floats(-5000, 5000))
    cy = draw(st.floats(-5000, 5000))
    if kind == "box":
        w, h = draw(st.floats(2, 200)), draw(st.floats(2, 200))
        poly = shapely.box(cx, cy, cx + w, cy + h)
        inner = min(w, h) / 2
        centre = (cx + w / 2, cy + h / 2)
    else:
        n = draw(st.integers(3, 24))
        angles = np.sort(np.array(draw(st.lists(st.floats(0, 2 * np.pi, exclude_max=True),
                                                min_size=n, max_size=n, unique=True))))
        gaps = np.diff(np.r_[angles, angles[0] + 2 * np.pi])
        if gaps.min() < 0.05 or gaps.max() > 0.9 * np.pi:  # keep the centre in the kernel: simple
            angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
        radii = np.array(draw(st.lists(st.floats(10, 60), min_size=n, max_size=n)))
        pts = np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
        poly = shapely.Polygon(pts)
        if kind == "hull":
            poly = poly.convex_hull
        inner = 10 * np.cos(np.pi / 3)  # a disc this size around the centre stays inside
        centre = (cx, cy)
    if draw(st.booleans()):
        s = inner * 0.6
        hole = shapely.box(centre[0] - s, centre[1] - s, centre[0] + s, centre[1] + s)
        if poly.contains(hole):
            poly = shapely.Polygon(poly.exterior.coords, [hole.exterior.coords[::-1]])
    assert poly.is_valid
    return poly


def _meshes(polys, heights, base, origin=(0.0, 0.0, 0.0)):
    batch = extrude_footprints(np.array(polys, dtype=object), base_z=np.asarray(base, float),
                               height=np.asarray(heights, float), origin=origin)
    return batch, [trimesh.Trimesh(*batch.building(i), process=False) for i in range(len(batch))]


@settings(max_examples=60, deadline=None)
@given(st.lists(footprints(), min_size=1, max_size=6), st.data())
def test_volume_watertight_and_outward(polys, data):
    heights = data.draw(st.lists(st.floats(1, 600), min_size=len(polys), max_size=len(polys)))
    base = data.draw(st.lists(st.floats(0, 100), min_size=len(polys), max_size=len(polys)))
    origin = (polys[0].centroid.x, polys[0].centroid.y, 0.0)
    _, meshes = _meshes(polys, heights, base, origin)
    for poly, h, mesh in zip(polys, heights, meshes):
        assert mesh.is_watertight
        assert mesh.is_winding_consistent
        # Positive signed volume with consistent winding means every normal points out.
        # float32 offsets: allow 0.5 mm along the outline
        slack = poly.length * 5e-4
        assert np.isclose(mesh.volume, poly.area * h, rtol=1e-6, atol=slack * h)
        roof = mesh.face_normals[:, 2] > 0.5
        assert np.isclose(mesh.area_faces[roof].sum(), poly.area, rtol=1e-6, atol=slack)


@settings(max_examples=40, deadline=None)
@given(st.lists(footprints(), min_size=1, max_size=4), st.floats(-2000, 2000), st.floats(-2000, 2000))
def test_translating_the_input_translates_the_output(polys, dx, dy):
    heights = np.full(len(polys), 12.0)
    base = np.zeros(len(polys))
    a, _ = _meshes(polys, heights, base)
    moved = [shapely.affinity.translate(p, dx, dy) for p in polys]
    b, _ = _meshes(moved, heights, base)
    np.testing.assert_array_equal(a.triangles, b.triangles)
    np.testing.assert_allclose(b.vertices.astype(float) - a.vertices.astype(float),
                               np.broadcast_to([dx, dy, 0.0], a.vertices.shape), atol=2e-3)


def test_courtyard_is_open_and_every_triangle_knows_its_building():
    court = shapely.Polygon([(0, 0), (40, 0), (40, 40), (0, 40)], [[(10, 10), (10, 30), (30, 30), (30, 10)]])
    ell = shapely.Polygon([(100, 0), (130, 0), (130, 10), (110, 10), (110, 30), (100, 30)])
    batch, (m1, m2) = _meshes([court, ell], [20.0, 9.0], [0.0, 3.0])
    assert np.isclose(m1.volume, (1600 - 400) * 20)
    assert np.isclose(m2.volume, ell.area * 9)
    roof = m1.triangles[m1.face_normals[:, 2] > 0.5][:, :, :2]
    assert not any(shapely.Polygon(t).contains(shapely.Point(20, 20)) for t in roof)  # the courtyard stays open
    owner = batch.triangle_building
    assert np.array_equal(np.bincount(owner), [len(m1.faces), len(m2.faces)])
    assert np.isclose(m2.bounds[0, 2], 3.0) and np.isclose(m2.bounds[1, 2], 12.0)


def test_float32_offsets_keep_millimetres_far_from_the_crs_origin():
    x0, y0 = 474_213.127, 3_847_901.553  # Zhengzhou in EPSG:4547
    poly = shapely.box(x0 + 6000.123, y0 - 7000.456, x0 + 6031.789, y0 - 6980.001)
    batch, _ = _meshes([poly], [30.0], [0.0], origin=(x0, y0, 0.0))
    back = batch.vertices[:, :2].astype(np.float64) + [x0, y0]
    ring = np.asarray(shapely.orient_polygons(poly).exterior.coords)[:-1]
    err = np.min(np.linalg.norm(back[:, None, :] - ring[None, :, :], axis=2), axis=1)
    assert err.max() < 1e-3
