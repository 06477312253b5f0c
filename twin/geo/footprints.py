"""Footprints into buildings: ids, repairs, merges, splits and heights.

Pure functions on GeoDataFrames already in the district CRS. Reading files
and writing the store happen at the edges (:mod:`ingest.footprints`,
:mod:`twin.store.store`). Everything the cleaning does to real, messy data is
recorded in a :class:`FootprintReport`, by source id and reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from twin.errors import InputError

log = logging.getLogger(__name__)

ID_CANDIDATES = ("id", "osm_id", "@id", "uID", "building_id", "fid", "ID", "OBJECTID")
LEVELS_CANDIDATES = ("building:levels", "levels", "floors", "num_floors", "building_levels")
NAME_CANDIDATES = ("name", "NAME", "name:zh")
MAX_PLAUSIBLE_HEIGHT_M = 1000.0
MIN_PART_AREA_M2 = 0.01  # slivers left by repairs


@dataclass
class FootprintReport:
    """What the cleaning did, by source id and reason (JSON-ready lists of dicts)."""

    features_read: int = 0
    skipped: list[dict] = field(default_factory=list)
    repaired: list[dict] = field(default_factory=list)
    merged: list[dict] = field(default_factory=list)
    split: list[dict] = field(default_factory=list)
    height_notes: list[dict] = field(default_factory=list)
    height_sources: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"features_read": self.features_read, "skipped": self.skipped, "repaired": self.repaired,
                "merged": self.merged, "split": self.split, "height_notes": self.height_notes,
                "height_sources": self.height_sources}


def _pick_column(gdf: pd.DataFrame, given: str | None, candidates: tuple[str, ...], *, what: str,
                 where: str) -> str | None:
    if given is not None:
        if given not in gdf.columns:
            cols = ", ".join(c for c in gdf.columns if c != gdf.geometry.name) or "(none)"
            raise InputError(f"{where}: there is no attribute {given!r} for the {what}; "
                             f"the features have: {cols}.")
        return given
    return next((c for c in candidates if c in gdf.columns), None)


def _text_ids(values: pd.Series) -> pd.Series:
    """Ids as text, with integral floats written without '.0' (those beyond 2**53 are not exact integers)."""
    if pd.api.types.is_float_dtype(values):
        known = values.dropna()
        if known.mod(1).eq(0).all() and known.abs().lt(2.0**53).all():
            values = values.astype("Int64")
    return values.astype("string")


def parse_lengths(values: pd.Series) -> pd.Series:
    """Lengths in metres from numbers or OSM-style text ('25', '25 m', '25.5m').

    Returns float64 with NaN where the value is missing, not positive or not a length.
    """
    if pd.api.types.is_numeric_dtype(values):
        out = values.astype("float64")
    else:
        text = values.astype("string").str.strip()
        number = text.str.extract(r"^([0-9]+(?:\.[0-9]+)?)\s*(?:m|metres|meters)?$", flags=re.I)[0]
        out = pd.to_numeric(number, errors="coerce").astype("float64")
    return out.where(out > 0)


def _polygonal_part(geoms: np.ndarray) -> np.ndarray:
    """Keep the polygons of each geometry (as Polygon/MultiPolygon); None when there are none."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    is_poly = shapely.get_type_id(parts) == 3
    out = np.full(len(geoms), None, dtype=object)
    if is_poly.any():
        holders, dense, counts = np.unique(owner[is_poly], return_inverse=True, return_counts=True)
        multi = shapely.multipolygons(parts[is_poly], indices=dense)
        out[holders] = multi
        single = counts == 1
        out[holders[single]] = shapely.get_geometry(multi[single], 0)
    return out


def _without_empty_holes(polys: np.ndarray) -> np.ndarray:
    """Polygons with any empty interior ring (GeoJSON ``[]``, valid to GEOS) rebuilt without it."""
    holed = np.flatnonzero(shapely.get_num_interior_rings(polys) > 0)
    for i in holed:
        holes = [ring for ring in polys[i].interiors if not ring.is_empty]
        if len(holes) < len(polys[i].interiors):
            polys[i] = shapely.Polygon(polys[i].exterior, holes)
    return polys


def prepare_footprints(
    features: gpd.GeoDataFrame,
    *,
    where: str,
    id_attr: str | None = None,
    height_attr: str | None = None,
    levels_attr: str | None = None,
    min_height_attr: str | None = None,
    storey_height: float = 3.0,
    default_height: float | None = None,
) -> tuple[gpd.GeoDataFrame, FootprintReport]:
    """Clean footprints into one row per building.

    Parameters
    ----------
    features : GeoDataFrame
        Footprint features in a projected CRS in metres.
    where : str
        Name of the source (file and layer) for error messages.
    id_attr, height_attr, levels_attr, min_height_attr : str, optional
        Attribute names; when not given, common names are tried
        (``id``, ``height``, ``building:levels``, ``min_height``...).
    storey_height : float
        Metres per level when only levels are known.
    default_height : float, optional
        Metres for features with neither height nor levels; without it such
        features are an error.

    Returns
    -------
    buildings : GeoDataFrame
        Columns ``source_id``, ``name``, ``address``, ``height`` (m above
        ``base_z``), ``base_z`` (m), ``floors``, ``height_source`` and the
        footprint ``geometry`` (valid Polygons).
    report : FootprintReport
    """
    if storey_height <= 0:
        raise InputError(f"{where}: storey height must be positive metres, found {storey_height}.")
    if default_height is not None and default_height <= 0:
        raise InputError(f"{where}: --default-height must be positive metres, found {default_height}.")
    report = FootprintReport(features_read=len(features))
    id_col = _pick_column(features, id_attr, ID_CANDIDATES, what="building id", where=where)
    height_col = _pick_column(features, height_attr, ("height",), what="height", where=where)
    levels_col = _pick_column(features, levels_attr, LEVELS_CANDIDATES, what="levels", where=where)
    min_col = _pick_column(features, min_height_attr, ("min_height",), what="minimum height", where=where)
    name_col = _pick_column(features, None, NAME_CANDIDATES, what="name", where=where)

    n = len(features)
    ids = (_text_ids(features[id_col]) if id_col else pd.Series([None] * n, dtype="string")).reset_index(drop=True)
    if ids.isna().any():  # number the features without an id by their row
        rows = pd.Series(np.arange(1, n + 1), dtype="string")
        ids = ids.fillna("feature-" + rows)
    frame = pd.DataFrame({
        "source_id": ids,
        "name": features[name_col].astype("string").reset_index(drop=True) if name_col else pd.NA,
        "address": _addresses(features).reset_index(drop=True),
        "height": parse_lengths(features[height_col]).reset_index(drop=True) if height_col else np.nan,
        "levels": parse_lengths(features[levels_col]).reset_index(drop=True) if levels_col else np.nan,
        "min_height": parse_lengths(features[min_col]).reset_index(drop=True) if min_col else np.nan,
    })
    too_tall = frame["height"] > MAX_PLAUSIBLE_HEIGHT_M
    if too_tall.any():
        for sid, h in zip(frame.loc[too_tall, "source_id"], frame.loc[too_tall, "height"]):
            report.height_notes.append({"source_id": sid, "reason": f"height {h} m is over "
                                        f"{MAX_PLAUSIBLE_HEIGHT_M:.0f} m; ignored"})
        frame.loc[too_tall, "height"] = np.nan
    # Levels or a base that would put the building over the plausible height are ignored the same way
    # (they would also overflow the whole-floor count).
    for column, scale, unit in (("levels", storey_height, f" x {storey_height} m"), ("min_height", 1.0, " m")):
        implausible = frame[column] * scale > MAX_PLAUSIBLE_HEIGHT_M
        for sid, v in zip(frame.loc[implausible, "source_id"], frame.loc[implausible, column]):
            report.height_notes.append({"source_id": sid, "reason": f"{column} {v}{unit} is over "
                                        f"{MAX_PLAUSIBLE_HEIGHT_M:.0f} m; ignored"})
        frame.loc[implausible, column] = np.nan
    geoms = np.asarray(features.geometry.values, dtype=object)

    # 1. Skip what is not a footprint; repair invalid rings.
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    type_ids = shapely.get_type_id(geoms)
    polygonal = np.isin(type_ids, (3, 6, 7))  # Polygon, MultiPolygon, GeometryCollection
    for i in np.flatnonzero(missing | ~polygonal):
        kind = "empty geometry" if missing[i] else f"{geoms[i].geom_type} is not a polygon"
        report.skipped.append({"source_id": frame.source_id[i], "reason": kind})
    usable = ~missing & polygonal
    # Points a projection cannot place (far outside the CRS's area) come back infinite: no footprint.
    infinite = np.zeros(len(geoms), dtype=bool)
    if usable.any() and not np.isfinite(shapely.total_bounds(geoms[usable])).all():
        coords, owner = shapely.get_coordinates(np.where(usable, geoms, None), return_index=True)
        infinite[owner[~np.isfinite(coords).all(axis=1)]] = True
    for sid in frame.source_id[infinite]:
        report.skipped.append({"source_id": sid, "reason": "coordinates that are not finite (a point outside "
                                                           "the area the district's CRS covers?)"})
    usable &= ~infinite
    invalid = usable & ~shapely.is_valid(geoms)
    if invalid.any():
        reasons = shapely.is_valid_reason(geoms[invalid])
        geoms = geoms.copy()
        try:
            geoms[invalid] = shapely.make_valid(geoms[invalid])
        except shapely.errors.GEOSException:  # one of them overflows GEOS (coordinates near 1e308): find it
            for i in np.flatnonzero(invalid):
                try:
                    geoms[i] = shapely.make_valid(geoms[i])
                except shapely.errors.GEOSException as exc:
                    geoms[i], usable[i] = None, False
                    report.skipped.append({"source_id": frame.source_id[i], "reason": f"unrepairable ring ({exc})"})
        for sid, why, geom in zip(frame.source_id[invalid], reasons, geoms[invalid]):
            if geom is not None:
                report.repaired.append({"source_id": sid, "reason": f"invalid ring ({why}); repaired with make_valid"})
    polys = np.where(usable, geoms, None)
    mixed = usable & (shapely.get_type_id(polys) != 3)  # multi-part or repaired into collections
    polys[mixed] = _polygonal_part(polys[mixed])
    polys = _without_empty_holes(polys)
    lost = usable & shapely.is_missing(polys)
    if lost.any():
        for sid in frame.source_id[lost]:
            report.skipped.append({"source_id": sid, "reason": "no polygon left after repair"})
    frame["geometry"] = polys
    keep = usable & ~lost
    if not keep.all():
        frame = frame[keep].reset_index(drop=True)

    # 2. Features that share one id (a building cut at tile edges) become one building.
    frame = _merge_shared_ids(frame, report)

    # 3. Heights: height attribute, else levels x storey height, else the default.
    source = np.where(frame["height"].notna(), "height", np.where(frame["levels"].notna(), "levels", "default"))
    lacking = source == "default"
    if lacking.any() and default_height is None:
        sample = ", ".join(frame.source_id[lacking].head(5))
        raise InputError(
            f"{where}: {int(lacking.sum())} of {len(frame)} buildings have no height and no levels "
            f"(for example {sample}). Give --default-height M to use M metres for them, or "
            f"--height-attr/--levels-attr to name the attributes that hold them.")
    base = frame["min_height"].fillna(0.0)
    # OSM: height is the top above ground; levels (and our default) count from min_height up.
    top = frame["height"].fillna(base + frame["levels"] * storey_height).fillna(base + (default_height or 0.0))
    bad_base = base >= top
    if bad_base.any():
        for sid, b, t in zip(frame.source_id[bad_base], base[bad_base], top[bad_base]):
            report.height_notes.append({"source_id": sid, "reason": f"min_height {b} m is not below the "
                                        f"height {t} m; min_height ignored"})
        base = base.where(~bad_base, 0.0)
    frame["base_z"] = base
    frame["height"] = top - base
    frame["height_source"] = source
    frame["floors"] = frame["levels"].round().astype("Int64").fillna(
        np.maximum(1, np.round(frame["height"] / storey_height)).astype("Int64"))

    # 4. Each disjoint part of a MultiPolygon becomes its own building.
    frame = _split_multipolygons(frame, report)
    report.height_sources = {k: int(v) for k, v in frame["height_source"].value_counts().items()}
    out = gpd.GeoDataFrame(
        frame[["source_id", "name", "address", "height", "base_z", "floors", "height_source"]],
        geometry=_without_repeated_points(frame["geometry"].to_numpy()),
        crs=features.crs)
    return out, report


def _without_repeated_points(geoms: np.ndarray) -> np.ndarray:
    """``shapely.remove_repeated_points``, run only on the geometries that have a repeated point.

    Consecutive equal (or non-finite) coordinates are found on all coordinates
    at once; a pair that straddles two rings or two geometries at most sends a
    geometry through the GEOS call for nothing. The others come back as they
    are, which is what the GEOS call would return for them.
    """
    coords = shapely.get_coordinates(geoms)
    if len(coords) == 0:
        return shapely.remove_repeated_points(geoms)
    x, y = coords[:, 0], coords[:, 1]
    repeated = np.flatnonzero((x[1:] == x[:-1]) & (y[1:] == y[:-1]))
    odd = np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))
    ends = np.cumsum(shapely.get_num_coordinates(geoms))
    suspect = np.zeros(len(geoms), dtype=bool)
    suspect[np.searchsorted(ends, np.concatenate([repeated, odd]), side="right")] = True
    out = np.array(geoms, dtype=object, copy=True)
    if suspect.any():
        out[suspect] = shapely.remove_repeated_points(out[suspect])
    return out


def _addresses(features: pd.DataFrame) -> pd.Series:
    for street, number in (("addr:street", "addr:housenumber"), ("addr_street", "addr_housenumber")):
        if street in features.columns:
            s = features[street].astype("string")
            if number in features.columns:
                s = (s + " " + features[number].astype("string").fillna("")).str.strip()
            return s
    if "address" in features.columns:
        return features["address"].astype("string")
    return pd.Series(pd.NA, index=features.index, dtype="string")


def _merge_shared_ids(frame: pd.DataFrame, report: FootprintReport) -> pd.DataFrame:
    shared = frame["source_id"].duplicated(keep=False)
    if not shared.any():
        return frame
    rows = []
    for sid, group in frame[shared].groupby("source_id", sort=False):
        row = group.iloc[int(np.argmax(shapely.area(group["geometry"].to_numpy())))].copy()
        row["geometry"] = shapely.union_all(group["geometry"].to_numpy())
        row["height"] = group["height"].max()
        row["levels"] = group["levels"].max()
        row["min_height"] = group["min_height"].min()
        row["name"] = group["name"].dropna().iloc[0] if group["name"].notna().any() else pd.NA
        rows.append(row)
        report.merged.append({"source_id": sid, "pieces": len(group),
                              "reason": f"{len(group)} features share this id; merged into one building"})
    merged = pd.DataFrame(rows)
    return pd.concat([frame[~shared], merged], ignore_index=True)


def _split_multipolygons(frame: pd.DataFrame, report: FootprintReport) -> pd.DataFrame:
    is_multi = shapely.get_type_id(frame["geometry"].to_numpy()) != 3
    if not is_multi.any():
        return frame
    single, frame = frame[~is_multi], frame[is_multi].reset_index(drop=True)
    geoms = frame["geometry"].to_numpy()
    parts, owner = shapely.get_parts(geoms, return_index=True)
    counts = np.bincount(owner, minlength=len(frame))
    big = shapely.area(parts) >= MIN_PART_AREA_M2
    for i in np.unique(owner[~big]):
        report.repaired.append({"source_id": frame.source_id.iloc[i],
                                "reason": "dropped sliver parts under "
                                          f"{MIN_PART_AREA_M2} m² left by the repair"})
    parts, owner = parts[big], owner[big]
    counts = np.bincount(owner, minlength=len(frame))
    out = frame.iloc[owner].reset_index(drop=True)
    out["geometry"] = parts
    multi = counts[owner] > 1
    if multi.any():
        rank = np.arange(len(owner)) - np.searchsorted(owner, owner)  # 0-based part number
        derived = out["source_id"].where(~multi, out["source_id"] + "-" + pd.Series(rank + 1).astype("string"))
        for i in np.flatnonzero(counts > 1):
            sid = frame.source_id.iloc[i]
            report.split.append({"source_id": sid, "parts": derived[owner == i].tolist(),
                                 "reason": f"MultiPolygon with {counts[i]} disjoint parts; "
                                           "each part is its own building"})
        out["source_id"] = derived
    return pd.concat([single, out], ignore_index=True)
