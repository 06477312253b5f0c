"""The ground under the buildings: roads, water and green space as polygons (the ``basemap`` table).

:func:`basemap_rows` turns one layer as read (GeoJSON, GeoPackage, OSM-style
tagged features) into store rows: each feature gets a kind (``road``,
``water`` or ``green``), lines are buffered to their width (a ``width``
column, else their ``highway`` or ``waterway`` class's), and everything
becomes polygons in the district CRS, to the centimetre. :func:`load_basemap`
reads the rows back for drawing. Reading files and writing the store are at
the edges (:mod:`ingest.basemap`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from twin.errors import InputError
from twin.geo.crs import transform_geometries
from twin.store.schema import BASEMAP_KINDS

log = logging.getLogger(__name__)

PRECISION_M = 0.01  # coordinates are kept to the centimetre
# Carriageway widths (m) of OSM highway classes, for lines without a width of their own.
ROAD_WIDTH_M = {"motorway": 24.0, "trunk": 20.0, "primary": 16.0, "secondary": 12.0, "tertiary": 10.0,
                "motorway_link": 8.0, "trunk_link": 8.0, "primary_link": 8.0, "secondary_link": 7.0,
                "tertiary_link": 7.0, "residential": 7.0, "unclassified": 6.0, "living_street": 5.0,
                "service": 4.0, "pedestrian": 5.0, "track": 3.0, "busway": 7.0, "cycleway": 2.0,
                "footway": 2.0, "path": 1.5, "steps": 2.0, "bridleway": 2.0}
WATERWAY_WIDTH_M = {"river": 20.0, "canal": 10.0, "stream": 3.0, "ditch": 1.5, "drain": 1.5, "brook": 2.0}
DEFAULT_WIDTH_M = {"road": 6.0, "water": 5.0, "green": 2.0}  # lines of a kind and of no known class
# OSM tags that make a feature water or green space (any highway=* makes a road, any waterway=* water).
WATER_TAGS = {"natural": ("water", "bay", "strait"), "landuse": ("reservoir", "basin"), "water": None}
GREEN_TAGS = {"leisure": ("park", "garden", "playground", "nature_reserve", "common", "dog_park"),
              "landuse": ("grass", "forest", "meadow", "recreation_ground", "village_green", "orchard",
                          "allotments", "cemetery"),
              "natural": ("wood", "scrub", "grassland", "heath")}
ID_COLUMNS = ("id", "@id", "osm_id", "fid")
POLYGONS = ("Polygon", "MultiPolygon")
DRAW_ORDER = ("green", "water", "road")  # bottom to top where they overlap (a road bridges a river)


@dataclass
class BasemapReport:
    """What became of one layer's features.

    Attributes
    ----------
    features_read : int
    kinds : dict of str to int
        Rows made, per kind.
    untagged : list of str
        Features with no kind (no ``kind`` column value, no tag, no default kind), left out.
    points : list of str
        Point features, left out: the ground is lines and areas.
    """

    features_read: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    untagged: list[str] = field(default_factory=list)
    points: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"features_read": self.features_read, "kinds": dict(self.kinds), "untagged": len(self.untagged),
                "points": len(self.points)}


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A text column, lower-cased and stripped; all missing when the frame has none."""
    if name not in frame.columns:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    values = frame[name].astype(object).where(frame[name].notna(), None)
    return values.map(lambda v: str(v).strip().lower() if v is not None and str(v).strip() else None)


def _tagged(frame: pd.DataFrame, tags: dict[str, tuple[str, ...] | None]) -> np.ndarray:
    hit = np.zeros(len(frame), dtype=bool)
    for key, values in tags.items():
        col = _column(frame, key)
        hit |= (col.notna() if values is None else col.isin(values)).to_numpy()
    return hit


def classify_features(frame: pd.DataFrame, *, kind: str | None = None, where: str,
                      names: pd.Series | None = None) -> np.ndarray:
    """The basemap kind of each feature, or None for a feature with none.

    An explicit ``kind`` column wins; then OSM tags (``highway=*`` a road;
    ``waterway=*``, ``natural=water``, ``landuse=reservoir|basin`` or
    ``water=*`` water; ``leisure=park``, ``landuse=grass|forest|meadow``,
    ``natural=wood`` and the like green space); then ``kind``, the layer's
    default.

    Parameters
    ----------
    frame : DataFrame
        The features' attributes, shape (n, ...).
    kind : {"road", "water", "green"}, optional
        The kind of features the column and tags leave without one.
    where : str
        File and layer, for messages.
    names : Series of str, optional
        How messages name each feature (default: its row number).

    Returns
    -------
    ndarray of object, shape (n,)
    """
    if kind is not None and kind not in BASEMAP_KINDS:
        raise InputError(f"{where}: --kind {kind!r} is not a basemap kind; expected one of "
                         f"{', '.join(BASEMAP_KINDS)}.")
    explicit = _column(frame, "kind")
    unknown = explicit.notna() & ~explicit.isin(BASEMAP_KINDS)
    if unknown.any():
        first = int(np.flatnonzero(unknown.to_numpy())[0])
        label = names.iloc[first] if names is not None else f"feature {first}"
        raise InputError(f"{where}: {label} has kind {explicit.iloc[first]!r} ({int(unknown.sum())} such features); "
                         f"expected one of {', '.join(BASEMAP_KINDS)}. Fix the kind column, or drop it to "
                         "classify the features by their OSM tags.")
    out = np.full(len(frame), kind, dtype=object)
    out[_tagged(frame, GREEN_TAGS)] = "green"
    out[_tagged(frame, {**WATER_TAGS, "waterway": None})] = "water"
    out[_tagged(frame, {"highway": None})] = "road"
    given = explicit.notna().to_numpy()
    out[given] = explicit.to_numpy()[given]
    return out


def _number(text: object) -> float:
    """The leading number of an OSM-style width (``"7"``, ``"7.5 m"``), NaN when there is none."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return np.nan
    if isinstance(text, int | float | np.number):
        return float(text)
    found = re.match(r"\s*([0-9]+(?:[.,][0-9]+)?)", str(text))
    return float(found.group(1).replace(",", ".")) if found else np.nan


def feature_widths(frame: pd.DataFrame, kinds: np.ndarray) -> np.ndarray:
    """The width (m) each line feature is buffered to: its ``width`` column, else its class's, else its kind's.

    Returns
    -------
    ndarray, shape (n,), float64
        Metres, > 0.
    """
    widths = np.array([DEFAULT_WIDTH_M.get(k, 0.0) for k in kinds], dtype=np.float64)
    for key, table in (("waterway", WATERWAY_WIDTH_M), ("highway", ROAD_WIDTH_M)):
        by_class = _column(frame, key).map(table).to_numpy(dtype=np.float64, na_value=np.nan)
        widths = np.where(np.isfinite(by_class), by_class, widths)
    if "width" in frame.columns:
        given = np.array([_number(v) for v in frame["width"].to_numpy(dtype=object)], dtype=np.float64)
        widths = np.where(np.isfinite(given) & (given > 0), given, widths)
    return widths


def feature_names(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each feature's source id (its ``id``-like column, else its row number) and how messages name it."""
    column = next((c for c in ID_COLUMNS if c in frame.columns), None)
    if column is None:
        ids = pd.Series([str(i) for i in range(len(frame))], index=frame.index)
        return ids, ids.map(lambda i: f"feature {i}")
    ids = frame[column].astype(object).where(frame[column].notna(), None)
    ids = pd.Series([str(v) if v is not None else str(i) for i, v in enumerate(ids)], index=frame.index)
    return ids, pd.Series([f"feature {i} ({column} {v})" for i, v in enumerate(ids)], index=frame.index)


def basemap_rows(features: gpd.GeoDataFrame, *, source: str, layer: str, where: str, source_crs: str,
                 crs: str, kind: str | None = None) -> tuple[gpd.GeoDataFrame, BasemapReport]:
    """One layer's features as ``basemap`` rows: polygons in the district CRS, to the centimetre.

    Parameters
    ----------
    features : GeoDataFrame
        The layer as read, shape (n, ...), coordinates in ``source_crs``.
    source : str
        The source's name (``feature_id`` is ``source:layer:source_id``).
    layer : str
        The layer's name.
    where : str
        File and layer, for messages.
    source_crs, crs : str
        The features' CRS and the district's (projected, metres).
    kind : {"road", "water", "green"}, optional
        The kind of the features that have none of their own (see :func:`classify_features`).

    Returns
    -------
    rows : GeoDataFrame
        ``feature_id``, ``kind``, ``name``, ``source``, ``source_id`` and polygonal ``geometry`` in ``crs``.
    report : BasemapReport

    Raises
    ------
    twin.errors.InputError
        A feature without geometry, of an unknown kind, or a layer of which no feature has a kind.
    """
    report = BasemapReport(features_read=len(features))
    ids, labels = feature_names(features)
    geoms = np.asarray(features.geometry.values, dtype=object)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise InputError(f"{where}: {labels.iloc[first]} has no geometry ({int(missing.sum())} such features). "
                         "Give every feature a line or polygon, or remove the ones without.")
    kinds = classify_features(features, kind=kind, where=where, names=labels)
    types = shapely.get_type_id(geoms)
    points = np.isin(types, (shapely.GeometryType.POINT, shapely.GeometryType.MULTIPOINT))
    report.points = labels[points].tolist()
    untagged = pd.isna(kinds) & ~points
    report.untagged = labels[untagged].tolist()
    keep = ~points & ~untagged
    if not keep.any():
        raise InputError(f"{where}: none of its {len(features)} features is a road, water or green space "
                         f"({len(report.points)} points, {len(report.untagged)} without a kind column or OSM tag). "
                         "Give the layer's kind with --kind road|water|green or a kind column, or leave the layer out "
                         "(--layer chooses the layers to read).")
    widths = feature_widths(features, kinds)
    projected = transform_geometries(geoms[keep], source_crs, crs)
    lines = np.isin(shapely.get_type_id(projected), (shapely.GeometryType.LINESTRING,
                                                     shapely.GeometryType.MULTILINESTRING,
                                                     shapely.GeometryType.LINEARRING))
    shapes = projected.copy()
    shapes[lines] = shapely.buffer(projected[lines], widths[keep][lines] / 2, quad_segs=4, join_style="round")
    shapes = shapely.set_precision(_polygonal(shapely.make_valid(shapes)), PRECISION_M)
    empty = shapely.is_empty(shapes) | shapely.is_missing(shapes)
    if empty.any():
        log.info("%s: %d features too small for the centimetre grid, left out", where, int(empty.sum()))
    at = np.flatnonzero(keep)[~empty]  # the rows' positions in the layer
    source_ids = _unique(ids.to_numpy(dtype=object)[at])
    names = (features["name"].to_numpy(dtype=object)[at] if "name" in features.columns
             else np.full(len(at), None, dtype=object))
    rows = gpd.GeoDataFrame({
        "feature_id": [f"{source}:{layer}:{s}" for s in source_ids],
        "kind": kinds[at].astype(str),
        "name": [None if pd.isna(v) else str(v) for v in names],
        "source": source,
        "source_id": source_ids,
    }, geometry=gpd.GeoSeries(shapes[~empty], crs=crs), crs=crs)
    report.kinds = {k: int(n) for k, n in rows["kind"].value_counts().items()}
    return rows, report


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Only the polygons of each geometry (a repaired one may hold lines or points too)."""
    out = geoms.copy()
    mixed = ~np.isin(shapely.get_type_id(geoms), (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON))
    for i in np.flatnonzero(mixed):
        parts = [p for p in shapely.get_parts(geoms[i]) if p.geom_type in POLYGONS]
        out[i] = shapely.union_all(parts) if parts else shapely.Polygon()
    return out


def _unique(ids: np.ndarray) -> list[str]:
    """Ids made unique within a layer: a repeated one (a feature cut by tile borders) gets ``#2``, ``#3``..."""
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    return out


def load_basemap(con: duckdb.DuckDBPyConnection, *, bbox: tuple[float, float, float, float] | None = None
                 ) -> gpd.GeoDataFrame:
    """The basemap's polygons for drawing, in the district CRS, in the order they are drawn (green, water, roads).

    Parameters
    ----------
    bbox : tuple of float, optional
        ``xmin, ymin, xmax, ymax`` (m, district CRS): only features whose box meets it.

    Returns
    -------
    GeoDataFrame
        ``feature_id``, ``kind``, ``name`` and ``geometry`` (in the district CRS), shape (n, 4).
    """
    where, args = "", []
    if bbox is not None:
        where = ("WHERE ST_XMax(geometry) >= ? AND ST_XMin(geometry) <= ? AND ST_YMax(geometry) >= ? "
                 "AND ST_YMin(geometry) <= ?")
        args = [bbox[0], bbox[2], bbox[1], bbox[3]]
    order = " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(DRAW_ORDER))
    frame = con.execute(f"SELECT feature_id, kind, name, ST_AsWKB(geometry) AS wkb FROM basemap {where} "
                        f"ORDER BY CASE kind {order} END, feature_id", args).df()
    wkb = frame.pop("wkb")
    geoms = shapely.from_wkb(wkb.map(bytes).to_numpy()) if len(wkb) else np.array([], dtype=object)
    crs = con.execute("SELECT any_value(value) FROM meta WHERE key = 'crs'").fetchone()[0]
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)

