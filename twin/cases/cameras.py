"""What the cameras see: view sectors on the ground, and which buildings they meet.

A camera's view cone, projected on the ground, is a circular sector: apex at
the camera, opening ``fov_deg`` around ``heading_deg`` (clockwise from north),
radius ``range_m``. A building is seen when the sector meets its footprint;
the building a camera is mounted on does not count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import duckdb
import numpy as np
import pandas as pd
import shapely

ARC_STEPS = 9
DEFAULT_RANGE_M = 40.0  # a camera without a range sees this far
DEFAULT_FOV_DEG = 60.0  # and without a field of view, this wide
SEEING_COLUMNS = ["camera_id", "status", "distance_m"]


def view_sectors(x: np.ndarray, y: np.ndarray, *, heading_deg: np.ndarray, fov_deg: np.ndarray,
                 range_m: np.ndarray) -> np.ndarray:
    """Ground sectors of cameras, vectorised.

    Parameters
    ----------
    x, y : ndarray, shape (n,)
        Camera positions (metres, district CRS).
    heading_deg, fov_deg, range_m : ndarray, shape (n,)
        Heading clockwise from north and horizontal field of view (degrees), range (metres).

    Returns
    -------
    ndarray of shapely.Polygon, shape (n,)
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    fov = np.clip(np.asarray(fov_deg, dtype=float), 1.0, 359.0)
    t = np.linspace(-0.5, 0.5, ARC_STEPS)
    angles = np.radians(np.asarray(heading_deg, dtype=float)[:, None] + fov[:, None] * t[None, :])
    r = np.asarray(range_m, dtype=float)[:, None]
    arc = np.stack([x[:, None] + r * np.sin(angles), y[:, None] + r * np.cos(angles)], axis=-1)
    apex = np.stack([x, y], axis=-1)[:, None, :]
    return shapely.polygons(np.concatenate([apex, arc, apex], axis=1))


def _cameras(con: duckdb.DuckDBPyConnection, *, columns: str = "camera_id, name, status, building_id",
             where: str = "", params: list | None = None) -> pd.DataFrame:
    """Cameras with their place (``x``, ``y``) and view (nulls as :class:`CameraSight` takes them); ``where`` on
    those columns."""
    return con.execute(f"SELECT * FROM (SELECT {columns}, ST_X(position) AS x, ST_Y(position) AS y, "
                       f"coalesce(heading_deg, 0) AS heading_deg, coalesce(fov_deg, {DEFAULT_FOV_DEG}) AS fov_deg, "
                       f"coalesce(range_m, {DEFAULT_RANGE_M}) AS range_m FROM cameras) {where} ORDER BY camera_id",
                       params or []).df()


def _sectors(cams: pd.DataFrame) -> np.ndarray:
    return view_sectors(cams["x"].to_numpy(), cams["y"].to_numpy(), heading_deg=cams["heading_deg"].to_numpy(),
                        fov_deg=cams["fov_deg"].to_numpy(), range_m=cams["range_m"].to_numpy())


class CameraSight:
    """Cameras' places, views, statuses and mounts held in arrays, to answer :func:`cameras_seeing` for any
    building without reading the cameras again.

    A served process on a PostgreSQL store holds one for all its sessions (:class:`scenes.shared.SharedDistrict`):
    a click there would otherwise read every camera through the scanner (about 13 ms of CPU at 18,000 cameras).
    The cameras are taken as they are when it is made, like the view's camera layer.

    Parameters
    ----------
    cameras : DataFrame
        ``camera_id``, ``status``, ``building_id`` (the building it is mounted on, or null), ``x``, ``y``
        (metres, district CRS), ``heading_deg``, ``fov_deg``, ``range_m`` (nulls allowed: a camera without a
        heading looks north, without a field sees ``DEFAULT_FOV_DEG``, without a range ``DEFAULT_RANGE_M``).
    """

    def __init__(self, cameras: pd.DataFrame) -> None:
        x = cameras["x"].to_numpy(dtype=np.float64)
        order = np.argsort(x, kind="stable")  # by x: a building's neighbours are one slice
        self._x = x[order]
        self._y = cameras["y"].to_numpy(dtype=np.float64)[order]
        self._heading = cameras["heading_deg"].fillna(0.0).to_numpy(dtype=np.float64)[order]
        self._fov = cameras["fov_deg"].fillna(DEFAULT_FOV_DEG).to_numpy(dtype=np.float64)[order]
        self._range = cameras["range_m"].fillna(DEFAULT_RANGE_M).to_numpy(dtype=np.float64)[order]
        self._ids = cameras["camera_id"].to_numpy(dtype=object)[order]
        status = pd.Categorical(cameras["status"].to_numpy(dtype=object)[order])
        self._status, self._statuses = status.codes, np.asarray([*status.categories, None], dtype=object)
        self._mount = cameras["building_id"].to_numpy(dtype=object)[order]
        self.reach = float(self._range.max()) if len(x) else DEFAULT_RANGE_M  # the farthest any camera sees

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection) -> CameraSight:
        """Every camera of the store."""
        return cls(_cameras(con, columns="camera_id, status, building_id"))

    def seeing(self, building_id: str, footprint: shapely.Geometry) -> pd.DataFrame:
        """The cameras whose view sector meets ``footprint`` (the building ``building_id``'s: a camera mounted on
        it does not count), nearest first (ties by id): ``SEEING_COLUMNS``, ``distance_m`` to 0.1 m."""
        xmin, ymin, xmax, ymax = footprint.bounds
        lo = np.searchsorted(self._x, xmin - self.reach, side="left")
        hi = np.searchsorted(self._x, xmax + self.reach, side="right")
        y = self._y[lo:hi]
        near = lo + np.flatnonzero((y >= ymin - self.reach) & (y <= ymax + self.reach)
                                   & (self._mount[lo:hi] != building_id))
        if not len(near):
            return pd.DataFrame(columns=SEEING_COLUMNS)
        sectors = view_sectors(self._x[near], self._y[near], heading_deg=self._heading[near],
                               fov_deg=self._fov[near], range_m=self._range[near])
        seen = near[shapely.intersects(sectors, footprint)]
        distance = shapely.distance(shapely.points(self._x[seen], self._y[seen]), footprint).round(1)
        ids = self._ids[seen]
        order = sorted(range(len(seen)), key=lambda k: (distance[k], ids[k]))
        return pd.DataFrame({"camera_id": ids[order], "status": self._statuses[self._status[seen[order]]],
                             "distance_m": distance[order].astype(float)}, columns=SEEING_COLUMNS)


def cameras_seeing(con: duckdb.DuckDBPyConnection, building_id: str, *, footprint: shapely.Geometry | None = None,
                   near: Callable[[float, float, float, float], Sequence[str]] | None = None) -> pd.DataFrame:
    """Cameras whose view sector meets a building's footprint, nearest first.

    ``footprint`` is the building's, when the caller has read it already. Only the cameras within the farthest
    camera's range of the footprint are read (:class:`CameraSight` answers the same from cameras held in memory).
    ``near(xmin, xmax, ymin, ymax)`` gives the ids of the cameras standing within the farthest camera's range of
    that box (the footprint's, district CRS, m), or a few more, from what the caller holds (a server's camera
    layer): only those are read, by key, rather than every camera's position and range scanned (a city's 1.5
    million take 0.3-0.6 s and 100 MB).

    Returns
    -------
    DataFrame
        ``camera_id``, ``status``, ``distance_m`` (camera to footprint, to 0.1 m).
    """
    if footprint is None:
        row = con.execute("SELECT ST_AsWKB(footprint) FROM buildings WHERE building_id = ?", [building_id]).fetchone()
        if row is None:
            return pd.DataFrame(columns=SEEING_COLUMNS)
        footprint = shapely.from_wkb(bytes(row[0]))
    xmin, ymin, xmax, ymax = footprint.bounds
    if near is not None:
        candidates = list(near(xmin, xmax, ymin, ymax))
        if not candidates:
            return pd.DataFrame(columns=SEEING_COLUMNS)
        where, params = "WHERE camera_id IN (SELECT unnest(?))", [candidates]
    else:
        reach, = con.execute(f"SELECT coalesce(max(coalesce(range_m, {DEFAULT_RANGE_M})), {DEFAULT_RANGE_M}) "
                             "FROM cameras").fetchone()
        where, params = "WHERE x BETWEEN ? AND ? AND y BETWEEN ? AND ?", [xmin - reach, xmax + reach,
                                                                          ymin - reach, ymax + reach]
    return CameraSight(_cameras(con, columns="camera_id, status, building_id", where=where,
                                params=params)).seeing(building_id, footprint)


def cameras_per_building(con: duckdb.DuckDBPyConnection) -> pd.Series:
    """How many cameras see each building (0 for none), indexed by ``building_id``."""
    buildings = con.execute("SELECT building_id, ST_AsWKB(footprint) AS wkb FROM buildings ORDER BY building_id").df()
    counts = pd.Series(0, index=buildings["building_id"].to_numpy(), dtype=np.int64)
    cams = _cameras(con)
    if cams.empty or buildings.empty:
        return counts
    tree = shapely.STRtree(shapely.from_wkb(buildings["wkb"].map(bytes).to_numpy()))
    cam_idx, bld_idx = tree.query(_sectors(cams), predicate="intersects")
    ids = buildings["building_id"].to_numpy()
    mounted = cams["building_id"].to_numpy(dtype=object)[cam_idx] == ids[bld_idx]
    seen = pd.Series(ids[bld_idx[~mounted]]).value_counts()
    counts.loc[seen.index] = seen.to_numpy()
    return counts


# ---------------------------------------------------------------- the coverage, kept in the store
# A city's 1.5 million view sectors against a million footprints take 20-40 s on 2 cores, too long for every
# start of `twin serve`: the counts are kept in the camera_sight table, with the fingerprint of the cameras and
# footprints they were computed from in meta. Grid saves move no camera and no footprint, so they keep it valid.

SIGHT_KEY = "camera_sight_of"  # meta: the fingerprint camera_sight was computed from
SIGHT_RULE = 1  # bump when what counts as seen changes (view_sectors, cameras_per_building)


def sight_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """What the coverage depends on, in one string: the rule, every footprint, every camera's place and view."""
    buildings, cameras = con.execute(
        "SELECT (SELECT coalesce(bit_xor(hash(building_id, ST_AsWKB(footprint))), 0) FROM buildings), "
        "(SELECT coalesce(bit_xor(hash(camera_id, ST_AsWKB(position), heading_deg, fov_deg, range_m, building_id)), "
        "0) FROM cameras)").fetchall()[0]
    return f"{SIGHT_RULE}:{buildings}:{cameras}"


def camera_sight_kept(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store's ``camera_sight`` holds the coverage of its cameras and footprints as they are."""
    kept = con.execute("SELECT value FROM meta WHERE key = ?", [SIGHT_KEY]).fetchall()
    return bool(kept) and kept[0][0] == sight_fingerprint(con)


def keep_camera_sight(con: duckdb.DuckDBPyConnection) -> bool:
    """Compute the coverage and keep it in the store, unless it is kept already; True when it was computed.

    Writes ``camera_sight`` and ``meta.camera_sight_of``: run it inside the caller's transaction.
    """
    fingerprint = sight_fingerprint(con)
    kept = con.execute("SELECT value FROM meta WHERE key = ?", [SIGHT_KEY]).fetchall()
    if kept and kept[0][0] == fingerprint:
        return False
    counts = cameras_per_building(con)
    seen = counts[counts > 0]
    con.execute("DELETE FROM camera_sight")
    con.register("sight_rows", pd.DataFrame({"building_id": seen.index.to_numpy(dtype=object),
                                             "cameras": seen.to_numpy(dtype=np.int32)}))
    try:
        con.execute("INSERT INTO camera_sight SELECT building_id, cameras FROM sight_rows")
    finally:
        con.unregister("sight_rows")
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [SIGHT_KEY, fingerprint])
    return True
