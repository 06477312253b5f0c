"""The district on the globe: its CRS origin as an east-north-up frame in ECEF.

3D Tiles place a tileset in ECEF (WGS 84 geocentric, metres) by its root ``transform``. Ours is the ENU frame
at the district origin. A projected CRS is not that plane (scale factor, grid convergence, the earth's
curvature are each centimetres to metres at a kilometre), so every vertex goes through the exact chain
district CRS -> longitude, latitude -> ECEF -> ENU in float64 with pyproj; only the tile-relative offsets are
float32. Heights are taken as metres above the ellipsoid: the store keeps no vertical datum, and a viewer
without terrain draws the ellipsoid as the ground.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.geo.crs import District, transformer

GEOGRAPHIC_3D = "EPSG:4979"  # WGS 84 longitude, latitude, ellipsoidal height
GEOCENTRIC = "EPSG:4978"  # WGS 84 ECEF, the frame of 3D Tiles


@dataclass(frozen=True)
class EnuFrame:
    """The east-north-up frame at a point of the globe.

    Attributes
    ----------
    origin_ecef : ndarray, shape (3,), float64
        The frame's origin in ECEF, metres.
    rotation : ndarray, shape (3, 3), float64
        Rows are the east, north and up unit vectors in ECEF.
    """

    origin_ecef: np.ndarray
    rotation: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """ENU -> ECEF as a 4x4 matrix (float64), to apply to column vectors."""
        m = np.eye(4)
        m[:3, :3] = self.rotation.T
        m[:3, 3] = self.origin_ecef
        return m

    def to_enu(self, ecef: np.ndarray) -> np.ndarray:
        """ECEF points (n, 3) to this frame (n, 3), metres, float64."""
        # einsum, not @: matmul of (n, 3) by (3, 3) goes through BLAS threads, 10x slower on a busy machine
        return np.einsum("ij,kj->ik", np.asarray(ecef, dtype=np.float64) - self.origin_ecef, self.rotation)

    def to_ecef(self, enu: np.ndarray) -> np.ndarray:
        """Points in this frame (n, 3) to ECEF (n, 3), metres, float64."""
        return np.einsum("ij,jk->ik", np.asarray(enu, dtype=np.float64), self.rotation) + self.origin_ecef


def district_to_ecef(xyz: np.ndarray, crs: str) -> np.ndarray:
    """Points in the district CRS, heights above the ellipsoid, to ECEF.

    Parameters
    ----------
    xyz : ndarray, shape (n, 3)
        Easting, northing, height in metres (float64).
    crs : str
        The district CRS, ``"EPSG:NNNN"``.

    Returns
    -------
    ndarray, shape (n, 3), float64
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    lon, lat = transformer(crs, "EPSG:4326").transform(xyz[:, 0], xyz[:, 1])
    x, y, z = transformer(GEOGRAPHIC_3D, GEOCENTRIC).transform(lon, lat, xyz[:, 2])
    return np.column_stack([x, y, z])


def ecef_to_district(ecef: np.ndarray, crs: str) -> np.ndarray:
    """The inverse of :func:`district_to_ecef`: ECEF (n, 3) to easting, northing, height (n, 3)."""
    ecef = np.asarray(ecef, dtype=np.float64)
    lon, lat, h = transformer(GEOCENTRIC, GEOGRAPHIC_3D).transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    x, y = transformer("EPSG:4326", crs).transform(lon, lat)
    return np.column_stack([x, y, h])


def enu_frame(district: District) -> EnuFrame:
    """The ENU frame at the district origin (its height taken above the ellipsoid)."""
    origin = np.asarray(district.origin, dtype=np.float64)[None, :]
    lon, lat = transformer(district.crs, "EPSG:4326").transform(origin[:, 0], origin[:, 1])
    lam, phi = np.radians(lon[0]), np.radians(lat[0])
    east = np.array([-np.sin(lam), np.cos(lam), 0.0])
    north = np.array([-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)])
    up = np.array([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    return EnuFrame(origin_ecef=district_to_ecef(origin, district.crs)[0], rotation=np.vstack([east, north, up]))


def relative_to_enu(vertices: np.ndarray, district: District, frame: EnuFrame) -> np.ndarray:
    """Store vertices (float32 offsets from the district origin) to the ENU frame, exactly in float64.

    Parameters
    ----------
    vertices : ndarray, shape (n, 3), float32
        As the store keeps them: metres relative to ``district.origin``.

    Returns
    -------
    ndarray, shape (n, 3), float64
        East, north, up in metres from the frame's origin.
    """
    absolute = np.asarray(vertices, dtype=np.float64) + np.asarray(district.origin, dtype=np.float64)
    return frame.to_enu(district_to_ecef(absolute, district.crs))


def enu_to_district_maps(low: np.ndarray, high: np.ndarray, district: District, frame: EnuFrame
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Per box of the ENU frame, a quadratic map that takes its points to the district CRS (relative to the origin).

    A viewer drawing in the district's projected frame (the app's 3D view) places each tile by its own map.
    An affine map is off by the earth's curvature and the change of grid convergence, which grow with the
    square of the distance (2 mm over 250 m, 4 cm over 1 km, 0.6 m over 4 km); the quadratic terms take those,
    leaving well under a centimetre over a few kilometres.

    Parameters
    ----------
    low, high : ndarray, shape (n, 3)
        Corners of the boxes in the ENU frame, metres.

    Returns
    -------
    centre : ndarray, shape (n, 3), float64
        Each box's centre (ENU, metres); the map takes points relative to it.
    coefficients : ndarray, shape (n, 3, 9), float64
        With ``(x, y, z) = enu - centre``: ``district_xyz - origin = C @ [x, y, z, 1, x², y², xy, xz, yz]``, least
        squares over a 5 x 5 x 2 lattice of each box.
    """
    low, high = np.atleast_2d(low).astype(np.float64), np.atleast_2d(high).astype(np.float64)
    high = np.where(high - low < 1.0, low + 1.0, high)  # a flat box still spans all three axes
    steps = np.linspace(0.0, 1.0, 5)
    lattice = np.array([[i, j, k] for i in steps for j in steps for k in (0.0, 1.0)])  # (50, 3)
    centre = (low + high) / 2
    local = (lattice[None, :, :] - 0.5) * (high - low)[:, None, :]  # (n, 50, 3)
    enu = (local + centre[:, None, :]).reshape(-1, 3)
    target = ecef_to_district(frame.to_ecef(enu), district.crs) - np.asarray(district.origin, np.float64)
    design = map_terms(local)  # (n, 50, 9)
    scale = np.abs(design).max(axis=1, keepdims=True)  # columns of like size: a well-conditioned fit
    solution = np.linalg.pinv(design / scale) @ target.reshape(local.shape)  # (n, 9, 3)
    return centre, np.transpose(solution / np.transpose(scale, (0, 2, 1)), (0, 2, 1))


def map_terms(local: np.ndarray) -> np.ndarray:
    """The terms ``[x, y, z, 1, x², y², xy, xz, yz]`` of :func:`enu_to_district_maps` for points (..., 3)."""
    x, y, z = local[..., 0], local[..., 1], local[..., 2]
    return np.stack([x, y, z, np.ones_like(x), x * x, y * y, x * y, x * z, y * z], axis=-1)
