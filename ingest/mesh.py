"""``twin ingest mesh``: glTF/GLB, OBJ, PLY and STL models (via trimesh), placed on the map.

Two cases: vertices already in map coordinates (``--crs EPSG:…``, Z up), or
a local model placed with ``--anchor LON,LAT,H,ROT_DEG``. glTF is Y-up by its
specification and becomes Z-up unless ``--up z``; other formats are taken as
Z-up unless ``--up y``. Scene graphs keep their node transforms, and each node
(or each mesh of a single-mesh file) becomes an element, for picking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ingest.models import store_model
from twin.geo.crs import parse_crs, require_projected
from twin.errors import InputError, check_choice
from twin.geo.georef import parse_anchor
from twin.store.store import Store
from twin.timing import StageTimer

FORMATS = (".gltf", ".glb", ".obj", ".ply", ".stl")
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # (x, y, z) -> (x, -z, y)


def load_mesh_elements(path: str | Path, *, up: Literal["y", "z"] | None = None,
                       units: Literal["m", "cm", "mm"] = "m") -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """A model's nodes as elements, with vertices in metres, Z up, in the file's own frame.

    Returns
    -------
    elements : DataFrame
        One row per node with geometry: ``global_id`` (node name), ``ifc_class`` (the format), ``name``,
        ``storey`` (None), ``psets`` (JSON), ``hidden`` (False).
    vertices : ndarray, shape (V, 3), float64
    triangles : ndarray, shape (T, 3), int64
    owner : ndarray, shape (T,), int64
    """
    import trimesh

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file.")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown mesh format {suffix!r}; expected one of {', '.join(FORMATS)}.")
    check_choice("--units", units, UNITS)
    if up is not None:
        check_choice("--up", up, ("y", "z"))
    up = up or ("y" if suffix in (".gltf", ".glb") else "z")
    try:
        scene = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises many kinds for broken files
        raise InputError(f"{path}: cannot read it as {suffix[1:].upper()} ({exc}). Export it again.") from exc
    rows, verts, tris, owner = [], [], [], []
    offset = 0
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        mesh = scene.geometry.get(geometry_name)
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            continue
        v = trimesh.transform_points(np.asarray(mesh.vertices, dtype=np.float64), transform)
        rows.append({"global_id": str(node), "ifc_class": suffix[1:].upper(), "name": str(node), "storey": None,
                     "psets": json.dumps({"geometry": geometry_name, "faces": int(len(mesh.faces))}),
                     "hidden": False})
        verts.append(v)
        tris.append(np.asarray(mesh.faces, dtype=np.int64) + offset)
        owner.append(np.full(len(mesh.faces), len(rows) - 1))
        offset += len(v)
    if not rows:
        raise InputError(f"{path}: the file holds no triangles (an empty mesh, or only points and lines).")
    vertices = np.concatenate(verts) * UNITS[units]
    if up == "y":
        vertices = vertices @ Y_UP_TO_Z_UP.T
    return pd.DataFrame(rows), vertices, np.concatenate(tris), np.concatenate(owner)


def ingest_mesh(store: Store, path: str | Path, *, crs: str | None = None, anchor: str | None = None,
                up: Literal["y", "z"] | None = None, units: Literal["m", "cm", "mm"] = "m",
                building_id: str | None = None, step=lambda _: None) -> dict:
    """Place a mesh model on the map and store it as a building's BIM mesh (inside the store's transaction).

    Exactly one of ``crs`` (vertices already in that projected CRS) and ``anchor`` must be given.
    """
    timer = StageTimer(step)
    where = str(path)
    if (crs is None) == (anchor is None):
        raise InputError(f"{where}: give either --crs EPSG:… (the vertices are map coordinates) or "
                         "--anchor LON,LAT,H,ROT_DEG (a local model placed there), not both and not neither.")
    elements, local, triangles, owner = load_mesh_elements(path, up=up, units=units)
    timer.lap("read")
    if anchor is not None:
        placement = parse_anchor(anchor, crs=store.district.crs if store.district else None)
        on_map, map_crs, georef = placement.to_map(local), placement.crs, placement.as_dict()
    else:
        map_crs = require_projected(parse_crs(crs, what="--crs"), what="--crs")
        on_map, georef = local, {"source": "crs", "crs": map_crs}
    new_store_crs = map_crs if anchor is None and store.district is None else None
    stored = store_model(store, on_map=on_map, map_crs=map_crs, triangles=triangles, owner=owner, lod="mesh",
                         elements=elements, building_id=building_id, crs=new_store_crs, where=where,
                         new_building={"source": "mesh", "source_id": Path(path).stem, "name": Path(path).stem,
                                       "floors": 1})
    timer.lap("place and store")
    return {"file": where, **stored, "elements": len(elements), "triangles": int(len(triangles)),
            "georef": georef, "timings_s": timer.timings}
