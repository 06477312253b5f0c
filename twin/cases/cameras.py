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


def _cameras(con: duckdb.DuckDBPyConnection, where: str = "", params: list | None = None) -> pd.DataFrame:
    return con.execute("SELECT camera_id, name, status, building_id, ST_X(position) AS x, ST_Y(position) AS y, "
                       "coalesce(heading_deg, 0) AS heading_deg, coalesce(fov_deg, 60) AS fov_deg, "
                       f"coalesce(range_m, 40) AS range_m FROM cameras {where} ORDER BY camera_id",
                       params or []).df()


def _sectors(cams: pd.DataFrame) -> np.ndarray:
    return view_sectors(cams["x"].to_numpy(), cams["y"].to_numpy(), heading_deg=cams["heading_deg"].to_numpy(),
                        fov_deg=cams["fov_deg"].to_numpy(), range_m=cams["range_m"].to_numpy())


def cameras_seeing(con: duckdb.DuckDBPyConnection, building_id: str, *,
                   near: Callable[[float, float, float, float], Sequence[str]] | None = None) -> pd.DataFrame:
    """Cameras whose view sector meets a building's footprint, nearest first.

    ``near(xmin, xmax, ymin, ymax)`` gives the ids of the cameras standing in that box (district CRS, m), or a few
    more, from what the caller holds (a server's camera layer): only those are read, by key, instead of every
    camera's position (a city's 1.5 million take 0.3-0.6 s and 100 MB to scan).

    Returns
    -------
    DataFrame
        ``camera_id``, ``name``, ``status``, ``distance_m`` (camera to footprint).
    """
    columns = ["camera_id", "name", "status", "distance_m"]
    row = con.execute("SELECT ST_AsWKB(footprint), ST_XMin(footprint), ST_XMax(footprint), ST_YMin(footprint), "
                      "ST_YMax(footprint), (SELECT coalesce(max(range_m), 40) FROM cameras) "
                      "FROM buildings WHERE building_id = ?", [building_id]).fetchone()
    if row is None:
        return pd.DataFrame(columns=columns)
    footprint = shapely.from_wkb(bytes(row[0]))
    xmin, xmax, ymin, ymax, reach = row[1:]
    box = [xmin - reach, xmax + reach, ymin - reach, ymax + reach]
    candidates = None if near is None else list(near(*box))
    if candidates is not None and not candidates:
        return pd.DataFrame(columns=columns)
    # Plain tuples and arrays: this runs on every click in the inspector.
    cams = con.execute(
        "SELECT camera_id, name, status, x, y, heading_deg, fov_deg, range_m FROM ("
        "SELECT camera_id, name, status, building_id, ST_X(position) AS x, ST_Y(position) AS y, "
        "coalesce(heading_deg, 0) AS heading_deg, coalesce(fov_deg, 60) AS fov_deg, "
        "coalesce(range_m, 40) AS range_m FROM cameras"
        f"{'' if candidates is None else ' WHERE camera_id IN (SELECT unnest(?))'}) "
        "WHERE x BETWEEN ? AND ? AND y BETWEEN ? AND ? AND building_id IS DISTINCT FROM ? ORDER BY camera_id",
        [*([] if candidates is None else [candidates]), *box, building_id]).fetchall()
    if not cams:
        return pd.DataFrame(columns=columns)
    x, y, heading, fov, reach = (np.array([c[k] for c in cams], dtype=float) for k in range(3, 8))
    seen = np.flatnonzero(shapely.intersects(view_sectors(x, y, heading_deg=heading, fov_deg=fov, range_m=reach),
                                             footprint))
    distance = shapely.distance(shapely.points(x[seen], y[seen]), footprint).round(1)
    order = sorted(range(len(seen)), key=lambda k: (distance[k], cams[seen[k]][0]))
    return pd.DataFrame([[*cams[seen[k]][:3], float(distance[k])] for k in order], columns=columns)


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
