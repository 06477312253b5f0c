"""``twin ingest ifc``: BIM models (IFC2X3, IFC4, IFC4X3) into georeferenced, clickable meshes.

Geometry comes from ifcopenshell's geometry iterator on all cores, in metres
whatever the file's length unit. Each product becomes an element (GlobalId,
class, name, storey, property sets) and each triangle keeps its element, for
picking. The model is placed on the map from, strongest first: IfcMapConversion,
the IFC2X3 ePSet_MapConversion, IfcSite RefLatitude/RefLongitude with TrueNorth,
or ``--anchor``, which overrides them all.
"""

from __future__ import annotations

import json
import logging
import math
import re
import multiprocessing
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.models import store_model
from twin.errors import InputError
from twin.geo.georef import (Placement, distance_m, horizontal_crs, parse_anchor, placement_from_lonlat,
                         rotation_from_axis, rotation_from_true_north)
from twin.store.store import Store
from twin.timing import StageTimer

log = logging.getLogger(__name__)

SCHEMAS = ("IFC2X3", "IFC4", "IFC4X3")
HIDDEN_CLASSES = ("IfcSpace",)  # stored and pickable, but not drawn by default
VOID_CLASSES = ("IfcOpeningElement", "IfcOpeningStandardCase", "IfcVoidingFeature")  # cut-outs, not elements
CONFLICT_M = 5.0  # sources further apart than this disagree


def open_ifc(path: str | Path):
    """Open an IFC file, with clear errors for missing, truncated or unknown files."""
    import ifcopenshell

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file.")
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head.lstrip().startswith(b"ISO-10303-21"):
        raise InputError(f"{path}: not an IFC file (an IFC STEP file starts with 'ISO-10303-21;'). "
                         "Export the model as IFC (.ifc) and try again.")
    with open(path, "rb") as fh:
        header = fh.read(8192).decode("latin-1")
    declared = re.search(r"FILE_SCHEMA\s*\(\s*\(\s*'([^']+)'", header)
    if declared and not declared.group(1).upper().startswith(SCHEMAS):
        raise InputError(f"{path}: IFC schema {declared.group(1)} is not supported; expected one of "
                         f"{', '.join(SCHEMAS)}. Export the model as IFC4 or IFC2X3.")
    try:
        model = ifcopenshell.open(str(path))
    except Exception as exc:  # ifcopenshell raises bare errors for truncated files
        raise InputError(f"{path}: cannot read this IFC file ({exc}); it may be truncated. "
                         "Export it again from the authoring tool.") from exc
    schema = model.schema_identifier if hasattr(model, "schema_identifier") else model.schema
    if not any(str(schema).upper().startswith(s) for s in SCHEMAS):
        raise InputError(f"{path}: IFC schema {schema} is not supported; expected one of {', '.join(SCHEMAS)}.")
    if not model.by_type("IfcProduct"):
        raise InputError(f"{path}: the file holds no IfcProduct, so there is nothing to draw.")
    return model


def _length_unit_m(model) -> float:
    import ifcopenshell.util.unit

    return float(ifcopenshell.util.unit.calculate_unit_scale(model))


def _effective_scale(scale: float | None, unit_m: float) -> float:
    """The scale to apply to geometry already in metres.

    Files disagree on whether Scale carries the project-unit conversion (1000 or 0.001
    for millimetres) or only a true map scale (near 1): a factor that just undoes the
    length unit is taken as that conversion, which ifcopenshell has already applied.
    """
    scale = float(scale or 1.0)
    for conversion in (unit_m, 1.0 / unit_m):
        if unit_m != 1.0 and abs(scale / conversion - 1.0) < 1e-6:
            return 1.0
    return scale


def _site_origin(model, *, where: str = "the IFC file") -> np.ndarray:
    import ifcopenshell.util.placement

    sites = model.by_type("IfcSite")
    if not sites or sites[0].ObjectPlacement is None:
        return np.zeros(3)
    try:
        matrix = ifcopenshell.util.placement.get_local_placement(sites[0].ObjectPlacement)
        origin = np.asarray(matrix[:3, 3], dtype=np.float64) * _length_unit_m(model)
    except UNREADABLE as exc:
        raise InputError(f"{where}: the IfcSite's placement cannot be read ({type(exc).__name__}: {exc}).") from exc
    if not np.isfinite(origin).all():
        raise InputError(f"{where}: the IfcSite's placement is at {origin.tolist()}; expected finite numbers.")
    return origin


def _true_north(model) -> tuple[float, float] | None:
    for ctx in model.by_type("IfcGeometricRepresentationContext"):
        if ctx.is_a() == "IfcGeometricRepresentationContext" and getattr(ctx, "TrueNorth", None) is not None:
            ratios = ctx.TrueNorth.DirectionRatios
            return float(ratios[0]), float(ratios[1])
    return None


def _dms(value) -> float:
    parts = list(value) + [0] * (4 - len(value))
    sign = -1.0 if any(p < 0 for p in parts[:3]) else 1.0
    d, m, s, micro = (abs(p) for p in parts[:4])
    return sign * (d + m / 60 + (s + micro / 1e6) / 3600)


# What reading a broken IFC entity raises: an attribute of the wrong type or unset ($), a missing reference.
UNREADABLE = (TypeError, ValueError, AttributeError, IndexError, KeyError, ZeroDivisionError, RuntimeError)


def _finite(placement: Placement, *, where: str) -> Placement:
    """The placement, if its numbers are finite and its scale positive; else :class:`InputError`."""
    numbers = {"eastings": placement.eastings, "northings": placement.northings, "height": placement.height,
               "rotation": placement.rotation_deg, "scale": placement.scale}
    bad = {k: v for k, v in numbers.items() if not math.isfinite(v)}
    if bad or placement.scale <= 0:
        found = ", ".join(f"{k} {v}" for k, v in (bad or {"scale": placement.scale}).items())
        raise InputError(f"{where}: the {placement.source} georeferencing has {found}; expected finite numbers "
                         "and a positive scale. Fix it in the authoring tool, or place the model with --anchor.")
    return placement


def georef_sources(model, *, where: str) -> dict[str, Placement]:
    """Every georeferencing the file states, keyed by source (strongest first).

    Raises
    ------
    InputError
        When a stated georeferencing cannot be read (an unset or mistyped attribute, a number that
        is not finite, an unknown CRS).
    """
    try:
        found = _georef_sources(model, where=where)
    except UNREADABLE as exc:
        raise InputError(f"{where}: its georeferencing cannot be read ({type(exc).__name__}: {exc}). Fix "
                         "IfcMapConversion, ePSet_MapConversion or IfcSite RefLatitude/RefLongitude in the "
                         "authoring tool, or place the model with --anchor.") from exc
    return {name: _finite(placement, where=where) for name, placement in found.items()}


def _georef_sources(model, *, where: str) -> dict[str, Placement]:
    import ifcopenshell.util.element

    found: dict[str, Placement] = {}
    unit_m = _length_unit_m(model)
    if model.schema != "IFC2X3":
        for op in model.by_type("IfcMapConversion"):
            target = op.TargetCRS
            crs = horizontal_crs(target.Name, what=f"{where}: IfcProjectedCRS")
            map_unit = getattr(target, "MapUnit", None)
            map_unit_m = 1.0
            if map_unit is not None and getattr(map_unit, "Prefix", None) == "MILLI":
                map_unit_m = 0.001
            found["map_conversion"] = Placement(
                source="map_conversion", crs=crs, eastings=float(op.Eastings) * map_unit_m,
                northings=float(op.Northings) * map_unit_m, height=float(op.OrthogonalHeight or 0.0) * map_unit_m,
                rotation_deg=rotation_from_axis(op.XAxisAbscissa or 1.0, op.XAxisOrdinate or 0.0),
                scale=_effective_scale(op.Scale, unit_m / map_unit_m))
            break
    for holder in [*model.by_type("IfcSite"), *model.by_type("IfcProject")]:
        psets = ifcopenshell.util.element.get_psets(holder)
        conv, proj = psets.get("ePSet_MapConversion"), psets.get("ePSet_ProjectedCRS")
        if conv and proj and proj.get("Name"):
            found["epset_map_conversion"] = Placement(
                source="epset_map_conversion", crs=horizontal_crs(proj["Name"], what=f"{where}: ePSet_ProjectedCRS"),
                eastings=float(conv.get("Eastings") or 0), northings=float(conv.get("Northings") or 0),
                height=float(conv.get("OrthogonalHeight") or 0),
                rotation_deg=rotation_from_axis(conv.get("XAxisAbscissa") or 1.0, conv.get("XAxisOrdinate") or 0.0),
                scale=_effective_scale(conv.get("Scale"), unit_m))
            break
    sites = model.by_type("IfcSite")
    if sites and sites[0].RefLatitude and sites[0].RefLongitude:
        north = _true_north(model)
        rotation = rotation_from_true_north(*north) if north else 0.0
        site = sites[0]
        found["ref_latitude"] = placement_from_lonlat(_dms(site.RefLongitude), _dms(site.RefLatitude),
                                                      float(site.RefElevation or 0.0), rotation,
                                                      source="ref_latitude")
    return found


def choose_placement(model, *, anchor: str | None, where: str,
                     grid_crs: str | None = None) -> tuple[Placement, list[dict], list[str], np.ndarray]:
    """The placement to use, the other sources that disagree with it, warnings, and the local offset.

    Returns
    -------
    placement : Placement
    conflicts : list of dict
        ``{"source", "distance_m"}`` for each other source more than 5 m away.
    warnings : list of str
    offset : ndarray, shape (3,)
        Subtracted from model coordinates before placing (the site origin for RefLatitude).
    """
    sources = georef_sources(model, where=where)
    site_origin = _site_origin(model, where=where)
    warnings = []
    if np.hypot(*site_origin[:2]) > 10_000 and ({"map_conversion", "epset_map_conversion"} & sources.keys()):
        warnings.append(f"the site placement is already at map-like coordinates ({site_origin[0]:.0f}, "
                        f"{site_origin[1]:.0f}) and a map conversion comes on top: the file looks doubly "
                        "georeferenced and the model may land thousands of kilometres away. Check it, or "
                        "place it with --anchor.")
    if anchor is not None:
        chosen = parse_anchor(anchor, crs=grid_crs)
    elif sources:
        chosen = next(sources[s] for s in ("map_conversion", "epset_map_conversion", "ref_latitude") if s in sources)
    else:
        raise InputError(f"{where}: the file has no georeferencing (no IfcMapConversion, no ePSet_MapConversion, "
                         "no IfcSite RefLatitude/RefLongitude). Place it with --anchor LON,LAT,H,ROT_DEG.")
    conflicts = []
    for name, other in sources.items():
        if name != chosen.source:
            d = distance_m(chosen, other)
            if d > CONFLICT_M:
                conflicts.append({"source": name, "distance_m": round(d, 1), "crs": other.crs})
    offset = site_origin if chosen.source in ("ref_latitude",) else np.zeros(3)
    return chosen, conflicts, warnings, offset


def _storey(product) -> str | None:
    import ifcopenshell.util.element

    container = ifcopenshell.util.element.get_container(product)
    while container is not None and not container.is_a("IfcBuildingStorey"):
        container = ifcopenshell.util.element.get_container(container) if container.is_a("IfcElement") else None
    return container.Name if container is not None else None


def products_with_geometry(model) -> list:
    """Products that have a body to draw: a representation, and not a void, annotation or grid."""
    return [p for p in model.by_type("IfcProduct")
            if getattr(p, "Representation", None) is not None and p.is_a() not in VOID_CLASSES
            and not p.is_a("IfcAnnotation") and not p.is_a("IfcGrid") and not p.is_a("IfcPort")]


def model_elements(model, *, threads: int | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray,
                                                                  list[dict]]:
    """Triangulate every product with geometry.

    Returns
    -------
    elements : DataFrame
        One row per product: ``global_id``, ``ifc_class``, ``name``, ``storey``, ``psets`` (JSON), ``hidden``.
    vertices : ndarray, shape (V, 3), float64
        Model coordinates in metres.
    triangles : ndarray, shape (T, 3), int64
    triangle_element : ndarray, shape (T,), int64
        Row of ``elements`` each triangle belongs to.
    failed : list of dict
        Products with a representation whose geometry failed: ``{"global_id", "ifc_class", "reason"}``.
    """
    import ifcopenshell.geom
    import ifcopenshell.util.element

    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    iterator = ifcopenshell.geom.iterator(settings, model, threads or multiprocessing.cpu_count())
    rows, verts, tris, owner = [], [], [], []
    offset = 0
    if iterator.initialize():
        while True:
            shape = iterator.get()
            v = np.asarray(shape.geometry.verts, dtype=np.float64).reshape(-1, 3)
            f = np.asarray(shape.geometry.faces, dtype=np.int64).reshape(-1, 3)
            if len(f) and shape.type not in VOID_CLASSES:
                product = model.by_guid(shape.guid)
                psets = ifcopenshell.util.element.get_psets(product, psets_only=True)
                rows.append({"global_id": shape.guid, "ifc_class": shape.type, "name": shape.name or None,
                             "storey": _storey(product), "psets": json.dumps(psets, default=str, ensure_ascii=False),
                             "hidden": shape.type in HIDDEN_CLASSES})
                verts.append(v)
                tris.append(f + offset)
                owner.append(np.full(len(f), len(rows) - 1))
                offset += len(v)
            if not iterator.next():
                break
    done = {r["global_id"] for r in rows}
    failed = [{"global_id": p.GlobalId, "ifc_class": p.is_a(), "reason": "its geometry could not be triangulated"}
              for p in products_with_geometry(model) if p.GlobalId not in done]
    if not rows:
        return pd.DataFrame(columns=["global_id", "ifc_class", "name", "storey", "psets", "hidden"]), \
            np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int64), failed
    return (pd.DataFrame(rows), np.concatenate(verts), np.concatenate(tris), np.concatenate(owner), failed)


def ingest_ifc(store: Store, path: str | Path, *, building_id: str | None = None, anchor: str | None = None,
               crs: str | None = None, step=lambda _: None) -> dict:
    """Place an IFC model on the map and store it as a BIM mesh of a building (inside the store's transaction).

    Returns
    -------
    dict
        JSON-ready summary with ``georef`` (source, crs, eastings, northings, height, rotation_deg, scale,
        conflicts, warnings), element counts, the building it went to and timings.
    """
    timer = StageTimer(step)
    where = str(path)
    model = open_ifc(path)
    district = store.district
    placement, conflicts, warnings, offset = choose_placement(model, anchor=anchor, where=where,
                                                              grid_crs=district.crs if district else None)
    timer.lap("read")
    elements, local, triangles, owner, failed = model_elements(model)
    if len(elements) == 0:
        raise InputError(f"{where}: none of its {len(failed)} products with geometry could be triangulated "
                         f"(first: {failed[0]['ifc_class'] + ' ' + failed[0]['global_id'] if failed else 'none'}).")
    timer.lap("geometry")
    buildings = model.by_type("IfcBuilding")
    stored = store_model(
        store, on_map=placement.to_map(local - offset), map_crs=placement.crs, triangles=triangles, owner=owner,
        elements=elements, building_id=building_id, crs=crs, where=where, warnings=warnings,
        new_building={"source": "ifc", "source_id": buildings[0].GlobalId if buildings else Path(path).stem,
                      "name": (buildings[0].Name if buildings else None) or Path(path).stem,
                      "floors": max(1, len(model.by_type("IfcBuildingStorey")))})
    timer.lap("place and store")
    counts = elements["ifc_class"].value_counts()
    return {
        "file": where, "schema": model.schema, **stored,
        "elements": len(elements), "hidden_elements": int(elements["hidden"].sum()),
        "elements_by_class": {k: int(v) for k, v in counts.items()}, "triangles": int(len(triangles)),
        "skipped": failed,
        "georef": {**placement.as_dict(), "conflicts": conflicts, "warnings": warnings},
        "timings_s": timer.timings,
    }


