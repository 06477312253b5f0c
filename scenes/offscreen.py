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
from twin.mesh import MeshBatch  # noqa: E402


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
