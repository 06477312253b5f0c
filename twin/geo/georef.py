"""Georeferencing a local model (BIM or mesh): where its origin lies on the map, and how it turns.

Pure functions on arrays. A :class:`Placement` takes local model
coordinates (metres, z up) to a projected CRS: ``map = origin + s * R(θ) · local``,
with θ counter-clockwise from map east to the model's x axis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pyproj

from twin.geo.crs import parse_crs, transform_xy, utm_crs_for
from twin.errors import InputError

GEOREF_SOURCES = ("map_conversion", "epset_map_conversion", "ref_latitude", "anchor")


@dataclass(frozen=True)
class Placement:
    """A local model's placement on a projected CRS.

    Attributes
    ----------
    source : str
        One of ``GEOREF_SOURCES``.
    crs : str
        Projected CRS of ``eastings``/``northings`` (horizontal part).
    eastings, northings, height : float
        Map position of the model's local origin, in the CRS's units (metres).
    rotation_deg : float
        Counter-clockwise angle from map east to the model's x axis.
    scale : float
        Factor applied to local distances (1 for a model in metres on a metric map).
    """

    source: str
    crs: str
    eastings: float
    northings: float
    height: float
    rotation_deg: float
    scale: float = 1.0

    def to_map(self, local: np.ndarray) -> np.ndarray:
        """Local model points (n, 3), metres, z up, to map coordinates (n, 3) in ``crs``."""
        local = np.asarray(local, dtype=np.float64)
        t = math.radians(self.rotation_deg)
        c, s = math.cos(t), math.sin(t)
        x, y = local[:, 0] * self.scale, local[:, 1] * self.scale
        return np.column_stack([self.eastings + c * x - s * y, self.northings + s * x + c * y,
                                self.height + local[:, 2] * self.scale])

    def origin_lonlat(self) -> tuple[float, float]:
        lon, lat = transform_xy(np.array([[self.eastings, self.northings]]), self.crs, "EPSG:4326")[0]
        return float(lon), float(lat)

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def rotation_from_axis(abscissa: float, ordinate: float) -> float:
    """Degrees counter-clockwise from map east to the direction (abscissa, ordinate)."""
    if not abscissa and not ordinate:
        return 0.0
    return math.degrees(math.atan2(ordinate, abscissa))


def rotation_from_true_north(north_x: float, north_y: float) -> float:
    """Model x-axis rotation from the model's TrueNorth direction (north as seen in local x, y)."""
    return math.degrees(math.atan2(north_x, north_y))


def horizontal_crs(text: str, *, what: str) -> str:
    """The horizontal (projected) part of a CRS that may be compound (e.g. EPSG:9897 = LUREF + NG95)."""
    crs = parse_crs(text, what=what)
    if crs.is_compound:
        crs = next((c for c in crs.sub_crs_list if c.is_projected), crs.sub_crs_list[0])
    if not crs.is_projected:
        raise InputError(f"{what}: {text} is not a projected CRS; a map conversion needs eastings and northings.")
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else crs.to_wkt()


def placement_from_lonlat(lon: float, lat: float, height: float, rotation_deg: float, *, source: str,
                          crs: str | None = None) -> Placement:
    """A model origin given in longitude/latitude, placed on ``crs`` (default: the UTM zone that holds it).

    The rotation is measured on that CRS's grid, so give the district's CRS when the model
    should line up with the district's grid.
    """
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"longitude {lon}, latitude {lat} are not on Earth; give LON,LAT in degrees.")
    if not (math.isfinite(height) and math.isfinite(rotation_deg)):
        raise InputError(f"height {height} m and rotation {rotation_deg}° must be finite numbers.")
    crs = crs or utm_crs_for(lon, lat)
    e, n = transform_xy(np.array([[lon, lat]]), "EPSG:4326", crs)[0]
    return Placement(source=source, crs=crs, eastings=float(e), northings=float(n), height=float(height),
                     rotation_deg=float(rotation_deg))


def parse_anchor(text: str, *, crs: str | None = None) -> Placement:
    """``--anchor LON,LAT,H,ROT_DEG``: where the model's origin goes and how it turns.

    ``ROT_DEG`` turns the model counter-clockwise (seen from above) about its origin; 0 keeps its
    x axis along the grid east of ``crs`` (the district's, when the store has one).
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        lon, lat, h, rot = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"--anchor {text!r}: expected four numbers LON,LAT,H,ROT_DEG "
                         "(degrees, degrees, metres, degrees), e.g. --anchor 113.72,34.76,0,0") from None
    return placement_from_lonlat(lon, lat, h, rot, source="anchor", crs=crs)


def distance_m(a: Placement, b: Placement) -> float:
    """Geodesic distance between two placements' origins, metres."""
    (lon1, lat1), (lon2, lat2) = a.origin_lonlat(), b.origin_lonlat()
    return float(pyproj.Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)[2])
