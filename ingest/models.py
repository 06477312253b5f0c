"""Storing a model placed on the map (BIM or mesh) as the BIM mesh of a building.

Shared by ``twin ingest ifc`` and ``twin ingest mesh``: the model's triangles and
elements, already in map coordinates, go to the district CRS, are checked to be
in the district, and are linked to a building: the one given, the footprint that
covers at least half of the model's ground outline, or a new building whose
footprint is that outline.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ingest.footprints import district_for
from twin.buildings import insert_meshes, upsert_buildings
from twin.geo.crs import check_near_origin, transform_xy
from twin.errors import InputError
from twin.geo.mesh import MeshBatch, extrude_footprints
from twin.store.store import Store, insert_frame

MIN_OVERLAP = 0.5  # share of the model's ground outline a footprint must cover to take the model
MAX_MODEL_HEIGHT_M = 1000.0  # taller than any building: a wrong length unit or georeferencing
MAX_ELEVATION_M = 10_000.0  # above or below sea level, once placed


def store_model(store: Store, *, on_map: np.ndarray, map_crs: str, triangles: np.ndarray, owner: np.ndarray,
                elements: pd.DataFrame, building_id: str | None, crs: str | None, where: str,
                new_building: dict, lod: str = "bim", warnings: list[str] = ()) -> dict:
    """Write a placed model as a building's ``bim`` (or ``mesh``) mesh with its elements, in the store's transaction.

    Parameters
    ----------
    on_map : ndarray, shape (V, 3)
        Vertices in ``map_crs`` (metres), z up.
    triangles : ndarray, shape (T, 3)
    owner : ndarray, shape (T,)
        Row of ``elements`` each triangle belongs to.
    elements : DataFrame
        ``global_id``, ``ifc_class``, ``name``, ``storey``, ``psets`` (JSON text), ``hidden``.
    new_building : dict
        ``source``, ``source_id``, ``name``, ``floors`` of the building to create when none takes the model.

    Returns
    -------
    dict
        ``building_id`` and ``linked_by``.
    """
    if not np.isfinite(on_map).all():
        raise InputError(f"{where}: {int((~np.isfinite(on_map).all(axis=1)).sum())} of the model's {len(on_map)} "
                         "vertices are not finite numbers once placed; check its geometry and georeferencing.")
    zmin, zmax = float(on_map[:, 2].min()), float(on_map[:, 2].max())
    if zmax - zmin > MAX_MODEL_HEIGHT_M or max(abs(zmin), abs(zmax)) > MAX_ELEVATION_M:
        raise InputError(f"{where}: once placed, the model runs from {zmin:.6g} m to {zmax:.6g} m in height; expected "
                         f"a building under {MAX_MODEL_HEIGHT_M:.0f} m tall within {MAX_ELEVATION_M:.0f} m of sea "
                         "level. Check the file's length unit and the height of its georeferencing.")
    lo, hi = on_map[:, :2].min(axis=0), on_map[:, :2].max(axis=0)
    district = district_for(store, np.r_[lo, hi], source_crs=map_crs, crs=crs, where=where)
    xy = transform_xy(on_map[:, :2], map_crs, district.crs)
    try:
        check_near_origin(xy, district, what=where)
    except InputError as exc:
        raise InputError(f"{exc} {' '.join(warnings)}".strip()) from exc
    z = on_map[:, 2]
    # The building's outline: its drawn parts, without the site (terrain, garden slabs).
    standing = ~elements["hidden"].to_numpy(dtype=bool) & (elements["ifc_class"] != "IfcSite").to_numpy()
    shown = standing[owner]
    outline = ground_outline(xy, triangles[shown] if shown.any() else triangles)
    target, linked_by = _link_building(store, outline, building_id=building_id, where=where)
    if target is None:
        if not any(g.geom_type == "Polygon" and g.area > 0 for g in shapely.get_parts(outline)):
            raise InputError(f"{where}: the model has no outline on the ground (seen from above it covers no area), "
                             "so it cannot be a new building; link it to one with --building-id.")
        target = _new_building(store, outline, zmin=float(z.min()), zmax=float(z.max()), height_source=lod,
                               **new_building)
    store.con.execute("UPDATE buildings SET height = ?, base_z = ?, height_source = ? WHERE building_id = ?",
                      [float(z.max() - z.min()), float(z.min()), lod, target])
    mesh_id = f"{target}/{lod}"
    store.con.execute("DELETE FROM elements WHERE mesh_id = ?", [mesh_id])
    store.con.execute("DELETE FROM meshes WHERE mesh_id = ?", [mesh_id])
    ox, oy, oz = district.origin
    vertices = np.column_stack([xy[:, 0] - ox, xy[:, 1] - oy, z - oz]).astype(np.float32)
    batch = MeshBatch(vertices=vertices, triangles=np.asarray(triangles, dtype=np.uint32),
                      vertex_offsets=np.array([0, len(vertices)]), triangle_offsets=np.array([0, len(triangles)]),
                      origin=district.origin)
    insert_meshes(store.con, np.array([target], dtype=object), batch, lod=lod,
                  element_ids=[np.asarray(owner, dtype=np.uint32)])
    insert_frame(store.con, "elements", elements.assign(
        element_id=mesh_id + "#" + elements["global_id"].astype(str), mesh_id=mesh_id, building_id=target,
        element_index=np.arange(len(elements), dtype=np.int32)))
    return {"building_id": target, "linked_by": linked_by}


def ground_outline(vertices_xy: np.ndarray, triangles: np.ndarray) -> shapely.Geometry:
    """The model's outline on the ground: the union of its triangles seen from above (map metres)."""
    tri = vertices_xy[triangles]
    polys = shapely.polygons(np.concatenate([tri, tri[:, :1]], axis=1))
    polys = polys[shapely.area(polys) > 1e-4]
    outline = shapely.union_all(polys, grid_size=0.01)
    return shapely.make_valid(outline)


def _link_building(store: Store, outline, *, building_id: str | None, where: str) -> tuple[str | None, str]:
    if building_id is not None:
        if store.con.execute("SELECT 1 FROM buildings WHERE building_id = ?", [building_id]).fetchone() is None:
            raise InputError(f"{where}: --building-id {building_id!r} is not in the store. Leave it out to link "
                             "the model to the footprint it stands on, or to a new building.")
        return building_id, "building_id"
    xmin, ymin, xmax, ymax = outline.bounds
    rows = store.con.execute(
        "SELECT building_id, ST_AsWKB(footprint) FROM buildings WHERE label_x BETWEEN ? AND ? "
        "AND label_y BETWEEN ? AND ?", [xmin - 500, xmax + 500, ymin - 500, ymax + 500]).fetchall()
    best, share = None, 0.0
    for bid, wkb in rows:
        overlap = shapely.intersection(shapely.from_wkb(bytes(wkb)), outline).area / max(outline.area, 1e-9)
        if overlap > share:
            best, share = bid, overlap
    if best is not None and share >= MIN_OVERLAP:
        return best, f"footprint overlap {share:.0%}"
    return None, "new building from the model's outline"


def _new_building(store: Store, outline, *, zmin: float, zmax: float, source: str, source_id: str, name: str,
                  floors: int, height_source: str) -> str:
    polygons = [g for g in shapely.get_parts(outline) if g.geom_type == "Polygon"]
    footprint = max(polygons, key=lambda g: g.area)
    frame = pd.DataFrame({"source_id": [source_id], "name": [name], "address": [None], "height": [zmax - zmin],
                          "base_z": [zmin], "floors": [floors], "height_source": [height_source], "source": [source]})
    frame["building_id"] = source + ":" + frame["source_id"]
    gdf = gpd.GeoDataFrame(frame, geometry=[footprint])
    lod1 = extrude_footprints(gdf.geometry.values, base_z=gdf["base_z"].to_numpy(), height=gdf["height"].to_numpy(),
                              origin=store.district.origin)
    upsert_buildings(store.con, gdf, lod1)
    return str(frame["building_id"].iloc[0])
