"""``twin ingest footprints``: footprint files into buildings and LOD1 meshes.

Reading is at the edge (:func:`read_footprints`); the cleaning and meshing
are pure functions in :mod:`twin.geo.footprints` and :mod:`twin.geo.mesh`; writing is
:func:`twin.buildings.upsert_buildings`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from twin.buildings import building_ids, upsert_buildings
from twin.geo.crs import (MAX_DISTANCE_FROM_ORIGIN_M, District, check_near_origin, parse_crs, require_projected,
                      transform_geometries, utm_crs_for)
from twin.errors import CRSError, InputError
from twin.geo.footprints import prepare_footprints
from twin.geo.mesh import extrude_footprints
from twin.store.store import Store
from twin.timing import StageTimer

log = logging.getLogger(__name__)

FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GeoPackage", ".shp": "Shapefile",
           ".zip": "zipped Shapefile", ".parquet": "GeoParquet", ".geoparquet": "GeoParquet"}
BUILDING_LAYER_NAMES = ("buildings", "building", "footprints")

Step = Callable[[str], None]


def _no_step(_: str) -> None:
    return None


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk step, and resume it after.

    Reading, transforming and cleaning footprints make one Python object per
    geometry, several times over; they form no reference cycles, and
    reference counting frees them, so the collector's full passes over them
    (tens of milliseconds each at 13,000 footprints, far more at a million)
    are wasted work. Any cycles made meanwhile wait until it resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@collector_paused()
def read_footprints(path: str | Path, *, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a GeoJSON, GeoPackage, Shapefile or GeoParquet file of footprints.

    Parameters
    ----------
    path : path-like
    layer : str, optional
        Layer of a multi-layer file. Without it, a layer named ``buildings``
        is taken, or the only layer.

    Returns
    -------
    GeoDataFrame
        The features as read, in the file's CRS (``crs`` None when the file has none).
    """
    path = checked_path(path)
    return read_layer(path, layer=layer or (None if FORMATS[path.suffix.lower()] == "GeoParquet"
                                            else _default_layer(path)))


def checked_path(path: str | Path) -> Path:
    """``path`` as a Path, if it exists and has one of the :data:`FORMATS` suffixes."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file.")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown format {suffix!r}; expected one of "
                         f"{', '.join(sorted(FORMATS))} ({', '.join(sorted(set(FORMATS.values())))}).")
    return path


# a ShapelyError is a geometry GEOS cannot build (an unclosed or too short ring)
_READ_ERRORS = (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, shapely.errors.ShapelyError,
                ValueError, OSError)


def _unreadable(path: Path, exc: Exception) -> InputError:
    return InputError(f"{path}: cannot read it as {FORMATS[path.suffix.lower()]} ({exc}). "
                      "Check that the file is complete and of that format.")


def read_layer(path: Path, *, layer: str | None) -> gpd.GeoDataFrame:
    """One layer of a file of :func:`checked_path` (None: its only one), in the file's CRS."""
    try:
        if FORMATS[path.suffix.lower()] == "GeoParquet":
            return gpd.read_parquet(path)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Several features with id.*")
            return gpd.read_file(path, layer=layer, engine="pyogrio", use_arrow=True)
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


def layer_names(path: Path) -> list[str]:
    """The layers of a file of :func:`checked_path` (one, unnamed, for GeoParquet)."""
    if FORMATS[path.suffix.lower()] == "GeoParquet":
        return [path.stem]
    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


def _default_layer(path: Path) -> str | None:
    layers = layer_names(path)
    if len(layers) <= 1:
        return None
    named = [name for name in layers if name.lower() in BUILDING_LAYER_NAMES]
    if named:
        return named[0]
    raise InputError(f"{path}: has {len(layers)} layers ({', '.join(layers)}); "
                     "choose the footprint layer with --layer NAME.")


def district_for(store: Store, bounds: np.ndarray, *, source_crs: str, crs: str | None, where: str) -> District:
    """The store's district, or a new one for data within ``bounds`` (``crs``, else the data's UTM zone).

    Parameters
    ----------
    bounds : ndarray, shape (4,)
        ``xmin, ymin, xmax, ymax`` of the incoming data in ``source_crs``.
    """
    current = store.district
    if current is not None:
        if crs is not None and require_projected(parse_crs(crs, what="--crs"), what="--crs") != current.crs:
            raise CRSError(f"{where}: --crs {crs} differs from this store's district CRS {current.crs}. "
                           "Leave out --crs, or use a new store for another CRS.")
        return current
    box = np.array([shapely.box(*bounds)])
    if crs is not None:
        chosen = require_projected(parse_crs(crs, what="--crs"), what="--crs")
    else:
        lonlat = shapely.get_coordinates(shapely.centroid(transform_geometries(box, source_crs, "EPSG:4326")))
        chosen = utm_crs_for(*lonlat[0])
        log.info("new store: district CRS %s (the data's UTM zone)", chosen)
    b = shapely.bounds(transform_geometries(box, source_crs, chosen))[0]
    district = District(crs=chosen, origin=(float(np.round((b[0] + b[2]) / 2)), float(np.round((b[1] + b[3]) / 2)), 0.0))
    store.set_district(district)
    return district


@collector_paused()
def ingest_footprints(
    store: Store,
    features: gpd.GeoDataFrame,
    *,
    source: str,
    where: str,
    source_crs: str | None = None,
    crs: str | None = None,
    id_attr: str | None = None,
    height_attr: str | None = None,
    levels_attr: str | None = None,
    storey_height: float = 3.0,
    default_height: float | None = None,
    step: Step = _no_step,
) -> dict:
    """Clean, mesh and upsert footprints into an open store (inside its transaction).

    Parameters
    ----------
    store : Store
        Open, inside :meth:`Store.transaction` or :func:`twin.store.store.open_for_command`.
    features : GeoDataFrame
        Footprints as read.
    source : str
        Name of the source; with each feature's id it makes the stable
        ``building_id`` (``source:source_id``), so re-ingesting updates in place.
    where : str
        File (and layer) for messages.
    source_crs, crs : str, optional
        CRS of a file that has none; district CRS of a new store.
    step : callable, optional
        Called with the name of each stage, for progress bars.

    Returns
    -------
    dict
        JSON-ready summary: counts, the cleaning report and timings in seconds.
    """
    timer = StageTimer(step)
    lap = timer.lap
    src = source_crs_of(features, source_crs=source_crs, where=where)
    district = district_for(store, features.total_bounds, source_crs=src, crs=crs, where=where)
    geoms = transform_geometries(np.asarray(features.geometry.values, dtype=object), src, district.crs)
    projected = gpd.GeoDataFrame(features.drop(columns=features.geometry.name), geometry=geoms, crs=district.crs)
    lap("transform")
    buildings, report = prepare_footprints(projected, where=where, id_attr=id_attr, height_attr=height_attr,
                                           levels_attr=levels_attr, storey_height=storey_height,
                                           default_height=default_height)
    if len(buildings) == 0:
        raise InputError(f"{where}: no footprint polygons to ingest ({report.features_read} features read, "
                         f"{len(report.skipped)} skipped: not polygons or empty).")
    _check_centroids_near_origin(np.asarray(buildings.geometry.values, dtype=object), district, where=where)
    lap("clean")
    meshes = extrude_footprints(buildings.geometry.values, base_z=buildings["base_z"].to_numpy(),
                                height=buildings["height"].to_numpy(), origin=district.origin)
    lap("mesh")
    buildings["source"] = source
    buildings["building_id"] = building_ids(source, buildings["source_id"])
    counts = upsert_buildings(store.con, buildings, meshes)
    lap("store")
    return {"file": where, "source": source, "crs": district.crs, "source_crs": src,
            "buildings": len(buildings), **counts, "triangles": int(len(meshes.triangles)),
            **report.as_dict(), "timings_s": timer.timings}


def _check_centroids_near_origin(polygons: np.ndarray, district: District, *, where: str) -> None:
    """:func:`twin.geo.crs.check_near_origin` on the footprints' centroids.

    A centroid lies within its footprint's bounding box, so when even the
    farthest corner of every box is near enough the check passes as it is,
    without making the centroids.
    """
    bounds = shapely.bounds(polygons)
    dx = np.maximum(np.abs(bounds[:, 0] - district.origin[0]), np.abs(bounds[:, 2] - district.origin[0]))
    dy = np.maximum(np.abs(bounds[:, 1] - district.origin[1]), np.abs(bounds[:, 3] - district.origin[1]))
    if np.all(np.hypot(dx, dy) <= MAX_DISTANCE_FROM_ORIGIN_M):
        return
    check_near_origin(shapely.get_coordinates(shapely.centroid(polygons)), district, what=where)


def source_crs_of(features: gpd.GeoDataFrame, *, source_crs: str | None, where: str) -> str:
    """The CRS of data as read: the file's own, or ``source_crs`` for a file without one, as EPSG:N or WKT."""
    given = None if source_crs is None else parse_crs(source_crs, what="--source-crs")
    if features.crs is None:
        if given is None:
            raise CRSError(f"{where}: the file has no CRS. Give the CRS its coordinates are in with "
                           "--source-crs, for example --source-crs EPSG:4326 for longitude/latitude.")
        found = given
    elif given is not None and not given.equals(features.crs):
        raise CRSError(f"{where}: --source-crs {source_crs} contradicts the file's own CRS "
                       f"{features.crs.to_string()}. Leave out --source-crs, or fix the file.")
    else:
        found = features.crs
    code = found.to_epsg()
    return f"EPSG:{code}" if code is not None else found.to_wkt()
