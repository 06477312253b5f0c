"""Offscreen pictures of a store with pyvista, for notebooks, reports and tests.

With no display, VTK 9.4+ renders through EGL (Mesa llvmpipe); setting
``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow`` skips the X11 probe.
"""

from __future__ import annotations

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyvista as pv  # noqa: E402

from twin.buildings import load_meshes  # noqa: E402
from twin.errors import InputError  # noqa: E402
from twin.geo.mesh import MeshBatch  # noqa: E402

# BIM element colours by IFC class (first matching prefix wins); anything else is light grey.
BIM_COLOURS = (("IfcWall", "#ece6d8"), ("IfcSlab", "#b4553d"), ("IfcRoof", "#b4553d"), ("IfcWindow", "#8ec3e6"),
               ("IfcDoor", "#7a5a40"), ("IfcMember", "#9a7652"), ("IfcBeam", "#9a7652"), ("IfcSite", "#5f7f3c"),
               ("IfcRailing", "#4a4a4a"), ("IfcStair", "#a8a8a8"), ("IfcColumn", "#d0d0d0"))


def batch_polydata(meshes: MeshBatch) -> pv.PolyData:
    """One PolyData of all buildings, vertices relative to the origin, with a ``building`` cell array."""
    starts = np.repeat(meshes.vertex_offsets[:-1], np.diff(meshes.triangle_offsets))
    faces = meshes.triangles.astype(np.int64) + starts[:, None]
    cells = np.column_stack([np.full(len(faces), 3), faces]).ravel()
    poly = pv.PolyData(meshes.vertices, cells)
    poly.cell_data["building"] = meshes.triangle_building
    return poly


def render_buildings(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, *,
                     window_size: tuple[int, int] = (1200, 800), highlight: list[str] | None = None) -> np.ndarray:
    """Render every LOD1 building obliquely to a PNG file.

    Returns
    -------
    ndarray, shape (height, width, 3), uint8
        The picture.
    """
    ids, meshes = load_meshes(con)
    poly = batch_polydata(meshes)
    plotter = pv.Plotter(off_screen=True, window_size=window_size)
    plotter.set_background("#0f1724")
    heights = poly.points[:, 2]
    plotter.add_mesh(poly, color="#8fb3d9", smooth_shading=False)
    if highlight:
        chosen = np.flatnonzero(np.isin(ids, highlight))
        picked = poly.extract_cells(np.flatnonzero(np.isin(poly.cell_data["building"], chosen)))
        plotter.add_mesh(picked, color="#f28e2b")
    ground = pv.Plane(center=(*poly.center[:2], float(heights.min()) - 0.05),
                      i_size=poly.bounds[1] - poly.bounds[0] + 200, j_size=poly.bounds[3] - poly.bounds[2] + 200)
    plotter.add_mesh(ground, color="#1b2a49")
    plotter.add_light(pv.Light(position=(0, 0, 1), light_type="camera light", intensity=0.3))
    plotter.camera_position = "iso"
    plotter.camera.elevation = -10
    plotter.camera.zoom(1.5)
    image = plotter.screenshot(str(path), return_img=True)
    plotter.close()
    return image


def _bim_polydata(con: duckdb.DuckDBPyConnection, building_id: str) -> pv.PolyData | None:
    """The building's model (BIM or mesh) without hidden elements (IfcSpace), coloured by class; None if none."""
    row = con.execute("SELECT lod FROM meshes WHERE building_id = ? AND lod IN ('bim', 'mesh') ORDER BY lod LIMIT 1",
                      [building_id]).fetchone()
    if row is None:
        return None
    lod, = row
    ids, meshes = load_meshes(con, lod=lod)
    if not (ids == building_id).any():
        return None
    found = int(np.flatnonzero(ids == building_id)[0])
    v0, v1 = meshes.vertex_offsets[found:found + 2]
    t0, t1 = meshes.triangle_offsets[found:found + 2]
    blob, = con.execute("SELECT element_ids FROM meshes WHERE building_id = ? AND lod = ?",
                        [building_id, lod]).fetchone()
    owner = np.frombuffer(blob, dtype="<u4") if blob is not None else np.zeros(t1 - t0, np.uint32)
    elements = con.execute("SELECT element_index, ifc_class, hidden FROM elements WHERE mesh_id = ? "
                           "ORDER BY element_index", [f"{building_id}/{lod}"]).fetchall()
    n = max([e[0] for e in elements] + [int(owner.max(initial=0))]) + 1
    classes, hidden = np.full(n, "", dtype=object), np.zeros(n, bool)
    for index, ifc_class, is_hidden in elements:
        classes[index], hidden[index] = ifc_class or "", bool(is_hidden)
    keep = ~hidden[owner]
    faces = meshes.triangles[t0:t1][keep].astype(np.int64)
    poly = pv.PolyData(np.asarray(meshes.vertices[v0:v1]), np.column_stack([np.full(len(faces), 3), faces]).ravel())
    palette = {c: next((col for prefix, col in BIM_COLOURS if c.startswith(prefix)), "#d9d9d9") for c in set(classes)}
    rgb = {c: np.array([int(col[i:i + 2], 16) for i in (1, 3, 5)], np.uint8) for c, col in palette.items()}
    poly.cell_data["colour"] = np.array([rgb[c] for c in classes], np.uint8).reshape(-1, 3)[owner[keep]]
    return poly


def _clear_view(boxes: list[tuple], focus: np.ndarray, distance: float, elevation_deg: float) -> tuple[float, float]:
    """A camera bearing and elevation whose line of sight to ``focus`` passes over every neighbour.

    ``boxes`` are the neighbours' ``(xmin, ymin, xmax, ymax, zmax)`` relative to the district origin.
    Bearings are tried from south-west outwards; the elevation rises in steps until one is clear.
    """
    if not boxes:
        return 225.0, elevation_deg
    b = np.asarray(boxes, dtype=float)
    bearings = 225.0 + np.array([0.0] + [s * k for k in range(15, 181, 15) for s in (1, -1)][:-1])
    t = np.linspace(0.0, 1.0, 200)[:, None]
    for elevation in (elevation_deg, *range(int(elevation_deg) + 10, 81, 10)):
        el = np.radians(elevation)
        for bearing in bearings:
            az = np.radians(bearing)
            ray = focus + t * distance * np.array([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])
            inside = ((ray[:, None, 0] >= b[:, 0] - 3) & (ray[:, None, 0] <= b[:, 2] + 3)
                      & (ray[:, None, 1] >= b[:, 1] - 3) & (ray[:, None, 1] <= b[:, 3] + 3)
                      & (ray[:, None, 2] <= b[:, 4] + 1))
            if not inside.any():
                return float(bearing % 360), float(elevation)
    return 225.0, 80.0


def render_site(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, *, building_id: str,
                radius_m: float = 150.0, azimuth_deg: float | None = None, elevation_deg: float = 45.0,
                window_size: tuple[int, int] = (1200, 800)) -> np.ndarray:
    """Render one building's BIM model in place among the LOD1 buildings within ``radius_m`` of it, to a PNG file.

    The camera looks obliquely down at the model. Without a BIM mesh the building's own LOD1 block is
    drawn highlighted instead; with one, its LOD1 block is left out so it does not hide the model.

    Parameters
    ----------
    azimuth_deg : float, optional
        Compass bearing from the model to the camera (0 north, 90 east). By default the bearing, nearest
        south-west, whose line of sight no neighbour blocks (raising the camera if every side is blocked).

    Returns
    -------
    ndarray, shape (height, width, 3), uint8
        The picture.
    """
    if con.execute("SELECT 1 FROM buildings WHERE building_id = ?", [building_id]).fetchone() is None:
        raise InputError(f"building {building_id!r} is not in the store; pick one from the buildings table.")
    ids, meshes = load_meshes(con)
    origin = np.asarray(meshes.origin, dtype=float)
    bim = _bim_polydata(con, building_id)
    if bim is not None:
        lo, hi = np.asarray(bim.bounds[0::2]), np.asarray(bim.bounds[1::2])
    else:
        k = np.flatnonzero(ids == building_id)[0]
        own = meshes.vertices[meshes.vertex_offsets[k]:meshes.vertex_offsets[k + 1]]
        lo, hi = own.min(axis=0).astype(float), own.max(axis=0).astype(float)
    focus = (lo + hi) / 2
    size = max(float(np.linalg.norm(hi - lo)), 10.0)

    # Neighbours: LOD1 meshes whose bounding box comes within the radius of the model's centre.
    rows = con.execute(
        "SELECT building_id, bbox_xmin, bbox_ymin, bbox_xmax, bbox_ymax, bbox_zmax FROM meshes "
        "WHERE lod = 'lod1' AND sqrt(pow(greatest(bbox_xmin - ?, 0, ? - bbox_xmax), 2) "
        "+ pow(greatest(bbox_ymin - ?, 0, ? - bbox_ymax), 2)) <= ?",
        [focus[0] + origin[0]] * 2 + [focus[1] + origin[1]] * 2 + [radius_m]).fetchall()
    near = [r for r in rows if r[0] != building_id]
    poly = batch_polydata(meshes)
    plotter = pv.Plotter(off_screen=True, window_size=window_size)
    plotter.set_background("#0f1724")
    if near:
        chosen = np.flatnonzero(np.isin(ids, [r[0] for r in near]))
        plotter.add_mesh(poly.extract_cells(np.flatnonzero(np.isin(poly.cell_data["building"], chosen))),
                         color="#8fb3d9", smooth_shading=False)
    if bim is not None:
        plotter.add_mesh(bim, scalars="colour", rgb=True, smooth_shading=False)
    else:
        own = np.flatnonzero(poly.cell_data["building"] == np.flatnonzero(ids == building_id)[0])
        plotter.add_mesh(poly.extract_cells(own), color="#f28e2b")
    ground_z = min(float(lo[2]), float(poly.bounds[4])) - 0.05
    plotter.add_mesh(pv.Plane(center=(focus[0], focus[1], ground_z), i_size=2 * radius_m, j_size=2 * radius_m),
                     color="#1b2a49")

    distance = max(4.5 * size, 110.0)
    boxes = [(x0 - origin[0], y0 - origin[1], x1 - origin[0], y1 - origin[1], z1 - origin[2])
             for _, x0, y0, x1, y1, z1 in near]
    if azimuth_deg is None:
        azimuth_deg, elevation_deg = _clear_view(boxes, focus, distance, elevation_deg)
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    direction = np.array([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])
    plotter.add_light(pv.Light(position=(0, 0, 1), light_type="camera light", intensity=0.3))
    plotter.camera.focal_point = tuple(focus)
    plotter.camera.position = tuple(focus + distance * direction)
    plotter.camera.up = (0.0, 0.0, 1.0)
    plotter.camera.view_angle = 30.0
    plotter.reset_camera_clipping_range()
    image = plotter.screenshot(str(path), return_img=True)
    plotter.close()
    return image
