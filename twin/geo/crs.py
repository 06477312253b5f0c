"""The district's coordinate reference system and origin.

Every district has one projected CRS (x = easting, y = northing, metres) and
one float64 origin. Mesh vertices are float32 offsets from that origin, which
keeps about 1 mm of precision 10 km away; absolute projected coordinates never
go to a GPU. Transforms use pyproj with ``always_xy=True`` so that axis order
is always (x, y) = (easting, northing) or (lon, lat), whatever the CRS lists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyproj
import shapely

from twin.errors import CRSError

log = logging.getLogger(__name__)

DEFAULT_CRS = "EPSG:4547"  # CGCS2000 / 3-degree Gauss-Kruger CM 114E (Zhengzhou)
MAX_DISTANCE_FROM_ORIGIN_M = 100_000.0  # float32 offsets keep < 4 mm here


@dataclass(frozen=True)
class District:
    """A district's CRS and origin.

    Attributes
    ----------
    crs : str
        Projected CRS as ``"EPSG:NNNN"``.
    origin : tuple of float
        ``(x, y, z)`` in metres in ``crs``; mesh vertices are relative to it.
    """

    crs: str
    origin: tuple[float, float, float]


def parse_crs(text: str, *, what: str) -> pyproj.CRS:
    """Parse a CRS given by the user, with an error that says how to fix it."""
    try:
        return pyproj.CRS.from_user_input(text)
    except pyproj.exceptions.CRSError as exc:
        raise CRSError(f"{what}: {text!r} is not a coordinate reference system pyproj knows ({exc}). "
                       "Give it as EPSG:NNNN, for example EPSG:4547.") from exc


def require_projected(crs: pyproj.CRS, *, what: str) -> str:
    """Return ``crs`` as ``"EPSG:NNNN"``; raise unless it is projected in metres."""
    if not crs.is_projected:
        raise CRSError(f"{what}: the district CRS must be projected in metres, found {crs.name!r} "
                       "(geographic). Give a projected one, for example EPSG:4547 or a UTM zone.")
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if unit not in ("metre", "meter"):
        raise CRSError(f"{what}: the district CRS must use metres, found {unit!r} in {crs.name!r}.")
    code = crs.to_epsg()
    if code is None:
        raise CRSError(f"{what}: {crs.name!r} has no EPSG code; give the district CRS as EPSG:NNNN.")
    return f"EPSG:{code}"


def utm_crs_for(lon: float, lat: float) -> str:
    """The WGS 84 UTM zone holding a point, as ``"EPSG:326NN"`` or ``"EPSG:327NN"``.

    Parameters
    ----------
    lon, lat : float
        Degrees.
    """
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


@lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> pyproj.Transformer:
    """A cached pyproj transformer in (x, y) axis order."""
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def transform_xy(xy: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Transform points.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Coordinates in ``src`` (lon/lat or easting/northing).

    Returns
    -------
    ndarray, shape (n, 2), float64
        Coordinates in ``dst``.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if src == dst:
        return xy.copy()
    x, y = transformer(src, dst).transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def transform_geometries(geoms: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Transform an array of shapely geometries in one vectorised call."""
    if src == dst:
        return geoms
    t = transformer(src, dst)

    def _xy(coords: np.ndarray) -> np.ndarray:
        x, y = t.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    out = shapely.transform(geoms, _xy)
    bad = ~np.isfinite(shapely.bounds(out)).all(axis=1) & ~shapely.is_empty(out)
    if bad.any():
        raise CRSError(f"{int(bad.sum())} geometries could not be transformed from {src} to {dst} "
                       "(they fall outside the CRS's area of use). Check the source CRS.")
    return out


def check_near_origin(xy: np.ndarray, district: District, *, what: str) -> None:
    """Refuse coordinates too far from the origin for float32 mesh offsets."""
    if len(xy) == 0:
        return
    d = np.hypot(xy[:, 0] - district.origin[0], xy[:, 1] - district.origin[1])
    worst = float(d.max())
    if worst > MAX_DISTANCE_FROM_ORIGIN_M:
        raise CRSError(
            f"{what}: data lie up to {worst / 1000:.0f} km from the district origin "
            f"({district.origin[0]:.0f}, {district.origin[1]:.0f}) in {district.crs}; at most "
            f"{MAX_DISTANCE_FROM_ORIGIN_M / 1000:.0f} km keeps 1:500 precision. "
            "Check the source CRS (--source-crs), or ingest this place into its own store.")
